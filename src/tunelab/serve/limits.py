"""The prompt cap a server applies when none is configured: the model's own context length."""

from __future__ import annotations

FALLBACK_PROMPT_TOKENS = 8192  # for a model whose config names no context length


def default_max_prompt_tokens(model) -> int:
    """The model's context length (config.max_position_embeddings), else FALLBACK_PROMPT_TOKENS."""
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return n if isinstance(n, int) and n > 0 else FALLBACK_PROMPT_TOKENS
