"""Full fine-tuning: every weight trains; the run saves a whole model, not an adapter."""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.methods.registry import TrainContext, register_method


@register_method("full", "every parameter trains (largest memory; saves whole weights)", adapter=False)
def apply_full(model, cfg: MethodConfig, ctx: TrainContext):
    for p in model.parameters():
        p.requires_grad_(True)
    return model
