"""The serve options that bound a server's work, checked in one place before anything loads."""

from __future__ import annotations

import math

from tunelab.utils.errors import ConfigError

FALLBACK_PROMPT_TOKENS = 8192  # for a model whose config names no context length


def _int_at_least(name: str, value, lo: int, hi: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    if not ok:
        valid = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
        raise ConfigError(f"serve option {name}={value!r}: must be {valid}")


def check_limits(*, max_body_bytes: int = 1, max_tokens_cap: int = 1, queue_size: int = 1,
                 timeout: float = 1.0, max_prompt_tokens: int | None = None, port: int | None = None) -> None:
    """ConfigError (one line naming the option, its value and the valid range) for the first bad value."""
    if port is not None:
        _int_at_least("port", port, 1, 65535)
    _int_at_least("max_body_bytes", max_body_bytes, 1)
    _int_at_least("max_tokens_cap", max_tokens_cap, 1)
    _int_at_least("queue_size", queue_size, 1)
    if max_prompt_tokens is not None:
        _int_at_least("max_prompt_tokens", max_prompt_tokens, 1)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise ConfigError(f"serve option timeout={timeout!r}: must be a finite number of seconds > 0")


def default_max_prompt_tokens(model) -> int:
    """The model's context length (config.max_position_embeddings), else FALLBACK_PROMPT_TOKENS."""
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return n if isinstance(n, int) and n > 0 else FALLBACK_PROMPT_TOKENS
