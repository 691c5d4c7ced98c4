"""LoRA: low-rank updates on the chosen linear layers (peft)."""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.methods.registry import default_targets, register_method
from tunelab.utils.errors import ConfigError


def lora_config(model, cfg: MethodConfig, **extra):
    from peft import LoraConfig

    if cfg.r <= 0:
        raise ConfigError(f"method.r must be a positive rank, got {cfg.r}")
    targets = cfg.target_modules or default_targets(model)
    if isinstance(targets, list):
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        missing = [t for t in targets if t not in names]
        if missing:
            raise ConfigError(
                f"method.target_modules {missing} not found in {model.config.model_type}; "
                f"linear layers here: {', '.join(sorted(_linear_names(model)))}"
            )
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=targets, task_type="CAUSAL_LM", **extra)


def _linear_names(model) -> set[str]:
    import torch

    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


@register_method("lora", "low-rank adapters on linear layers")
def apply_lora(model, cfg: MethodConfig):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, cfg))
