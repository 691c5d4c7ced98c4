"""`tunelab data validate`: check every row against the schema and report all problems at once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunelab.data.prefs import parse_pref
from tunelab.data.readers.preference import pref_kind
from tunelab.data.prep.rows import check_format, conversation_text, load_rows, to_conversation
from tunelab.data.schema import Conversation
from tunelab.data.tools import call_problems
from tunelab.utils.errors import DataError

DEFAULT_MAX_CHARS = 20000


@dataclass
class Report:
    path: str
    rows: int = 0
    valid: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file:line, reason naming the field)
    roles: Counter = field(default_factory=Counter)  # turns per role, over valid rows
    turns_hist: Counter = field(default_factory=Counter)  # conversations per number of turns
    formats: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def invalid_rows(self) -> int:
        return len({where for where, _ in self.errors})

    def text(self) -> str:
        """The report as lines a person reads: every error, then the counts."""
        lines = [f"{where}: {reason}" for where, reason in self.errors]
        lines.append(f"{self.path}: {self.rows} rows, {self.valid} valid, {self.invalid_rows} invalid"
                     + (f" ({len(self.errors)} problems)" if self.errors else ""))
        if self.formats:
            lines.append("formats: " + ", ".join(f"{k} {v}" for k, v in self.formats.most_common()))
        if self.roles:
            lines.append("turns per role: " + ", ".join(f"{k} {v}" for k, v in sorted(self.roles.items())))
        if self.turns_hist:
            lines.append("turns per conversation:")
            width = max(self.turns_hist.values())
            for n in sorted(self.turns_hist):
                c = self.turns_hist[n]
                lines.append(f"  {n:4d} | {'#' * max(1, round(40 * c / width))} {c}")
        return "\n".join(lines)


def order_problems(conv: Conversation) -> list[str]:
    """Role-order faults that check_conversation lets through: the dialog must open with a user
    turn (after any system turns), not repeat a user or assistant turn, and answer every tool call."""
    out = []
    turns = conv.turns
    first = next((i for i, t in enumerate(turns) if t.role != "system"), None)
    if first is not None and turns[first].role != "user":
        out.append(f"roles out of order: turn {first + 1} ({turns[first].role}) comes before any user turn")
    for i in range(1, len(turns)):
        prev, cur = turns[i - 1].role, turns[i].role
        if cur == prev and cur in ("user", "assistant"):
            out.append(f"roles out of order: turn {i + 1} ({cur}) follows another {cur} turn")
        if prev == "tool_call" and cur in ("user", "assistant"):
            out.append(f"roles out of order: tool call at turn {i} has no tool result before turn {i + 1} ({cur})")
    return out


def validate_file(path: str | Path, fmt: str = "auto", max_chars: int = DEFAULT_MAX_CHARS,
                  count_tokens: Callable[[Conversation], int] | None = None, max_tokens: int = 0) -> Report:
    """Parse every row; the Report lists each bad row's file:line and reason (all of them, not just
    the first), and counts roles and turns per conversation over the valid ones.

    Reasons: malformed JSON, unknown format, wrong types, empty turns, a tool result without a
    call, roles out of order, a tool call to a tool the row's `tools` do not offer or whose arguments
    break its JSON schema (an invalid schema too), more than `max_chars` characters of text, or (with `count_tokens`)
    more than `max_tokens` tokens. Raises DataError only when the file itself cannot be read.
    """
    check_format(fmt)
    report = Report(str(path))
    for row in load_rows(path):
        report.rows += 1
        where = f"{path}:{row.line}"
        problems = _row_problems(row.data, row.error, fmt, max_chars, count_tokens, max_tokens, report)
        report.errors += [(where, p) for p in problems]
        report.valid += not problems
    return report


def _row_problems(data: Any, error: str, fmt: str, max_chars: int, count_tokens, max_tokens: int,
                  report: Report) -> list[str]:
    if error:
        return [error]
    if fmt == "auto" and (kind := pref_kind(data)) is not None:  # a preference row: its prompt + each answer
        return _pref_problems(data, kind, max_chars, report)
    try:
        conv, name = to_conversation(data, fmt)
    except DataError as e:
        return [str(e)]
    problems = order_problems(conv) + call_problems(conv)
    n_chars = len(conversation_text(conv))
    if max_chars and n_chars > max_chars:
        problems.append(f"oversize: {n_chars} characters of text, over the limit of {max_chars} (--max-chars)")
    if count_tokens is not None and max_tokens:
        n_tokens = count_tokens(conv)
        if n_tokens > max_tokens:
            problems.append(f"oversize: {n_tokens} tokens, over the limit of {max_tokens} (--max-tokens)")
    if not problems:
        report.formats[name] += 1
        report.roles.update(t.role for t in conv.turns)
        report.turns_hist[len(conv.turns)] += 1
    return problems


def _pref_problems(data: Any, kind: str, max_chars: int, report: Report) -> list[str]:
    """A preference row's faults (prompt roles out of order, bad answers, oversize); counted as format
    `preference` (chosen/rejected) or `kto` (completion/label) when it has none."""
    try:
        row = parse_pref(data)
    except DataError as e:
        return [str(e)]
    answers = [t for t in (row.chosen, row.rejected, row.completion) if t is not None]
    problems = order_problems(Conversation([*row.prompt, answers[0]]))
    n_chars = sum(len(conversation_text(Conversation([*row.prompt, t]))) for t in answers)
    if max_chars and n_chars > max_chars:
        problems.append(f"oversize: {n_chars} characters of text, over the limit of {max_chars} (--max-chars)")
    if not problems:
        report.formats["preference" if kind == "pair" else "kto"] += 1
        report.roles.update(t.role for t in row.prompt)
        report.turns_hist[len(row.prompt) + 1] += 1
    return problems
