"""On-policy preference pairs from an evaluation: the model's wrong predictions as rejected, gold as chosen.

`tunelab evaluate` writes predictions.jsonl rows `{"label", "predict", "source": "FILE:LINE#TURN"}`; the
context of each item is read again from FILE (the dialog at LINE, the turns before TURN), so every pair
carries the whole prompt the model saw.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tunelab.data.codec import turns_to_messages
from tunelab.data.readers import read_conversations
from tunelab.data.schema import Conversation, Turn
from tunelab.domains import DOMAINS
from tunelab.evaluate.parse import ASSISTANT, parse_rendered, read_predictions
from tunelab.utils.errors import DataError


def _tool_name(prefix: str) -> str:
    """A rendered call's prefix back to its tool's name (hotel renders search_hotels as `search`)."""
    for domain in DOMAINS.values():
        for tool, shown in (getattr(domain, "eval_prefixes", None) or {}).items():
            if shown == prefix:
                return tool
    return prefix


def _turn(rendered: str) -> Turn | None:
    role, payload = parse_rendered(rendered)
    if role == ASSISTANT:
        return Turn("assistant", content=payload) if payload else None
    if role is None or payload is None:
        return None  # not a turn, or a call whose arguments are not a JSON object
    return Turn("tool_call", name=_tool_name(role), arguments=payload)


def _dialogs(files: set[str]) -> dict[tuple[str, str], Conversation]:
    """(FILE, LINE) -> conversation, each FILE read once."""
    out = {}
    for f in files:
        if not Path(f).is_file():
            raise DataError(f"{f}: the evaluated data file named in the predictions' source is not here; pass "
                            "--data FILE")
        for c in read_conversations(f)[0]:
            out[(f, c.source.rsplit(":", 1)[1])] = c
    return out


def prefs_from_predictions(path: str | Path, data: str | None = None) -> tuple[list[dict], dict]:
    """Pairs `{"messages", "chosen", "rejected", "source"}` for every wrong prediction of `path`, and a report
    (items, wrong, pairs, skipped per reason)."""
    items = read_predictions(path)
    located = [(it, it.get("source") or "") for it in items]
    for it, src in located:
        if "#" not in src:
            raise DataError(f"{path}: a row has no 'source' FILE:LINE#TURN (written by `tunelab evaluate`); "
                            "cannot find its context")
    def key(src: str) -> tuple[str, str]:
        file, line = src.rsplit("#", 1)[0].rsplit(":", 1)
        return data or file, line

    dialogs = _dialogs({key(src)[0] for _, src in located})
    pairs, skipped = [], Counter()
    for it, src in located:
        turn_no = src.rsplit("#", 1)[1]
        gold = _turn(it["label"])
        pred = _turn(it["predict"] or "")
        if gold is not None and pred is not None and (gold.role, gold.content, gold.arguments) == (
                pred.role, pred.content, pred.arguments):
            continue  # right: nothing to learn from
        conv = dialogs.get(key(src))
        if conv is None or not turn_no.isdigit():
            skipped["context not found"] += 1
            continue
        if pred is None:
            skipped["prediction not a turn (unparseable call)"] += 1
            continue
        context = conv.turns[:int(turn_no) - 1]
        chosen = conv.turns[int(turn_no) - 1]
        pairs.append({"messages": turns_to_messages(context), "chosen": turns_to_messages([chosen])[0],
                      "rejected": turns_to_messages([pred])[0], "source": src})
    wrong = len(pairs) + sum(skipped.values())
    return pairs, {"items": len(items), "wrong": wrong, "pairs": len(pairs), "skipped": dict(skipped)}
