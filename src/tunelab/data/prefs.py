"""Preference rows: a prompt with a chosen and a rejected next turn (dpo, orpo, simpo), or a prompt with one
completion labelled desirable or not (kto).

Shapes read (the prompt as `messages` or `prompt`, a turn as a string, an object or a one-element list):
  {"messages"|"prompt": ..., "chosen": turn, "rejected": turn}
  {"messages"|"prompt": ..., "completion": turn, "label": true|false}
A prompt is a string (one user turn) or a list of OpenAI messages or hotel-format turns (user / search /
return / assistant). A turn is a string (an assistant reply), {"role": "assistant", "content"}, an OpenAI
assistant message with `tool_calls`, or a hotel {"role": "search", "arguments"}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.data.codec import messages_to_turns
from tunelab.data.readers.base import read_rows
from tunelab.data.readers.hotel import HOTEL_ROLES, hotel_turn
from tunelab.data.readers.preference import pref_kind
from tunelab.data.schema import Conversation, Turn, check_conversation
from tunelab.utils.errors import DataError

PAIR_TASKS = ("dpo", "orpo", "simpo")  # tasks that read chosen/rejected pairs; kto reads labelled completions


@dataclass
class PrefRow:
    """One preference row: the prompt turns, then chosen + rejected (pairs) or completion + label (kto)."""

    prompt: list[Turn]
    chosen: Turn | None = None
    rejected: Turn | None = None
    completion: Turn | None = None
    label: bool | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)



def _prompt_turns(value: Any) -> list[Turn]:
    if isinstance(value, str):
        return [Turn("user", content=value)]
    if not isinstance(value, list) or not value:
        raise DataError("the prompt ('messages' or 'prompt') must be a string or a non-empty list of turns")
    if any(isinstance(t, dict) and t.get("role") in ("search", "return") for t in value):
        return [hotel_turn(t, i) for i, t in enumerate(value)]
    return messages_to_turns(value, param="prompt")


def _answer_turn(value: Any, key: str) -> Turn:
    if isinstance(value, list) and len(value) == 1:  # TRL's conversational form: [{"role": "assistant", ...}]
        value = value[0]
    if isinstance(value, str):
        turn = Turn("assistant", content=value)
    elif isinstance(value, dict) and value.get("role") in HOTEL_ROLES and "tool_calls" not in value:
        turn = hotel_turn(value, 0)
    elif isinstance(value, dict):
        turns = messages_to_turns([value], param=key)
        if len(turns) != 1:
            raise DataError(f"'{key}' must be one turn (one reply or one tool call), got {len(turns)}")
        turn = turns[0]
    else:
        raise DataError(f"'{key}' must be a string, a turn object or a one-turn list")
    if turn.role not in ("assistant", "tool_call"):
        raise DataError(f"'{key}' must be an assistant reply or a tool call, not a {turn.role} turn")
    if turn.role == "assistant" and not turn.content.strip():
        raise DataError(f"'{key}': empty reply")
    return turn


def parse_pref(row: Any) -> PrefRow:
    """A row as a PrefRow; DataError says which key is wrong and why."""
    kind = pref_kind(row)
    if kind is None:
        raise DataError("not a preference row: expected 'messages' or 'prompt' with 'chosen' and 'rejected', "
                        "or with 'completion' and a boolean 'label'")
    prompt = _prompt_turns(row["messages"] if "messages" in row else row["prompt"])
    answers = ("chosen", "rejected") if kind == "pair" else ("completion",)
    turns = {k: _answer_turn(row[k], k) for k in answers}
    for k, t in turns.items():  # the prompt followed by each answer is a valid conversation
        try:
            check_conversation(Conversation([*prompt, t]))
        except DataError as e:
            raise DataError(f"prompt + '{k}': {e}") from None
    if kind == "pair" and turns["chosen"] == turns["rejected"]:
        raise DataError("'chosen' and 'rejected' are the same turn: nothing to prefer")
    meta = {k: v for k, v in row.items() if k not in ("messages", "prompt", "chosen", "rejected", "completion", "label")}
    return PrefRow(prompt, label=row.get("label") if kind == "kto" else None, meta=meta, **turns)


def read_prefs(path: str | Path, kind: str, skip_invalid: bool = False, limit: int = 0) -> tuple[list[PrefRow], int]:
    """Every row of `path` as a PrefRow of `kind` ('pair' or 'kto'): (rows, number skipped). A bad row stops
    with file:line and the reason, or is skipped and counted."""
    rows, skipped = [], 0
    want = {"pair": "'chosen' and 'rejected'", "kto": "'completion' and a boolean 'label'"}[kind]
    for lineno, raw in read_rows(path):
        try:
            if isinstance(raw, DataError):
                raise raw
            if pref_kind(raw) != kind:
                raise DataError(f"expected a preference row with 'messages' or 'prompt' and {want}")
            row = parse_pref(raw)
        except DataError as e:
            if not skip_invalid:
                raise DataError(f"{path}:{lineno}: {e} (set data.skip_invalid=true to skip bad rows)") from None
            skipped += 1
            continue
        row.source = f"{path}:{lineno}"
        rows.append(row)
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"{path}: no valid preference rows" + (f" ({skipped} skipped)" if skipped else ""))
    return rows, skipped
