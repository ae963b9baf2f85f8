"""Where and how the computation runs: device choice, mixed precision, memory format."""

from __future__ import annotations

import contextlib

import torch

from segkit.errors import UsageError


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is missing is a usage error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UsageError(
            f"--device {requested!r} is not a device name (auto, cpu, cuda, cuda:1, mps)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UsageError(
            f"--device {requested} asks for GPU {device.index}, but torch sees {count} "
            f"(cuda:0 to cuda:{count - 1}); CUDA_VISIBLE_DEVICES renumbers the GPUs a process sees"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps was asked for, but MPS is not available; use --device cpu")
    return device


def resolve_amp(requested: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision: on CUDA ``auto`` means bf16 where supported, else fp16 (with a grad scaler)."""
    if requested == "off" or device.type != "cuda":
        if requested in ("bf16", "fp16") and device.type != "cuda":
            raise UsageError(f"--amp {requested} needs a CUDA device; this run is on {device.type}")
        return None
    if requested == "fp16":
        return torch.float16
    if requested == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
