"""Checks shared by the prompt-learning methods, made at config time rather than mid-training."""

from __future__ import annotations

from tunelab.config.schema import MethodConfig
from tunelab.utils.errors import ConfigError

# Families whose attention takes a prefix of past keys/values through the cache classes peft builds.
# Gemma 3 (gemma3_text) mixes sliding-window and global layers: the prefix sits before the input, so its sliding
# layers stop seeing it a window on (tests/unit/test_compat.py checks generation against the forward pass there).
PREFIX_OK = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma3_text", "gpt2", "phi3"}


def check_virtual_tokens(model, cfg: MethodConfig, needs_plain_cache: bool = False) -> None:
    if cfg.num_virtual_tokens <= 0:
        raise ConfigError(f"method.num_virtual_tokens must be positive, got {cfg.num_virtual_tokens}")
    family = model.config.model_type
    if needs_plain_cache and family not in PREFIX_OK:
        raise ConfigError(f"method {cfg.name} cannot run on {family}: its attention cache does not take "
                          f"prefix keys/values; use lora, dora, ia3, prompt_tuning or p_tuning")
