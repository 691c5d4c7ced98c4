"""Attention for training: packed rows attend per conversation, and on a CPU with bf16 a faster causal kernel.

A packed row holds several conversations back to back (data.packing). transformers' own SDPA path
reads the position-id restarts and builds a dense (tokens x tokens) block-diagonal mask, so attention
costs as much as one conversation of the whole row's length, and on a CPU the masked kernel is slow
and memory-hungry. Here the collator hands over the boundaries (`cu_seq_lens_q`, as flash-attention
collators do) and attention runs per conversation:

- CUDA: one varlen flash-attention call over the whole row (`torch.nn.attention.varlen`), when this
  torch has it;
- otherwise: causal attention over each conversation's slice in turn (the same result, no mask).

Causal attention without a mask (a conversation's slice, or an unpacked right-padded row) runs on tunelab's
CPU kernel (cpu_attention.py) in a bf16 run on a CPU where it timed faster than SDPA, else on SDPA.

Two implementations are registered with transformers' AttentionInterface, both switched on for the training
loop only (`training_attention`); model loading, evaluation and generation keep the model's own:
PACKED (no mask function: transformers builds no mask for it) and CAUSAL (unpacked rows: no mask while every
row is right-padded, since causal attention never lets a real token see the pads after it; SDPA's mask
otherwise, and SDPA with it).
"""

from __future__ import annotations

import inspect
import warnings
from contextlib import contextmanager

import torch

from tunelab.models import cpu_attention
from tunelab.models.compat import attn_implementation

PACKED = "tunelab_packed"
CAUSAL = "tunelab_causal"
_varlen = None  # torch.nn.attention.varlen.varlen_attn, resolved on first CUDA use; False when missing
_kernel = {"on": False}  # tunelab's CPU kernel is switched on for this training loop (training_attention)


def packed_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """AttentionInterface function. query (1, heads, T, d), key/value (1, kv_heads, T, d);
    returns ((1, T, heads, d), None) like transformers' sdpa_attention_forward."""

    cu = kwargs.pop("cu_seq_lens_q", None)
    for k in ("cu_seq_lens_k", "max_length_q", "max_length_k", "is_causal"):
        kwargs.pop(k, None)
    window = kwargs.pop("sliding_window", None)
    if cu is None:  # one unpacked row: plain causal attention
        # transformers builds no mask for this implementation, so a padded batch would lose its padding
        if query.shape[0] != 1:
            raise ValueError(f"{PACKED} attention takes packed rows (with cu_seq_lens_q) or single rows, "
                             f"got a batch of {query.shape[0]} rows without boundaries")
        return causal_sdpa(module, query, key, value, attention_mask, dropout, scaling, sliding_window=window,
                           **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"{PACKED} attention expects one packed row per batch, got {query.shape[0]}")
    if query.is_cuda and not (module.training and dropout > 0):
        out = _varlen_cuda(query, key, value, cu, scaling, window)
        if out is not None:
            return out, None
    bounds = cu.tolist()
    parts = [causal_sdpa(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], None, dropout, scaling,
                         sliding_window=window, **kwargs)[0] for s, e in zip(bounds[:-1], bounds[1:])]
    return torch.cat(parts, dim=1), None


def causal_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """AttentionInterface function for CAUSAL (and each slice of a packed row): without a mask, causal attention
    (within the last `sliding_window` keys where given) on tunelab's CPU kernel when it is switched on and takes
    these inputs, else on SDPA; with a mask, SDPA with it."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    window = kwargs.pop("sliding_window", None)
    for k in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "is_causal"):
        kwargs.pop(k, None)
    if attention_mask is None and _kernel_takes(module, query, key, dropout, kwargs):
        q, k, v = (t.to(torch.bfloat16) for t in (query, key, value))  # what autocast would hand SDPA
        out = cpu_attention.attention(q, k, v, scaling if scaling is not None else query.shape[-1] ** -0.5,
                                      window or 0)
        return out.transpose(1, 2).contiguous(), None
    t = query.shape[2]
    if attention_mask is None and window and t > window and t == key.shape[2]:
        # sliding-window layers (Gemma): causal within the last `window` tokens
        i = torch.arange(t, device=query.device)
        attention_mask = ((i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window))[None, None]
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=attention_mask is None and t > 1, **kwargs)


def _kernel_takes(module, query, key, dropout: float, kwargs: dict) -> bool:
    """True when tunelab's CPU kernel is on and computes exactly what SDPA would for these inputs."""
    if not _kernel["on"] or query.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    bf16 = query.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                             and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    return (bf16 and query.shape[2] == key.shape[2] and getattr(module, "is_causal", True)
            and not (dropout and module.training) and kwargs.get("softcap") is None
            and not kwargs.get("output_attentions"))


def _varlen_cuda(query, key, value, cu, scaling, window):
    """One flash-attention call over the row; None when this torch has no varlen attention."""
    global _varlen
    if _varlen is None:
        try:
            from torch.nn.attention.varlen import varlen_attn
            _varlen = varlen_attn
        except ImportError:
            _varlen = False
    if not _varlen:
        return None
    params = inspect.signature(_varlen).parameters
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, heads, d)
    if k.shape[1] != q.shape[1] and "enable_gqa" not in params:
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    extra = {"scale": scaling}
    if "enable_gqa" in params:
        extra["enable_gqa"] = k.shape[1] != q.shape[1]
    left = window - 1 if window else -1
    if "window_size" in params:
        extra["window_size"] = (left, 0)
    elif window:
        return None  # no sliding window in this torch's varlen attention: the per-conversation path
    else:
        extra["is_causal"] = True
    cu = cu.to(torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    try:
        out = _varlen(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, longest, longest, **extra)
    except (RuntimeError, TypeError, ValueError) as e:  # e.g. a dtype or GPU this kernel does not take
        warnings.warn(f"varlen attention unavailable here ({e}); attending per conversation with SDPA instead")
        _varlen = False
        return None
    return out.unsqueeze(0)  # (1, T, heads, d)


def _right_padded_mask(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, attention_mask=None, **kwargs):
    """CAUSAL's mask function: none for self-attention over rows that are all right-padded (causal attention,
    the kernel's or SDPA's is_causal, gives real tokens the same result), SDPA's otherwise (a cache or prefix,
    left padding)."""
    from transformers.masking_utils import sdpa_mask

    # allow_is_causal_skip is False where transformers adds to the causal (or sliding-window) pattern: packed
    # position ids, bidirectional blocks, a model's own overlay
    plain = kwargs.get("allow_is_causal_skip", True) and q_length == kv_length and not q_offset and not kv_offset
    if plain and (attention_mask is None or (bool((attention_mask[:, :-1] >= attention_mask[:, 1:]).all())
                                             and bool(attention_mask[:, 0].all()))):
        return None
    return sdpa_mask(batch_size, q_length, kv_length, q_offset, kv_offset, attention_mask=attention_mask, **kwargs)


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED, packed_sdpa)
    AttentionInterface.register(CAUSAL, causal_sdpa)
    AttentionMaskInterface.register(CAUSAL, _right_padded_mask)


def kernel_verdict(model) -> dict | None:
    """Whether tunelab's CPU kernel is faster than SDPA at `model`'s attention shapes on this machine (timed once,
    cached): {"kernel": bool, ...the timing}; None where it cannot run (no AVX512-BF16, no compiler)."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    conf = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    if set(getattr(conf, "layer_types", None) or ()) - {"full_attention", "sliding_attention"}:
        return None  # chunked or other attention patterns: the kernel is causal (+ sliding window) only
    if getattr(conf, "attn_logit_softcapping", None):
        return None
    heads = int(conf.num_attention_heads)
    kv_heads = int(getattr(conf, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(conf, "head_dim", None) or conf.hidden_size // heads)
    return cpu_attention.verdict(heads, kv_heads, head_dim)


@contextmanager
def training_attention(model, packed: bool, kernel: bool = False):
    """Within the block, `model` (a transformers model, or any peft wrapper of one) attends per packed
    conversation (`packed`: no mask is built for the packed rows, as transformers skips mask creation for
    implementations it has no mask function for) or causally (CAUSAL), on tunelab's CPU kernel where `kernel`
    (see kernel_verdict); its own implementation is restored after."""
    register()
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    before, was_on = attn_implementation(lm), _kernel["on"]
    lm.set_attn_implementation(PACKED if packed else CAUSAL)
    _kernel["on"] = kernel
    try:
        yield
    finally:
        _kernel["on"] = was_on
        lm.set_attn_implementation(before)


def packed_attention(model):
    """training_attention for packed rows, with SDPA."""
    return training_attention(model, packed=True)
