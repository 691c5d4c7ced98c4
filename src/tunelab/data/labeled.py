"""Text classification data: `text`/`label` rows from CSV (header row), JSONL or JSON.

Every bad row stops the read with `file:line: reason`; labels come back as strings.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.data.readers.base import read_rows
from tunelab.data.schema import Conversation, Turn
from tunelab.utils.errors import DataError


def _check(where: str, row, text_key: str, label_key: str) -> tuple[str, str]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with '{text_key}' and '{label_key}', got {type(row).__name__}")
    for key in (text_key, label_key):
        if key not in row or row[key] is None:
            raise DataError(f"{where}: missing '{key}' (keys here: {', '.join(map(str, row)) or 'none'})")
    text, label = row[text_key], row[label_key]
    if not isinstance(text, str):
        raise DataError(f"{where}: '{text_key}' must be a string, got {type(text).__name__}")
    if not text.strip():
        raise DataError(f"{where}: empty '{text_key}'")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise DataError(f"{where}: '{label_key}' must be a string or an integer, got {type(label).__name__}")
    label = str(label).strip()
    if not label:
        raise DataError(f"{where}: empty '{label_key}'")
    return text, label


def _rows(path: Path):
    """(where, row) pairs; `where` is `file:line` (a JSON array: `file:item N`)."""
    is_array = path.suffix.lower() == ".json"
    for n, row in read_rows(path):
        where = f"{path}:item {n}" if is_array else f"{path}:{n}"
        if isinstance(row, DataError):
            raise DataError(f"{where}: {row}")
        yield where, row


def read_labeled(path: str | Path, text_key: str = "text", label_key: str = "label",
                 min_labels: int = 2) -> list[tuple[str, str]]:
    """[(text, label)] from `path`; at least `min_labels` distinct labels (2 for training data)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    pairs = [_check(where, row, text_key, label_key) for where, row in _rows(path)]
    if not pairs:
        raise DataError(f"{path}: no rows")
    distinct = {label for _, label in pairs}
    if len(distinct) < min_labels:
        raise DataError(f"{path}: {len(distinct)} distinct label(s) ({', '.join(sorted(distinct))}); "
                        f"classification needs at least {min_labels}")
    return pairs


def check_labels(path: str | Path, pairs: list[tuple[str, str]], labels: list[str]) -> None:
    """Every label in `pairs` must be one of `labels` (data.labels or those of the train file)."""
    unknown = sorted({label for _, label in pairs} - set(labels))
    if unknown:
        raise DataError(f"{path}: labels {unknown} are not among the known labels {labels}")


def as_conversations(pairs: list[tuple[str, str]], source: str = "") -> list[Conversation]:
    """Each row as a two-turn conversation: user says the text, the assistant answers the label."""
    return [Conversation([Turn("user", content=text), Turn("assistant", content=label)],
                         source=f"{source}:{i}", meta={"label": label})
            for i, (text, label) in enumerate(pairs, 1)]
