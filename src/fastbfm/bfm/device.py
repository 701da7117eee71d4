"""Where training and inference run: device choice and the GPU's matmul precision."""

from __future__ import annotations

import torch

from fastbfm.errors import FastBFMError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: the first CUDA device when one is available, else the CPU. ``cuda`` without one is refused."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise FastBFMError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FastBFMError(f"device {name!r} asked for, but torch {torch.__version__} sees no CUDA device")
    return torch.device(name)


def set_matmul_precision(device: torch.device, tf32: bool = True) -> None:
    """TF32 matmuls and convolutions on CUDA (the field's practice; about 3 decimal digits of mantissa in
    the products, float32 accumulation), or full float32 with ``tf32=False``. No effect on the CPU."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine() or "cpu"


def adam_options(device: torch.device) -> dict:
    """Adam's implementation for the device: on CUDA fused and capturable (its step count lives on the
    device, so a CUDA graph can replay the step); on the CPU fused as well (one kernel per parameter
    group instead of a Python loop over tensors)."""
    if device.type == "cuda":
        return {"fused": True, "capturable": True}
    return {"fused": True}
