"""The method registry: `method.name` -> a function that wraps a loaded model for training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tunelab.config.schema import MethodConfig
from tunelab.utils.errors import ConfigError

# Default LoRA targets per model family: every linear projection of attention and MLP.
LINEAR_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


@dataclass
class Method:
    name: str
    apply: Callable  # (model, MethodConfig) -> model ready to train
    description: str


METHODS: dict[str, Method] = {}


def register_method(name: str, description: str):
    def deco(fn):
        METHODS[name] = Method(name, fn, description)
        return fn

    return deco


def default_targets(model) -> list[str] | str:
    return LINEAR_TARGETS.get(model.config.model_type, "all-linear")


def apply_method(model, cfg: MethodConfig):
    if cfg.name not in METHODS:
        raise ConfigError(f"method.name '{cfg.name}' is unknown; valid: {', '.join(METHODS)}")
    return METHODS[cfg.name].apply(model, cfg)


def parameter_report(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "total_params": total,
            "trainable_percent": round(100 * trainable / max(total, 1), 4)}
