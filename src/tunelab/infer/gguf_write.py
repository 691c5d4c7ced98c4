"""Write a merged causal LM as a GGUF file (llama.cpp / Ollama) with the `gguf` package.

One entry per architecture in `ARCHS`: its llama.cpp name, its hyperparameter keys and the layout
changes llama.cpp's own converter makes (Llama's rotary q/k permutation, Gemma's norm offset of 1),
so `transformers` (and so tunelab's GGUF import) reads the file back into the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunelab.utils.errors import ConfigError, ModelError

QUANTS = ("f16", "q8_0")


@dataclass(frozen=True)
class Arch:
    gguf_name: str  # llama.cpp's architecture name
    hparams: Callable  # (writer, config) -> None
    tensor: Callable  # (hf name, float32 array, config) -> float32 array as llama.cpp stores it


def _rope_theta(cfg, kind: str = "full_attention") -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    params = params.get(kind, params)  # gemma3 keeps one set per attention kind
    return float(params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))


def _common(w, cfg) -> None:
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)


def _head_dim(cfg) -> int:
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def _llama_hparams(w, cfg) -> None:
    _common(w, cfg)
    w.add_rope_dimension_count(_head_dim(cfg))
    w.add_rope_freq_base(_rope_theta(cfg))


def _permute(x: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary layout for q/k rows (transformers' GGUF reader undoes it)."""
    return x.reshape(n_head, 2, x.shape[0] // n_head // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def _llama_tensor(name: str, x: np.ndarray, cfg) -> np.ndarray:
    if name.endswith("q_proj.weight"):
        return _permute(x, cfg.num_attention_heads)
    if name.endswith("k_proj.weight"):
        return _permute(x, cfg.num_key_value_heads)
    return x


def _gemma3_hparams(w, cfg) -> None:
    _common(w, cfg)
    w.add_key_length(_head_dim(cfg))
    w.add_value_length(_head_dim(cfg))
    w.add_rope_freq_base(_rope_theta(cfg))
    w.add_sliding_window(cfg.sliding_window)
    if getattr(cfg, "final_logit_softcapping", None):
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)


def _gemma_tensor(name: str, x: np.ndarray, cfg) -> np.ndarray:
    # Gemma scales by (1 + w); llama.cpp stores 1 + w and transformers subtracts 1 again on import
    return x + 1 if name.endswith("norm.weight") else x


ARCHS: dict[str, Arch] = {
    "llama": Arch("llama", _llama_hparams, _llama_tensor),
    "gemma3_text": Arch("gemma3", _gemma3_hparams, _gemma_tensor),
}


def arch_for(config) -> Arch:
    """The writer entry for a model config; ConfigError naming the covered ones otherwise."""
    arch = ARCHS.get(config.model_type)
    if arch is None:
        raise ConfigError(f"--gguf: architecture '{config.model_type}' is not covered by the GGUF writer; "
                          f"covered: {', '.join(ARCHS)}")
    return arch


def check_quant(quant: str) -> None:
    if quant not in QUANTS:
        raise ConfigError(f"--quant '{quant}' is unknown; valid: {', '.join(QUANTS)}")


def _encode(gguf, x: np.ndarray, quant: str):
    """(data, raw_dtype): 1-D tensors (norms) stay f32 as llama.cpp keeps them; q8_0 needs rows of 32."""
    if x.ndim == 1:
        return x.astype(np.float32), None
    if quant == "q8_0" and x.shape[-1] % 32 == 0:
        q = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(x.astype(np.float32), q), q
    return x.astype(np.float16), None


def write_gguf(model, path: str | Path, quant: str, metadata: Callable) -> Path:
    """Write `model` (a merged transformers causal LM) to `path` in `quant`; `metadata(writer)` adds the
    tokenizer and chat template keys. The caller writes to a temporary name and renames."""
    import gguf

    check_quant(quant)
    cfg = model.config
    arch = arch_for(cfg)
    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch.gguf_name),
                                     cfg.num_hidden_layers)
    w = gguf.GGUFWriter(str(path), arch.gguf_name)
    w.add_name(getattr(cfg, "_name_or_path", "") or "tunelab export")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    arch.hparams(w, cfg)
    metadata(w)
    state = model.state_dict()
    tied = getattr(cfg, "tie_word_embeddings", False)
    for name, tensor in state.items():
        if tied and name == "lm_head.weight":
            continue  # no output.weight: the reader ties the head to the embeddings again
        base, _, suffix = name.rpartition(".")
        target = names.get_name(base)
        if target is None:
            raise ModelError(f"--gguf: no GGUF name for tensor '{name}' of {cfg.model_type}")
        x = arch.tensor(name, tensor.detach().float().cpu().numpy(), cfg)
        data, raw = _encode(gguf, x, quant)
        w.add_tensor(f"{target}.{suffix}", data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
