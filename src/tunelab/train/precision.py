"""Mixed precision for training: which autocast dtype a run uses on this device.

bf16 autocast keeps fp32 weights, optimizer state and residual stream, and runs the matmuls and
attention in bf16. On a CPU it pays only where the matmuls have bf16 hardware: with Intel AMX tiles
a bf16 matmul ran at 2521 GFLOP/s against 372 for fp32 (2 cores, measured by
benchmarks/train_throughput/run.py; results/train_throughput_n12.md); on an AVX2-only CPU bf16 matmul
is over 100x slower than fp32, so `auto` keeps fp32 there.
"""

from __future__ import annotations

from tunelab.models.compat import cpu_has_amx
from tunelab.utils.errors import ConfigError

CHOICES = ("auto", "bf16", "no")


def cpu_has_bf16_matmul() -> bool:
    """True when this CPU has AMX tiles (oneDNN's fast bf16 path) and the kernel lets torch use them."""
    return cpu_has_amx()


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


def autocast(precision: str, device: str):
    """The autocast context a run with `precision` ('bf16' or 'no') computes in on `device`."""
    import contextlib

    import torch

    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16)


def store_frozen_linears(model, dtype) -> int:
    """Keep the decoder's frozen linear weights in `dtype` (bf16) for a bf16-autocast run on the CPU.

    Autocast would cast each of them to bf16 in every forward pass anyway (frozen weights are not in its
    cache) and keep the copy for the backward pass: storing them in bf16 once gives the matmuls the very
    same operands, skips that copy each step and halves their memory. Trainable weights (LoRA factors,
    norms), embeddings and the LM head stay fp32. The model then needs autocast to run (fp32 inputs
    meet bf16 weights), so only the trainer uses it; evaluation reloads the run from disk.
    Returns the number of linear layers stored in `dtype`.
    """
    import torch

    from tunelab.train.loss import causal_lm

    n = 0
    for m in causal_lm(model).get_decoder().modules():
        frozen = not any(p.requires_grad for p in m.parameters(recurse=False))
        if type(m) is torch.nn.Linear and frozen and m.weight.dtype == torch.float32:
            m.to(dtype)
            n += 1
    return n
