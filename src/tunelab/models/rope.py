"""RoPE context extension (`model.rope_scaling`), applied through a Hugging Face model config.

transformers 5 keeps a model's rotary settings in `config.rope_parameters`: one dict, or one per
attention layer type (Gemma 3: sliding and full). Scaling goes into the full-attention entry only there,
as Gemma 3's own long-context checkpoints do: a sliding layer never sees distances past its window.
"""

from __future__ import annotations

from tunelab.config.schema import RopeScaling
from tunelab.utils.errors import ConfigError, ModelError

SCALED_TYPES = ("linear", "dynamic", "yarn")


def _entries(config) -> list[dict]:
    """The rope parameter dicts scaling applies to; ModelError when the model has no rotary embedding."""
    params = getattr(config, "rope_parameters", None)
    if not isinstance(params, dict) or not params:
        raise ModelError(f"model.rope_scaling: the model ({getattr(config, 'model_type', '?')}) has no rotary "
                         "position embedding (config.rope_parameters) to scale; set model.rope_scaling.type=none")
    nested = config.nested_rope_parameter_keys(params)
    if not nested:
        return [params]
    full = [params[k] for k in nested if k == "full_attention" and isinstance(params[k], dict)]
    return full or [params[k] for k in nested if isinstance(params[k], dict)]


def apply_rope_scaling(config, scaling: RopeScaling) -> None:
    """Write `scaling` into a model config before the model is built (nothing for type none).
    ConfigError for a type without a factor above 1; ModelError when the model's config cannot take it."""
    if scaling.type == "none":
        return
    if scaling.factor <= 1:
        raise ConfigError(f"model.rope_scaling.factor={scaling.factor}: must be above 1 with type "
                          f"{scaling.type} (or set model.rope_scaling.type=none)")
    base = getattr(config, "max_position_embeddings", None)
    if not isinstance(base, int) or base < 1:
        raise ModelError("model.rope_scaling: the model's config names no max_position_embeddings to extend")
    for entry in _entries(config):
        entry.update(rope_type=scaling.type, factor=float(scaling.factor))
        entry.pop("type", None)  # the pre-5 spelling, which would disagree
        if scaling.type == "yarn":
            entry["original_max_position_embeddings"] = base
    try:
        config.validate_rope()
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"model.rope_scaling type {scaling.type}: the model's config cannot take it ({e})") from None


def rope_record(scaling: RopeScaling, config) -> dict | None:
    """What run.json records of a run's scaling: {type, factor, base_context, context}; None for type none."""
    if scaling.type == "none":
        return None
    return {"type": scaling.type, "factor": float(scaling.factor),
            "base_context": getattr(config, "max_position_embeddings", None), "context": context_length(config)}


def context_length(config) -> int | None:
    """The tokens a model can attend over: max_position_embeddings times its rope scaling factor, if any."""
    base = getattr(config, "max_position_embeddings", None)
    if not isinstance(base, int) or base < 1:
        return None
    params = getattr(config, "rope_parameters", None)
    if not isinstance(params, dict):
        return base
    entries = [v for v in params.values() if isinstance(v, dict)] or [params]
    factors = [e.get("factor") or 1.0 for e in entries if e.get("rope_type") in SCALED_TYPES]
    return int(base * max(factors, default=1.0))
