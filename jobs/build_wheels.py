"""Build the gitignored ``wheels/`` folder the GPU job carries (docs/gpu.md).

Downloads the pinned wheels of ``jobs/wheels.txt`` for the GPU machine (CPython 3.12, manylinux x86_64)
and repacks two of them without what fastbfm never loads: dm_control without its locomotion, soccer,
dog, Blender and test assets (56 MB -> under 1 MB), mujoco without ``mujoco/experimental`` (its studio
viewer and web client, 15 MiB of its 25). So the tracked files plus the wheels fit the 64 MiB a device
call carries. Rerunning gives the same folder: pinned versions, and the repacked
wheel is written with fixed timestamps and a sorted member list.

    python jobs/build_wheels.py                         # wheels/ for the GPU machine (Python 3.12)
    python jobs/build_wheels.py --python-version 3.11 --out wheels-py311   # for a local check
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
# Members that fastbfm's four domains never read, per repacked wheel (checked by the job's import and
# collection steps, and by tests/test_gpu_job.py against an install of the slim wheels).
SLIM = {
    "dm_control": re.compile(
        r"^dm_control/("
        r"locomotion/.*(?<!\.py)$"  # walker, soccer, arena and mocap assets
        r"|suite/dog_assets/.*|suite/all_domains\.png"
        r"|blender/.*(?<!\.py)$"
        r"|.*/test_assets/.*|.*/testing/assets/.*"
        r"|.*_test\.py"
        r")"
    ),
    "mujoco": re.compile(r"^mujoco/experimental/"),  # studio viewer, Dear ImGui, web client: never imported by `import mujoco`
}
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def requirements(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def download(reqs: list[str], out: Path, python_version: str) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
           "--python-version", python_version, "-d", str(out), "--quiet"]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + reqs, check=True)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim_wheel(source: Path, target: Path, drop: re.Pattern) -> tuple[int, int]:
    """Copy ``source`` to ``target`` without the members ``drop`` matches, with a RECORD that lists the rest;
    returns (members kept, members dropped)."""
    kept: dict[str, bytes] = {}
    dropped = 0
    record_name = None
    with zipfile.ZipFile(source) as z:
        for info in z.infolist():
            if info.is_dir():
                continue
            if info.filename.endswith(".dist-info/RECORD"):
                record_name = info.filename
            elif drop.match(info.filename):
                dropped += 1
            else:
                kept[info.filename] = z.read(info)
    if record_name is None:
        raise SystemExit(f"error: {source.name} has no RECORD")
    record = "\n".join([_record_line(n, kept[n]) for n in sorted(kept)] + [f"{record_name},,", ""])
    kept[record_name] = record.encode()
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name in sorted(kept):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, kept[name])
    tmp.replace(target)
    return len(kept), dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "wheels", help="folder for the wheels (default: wheels/)")
    parser.add_argument("--python-version", default="3.12", help="CPython version of the target machine")
    parser.add_argument("--requirements", type=Path, default=ROOT / "jobs" / "wheels.txt")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    reqs = requirements(args.requirements)
    download(reqs, args.out, args.python_version)
    slimmed = []
    for package, drop in SLIM.items():
        wheel = next(args.out.glob(f"{package}-*.whl"))
        original = wheel.with_suffix(".full")
        wheel.replace(original)
        kept, dropped = slim_wheel(original, wheel, drop)
        original.unlink()
        slimmed.append(f"{package}: {kept} files kept, {dropped} dropped")
    wheels = sorted(args.out.glob("*.whl"))
    names = {re.split(r"-\d", w.name, maxsplit=1)[0].lower().replace("_", "-") for w in wheels}
    expected = {re.split(r"[=<>!]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}
    if names != expected:
        raise SystemExit(f"error: {args.out} holds {sorted(names)}, expected {sorted(expected)} (remove stale wheels)")
    total = sum(w.stat().st_size for w in wheels)
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
    print(f"{total / 2**20:7.2f} MiB  in {len(wheels)} wheels ({args.out}); {'; '.join(slimmed)}")


if __name__ == "__main__":
    main()
