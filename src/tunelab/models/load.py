"""Load a model and tokenizer from a preset name, a model directory or a GGUF file; never a hub."""

from __future__ import annotations

from pathlib import Path

import tunelab.utils.offline  # noqa: F401  (sets the HF offline switches before transformers loads)
from tunelab.config.schema import ModelConfig
from tunelab.models.gguf_cache import import_gguf
from tunelab.models.presets import PRESETS
from tunelab.models.rope import apply_rope_scaling
from tunelab.models.weights import check_safetensors, weight_files
from tunelab.utils.errors import ModelError


def resolve_model_dir(name_or_path: str) -> Path:
    """A preset name, a model directory or a .gguf file -> a local Hugging Face model directory."""
    if name_or_path in PRESETS:
        located = PRESETS[name_or_path].locate()
        return located if located.is_dir() else import_gguf(located)
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return import_gguf(path)
    if path.is_dir() and (path / "config.json").is_file():
        return path
    what = "is a directory without config.json" if path.is_dir() else "is not a preset, a model directory or a .gguf file"
    raise ModelError(
        f"model '{name_or_path}' {what}; presets: {', '.join(PRESETS)} (see `tunelab models`)"
    )


def portable_name(name_or_path: str) -> str:
    """How a run records its base model so another machine can find it: a preset by its name (resolved
    there from its package), anything else as an absolute path."""
    if name_or_path in PRESETS:
        return name_or_path
    return str(Path(name_or_path).expanduser().resolve())


def pick_dtype(name: str, device: str):
    import torch

    if name == "auto":
        # bf16 matmul on CPU without AVX-512 runs at under 1 GFLOP/s: fp32 there.
        return torch.bfloat16 if device == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise ModelError(f"model.dtype '{name}' is not one of auto, {', '.join(table)}")
    return table[name]


def load_tokenizer(model_dir: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelError(f"{model_dir}: cannot load the tokenizer ({e})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg: ModelConfig, device: str = "cpu", **extra):
    """Return (model, tokenizer, model_dir) for `cfg`, weights in the configured dtype.

    `extra` goes to from_pretrained (a method's quantization_config, for one; use_safetensors=True
    to never unpickle). Safetensors headers are checked first: a truncated file is one ModelError.
    `cfg.rope_scaling` goes into the model's config before the weights load (models/rope.py)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_dir = resolve_model_dir(cfg.name_or_path)
    for f in weight_files(model_dir):
        check_safetensors(f)
    kwargs = {"dtype": pick_dtype(cfg.dtype, device), "trust_remote_code": cfg.trust_remote_code, **extra}
    if cfg.attn_implementation != "auto":
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        if cfg.rope_scaling.type != "none":
            config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=cfg.trust_remote_code)
            apply_rope_scaling(config, cfg.rope_scaling)
            kwargs["config"] = config
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    except (OSError, ValueError) as e:
        raise ModelError(f"{model_dir}: cannot load the model ({e})") from None
    tokenizer = load_tokenizer(model_dir, cfg.trust_remote_code)
    if getattr(model, "is_quantized", False):
        return model, tokenizer, model_dir  # placed by the quantizer; .to() is not allowed
    return model.to(device), tokenizer, model_dir
