"""Mixed precision for training: which autocast dtype a run uses on this device.

bf16 autocast keeps fp32 weights, optimizer state and residual stream, and runs the matmuls and
attention in bf16. On a CPU it pays only where the matmuls have bf16 hardware: with Intel AMX tiles
bf16 matmul measured ~1.4-2.4 TFLOP/s against ~0.3-0.4 for fp32 (2 cores); without AMX or
AVX512-BF16 it runs at under 1 GFLOP/s, so `auto` keeps fp32 there.
"""

from __future__ import annotations

from tunelab.utils.errors import ConfigError

CHOICES = ("auto", "bf16", "no")


def cpu_has_bf16_matmul() -> bool:
    """True when this CPU has AMX tiles (oneDNN's fast bf16 path) and the kernel lets torch use them."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported() and torch.cpu._init_amx())
    except (AttributeError, RuntimeError):  # older torch, or AMX not permitted by the kernel
        return False


def resolve_mixed_precision(name: str, device: str, weight_dtype: str) -> str:
    """'bf16' or 'no' for `train.mixed_precision=name` on `device` with `model.dtype=weight_dtype`."""
    if name not in CHOICES:
        raise ConfigError(f"train.mixed_precision '{name}' is unknown; valid: {', '.join(CHOICES)}")
    if name == "no" or weight_dtype == "float16":
        return "no"
    if name == "bf16":
        return "bf16"
    if device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if cpu_has_bf16_matmul() else "no"
