"""P-tuning: virtual tokens produced by a small prompt encoder (MLP or LSTM) (peft)."""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.methods.registry import TrainContext, register_method
from tunelab.methods.virtual_tokens import check_virtual_tokens
from tunelab.utils.errors import ConfigError


@register_method("p_tuning", "virtual tokens from a trained prompt encoder (MLP or LSTM)")
def apply_p_tuning(model, cfg: MethodConfig, ctx: TrainContext):
    from peft import PromptEncoderConfig, get_peft_model

    check_virtual_tokens(model, cfg)
    kind = cfg.prompt_encoder.upper()
    if kind not in ("MLP", "LSTM"):
        raise ConfigError(f"method.prompt_encoder must be MLP or LSTM, got {cfg.prompt_encoder!r}")
    config = PromptEncoderConfig(num_virtual_tokens=cfg.num_virtual_tokens, encoder_reparameterization_type=kind,
                                 encoder_hidden_size=cfg.encoder_hidden_size, task_type="CAUSAL_LM")
    return get_peft_model(model, config)
