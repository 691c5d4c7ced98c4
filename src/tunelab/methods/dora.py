"""DoRA: LoRA with the weight split into magnitude and direction (peft `use_dora`)."""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.methods.lora import lora_config
from tunelab.methods.registry import TrainContext, register_method


@register_method("dora", "weight-decomposed low-rank adapters (magnitude + LoRA direction)",
                 lora_options=True)
def apply_dora(model, cfg: MethodConfig, ctx: TrainContext):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, cfg, use_dora=True))
