"""The fence: every use of a private or unstable internal of transformers / torch lives here, behind one
function each, with a contract test in tests/unit/test_compat.py that fails loudly when an upgrade
changes it. No module outside this one touches these names (tests/unit/test_compat.py checks that).

Pinned: transformers 5.24, torch 2.13 (pyproject.toml).
"""

from __future__ import annotations

import copy

# ----------------------------------------------------------------------------- CPU features (torch)


def cpu_has_amx() -> bool:
    """True when this CPU has AMX tiles and the kernel lets torch use them (torch.cpu private probes)."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported() and torch.cpu._init_amx())
    except (AttributeError, RuntimeError):  # older torch, or AMX not permitted by the kernel
        return False


# ----------------------------------------------------------------------------- model internals


def attn_implementation(model) -> str:
    """The attention implementation a transformers model runs with (config._attn_implementation)."""
    return model.config._attn_implementation


def has_layer_checkpointing(layer) -> bool:
    """Whether a decoder layer is a transformers GradientCheckpointingLayer with a per-layer switch."""
    return hasattr(layer, "gradient_checkpointing")


def set_layer_checkpointing(layer, on: bool) -> None:
    """Checkpoint this one layer or not; the model's checkpointing must have been enabled once before."""
    layer.gradient_checkpointing = on


def drop_quantizer(model) -> None:
    """Forget the quantizer of a model whose weights were dequantized on load (GGUF), so it saves plainly."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


# ----------------------------------------------------------------------------- KV caches (transformers)
# DynamicCache's layer list and its two plain layer types: full attention (DynamicLayer) and sliding
# window (DynamicSlidingWindowLayer, with past recording so a later crop can go back).


def new_dialog_cache(model):
    """A DynamicCache whose sliding-window layers keep what a later crop(-n) needs, until crop(0) trims them."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    cache.activate_past_recording()
    return cache


def crop_dialog_cache(cache, length: int) -> bool:
    """Cut a dialog cache back to its first `length` positions, its sliding-window layers keeping their whole
    past (transformers' `crop` trims them to their window, after which no later crop can go back further).

    False, the cache untouched, when a layer no longer holds its whole past (after a `crop`) or the cache has
    other layer types.
    """
    if not stackable(cache) or length > cache.get_seq_length():
        return False
    layers = [layer for layer in cache.layers if layer.is_initialized]
    if any(layer.keys.shape[-2] != layer.get_seq_length() for layer in layers):
        return False
    for layer in layers:
        layer.keys, layer.values = layer.keys[..., :length, :], layer.values[..., :length, :]
        if layer.is_sliding:
            layer.cumulative_length = length
    return True


def stackable(cache) -> bool:
    """True when every layer is one of DynamicCache's two plain layer types (what the functions below handle)."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)


def fork_cache(cache):
    """A copy of a DynamicCache that can grow and be cropped apart from the original.

    Dynamic layers never write into their tensors (they concatenate and slice into new ones), so the
    copies share them; any other layer type is copied in full.
    """
    if not stackable(cache):
        return copy.deepcopy(cache)
    out = copy.copy(cache)
    out.layers = [copy.copy(layer) for layer in cache.layers]
    return out


def own_cache(cache):
    """`cache` with its own compact tensors: a row taken out of a stack no longer holds the whole stack alive."""
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys.clone(), layer.values.clone()
    return cache


def cache_bytes(cache) -> int:
    """Bytes held by a cache's key and value tensors."""
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
               if t is not None)


def _kept(layer, length: int) -> int:
    """How many of a sequence's `length` tokens a layer keeps: a sliding layer only its window's."""
    return min(length, layer.sliding_window - 1) if layer.is_sliding else length


def stack_caches(caches: list, lengths: list[int], spare: int = 0):
    """One cache for a batch whose row b holds caches[b] (of lengths[b] tokens), right-aligned (left-padded).

    With `spare` > 0 its layers write new tokens into a buffer with that much room (grown when full)
    instead of concatenating a copy of the whole cache at every step; such a cache must not be forked
    (`fork_cache` shares tensors), only read back through `cache_row`.
    """
    width = max(lengths)
    out = copy.copy(caches[0])
    out.layers = []
    for layers in zip(*(c.layers for c in caches)):
        layer = copy.copy(layers[0])
        n = _kept(layer, width)
        _, heads, _, dim = layers[0].keys.shape
        keys = layers[0].keys.new_zeros((len(caches), heads, n + spare, dim))
        values = layers[0].values.new_zeros((len(caches), heads, n + spare, layers[0].values.shape[-1]))
        for b, (src, length) in enumerate(zip(layers, lengths)):
            m = _kept(src, length)
            if m:
                keys[b, :, n - m:n] = src.keys[0, :, -m:]
                values[b, :, n - m:n] = src.values[0, :, -m:]
        layer.keys, layer.values = keys[:, :, :n], values[:, :, :n]
        if spare:
            layer.__class__ = _growing_class(type(layer))
            layer.buffers = (keys, values)
        if layer.is_sliding:
            layer.cumulative_length = width
        out.layers.append(layer)
    return out


_GROWING: dict = {}


def _growing_class(base: type) -> type:
    """`base` (DynamicLayer or DynamicSlidingWindowLayer) with an `update` that writes into `self.buffers`."""
    if base not in _GROWING:
        _GROWING[base] = type(f"Growing{base.__name__}", (base,), {"update": _buffered_update, "plain": base})
    return _GROWING[base]


def _buffered_update(self, key_states, value_states, *args, **kwargs):
    """DynamicLayer.update's result (the cached states plus the new ones; a sliding layer then keeps its
    window) without copying the cache: keys/values stay views of a buffer, the new states are written after them."""
    import torch

    k_buf, v_buf = self.buffers
    n, m = self.keys.shape[-2], key_states.shape[-2]
    same = self.keys.untyped_storage().data_ptr() == k_buf.untyped_storage().data_ptr()
    start = (self.keys.storage_offset() - k_buf.storage_offset()) // self.keys.stride(-2) if same else -1
    if start < 0 or start + n + m > k_buf.shape[-2]:  # no room (or keys were replaced): a bigger buffer, cache first
        room = n + m + max(64, n // 2)
        k_buf = torch.cat([self.keys, self.keys.new_empty(*self.keys.shape[:2], room - n, self.keys.shape[-1])], -2)
        v_buf = torch.cat([self.values, self.values.new_empty(*self.values.shape[:2], room - n,
                                                               self.values.shape[-1])], -2)
        self.buffers, start = (k_buf, v_buf), 0
    k_buf[:, :, start + n:start + n + m] = key_states
    v_buf[:, :, start + n:start + n + m] = value_states
    full_k, full_v = k_buf[:, :, start:start + n + m], v_buf[:, :, start:start + n + m]
    if not self.is_sliding:
        self.keys, self.values = full_k, full_v
        return full_k, full_v
    self.cumulative_length += m
    keep = n + m if self.record_past else min(n + m, self.sliding_window - 1)
    self.keys, self.values = full_k[:, :, n + m - keep:], full_v[:, :, n + m - keep:]
    if self.record_past:  # what DynamicSlidingWindowLayer returns while recording: the visible window only
        seen = self.sliding_window - 1 + m
        return full_k[:, :, -seen:], full_v[:, :, -seen:]
    return full_k, full_v


def cache_row(batched, b: int, length: int):
    """Row b of a stacked cache after a forward pass, as its own cache of `length` tokens.

    The row's tokens are the last `length` positions; a sliding layer holds fewer (its window before
    the pass, which it keeps while recording its past, plus the pass's tokens), all of them the row's.
    """
    out = copy.copy(batched)
    out.layers = []
    for layer in batched.layers:
        row = copy.copy(layer)
        if hasattr(row, "plain"):  # a growing layer's row: a plain layer again (it concatenates, never writes)
            row.__class__ = row.plain
            del row.buffers
        m = min(length, layer.keys.shape[-2])
        row.keys, row.values = layer.keys[b:b + 1, :, -m:], layer.values[b:b + 1, :, -m:]
        if layer.is_sliding:
            row.cumulative_length = length
        out.layers.append(row)
    return out


# ----------------------------------------------------------------------------- peft prompt learning x generate


def prompt_learning_generation(model) -> bool:
    """Make `generate` right for prompt, p- and prefix tuning adapters; True when `model` needed it.

    peft's prepare_inputs_for_generation looks for the cache under `past_key_values`, while transformers 5.2x
    generate passes it as `cache`. So peft took every step for the prefill: prompt and p-tuning inserted their
    virtual tokens again before each new token (replies went astray after the first token), and prefix
    tuning's prefix, put in `past_key_values`, was ignored by the forward pass ("Both past_key_values and
    cache are set"): a prefix-tuned run generated as if untrained. Here peft sees the cache under its old
    name, and on the prefill step the prefix becomes the cache; later steps use the cache it grew into.
    """
    configs = getattr(model, "peft_config", None)
    base_prepare = getattr(model, "base_model_prepare_inputs_for_generation", None)  # peft's causal LM wrappers
    if not isinstance(configs, dict) or not any(c.is_prompt_learning for c in configs.values()) \
            or base_prepare is None or getattr(model, "_tl_prompt_generation", 0):
        return False
    original = model.prepare_inputs_for_generation

    def prepare_base(*args, **kwargs):
        out = base_prepare(*args, **kwargs)
        if out.get("past_key_values") is None and out.get("cache") is not None:
            out["past_key_values"] = out["cache"]  # where peft looks for it
        return out

    def prepare(*args, **kwargs):
        out = original(*args, **kwargs)
        prefix = out.pop("past_key_values", None)
        cache = out.get("cache")
        if prefix is not None and prefix is not cache and (cache is None or cache.get_seq_length() == 0):
            out["cache"] = prefix
        return out

    model.base_model_prepare_inputs_for_generation = prepare_base
    model.prepare_inputs_for_generation = prepare
    model._tl_prompt_generation = 1
    return True


# ----------------------------------------------------------------------------- peft prompt learning x a dialog cache

VIRTUAL_TOKEN_TYPES = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")


def dialog_decoder(model):
    """(decoder, open_cache) for decoding on a growing cache of plain prompt tokens (infer/dialog.py).

    `decoder` is the module whose forward takes token ids and a cache; `open_cache()` returns a new dialog
    cache (`new_dialog_cache`) and how many positions it already holds. A model without a prompt-learning
    adapter is its own decoder and its caches open empty. peft's prompt and p-tuning prepend virtual token
    embeddings in their forward, prefix tuning puts its prefix before the cache: here the base model is the
    decoder, and each cache opens with what peft would have put first (its positions count from there, as
    in peft's own forward and generate). Other prompt-learning types: None (no plain-token decoder).
    """
    config = getattr(model, "active_peft_config", None)
    if config is None or not config.is_prompt_learning:
        return model, lambda: (new_dialog_cache(model), 0)
    if config.peft_type not in VIRTUAL_TOKEN_TYPES:
        return None
    base = model.get_base_model()
    dtype = base.get_input_embeddings().weight.dtype

    def open_cache():
        import torch

        cache = new_dialog_cache(base)
        with torch.no_grad():
            prompt = model.get_prompt(batch_size=1)
            if config.peft_type == "PREFIX_TUNING":  # a cache (or legacy (key, value) pairs) of the prefix
                pairs = [(layer.keys, layer.values) for layer in prompt.layers] if hasattr(prompt, "layers") else prompt
                for i, (key, value) in enumerate(pairs):
                    cache.update(key.to(dtype), value.to(dtype), i)
            else:  # virtual token embeddings, fed like peft's forward feeds them: before the input's embeddings
                base(inputs_embeds=prompt.to(dtype), cache=cache, use_cache=True, logits_to_keep=1)
        return cache, cache.get_seq_length()

    return base, open_cache


# ----------------------------------------------------------------------------- frozen-context training passes
# A decoder's layers hand their keys and values (after norm and rope) to `cache.update(k, v, layer_idx)` and
# attend to what it returns; its forward takes a prepared 4-D mask (or, with `config.layer_types`, a dict of
# them by layer type) as is. The two stand-ins below use exactly that: one keeps every layer's keys and values,
# the other returns them with the recomputed columns written over.


class _KeepKV:
    """Pass 1's cache: keeps each layer's keys and values as computed."""

    def __init__(self):
        self.kv = {}

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.kv[layer_idx] = (key_states, value_states)
        return key_states, value_states


class _SpliceKV:
    """Pass 2's cache: the kept keys and values with this pass's (gradient-carrying) ones at `cols`."""

    def __init__(self, kept: _KeepKV, cols):
        self.kept, self.cols = kept, cols

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = self.kept.kv[layer_idx]
        return (keys.index_copy(2, self.cols, key_states.to(keys.dtype)),
                values.index_copy(2, self.cols, value_states.to(values.dtype)))


def _context_masks(decoder, cols, n: int):
    """Masks for queries at positions `cols` over keys 0..n-1: causal, and within the window on sliding layers.
    None where plain causal attention over the whole row is meant (pass 1's full-attention layers)."""
    import torch

    config = decoder.config
    whole = len(cols) == n
    j = torch.arange(n, device=cols.device)
    seen = j[None, :] <= cols[:, None]
    types = getattr(config, "layer_types", None)
    if not types:  # one mask for every layer, always given (the model would build its own from the cache)
        return _mask_format(decoder, seen)
    masks = {"full_attention": None if whole else _mask_format(decoder, seen)}
    window = getattr(config, "sliding_window", None)
    if "sliding_attention" in types:
        near = seen & (j[None, :] > cols[:, None] - window)
        masks["sliding_attention"] = None if whole and n <= window else _mask_format(decoder, near)
    return masks


def _mask_format(decoder, allowed):
    """A boolean (query x key) mask as the model's attention takes it: bool for SDPA, additive for eager."""
    import torch

    allowed = allowed[None, None]
    if attn_implementation(decoder) == "eager":
        return torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(torch.float32).min)
    return allowed


def frozen_context_supported(decoder) -> str:
    """'' when `frozen_context_hidden` can run this decoder, else why not."""
    impl = attn_implementation(decoder)
    if impl not in ("sdpa", "eager"):
        return f"its attention implementation is {impl} (sdpa or eager needed)"
    types = set(getattr(decoder.config, "layer_types", None) or ())
    if types - {"full_attention", "sliding_attention"}:
        return f"its layer types {sorted(types)} (full and sliding attention only)"
    return ""


def frozen_context_hidden(decoder, input_ids, cols):
    """The decoder's last hidden states at positions `cols` (sorted, 1-D) of right-padded or unpadded rows, with
    gradient only through those positions' own computation.

    Pass 1 runs the whole rows without gradient and keeps every layer's keys and values. Pass 2 runs only the
    tokens at `cols`, at their positions, attending to the kept keys and values with its own written over its
    columns. The values equal a full forward's (without dropout); the gradient leaves out every path through
    the other positions' keys and values.
    """
    import torch

    n = input_ids.shape[1]
    kept = _KeepKV()
    everything = torch.arange(n, device=input_ids.device)
    with torch.no_grad():
        decoder(input_ids=input_ids, position_ids=everything[None].expand(input_ids.shape[0], -1),
                attention_mask=_context_masks(decoder, everything, n), cache=kept, use_cache=True)
    positions = cols[None].expand(input_ids.shape[0], -1)
    out = decoder(input_ids=input_ids[:, cols], position_ids=positions, attention_mask=_context_masks(decoder, cols, n),
                  cache=_SpliceKV(kept, cols), use_cache=True)
    return out.last_hidden_state
