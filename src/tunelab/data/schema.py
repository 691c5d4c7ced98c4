"""The one conversation schema every reader produces and every template renders.

Roles: system, user, assistant, tool_call (name + JSON arguments), tool_result (JSON records).
A system turn may carry the tool definitions (OpenAI function specs) the template renders in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.utils.errors import DataError

ROLES = ("system", "user", "assistant", "tool_call", "tool_result")
TARGET_ROLES = ("assistant", "tool_call")


@dataclass
class Turn:
    role: str
    content: str = ""
    name: str = ""  # tool name, for tool_call and tool_result
    arguments: dict | None = None  # tool_call
    records: Any = None  # tool_result: JSON-able records
    target: bool | None = None  # None: by role (assistant and tool_call are targets)
    tools: list[dict] | None = None  # system turn: the tool specs offered (None: none given; []: none offered)

    @property
    def is_target(self) -> bool:
        return self.role in TARGET_ROLES if self.target is None else self.target


@dataclass
class Conversation:
    turns: list[Turn]
    source: str = ""  # "file:line", for error messages
    meta: dict = field(default_factory=dict)  # anything else the row carried (kind, id, label ...)


def check_conversation(conv: Conversation) -> None:
    """Raise DataError with the reason when `conv` breaks the schema's rules."""
    if not conv.turns:
        raise DataError("no turns")
    pending_call = False
    for i, t in enumerate(conv.turns):
        where = f"turn {i + 1} ({t.role})"
        if t.role not in ROLES:
            raise DataError(f"{where}: unknown role; valid roles: {', '.join(ROLES)}")
        if t.role == "system" and i > 0 and conv.turns[i - 1].role != "system":
            raise DataError(f"{where}: a system turn must come first")
        if t.role in ("system", "user", "assistant") and not t.content.strip() and not (t.role == "system" and t.tools):
            raise DataError(f"{where}: empty content")
        if t.role == "tool_call":
            if not t.name:
                raise DataError(f"{where}: tool call without a tool name")
            if not isinstance(t.arguments, dict):
                raise DataError(f"{where}: tool call arguments must be a JSON object")
            pending_call = True
        elif t.role == "tool_result":
            if not pending_call:
                raise DataError(f"{where}: tool result without a preceding tool call")
        elif t.role in ("user", "assistant"):
            pending_call = False
    if not any(t.is_target for t in conv.turns):
        raise DataError("no assistant or tool-call turn to learn from")
