"""fastbfm.io: atomic writes, and one JSON reading entry point whose schema names file and field."""

import pytest
import torch

from fastbfm.errors import FastBFMError
from fastbfm.io import atomic_write, load_tensors, read_csv, read_json, save_tensors, write_csv, write_json


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"x": 1})

    def crash(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert read_json(path) == {"x": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_read_json_names_the_file_and_its_schema_the_field(tmp_path):
    with pytest.raises(FastBFMError, match=f"missing grid cell: {tmp_path / 'absent.json'}"):
        read_json(tmp_path / "absent.json", what="grid cell")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FastBFMError, match="corrupt grid cell .*bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json", what="grid cell")

    def schema(data, path):
        if not isinstance(data.get("episodes"), int):
            raise FastBFMError(f"{path}: episodes must be an integer")
        return data

    write_json(tmp_path / "g.json", {"episodes": "20"})
    with pytest.raises(FastBFMError, match="g.json: episodes must be an integer"):
        read_json(tmp_path / "g.json", schema)
    write_json(tmp_path / "g.json", {"episodes": 20})
    assert read_json(tmp_path / "g.json", schema) == {"episodes": 20}


def test_csv_and_tensors_round_trip_with_checksums(tmp_path):
    write_csv(tmp_path / "t.csv", ("a", "b"), [{"a": 1, "b": 2.5}])
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,2.5\n"
    digest = save_tensors(tmp_path / "w.safetensors", {"w": torch.arange(3.0)})
    assert torch.equal(load_tensors(tmp_path / "w.safetensors", digest)["w"], torch.arange(3.0))
    with pytest.raises(FastBFMError, match="does not match the checksum"):
        load_tensors(tmp_path / "w.safetensors", "0" * 64)


def test_read_csv_names_the_file(tmp_path):
    write_csv(tmp_path / "t.csv", ("a", "b"), [{"a": 1, "b": 2.5}])
    assert read_csv(tmp_path / "t.csv") == [{"a": "1", "b": "2.5"}]
    with pytest.raises(FastBFMError, match="missing grid results: .*absent.csv"):
        read_csv(tmp_path / "absent.csv", what="grid results")
    (tmp_path / "bin.csv").write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(FastBFMError, match="corrupt grid results .*bin.csv"):
        read_csv(tmp_path / "bin.csv", what="grid results")
