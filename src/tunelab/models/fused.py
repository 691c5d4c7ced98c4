"""Leaner decoder layers for training: RMSNorm and the gated MLP activation keep less for the backward pass.

Under autograd, transformers' RMSNorm keeps two fp32 copies of its (tokens x hidden) input (the input and the
normalized product), and the gated MLP keeps act(gate) beside gate and up. Here both are one autograd function
each that keeps only what it cannot cheaply recompute (the input and one scale per token; gate and up) and
recomputes the rest in the backward pass: the same values, forward and backward. With LoRA's own input cast
left out as well (`lean_layers`), a bf16 LoRA run of SmolLM2-135M keeps 18.5 KiB per token per layer instead of
23.7, gemma3-270m 28.7 instead of 40.3 (`python benchmarks/saved_activations.py`).

A norm that feeds only linear layers (the pre-attention and pre-MLP norms) returns bf16 directly under bf16
autocast: autocast would round it to bf16 for each of its linears anyway (the same numbers), and the linears
then share one copy instead of each keeping its own.

Applied to the norm and MLP classes named below (Llama, Qwen 2/3, Mistral, SmolLM: Llama-style norms; Gemma 3:
(1 + weight) norms and tanh-GELU), for the training loop only: `fuse` returns a function that restores the
model's own forwards.
"""

from __future__ import annotations

import types
from contextlib import contextmanager

import torch
import torch.nn.functional as F

LLAMA_NORMS = ("LlamaRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "MistralRMSNorm")
GEMMA_NORMS = ("Gemma3RMSNorm",)
# the norms of a decoder layer whose output goes only into linear layers
LINEAR_INPUT_NORMS = ("input_layernorm", "pre_feedforward_layernorm")


class _RMSNorm(torch.autograd.Function):
    """y = w * (x / rms(x)) (Llama: the normalized x rounded to x's dtype first; Gemma: w is 1 + weight and the
    product is rounded to x's dtype), optionally in `out_dtype`. Keeps x and 1 / rms(x)."""

    @staticmethod
    def forward(ctx, x, weight, eps: float, gemma: bool, out_dtype):
        x32 = x.float()
        inv = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        if gemma:
            y = (x32 * inv * (1.0 + weight.float())).to(x.dtype)
        else:
            y = weight * (x32 * inv).to(x.dtype)
        ctx.save_for_backward(x, inv, weight)
        ctx.gemma = gemma
        return y if out_dtype is None else y.to(out_dtype)

    @staticmethod
    def backward(ctx, dy):
        x, inv, weight = ctx.saved_tensors
        xhat = x.float() * inv
        w = weight.float() + 1.0 if ctx.gemma else weight.float()
        g = dy.float() * w
        dx = inv * (g - xhat * (g * xhat).mean(-1, keepdim=True))
        dw = None
        if ctx.needs_input_grad[1]:
            dw = (dy.float() * xhat).reshape(-1, xhat.shape[-1]).sum(0).to(weight.dtype)
        return dx.to(x.dtype), dw, None, None, None


class _GatedAct(torch.autograd.Function):
    """act(gate) * up, keeping gate and up (act recomputed in the backward pass)."""

    @staticmethod
    def forward(ctx, gate, up, approximate: str):
        ctx.save_for_backward(gate, up)
        ctx.approximate = approximate
        return _act(gate, approximate) * up

    @staticmethod
    def backward(ctx, dp):
        gate, up = ctx.saved_tensors
        da = dp * up
        if ctx.approximate == "silu":
            dgate = torch.ops.aten.silu_backward(da, gate)
        else:
            dgate = torch.ops.aten.gelu_backward(da, gate, approximate=ctx.approximate)
        return dgate, dp * _act(gate, ctx.approximate), None


def _act(x, approximate: str):
    return F.silu(x) if approximate == "silu" else F.gelu(x, approximate=approximate)


def _autocast_bf16() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def _norm_forward(linear_input: bool, gemma: bool):
    def forward(self, x):
        eps = self.eps if gemma else self.variance_epsilon
        out_dtype = torch.bfloat16 if linear_input and x.device.type == "cpu" and _autocast_bf16() else None
        return _RMSNorm.apply(x, self.weight, eps, gemma, out_dtype)
    return forward


def _mlp_forward(approximate: str):
    def forward(self, x):
        return self.down_proj(_GatedAct.apply(self.gate_proj(x), self.up_proj(x), approximate))
    return forward


def _activation(act) -> str | None:
    """'silu' / 'tanh' / 'none' for the activations the fused MLP reproduces exactly; None otherwise."""
    name = type(act).__name__
    if name in ("SiLU", "SiLUActivation"):
        return "silu"
    inner = getattr(act, "act", None)
    if name == "GELUTanh" and getattr(inner, "keywords", None) == {"approximate": "tanh"}:
        return "tanh"
    return None


def fuse(layers) -> tuple[dict, callable]:
    """Give the norms and gated MLPs of these decoder layers the lean forwards above. Returns ({"norms": n,
    "mlps": n}, restore) where restore() puts the model's own forwards back."""
    patched = []

    def patch(module, forward):
        patched.append(module)
        module.forward = types.MethodType(forward, module)

    for layer in layers:
        for name, module in layer.named_modules():
            kind = type(module).__name__
            if kind in LLAMA_NORMS or kind in GEMMA_NORMS:
                linear_input = name in LINEAR_INPUT_NORMS or (
                    name == "post_attention_layernorm" and not hasattr(layer, "pre_feedforward_layernorm"))
                patch(module, _norm_forward(linear_input, kind in GEMMA_NORMS))
            elif all(hasattr(module, p) for p in ("gate_proj", "up_proj", "down_proj", "act_fn")):
                approximate = _activation(module.act_fn)
                if approximate:
                    patch(module, _mlp_forward(approximate))
    counts = {"norms": sum(type(m).__name__.endswith("RMSNorm") for m in patched)}
    counts["mlps"] = len(patched) - counts["norms"]

    def restore():
        for m in patched:
            del m.forward  # the instance attribute: the class's forward again

    return counts, restore


@contextmanager
def lean_layers(model, layers, lora: bool):
    """Within the block: `fuse(layers)`, and for a LoRA model its adapters take their input as it comes (bf16
    under autocast) instead of casting it to their fp32 weights first (peft's disable_input_dtype_casting): the
    cast copy, and the fp32 output of LoRA dropout, were 2 x 2,304 bytes per token per layer on SmolLM2-135M,
    and the adapter's matmul runs in bf16 under autocast either way. Yields fuse's counts."""
    from peft.helpers import disable_input_dtype_casting

    counts, restore = fuse(layers)
    try:
        with disable_input_dtype_casting(model, active=lora):
            yield counts
    finally:
        restore()
