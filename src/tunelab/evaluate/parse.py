"""Rendered turns of a tool-calling assistant: render one, parse one back, read a predictions file.

A rendered turn is one of

    assistant: <reply text>
    <prefix>:\\n<json arguments object>     (a tool call; the prefix is the domain's name for the tool,
                                           `search` for the hotel domain's search_hotels, as in the reference)

Anything else (garbage, an empty string, a non-string) parses to role None. Parsing never raises.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tunelab.utils.errors import DataError

ASSISTANT = "assistant"
SEARCH = "search"

_ASSISTANT_PREFIX = "assistant:"
OPTIONAL_KEYS = ("source", "user", "records")  # written by `tunelab evaluate` for the error analysis
_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):")  # a tool call's prefix


def is_call(role: str | None) -> bool:
    """Whether a parsed role is a tool call (any prefix but `assistant`)."""
    return role is not None and role != ASSISTANT


def render_turn(turn: dict) -> str:
    """`{"role":"assistant","content":c}` -> `assistant: c`; a turn with `arguments`, e.g.
    `{"role":"search","arguments":a}` -> `search:\\n` + json.dumps(a, ensure_ascii=False).

    Raises ValueError for any other turn.
    """
    role = turn.get("role")
    if role == ASSISTANT:
        return f"{_ASSISTANT_PREFIX} {turn.get('content', '')}"
    if isinstance(role, str) and _PREFIX.fullmatch(role + ":") and "arguments" in turn:
        return f"{role}:\n" + json.dumps(turn.get("arguments", {}), ensure_ascii=False)
    raise ValueError(f"cannot render a turn with role {role!r}: expected 'assistant' or a tool call with arguments")


def parse_rendered(text: Any) -> tuple[str | None, Any]:
    """Parse a rendered turn into `(role, payload)`.

    - Leading whitespace of the whole text is ignored; prefixes are case-sensitive.
    - `assistant:...` -> `("assistant", reply)`, reply being the text after the prefix with
      surrounding whitespace stripped (so `render_turn` round-trips).
    - `<prefix>:...` (an identifier: `search`, a tool's name) -> `(prefix, args)`: args is the JSON after
      the prefix when it is an object (dict), else None (not JSON, a list, null...). The role is the prefix.
    - Anything else, including a non-string such as None -> `(None, None)`.
    """
    if not isinstance(text, str):
        return None, None
    s = text.lstrip()
    if s.startswith(_ASSISTANT_PREFIX):
        return ASSISTANT, s[len(_ASSISTANT_PREFIX):].strip()
    m = _PREFIX.match(s)
    if m:
        body = s[m.end():].strip()
        try:
            args = json.loads(body)
        except (ValueError, RecursionError):
            return m.group(1), None
        return m.group(1), args if isinstance(args, dict) else None
    return None, None


def read_predictions(path: str | Path) -> list[dict]:
    """Read a predictions JSONL: one `{"label": str, "predict": str}` object per non-blank line.

    A `null` predict is read as an empty prediction (""). A line that is not valid JSON, not an
    object, lacks a key, or has a non-string label / non-string non-null predict raises DataError
    `path:line: reason`. The optional keys `tunelab evaluate` adds for the error analysis ("source",
    "user": strings or null; "records": any JSON) are kept when present; older files lack them.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")  # not splitlines: U+2028 may sit inside a JSON string
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read predictions ({e})") from None
    items = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise DataError(f"{where}: invalid JSON ({e})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object with 'label' and 'predict', got {type(row).__name__}")
        for key in ("label", "predict"):
            if key not in row:
                raise DataError(f"{where}: missing key {key!r} (expected 'label' and 'predict')")
        label, predict = row["label"], row["predict"]
        if predict is None:
            predict = ""
        for key, value in (("label", label), ("predict", predict)):
            if not isinstance(value, str):
                raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
        item = {"label": label, "predict": predict}
        for key in OPTIONAL_KEYS:
            if key in row:
                if key != "records" and row[key] is not None and not isinstance(row[key], str):
                    raise DataError(f"{where}: {key!r} must be a string or null, got {type(row[key]).__name__}")
                item[key] = row[key]
        items.append(item)
    return items
