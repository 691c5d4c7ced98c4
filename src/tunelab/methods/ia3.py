"""IA3: learned rescaling vectors on keys, values and the MLP (peft); the fewest parameters."""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.methods.registry import IA3_TARGETS, TrainContext, check_targets, register_method
from tunelab.utils.errors import ConfigError


@register_method("ia3", "learned scaling of keys, values and MLP activations")
def apply_ia3(model, cfg: MethodConfig, ctx: TrainContext):
    from peft import IA3Config, get_peft_model

    family = model.config.model_type
    if cfg.target_modules:
        targets, ff = cfg.target_modules, [t for t in cfg.target_modules if t in ("down_proj", "fc2", "c_proj")]
    elif family in IA3_TARGETS:
        targets, ff = IA3_TARGETS[family]
    else:
        raise ConfigError(f"method ia3 has no default targets for {family}; set method.target_modules")
    check_targets(model, targets)
    return get_peft_model(model, IA3Config(target_modules=targets, feedforward_modules=ff, task_type="CAUSAL_LM"))
