"""OpenAI `messages` (with `tool_calls` and `role: tool`) and ShareGPT `conversations` rows."""

from __future__ import annotations

import json
from typing import Any

from tunelab.data.readers.base import register_reader
from tunelab.data.schema import Conversation, Turn
from tunelab.utils.errors import DataError

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "function_call": "tool_call", "observation": "tool_result"}


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _tool_call(fn: Any, where: str) -> Turn:
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise DataError(f"{where}: a tool call needs a 'name'")
    args = _json_or_text(fn.get("arguments", {}))
    if not isinstance(args, dict):
        raise DataError(f"{where}: tool call 'arguments' must be a JSON object")
    return Turn("tool_call", name=fn["name"], arguments=args)


def _openai(messages: list) -> list[Turn]:
    turns: list[Turn] = []
    last_tool = ""
    for i, m in enumerate(messages):
        where = f"message {i + 1}"
        if not isinstance(m, dict):
            raise DataError(f"{where}: expected an object")
        role = m.get("role")
        content = m.get("content") or ""
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise DataError(f"{where}: 'content' must be a string")
        if role in ("system", "developer"):
            turns.append(Turn("system", content=content))
        elif role == "user":
            turns.append(Turn("user", content=content))
        elif role == "assistant":
            calls = m.get("tool_calls") or []
            if content.strip() or not calls:
                turns.append(Turn("assistant", content=content))
            for call in calls:
                turn = _tool_call(call.get("function", call) if isinstance(call, dict) else None, where)
                last_tool = turn.name
                turns.append(turn)
        elif role in ("tool", "function"):
            turns.append(Turn("tool_result", name=m.get("name") or last_tool, records=_json_or_text(content)))
        else:
            raise DataError(f"{where}: role {role!r} is not system, user, assistant or tool")
    return turns


def _sharegpt(messages: list) -> list[Turn]:
    turns: list[Turn] = []
    for i, m in enumerate(messages):
        where = f"message {i + 1}"
        if not isinstance(m, dict) or m.get("from") not in SHAREGPT_ROLES:
            raise DataError(f"{where}: 'from' must be one of {', '.join(SHAREGPT_ROLES)}")
        role, value = SHAREGPT_ROLES[m["from"]], m.get("value", "")
        if role == "tool_call":
            turns.append(_tool_call(_json_or_text(value), where))
        elif role == "tool_result":
            turns.append(Turn("tool_result", name=turns[-1].name if turns else "", records=_json_or_text(value)))
        else:
            if not isinstance(value, str):
                raise DataError(f"{where}: 'value' must be a string")
            turns.append(Turn(role, content=value))
    return turns


def _sniff(row: Any) -> bool:
    return isinstance(row, dict) and (isinstance(row.get("messages"), list) or isinstance(row.get("conversations"), list))


@register_reader("messages", _sniff)
def read_messages(row: Any) -> Conversation:
    if not _sniff(row):
        raise DataError("expected an object with a 'messages' or 'conversations' list")
    if isinstance(row.get("messages"), list):
        turns = _openai(row["messages"])
        rest = {k: v for k, v in row.items() if k != "messages"}
    else:
        turns = _sharegpt(row["conversations"])
        rest = {k: v for k, v in row.items() if k != "conversations"}
    if isinstance(row.get("system"), str) and row["system"] and not (turns and turns[0].role == "system"):
        turns.insert(0, Turn("system", content=row["system"]))
    return Conversation(turns, meta=rest)
