"""LoRA: low-rank updates on the chosen linear layers (peft)."""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.methods.registry import TrainContext, check_targets, default_targets, register_method
from tunelab.utils.errors import ConfigError


def lora_config(model, cfg: MethodConfig, **extra):
    from peft import LoraConfig

    if cfg.r <= 0:
        raise ConfigError(f"method.r must be a positive rank, got {cfg.r}")
    targets = cfg.target_modules or default_targets(model)
    check_targets(model, targets)
    if cfg.lora_layers:  # the last N layers: no adapter below them, so autograd stops there
        n = model.config.get_text_config().num_hidden_layers
        if cfg.lora_layers > n:
            raise ConfigError(f"method.lora_layers must be in 0..{n} (this model's decoder layers), "
                              f"got {cfg.lora_layers}")
        extra["layers_to_transform"] = list(range(n - cfg.lora_layers, n))
    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=targets, task_type="CAUSAL_LM", **extra)


@register_method("lora", "low-rank adapters on linear layers", lora_options=True)
def apply_lora(model, cfg: MethodConfig, ctx: TrainContext):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, cfg))
