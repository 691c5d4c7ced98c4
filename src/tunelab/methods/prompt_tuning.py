"""Prompt tuning: learned virtual-token embeddings put before every input (peft)."""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.methods.registry import TrainContext, register_method
from tunelab.methods.virtual_tokens import check_virtual_tokens


@register_method("prompt_tuning", "learned soft-prompt embeddings before the input")
def apply_prompt_tuning(model, cfg: MethodConfig, ctx: TrainContext):
    from peft import PromptTuningConfig, get_peft_model

    check_virtual_tokens(model, cfg)
    return get_peft_model(model, PromptTuningConfig(num_virtual_tokens=cfg.num_virtual_tokens, task_type="CAUSAL_LM"))
