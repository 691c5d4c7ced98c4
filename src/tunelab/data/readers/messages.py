"""OpenAI `messages` (with `tool_calls` and `role: tool`) and ShareGPT `conversations` rows; a row's `tools`
(OpenAI function specs) go on its system turn, where the template renders them."""

from __future__ import annotations

from typing import Any

from tunelab.data.codec import json_or_text, messages_to_turns, tool_call_turn
from tunelab.data.readers.base import register_reader
from tunelab.data.schema import Conversation, Turn
from tunelab.data.tools import normalize_tools, with_tools
from tunelab.utils.errors import DataError

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "function_call": "tool_call", "observation": "tool_result"}


def _sharegpt(messages: list) -> list[Turn]:
    turns: list[Turn] = []
    for i, m in enumerate(messages):
        where = f"message {i + 1}"
        if not isinstance(m, dict) or m.get("from") not in SHAREGPT_ROLES:
            raise DataError(f"{where}: 'from' must be one of {', '.join(SHAREGPT_ROLES)}")
        role, value = SHAREGPT_ROLES[m["from"]], m.get("value", "")
        if role == "tool_call":
            turns.append(tool_call_turn(json_or_text(value), where))
        elif role == "tool_result":
            turns.append(Turn("tool_result", name=turns[-1].name if turns else "", records=json_or_text(value)))
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
        turns = messages_to_turns(row["messages"])
        rest = {k: v for k, v in row.items() if k != "messages"}
    else:
        turns = _sharegpt(row["conversations"])
        rest = {k: v for k, v in row.items() if k != "conversations"}
    if isinstance(row.get("system"), str) and row["system"] and not (turns and turns[0].role == "system"):
        turns.insert(0, Turn("system", content=row["system"]))
    if "tools" in rest:
        tools = normalize_tools(rest.pop("tools")) if rest["tools"] is not None else []
        turns = with_tools(turns, tools) if tools else turns  # null or [] offers none

    return Conversation(turns, meta=rest)
