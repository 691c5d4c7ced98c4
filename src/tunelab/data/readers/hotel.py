"""The hotel dialog format and its per-turn export.

A dialog is a list of turns: {"role": "user"|"assistant", "content": str},
{"role": "search", "arguments": {...}}, {"role": "return", "records": [...]}; a row may be the list
itself or an object holding it under "dialog" (other keys are kept as meta). The per-turn export is
{"context": "<json list of turns>", "response": "<json turn>"}: only the response is a target.
"""

from __future__ import annotations

import json
from typing import Any

from tunelab.data.readers.base import register_reader
from tunelab.data.schema import Conversation, Turn
from tunelab.utils.errors import DataError

HOTEL_ROLES = ("system", "user", "assistant", "search", "return")
TOOL_NAME = "search_hotels"


def _dialog_of(row: Any) -> list | None:
    if isinstance(row, list):
        return row
    if isinstance(row, dict) and isinstance(row.get("dialog"), list):
        return row["dialog"]
    return None


def _is_hotel(row: Any) -> bool:
    dialog = _dialog_of(row)
    return bool(dialog) and all(isinstance(t, dict) and t.get("role") in HOTEL_ROLES for t in dialog)


def hotel_turn(t: Any, i: int) -> Turn:
    """One hotel-format turn -> schema Turn; the reason names the turn index on error."""
    if not isinstance(t, dict):
        raise DataError(f"turn {i + 1}: expected an object, got {type(t).__name__}")
    role = t.get("role")
    if role == "search":
        args = t.get("arguments")
        if not isinstance(args, dict):
            raise DataError(f"turn {i + 1} (search): 'arguments' must be a JSON object")
        return Turn("tool_call", name=TOOL_NAME, arguments=args)
    if role == "return":
        if "records" not in t:
            raise DataError(f"turn {i + 1} (return): missing 'records'")
        return Turn("tool_result", name=TOOL_NAME, records=t["records"])
    if role in ("system", "user", "assistant"):
        content = t.get("content")
        if not isinstance(content, str):
            raise DataError(f"turn {i + 1} ({role}): 'content' must be a string")
        return Turn(role, content=content)
    raise DataError(f"turn {i + 1}: role {role!r} is not one of {', '.join(HOTEL_ROLES)}")


def to_hotel_turn(t: Turn) -> dict:
    """Schema Turn -> hotel-format turn (the inverse of `hotel_turn`)."""
    if t.role == "tool_call":
        return {"role": "search", "arguments": t.arguments}
    if t.role == "tool_result":
        return {"role": "return", "records": t.records}
    return {"role": t.role, "content": t.content}


@register_reader("hotel", _is_hotel)
def read_hotel(row: Any) -> Conversation:
    dialog = _dialog_of(row)
    if dialog is None:
        raise DataError("expected a list of turns or an object with a 'dialog' list")
    meta = {k: v for k, v in row.items() if k != "dialog"} if isinstance(row, dict) else {}
    return Conversation([hotel_turn(t, i) for i, t in enumerate(dialog)], meta=meta)


def _load_json_field(row: dict, key: str) -> Any:
    value = row.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise DataError(f"'{key}' is not valid JSON ({e.msg})") from None
    if value is None:
        raise DataError(f"missing '{key}'")
    return value


@register_reader("turns", lambda row: isinstance(row, dict) and "context" in row and "response" in row)
def read_turns(row: Any) -> Conversation:
    if not isinstance(row, dict):
        raise DataError("expected an object with 'context' and 'response'")
    context = _load_json_field(row, "context")
    response = _load_json_field(row, "response")
    if not isinstance(context, list):
        raise DataError("'context' must be a JSON list of turns")
    turns = [hotel_turn(t, i) for i, t in enumerate(context)]
    for t in turns:
        t.target = False
    last = hotel_turn(response, len(context))
    if last.role not in ("assistant", "tool_call"):
        raise DataError("'response' must be an assistant or search turn")
    last.target = True
    meta = {k: v for k, v in row.items() if k not in ("context", "response")}
    return Conversation(turns + [last], meta=meta)
