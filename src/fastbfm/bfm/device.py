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


# x86 flags of /proc/cpuinfo worth naming in a benchmark, in order; aarch64 lists "bf16" among its Features.
VECTOR_EXTENSIONS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "bf16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_vector_extensions() -> list[str]:
    """The CPU's vector extensions that decide matmul speed (fp32 AVX2/AVX-512, native bf16 or not)."""
    flags = cpu_flags()
    return [name for name in VECTOR_EXTENSIONS if name in flags]


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively: on CUDA from compute capability 8.0; on the CPU with AVX512_BF16
    or AMX (x86) or BF16 (aarch64). Elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(cpu_flags() & set(NATIVE_BF16_FLAGS))


# Narrower networks gain nothing from bf16 on the CPU: their updates are bound by elementwise work and
# casts, not matmuls (measured: docs/bfms.md, "bf16 training").
BF16_MIN_WIDTH = 512


def default_bf16(device: torch.device, width: int) -> bool:
    """bf16 training by default on a CPU with native bf16 for networks at least ``BF16_MIN_WIDTH`` wide;
    not on CUDA, where its effect has not been measured (TF32 is the GPU's default)."""
    return device.type == "cpu" and native_bf16(device) and width >= BF16_MIN_WIDTH


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
