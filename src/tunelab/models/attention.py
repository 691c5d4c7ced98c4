"""Attention for packed rows: each conversation attends only to itself, with no mask and no padding.

A packed row holds several conversations back to back (data.packing). transformers' own SDPA path
reads the position-id restarts and builds a dense (tokens x tokens) block-diagonal mask, so attention
costs as much as one conversation of the whole row's length, and on a CPU the masked kernel is slow
and memory-hungry. Here the collator hands over the boundaries (`cu_seq_lens_q`, as flash-attention
collators do) and attention runs per conversation:

- CUDA: one varlen flash-attention call over the whole row (`torch.nn.attention.varlen`), when this
  torch has it;
- otherwise: causal SDPA over each conversation's slice in turn (the same result, no mask).

The implementation is registered with transformers' AttentionInterface under PACKED and switched on
for the training loop only (`packed_attention`); model loading, evaluation and generation keep the
model's own implementation.
"""

from __future__ import annotations

import inspect
import warnings
from contextlib import contextmanager

import torch

from tunelab.models.compat import attn_implementation

PACKED = "tunelab_packed"
_varlen = None  # torch.nn.attention.varlen.varlen_attn, resolved on first CUDA use; False when missing


def packed_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """AttentionInterface function. query (1, heads, T, d), key/value (1, kv_heads, T, d);
    returns ((1, T, heads, d), None) like transformers' sdpa_attention_forward."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.pop("cu_seq_lens_q", None)
    for k in ("cu_seq_lens_k", "max_length_q", "max_length_k", "is_causal"):
        kwargs.pop(k, None)
    window = kwargs.pop("sliding_window", None)
    if cu is None:  # one unpacked row: plain causal attention
        # transformers builds no mask for this implementation, so a padded batch would lose its padding
        if query.shape[0] != 1:
            raise ValueError(f"{PACKED} attention takes packed rows (with cu_seq_lens_q) or single rows, "
                             f"got a batch of {query.shape[0]} rows without boundaries")
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      sliding_window=window, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"{PACKED} attention expects one packed row per batch, got {query.shape[0]}")
    if query.is_cuda and not (module.training and dropout > 0):
        out = _varlen_cuda(query, key, value, cu, scaling, window)
        if out is not None:
            return out, None
    bounds = cu.tolist()
    parts = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        mask = None
        if window and e - s > window:  # sliding-window layers (Gemma): causal within the last `window` tokens
            i = torch.arange(e - s, device=query.device)
            mask = ((i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window))[None, None]
        out, _ = sdpa_attention_forward(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], mask,
                                        dropout=dropout, scaling=scaling, is_causal=mask is None, **kwargs)
        parts.append(out)
    return torch.cat(parts, dim=1), None


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


def register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED, packed_sdpa)


@contextmanager
def packed_attention(model):
    """Within the block, `model` (a transformers model, or any peft wrapper of one) attends per packed
    conversation; its own implementation is restored after. No mask is built for the packed rows:
    transformers skips mask creation for implementations it has no mask function for."""
    register()
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = attn_implementation(lm)
    lm.set_attn_implementation(PACKED)
    try:
        yield
    finally:
        lm.set_attn_implementation(before)
