"""Alpaca rows: instruction (+ input) -> output, with optional system and history pairs."""

from __future__ import annotations

from typing import Any

from tunelab.data.readers.base import register_reader
from tunelab.data.schema import Conversation, Turn
from tunelab.utils.errors import DataError


def _sniff(row: Any) -> bool:
    return isinstance(row, dict) and "instruction" in row and "output" in row


@register_reader("alpaca", _sniff)
def read_alpaca(row: Any) -> Conversation:
    if not _sniff(row):
        raise DataError("expected 'instruction' and 'output'")
    for key in ("instruction", "input", "output", "system"):
        if key in row and row[key] is not None and not isinstance(row[key], str):
            raise DataError(f"'{key}' must be a string")
    turns = [Turn("system", content=row["system"])] if row.get("system") else []
    for pair in row.get("history") or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise DataError("'history' must be a list of [question, answer] string pairs")
        turns += [Turn("user", content=pair[0]), Turn("assistant", content=pair[1])]
    prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    turns += [Turn("user", content=prompt), Turn("assistant", content=row["output"])]
    return Conversation(turns, meta={k: v for k, v in row.items() if k not in ("instruction", "input", "output", "system", "history")})
