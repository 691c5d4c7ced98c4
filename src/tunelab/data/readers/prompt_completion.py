"""`prompt`/`completion` rows: the prompt is the user turn, the completion the assistant turn."""

from __future__ import annotations

from typing import Any

from tunelab.data.readers.base import register_reader
from tunelab.data.schema import Conversation, Turn
from tunelab.utils.errors import DataError


def _sniff(row: Any) -> bool:
    return isinstance(row, dict) and "prompt" in row and "completion" in row


@register_reader("prompt_completion", _sniff)
def read_prompt_completion(row: Any) -> Conversation:
    if not _sniff(row):
        raise DataError("expected 'prompt' and 'completion'")
    if not isinstance(row["prompt"], str) or not isinstance(row["completion"], str):
        raise DataError("'prompt' and 'completion' must be strings")
    meta = {k: v for k, v in row.items() if k not in ("prompt", "completion")}
    return Conversation([Turn("user", content=row["prompt"]), Turn("assistant", content=row["completion"])], meta=meta)
