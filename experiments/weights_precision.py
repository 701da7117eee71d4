"""Zero-shot cost of storing a model's weights as float16 or int8 (per-row scales) instead of float32.

    python experiments/weights_precision.py walker-fb --data data/walker/explore --episodes 50
    python experiments/weights_precision.py ../shared/models/metamotivo-walker-fb --data data/walker/explore

Each storage is applied to the model's weights exactly as ``save_model(..., dtype=...)`` writes them
and ``load_model`` reads them back; the latent is inferred again from the same 50k relabelled samples and
every variant runs the same seeded episodes. Prints one JSON line per (storage, task) and the bytes of
each storage's weight file.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from fastbfm.bfm.checkpoint import WEIGHT_DTYPES, compress_weights, decompress_weights
from fastbfm.models import load_model
from fastbfm.data.dataset import load_dataset
from fastbfm.envs import list_tasks
from fastbfm.envs.registry import get_task
from fastbfm.evaluate.experiments import zero_shot


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--dtypes", default=",".join(WEIGHT_DTYPES.values()))
    a = p.parse_args()
    torch.set_num_threads(1)
    base = load_model(a.model)
    dataset = load_dataset(a.data)
    tasks = [get_task(t) for t in list_tasks(base.meta.get("domain", "walker"))]
    state = {k: v.detach().clone().contiguous() for k, v in base.state_dict().items()}
    for dtype in a.dtypes.split(","):
        stored = compress_weights(state, getattr(torch, dtype))
        with tempfile.TemporaryDirectory() as tmp:
            save_file({k: v.contiguous() for k, v in stored.items()}, Path(tmp) / "w.safetensors")
            size = (Path(tmp) / "w.safetensors").stat().st_size
        model = copy.deepcopy(base)
        model.load_state_dict(decompress_weights(stored), strict=True)
        print(json.dumps({"model": a.model, "weights": dtype, "bytes": size}), flush=True)
        for row in zero_shot(model, tasks, dataset, episodes=a.episodes):
            print(json.dumps({"model": a.model, "weights": dtype, "task": row["task"], "zero_shot": round(row["zero_shot"], 1),
                              "std": round(row["zero_shot_std"], 1), "random": round(row["random"], 1)}), flush=True)


if __name__ == "__main__":
    main()
