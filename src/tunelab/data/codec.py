"""The one codec between OpenAI chat `messages` and tunelab Turns, for the data readers, the converter
and the API: assistant `tool_calls` <-> tool_call turns, `role: tool` messages <-> tool_result turns.

Reading is lenient where data files vary (arguments as a JSON string or an object, a call with or without
its `function` wrapper, a result named by `tool_call_id`, `name` or the call before it); `strict=True`
(the API) also refuses content parts that are not text. A bad message is a MessageError naming its place
(`messages[2].tool_calls[0].function.arguments`).
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from typing import Any

from tunelab.data.schema import Turn
from tunelab.utils.errors import DataError


class MessageError(DataError):
    def __init__(self, message: str, param: str):
        super().__init__(f"{param}: {message}")
        self.message, self.param = message, param


def json_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _text(content: Any, param: str, strict: bool) -> str:
    """Message content: a string, or a list of parts whose text ones are kept (strict: text parts only)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for i, part in enumerate(content):
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                out.append(part["text"])
            elif strict:
                raise MessageError("only text content parts are supported", f"{param}[{i}]")
        return "".join(out)
    raise MessageError("content must be a string or a list of text parts", param)


def _tool_calls(calls: Any, where: str, names: dict[str, str]) -> list[Turn]:
    if not isinstance(calls, list) or not calls:
        raise MessageError("tool_calls must be a non-empty list", f"{where}.tool_calls")
    return [tool_call_turn(call, f"{where}.tool_calls[{j}]", names) for j, call in enumerate(calls)]


def tool_call_turn(call: Any, p: str, names: dict[str, str] | None = None) -> Turn:
    """One tool call ({"function": {"name", "arguments"}} or {"name", "arguments"}) as a tool_call Turn."""
    fn = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise MessageError("a tool call needs function.name", f"{p}.function.name")
    args = json_or_text(fn.get("arguments") or {})
    if not isinstance(args, dict):
        raise MessageError("function.arguments must be a JSON object (or one in a string)",
                           f"{p}.function.arguments")
    if names is not None and isinstance(call.get("id"), str):
        names[call["id"]] = fn["name"]
    return Turn("tool_call", name=fn["name"], arguments=args)


def messages_to_turns(messages: Any, strict: bool = False, param: str = "messages") -> list[Turn]:
    """OpenAI messages -> Turns. Text beside an assistant's tool calls is kept as an assistant turn."""
    if not isinstance(messages, list) or (strict and not messages):
        raise MessageError("must be a non-empty list of messages", param)
    turns: list[Turn] = []
    names: dict[str, str] = {}  # tool_call_id -> tool name, for the results that answer them
    for i, m in enumerate(messages):
        where = f"{param}[{i}]"
        if not isinstance(m, dict):
            raise MessageError("each message must be an object", where)
        role = m.get("role")
        if role in ("system", "developer", "user"):
            turns.append(Turn("user" if role == "user" else "system", content=_text(m.get("content"), f"{where}.content",
                                                                                    strict)))
        elif role == "assistant":
            content = _text(m.get("content"), f"{where}.content", strict)
            calls = m.get("tool_calls")
            if content.strip() or not calls:
                turns.append(Turn("assistant", content=content))
            if calls:
                turns += _tool_calls(calls, where, names)
        elif role in ("tool", "function"):
            records = json_or_text(_text(m.get("content"), f"{where}.content", strict))
            last = next((t.name for t in reversed(turns) if t.role == "tool_call"), "")
            name = names.get(m.get("tool_call_id")) or m.get("name") or last or "tool"
            turns.append(Turn("tool_result", name=str(name), records=records))
        else:
            raise MessageError(f"role {role!r} is not supported; valid: system, developer, user, assistant, tool",
                               f"{where}.role")
    return turns


def tool_call_message(turn: Turn, call_id: str | None = None) -> dict:
    """A tool_call Turn as an OpenAI tool call; arguments a model got wrong go back as it wrote them."""
    args = json.dumps(turn.arguments, ensure_ascii=False) if turn.arguments is not None else turn.content
    return {"id": call_id or "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": turn.name, "arguments": args}}


def turns_to_messages(turns: list[Turn]) -> list[dict]:
    """Turns -> OpenAI messages: consecutive tool calls share one assistant message, and each result
    answers the oldest open call by its id."""
    msgs: list[dict] = []
    pending: deque[str] = deque()
    for t in turns:
        if t.role == "tool_call":
            call = tool_call_message(t, f"call_{sum(len(m.get('tool_calls', [])) for m in msgs) + 1}")
            pending.append(call["id"])
            if msgs and msgs[-1]["role"] == "assistant" and msgs[-1].get("tool_calls"):
                msgs[-1]["tool_calls"].append(call)  # parallel calls share one message
            else:
                msgs.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif t.role == "tool_result":
            msgs.append({"role": "tool", "name": t.name, "tool_call_id": pending.popleft() if pending else "",
                         "content": json.dumps(t.records, ensure_ascii=False)})
        elif t.content or t.role != "system":  # a tools-only system turn: its tools are the row's `tools`
            msgs.append({"role": t.role, "content": t.content})
    return msgs
