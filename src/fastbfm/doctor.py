"""``fastbfm doctor``: the versions and settings that fastbfm depends on, and what to fix."""

from __future__ import annotations

import os
from importlib import metadata


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def checks(render: bool = True) -> list[dict]:
    """Each check: name, status (ok / warn / fail), what was found, and how to fix it."""
    out = []

    def add(name, ok, found, fix, severity="fail"):
        out.append({"check": name, "status": "ok" if ok else severity, "found": found, "fix": "" if ok else fix})

    mujoco_v, dm_v, torch_v = _version("mujoco"), _version("dm_control"), _version("torch")
    add("mujoco 3.17", bool(mujoco_v) and mujoco_v.startswith("3.17."), mujoco_v or "missing",
        "pip install 'mujoco==3.17.*' (mujoco 4 breaks dm_control's suite.load)")
    add("dm_control 1.0.50", dm_v == "1.0.50", dm_v or "missing", "pip install dm_control==1.0.50")
    add("torch >= 2.4", bool(torch_v) and tuple(int(x) for x in torch_v.split("+")[0].split(".")[:2]) >= (2, 4), torch_v or "missing",
        "pip install torch==2.13.0 (CPU wheel) or any torch >= 2.4")
    import torch

    threads, cores = torch.get_num_threads(), os.cpu_count() or 1
    add("torch threads", threads <= cores, f"{threads} of {cores} cores",
        "torch.set_num_threads(1) while MuJoCo batches step (the CLI does this)", "warn")
    from fastbfm.bfm.device import BF16_MIN_WIDTH, cpu_vector_extensions, native_bf16

    cpu = torch.device("cpu")
    extensions = cpu_vector_extensions()
    if native_bf16(cpu):
        shown = ", ".join(e for e in extensions if "bf16" in e)
        precision = f"native bf16 ({shown}): bf16 for networks {BF16_MIN_WIDTH}+ wide, else float32"
    else:
        precision = f"no native bf16 ({', '.join(extensions) or 'no AVX found'}): float32"
    add("CPU training precision", True, precision, "")
    gl = os.environ.get("MUJOCO_GL")
    add("MUJOCO_GL", gl in ("egl", "osmesa", "glfw"), gl or "unset (fastbfm sets egl on import)",
        "export MUJOCO_GL=egl for headless rendering", "warn")
    if render:
        try:
            import mujoco

            model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='.1'/></worldbody></mujoco>")
            with mujoco.Renderer(model, 32, 32) as renderer:
                renderer.update_scene(mujoco.MjData(model))
                frame = renderer.render()
            add("headless rendering", frame.shape == (32, 32, 3), f"{gl or 'default'} rendered a frame", "")
        except Exception as e:  # any backend failure is the finding itself
            add("headless rendering", False, f"{type(e).__name__}: {e}",
                "apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri and export MUJOCO_GL=egl (only videos need it)", "warn")
    return out
