"""Prefix tuning (P-Tuning v2): learned keys and values prepended at every layer (peft)."""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.methods.registry import TrainContext, register_method
from tunelab.methods.virtual_tokens import check_virtual_tokens


@register_method("prefix_tuning", "learned key/value prefixes at every layer (P-Tuning v2)")
def apply_prefix_tuning(model, cfg: MethodConfig, ctx: TrainContext):
    from peft import PrefixTuningConfig, get_peft_model

    check_virtual_tokens(model, cfg, needs_plain_cache=True)
    return get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=cfg.num_virtual_tokens, task_type="CAUSAL_LM"))
