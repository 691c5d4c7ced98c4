"""Freeze tuning: only the last N decoder layers (and any named modules) train; whole weights saved."""

from __future__ import annotations

import re

from tunelab.config.schema import MethodConfig
from tunelab.methods.registry import TrainContext, register_method
from tunelab.utils.errors import ConfigError


def _layer_index(name: str) -> int | None:
    m = re.search(r"\.layers\.(\d+)\.", name) or re.search(r"\.h\.(\d+)\.", name)
    return int(m.group(1)) if m else None


@register_method("freeze", "train the last N layers (method.trainable_layers) and named modules", adapter=False)
def apply_freeze(model, cfg: MethodConfig, ctx: TrainContext):
    n_layers = model.config.num_hidden_layers
    if not 0 <= cfg.trainable_layers <= n_layers:
        raise ConfigError(f"method.trainable_layers must be in 0..{n_layers}, got {cfg.trainable_layers}")
    first = n_layers - cfg.trainable_layers
    names = [n for n, _ in model.named_parameters()]
    unknown = [m for m in cfg.trainable_modules if not any(m in n for n in names)]
    if unknown:
        raise ConfigError(f"method.trainable_modules {unknown} match no parameter name")
    for name, p in model.named_parameters():
        idx = _layer_index(name)
        p.requires_grad_((idx is not None and idx >= first) or any(m in name for m in cfg.trainable_modules))
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("method freeze: nothing would train; raise trainable_layers or name trainable_modules")
    return model
