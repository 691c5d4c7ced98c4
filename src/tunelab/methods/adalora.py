"""AdaLoRA: LoRA whose rank budget moves to the layers that matter, reallocated during training.

The allocation needs the total step count up front and a call after every optimizer step, before
the gradients are zeroed: the callback below makes that call.
"""

from __future__ import annotations

from transformers import TrainerCallback

from tunelab.config.schema import MethodConfig
from tunelab.methods.registry import TrainContext, check_targets, default_targets, register_method
from tunelab.utils.errors import ConfigError


class RankAllocation(TrainerCallback):
    def __init__(self, model):
        self.model = model

    def on_optimizer_step(self, args, state, control, **kw):
        # after optimizer.step(), before zero_grad(): the sensitivity scores read the gradients
        self.model.base_model.update_and_allocate(state.global_step)


@register_method("adalora", "LoRA with an adaptive rank budget (SVD-form, pruned by importance)",
                 callbacks=lambda model: [RankAllocation(model)])
def apply_adalora(model, cfg: MethodConfig, ctx: TrainContext):
    from peft import AdaLoraConfig, get_peft_model

    if ctx.max_steps <= 0:
        raise ConfigError("method adalora needs train.max_steps > 0: its rank schedule is laid out over the steps")
    if not 0 < cfg.target_r <= cfg.r:
        raise ConfigError(f"method.target_r must be in 1..method.r ({cfg.r}), got {cfg.target_r}")
    targets = cfg.target_modules or default_targets(model)
    check_targets(model, targets)
    total = ctx.max_steps
    tinit, tfinal = max(1, total // 10), max(1, total // 5)
    config = AdaLoraConfig(init_r=cfg.r, target_r=cfg.target_r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                           target_modules=targets, total_step=total, tinit=tinit, tfinal=tfinal,
                           deltaT=max(1, (total - tinit - tfinal) // 10), task_type="CAUSAL_LM")
    return get_peft_model(model, config)
