"""Preference rows (chosen/rejected pairs, KTO's labelled completions) are not conversations: the
conversation readers check this first, so `data.task: sft` refuses them naming the task that reads them
instead of training on their prompt turns (a KTO row would otherwise pass as `messages` or
`prompt_completion`). Not a registered reader: no `data.format` reads them as conversations."""

from __future__ import annotations

from typing import Any

from tunelab.utils.errors import DataError


def pref_kind(row: Any) -> str | None:
    """'pair' or 'kto' when `row` has a preference shape, else None (a conversation or something else)."""
    if not isinstance(row, dict) or not ("messages" in row or "prompt" in row):
        return None
    if "chosen" in row and "rejected" in row:
        return "pair"
    if "completion" in row and isinstance(row.get("label"), bool):
        return "kto"
    return None


def refuse_preference(row: Any) -> None:
    """DataError naming the preference task when `row` is a preference row."""
    if pref_kind(row) is None:
        return
    task = "dpo, orpo or simpo" if pref_kind(row) == "pair" else "kto"
    raise DataError(f"a preference row ({'chosen/rejected' if task != 'kto' else 'completion/label'}), not a "
                    f"conversation: train it with data.task {task}")
