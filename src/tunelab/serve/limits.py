"""The prompt cap a server applies when none is configured: the model's own context length."""

from __future__ import annotations

from tunelab.models.rope import context_length

FALLBACK_PROMPT_TOKENS = 8192  # for a model whose config names no context length


def default_max_prompt_tokens(model) -> int:
    """The model's context length (config.max_position_embeddings, times its rope scaling factor when the
    run extends it), else FALLBACK_PROMPT_TOKENS."""
    config = getattr(model, "config", None)
    n = context_length(config) if config is not None else None
    return n if isinstance(n, int) and n > 0 else FALLBACK_PROMPT_TOKENS
