"""Stack the KV caches of several sequences into one left-padded batch, and take the rows back out.

Decoding several sequences in one forward pass reads the weights once for all of them, which is
most of a small pass's cost on CPU. Their caches differ in length, so the batch is left-padded;
the caller masks the pads and gives each row its own positions. Only DynamicCache's two plain layer
types are handled (full attention, and sliding window with past recording, as `dialog` keeps them).
"""

from __future__ import annotations

import copy


def stackable(cache) -> bool:
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)


def _kept(layer, length: int) -> int:
    """How many of a sequence's `length` tokens a layer keeps: a sliding layer only its window's."""
    return min(length, layer.sliding_window - 1) if layer.is_sliding else length


def stack_caches(caches: list, lengths: list[int]):
    """One cache for a batch whose row b holds caches[b] (of lengths[b] tokens), right-aligned."""
    width = max(lengths)
    out = copy.copy(caches[0])
    out.layers = []
    for layers in zip(*(c.layers for c in caches)):
        layer = copy.copy(layers[0])
        n = _kept(layer, width)
        _, heads, _, dim = layers[0].keys.shape
        keys = layers[0].keys.new_zeros((len(caches), heads, n, dim))
        values = layers[0].values.new_zeros((len(caches), heads, n, layers[0].values.shape[-1]))
        for b, (src, length) in enumerate(zip(layers, lengths)):
            m = _kept(src, length)
            if m:
                keys[b, :, n - m:] = src.keys[0, :, -m:]
                values[b, :, n - m:] = src.values[0, :, -m:]
        layer.keys, layer.values = keys, values
        if layer.is_sliding:
            layer.cumulative_length = width
        out.layers.append(layer)
    return out


def cache_row(batched, b: int, length: int):
    """Row b of a stacked cache after a forward pass, as its own cache of `length` tokens.

    The row's tokens are the last `length` positions; a sliding layer holds fewer (its window before
    the pass, which it keeps while recording its past, plus the pass's tokens), all of them the row's.
    """
    out = copy.copy(batched)
    out.layers = []
    for layer in batched.layers:
        row = copy.copy(layer)
        m = min(length, layer.keys.shape[-2])
        row.keys, row.values = layer.keys[b:b + 1, :, -m:], layer.values[b:b + 1, :, -m:]
        if layer.is_sliding:
            row.cumulative_length = length
        out.layers.append(row)
    return out
