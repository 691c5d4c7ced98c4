"""The method registry: `method.name` -> how to load the base model for it and how to wrap it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tunelab.config.schema import MethodConfig
from tunelab.utils.errors import ConfigError

_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Default targets per model family: every linear projection of attention and MLP.
LINEAR_TARGETS = {
    **{f: _LLAMA_LIKE for f in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text")},
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}
# IA3 scales keys, values and the MLP's input to its down projection.
IA3_TARGETS = {f: (["k_proj", "v_proj", "down_proj"], ["down_proj"]) for f in LINEAR_TARGETS if f not in ("phi3", "gpt2")}


@dataclass
class TrainContext:
    """What a method may need to know about the run it is applied in."""

    device: str = "cpu"
    max_steps: int = -1


@dataclass
class Method:
    name: str
    apply: Callable  # (model, MethodConfig, TrainContext) -> model ready to train
    description: str
    load_kwargs: Callable | None = None  # (MethodConfig, device) -> extra from_pretrained kwargs
    callbacks: Callable | None = None  # (model) -> list of TrainerCallback
    train_overrides: Callable | None = None  # (device) -> TrainingArguments overrides
    adapter: bool = True  # False: the run saves whole weights, not a PEFT adapter
    lora_options: bool = False  # reads method.lora_layers and method.loraplus_lr_ratio (LoRA factors A and B)


METHODS: dict[str, Method] = {}


def register_method(name: str, description: str, **kw):
    def deco(fn):
        METHODS[name] = Method(name, fn, description, **kw)
        return fn

    return deco


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"method.name '{name}' is unknown; valid: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def default_targets(model) -> list[str] | str:
    return LINEAR_TARGETS.get(model.config.model_type, "all-linear")


def linear_names(model) -> set[str]:
    import torch

    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def check_targets(model, targets, key: str = "method.target_modules") -> None:
    if not isinstance(targets, list):
        return
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ConfigError(f"{key} {missing} not found in {model.config.model_type}; "
                          f"linear layers here: {', '.join(sorted(linear_names(model)))}")


def check_options(method: Method, cfg: MethodConfig) -> None:
    """Options that only some methods read are errors elsewhere, not silently ignored."""
    lora = [m for m in sorted(METHODS) if METHODS[m].lora_options]
    for key in ("lora_layers", "loraplus_lr_ratio"):
        if getattr(cfg, key) and not method.lora_options:
            raise ConfigError(f"method.{key} applies to {', '.join(lora)}, not to method {method.name}: leave it at 0")
    if 0 < cfg.loraplus_lr_ratio < 1:
        raise ConfigError(f"method.loraplus_lr_ratio must be 0 (off) or >= 1 (B factors at least as fast as A), "
                          f"got {cfg.loraplus_lr_ratio}")


def apply_method(model, cfg: MethodConfig, ctx: TrainContext | None = None):
    method = get_method(cfg.name)
    check_options(method, cfg)
    return method.apply(model, cfg, ctx or TrainContext())


def parameter_report(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "total_params": total,
            "trainable_percent": round(100 * trainable / max(total, 1), 4)}
