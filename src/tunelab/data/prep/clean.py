"""`tunelab data clean`: normalise text, drop short turns, duplicates, near duplicates and filtered
rows; every dropped row goes to a side file with its line and reason, so nothing vanishes silently."""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.data.prep.minhash import NearDuplicateIndex
from tunelab.data.prep.rows import (
    Row,
    check_format,
    content_hash,
    conversation_text,
    load_rows,
    to_conversation,
    write_rows,
)
from tunelab.data.schema import check_conversation
from tunelab.utils.errors import ConfigError, DataError
from tunelab.utils.io import write_jsonl
from tunelab.utils.safety import check_output

_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b\ufeff]")
_RUNS = re.compile(r"(?<=\S)[ \t]{2,}")  # runs inside a line; leading indentation is kept


def normalize_text(text: str, form: str = "NFKC") -> str:
    """Unicode `form` (NFKC by default; '' for none), no control or zero-width characters, Unix
    newlines, one space for runs of blanks inside a line, no trailing blanks, at most one empty
    line in a row, and no blank ends."""
    if form:
        text = unicodedata.normalize(form, text)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(_RUNS.sub(" ", line).rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


@dataclass
class _Slot:
    holder: Any  # the dict (or history pair) holding the text
    key: Any
    target: bool  # an answer the model learns from
    siblings: list | None = None  # the turn list to drop the holder from; None: not removable
    optional: bool = False  # may simply become empty (alpaca input/system)


def _turn_slots(turns: list, text_key: str, role_key: str, target_roles: tuple) -> list[_Slot]:
    out = []
    for t in turns:
        if isinstance(t, dict) and isinstance(t.get(text_key), str) and not t.get("tool_calls"):
            role = t.get(role_key)
            if role in ("system", "user", "assistant", "human", "gpt", "developer"):
                out.append(_Slot(t, text_key, role in target_roles, turns))
    return out


def _slots(data: Any, fmt: str) -> list[_Slot]:
    """Where a row of format `fmt` keeps its natural-language text."""
    if fmt == "hotel":
        dialog = data if isinstance(data, list) else data["dialog"]
        return _turn_slots(dialog, "content", "role", ("assistant",))
    if fmt == "turns":
        out = _turn_slots(data["context"], "content", "role", ())
        resp = data["response"]
        return out + ([_Slot(resp, "content", True)] if isinstance(resp.get("content"), str) else [])
    if fmt == "messages":
        if isinstance(data.get("messages"), list):
            return _turn_slots(data["messages"], "content", "role", ("assistant",))
        return _turn_slots(data["conversations"], "value", "from", ("gpt", "assistant"))
    if fmt == "alpaca":
        out = [_Slot(data, k, k == "output", optional=k in ("input", "system"))
               for k in ("system", "instruction", "input", "output") if isinstance(data.get(k), str)]
        for pair in data.get("history") or []:
            out += [_Slot(pair, 0, False, data["history"]), _Slot(pair, 1, True, data["history"])]
        return out
    if fmt == "prompt_completion":
        return [_Slot(data, "prompt", False), _Slot(data, "completion", True)]
    return []


@dataclass
class CleanReport:
    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    turns_removed: int = 0  # empty or too-short turns taken out of kept rows
    out: str = ""
    dropped_path: str = ""

    def as_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "dropped": dict(self.dropped),
                "turns_removed": self.turns_removed, "out": self.out, "dropped_file": self.dropped_path}


class _Drop(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _clean_row(data: Any, fmt: str, min_chars: int, form: str) -> tuple[Any, int, str, str]:
    """(cleaned row, turns removed, format, text to compare) or _Drop with the reason."""
    try:  # structure and types only: empty turns are this function's to remove
        _, name = to_conversation(data, fmt, check=False)
    except DataError as e:
        raise _Drop("invalid", str(e)) from None
    row = copy.deepcopy(data)
    encoded = {k: isinstance(row.get(k), str) for k in ("context", "response")} if name == "turns" else {}
    for k, was_str in encoded.items():  # the per-turn export keeps its turns as JSON text
        row[k] = json.loads(row[k]) if was_str else row[k]
    removed = 0
    for s in _slots(row, name):
        text = normalize_text(s.holder[s.key], form)
        s.holder[s.key] = text
        if len(text) >= min_chars:
            continue
        if s.siblings is not None:
            if any(x is s.holder for x in s.siblings):
                s.siblings[:] = [x for x in s.siblings if x is not s.holder]
                removed += 1
        elif s.optional:
            s.holder[s.key] = ""
        else:
            raise _Drop("no_target" if s.target else "too_short",
                        f"'{s.key}' has {len(text)} characters, under --min-chars {min_chars}")
    for k, was_str in encoded.items():
        row[k] = json.dumps(row[k], ensure_ascii=False) if was_str else row[k]
    try:
        conv, _ = to_conversation(row, name, check=False)
        if not any(t.is_target for t in conv.turns):
            raise _Drop("no_target", f"no answer left after removing {removed} short turns")
        check_conversation(conv)
    except DataError as e:
        raise _Drop("invalid", f"{e}" + (f" (after removing {removed} short turns)" if removed else "")) from None
    return row, removed, name, conversation_text(conv)


def _filters(drop_regex: list[str], keywords: list[str]):
    try:
        patterns = [re.compile(p) for p in drop_regex]
    except re.error as e:
        raise ConfigError(f"--drop-regex '{e.pattern}' is not a valid regular expression ({e})") from None
    words = [w.casefold() for w in keywords]

    def check(text: str) -> None:
        for p in patterns:
            if p.search(text):
                raise _Drop("regex", f"matches /{p.pattern}/")
        low = text.casefold()
        for w in words:
            if w in low:
                raise _Drop("keyword", f"contains '{w}'")

    return check


def read_keywords(path: str | Path) -> list[str]:
    """One keyword per line; blank lines and lines starting with # are ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"--drop-keywords-file {path}: {e.strerror}") from None
    return [w.strip() for w in lines if w.strip() and not w.lstrip().startswith("#")]


def clean_rows(rows: list[Row], fmt: str = "auto", min_chars: int = 2, near: float = 0.9,
               drop_regex: list[str] = (), keywords: list[str] = (), unicode_form: str = "NFKC"
               ) -> tuple[list[Any], list[dict], CleanReport]:
    """(kept rows, dropped records {"line", "reason", "detail", "row"}, report).

    Per row, in order: unparseable or invalid -> "invalid"; text normalised and turns shorter than
    `min_chars` removed; left without an answer -> "no_target" (a short required prompt ->
    "too_short"); user filters -> "regex"/"keyword"; same normalised text as an earlier kept row ->
    "duplicate"; shingle Jaccard >= `near` with one -> "near_duplicate" (near <= 0 turns it off).
    The first of a set of duplicates is the one kept. Dropped records carry the original row.
    """
    check_format(fmt)
    check = _filters(list(drop_regex), list(keywords))
    index = NearDuplicateIndex(near) if 0 < near else None
    seen: dict[str, int] = {}
    kept, dropped, report = [], [], CleanReport()
    for r in rows:
        report.read += 1
        try:
            if r.error:
                raise _Drop("invalid", r.error)
            row, removed, _, text = _clean_row(r.data, fmt, min_chars, unicode_form)
            check(text)
            h = content_hash(text)
            if h in seen:
                raise _Drop("duplicate", f"same text as line {seen[h]}")
            if index is not None and (hit := index.find_or_add(r.line, text)) is not None:
                raise _Drop("near_duplicate", f"near line {hit[0]} (jaccard {hit[1]:.3f})")
            seen[h] = r.line
        except _Drop as d:
            report.dropped[d.reason] += 1
            dropped.append({"line": r.line, "reason": d.reason, "detail": d.detail,
                            "row": r.raw if r.error else r.data})
            continue
        report.turns_removed += removed
        kept.append(row)
    report.kept = len(kept)
    return kept, dropped, report


def dropped_path_for(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".dropped.jsonl")


def clean_file(inp: str | Path, out: str | Path, fmt: str = "auto", min_chars: int = 2, near: float = 0.9,
               drop_regex: list[str] = (), keywords_file: str | None = None, unicode_form: str = "NFKC",
               to_datasets: bool = False) -> CleanReport:
    """Clean `inp` into `out` (same row format; file type from OUT's suffix) and write every
    dropped row to OUT.dropped.jsonl; both written atomically. Returns the summary."""
    inputs = [inp, keywords_file]
    check_output(out, inputs, "OUT")
    check_output(dropped_path_for(out), inputs, "OUT.dropped.jsonl")
    keywords = read_keywords(keywords_file) if keywords_file else []
    kept, dropped, report = clean_rows(load_rows(inp), fmt, min_chars, near, drop_regex, keywords, unicode_form)
    side = dropped_path_for(out)
    write_jsonl(side, dropped)
    if not kept:
        raise DataError(f"{inp}: every row was dropped ({dict(report.dropped)}); see {side}")
    write_rows(out, kept, to_datasets)
    report.out, report.dropped_path = str(out), str(side)
    return report
