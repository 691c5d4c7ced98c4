"""Row I/O shared by the `tunelab data` commands: every readable format in, the same formats out.

A row is kept as its original JSON value, with the line it came from (for JSONL/CSV the file line,
for a .json list or a `datasets` directory its 1-based index), so every message can say where.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.data.readers import READERS, read_rows
from tunelab.data.readers.base import sniff_format
from tunelab.data.readers.preference import refuse_preference
from tunelab.data.schema import Conversation, Turn, check_conversation
from tunelab.data.template import compact_json
from tunelab.utils.errors import ConfigError, DataError
from tunelab.utils.io import atomic_path, write_jsonl, write_text
from tunelab.utils.safety import check_replaceable, mark, replace_dir


@dataclass
class Row:
    line: int
    data: Any = None
    error: str = ""  # set when the row could not even be parsed (malformed JSON)
    raw: str = ""  # the source text of an unparseable line, so it can be reported, not lost


def load_rows(path: str | Path) -> list[Row]:
    """Every row of a .jsonl/.json/.csv file or `datasets` directory; malformed lines come back as
    Rows with `error` set instead of stopping the read. CSV cells left empty read as ""."""
    out = []
    for n, r in read_rows(path):
        if isinstance(r, DataError):
            out.append(Row(n, error=str(r), raw=getattr(r, "raw", "")))
        elif Path(path).suffix.lower() in (".csv", ".tsv"):
            out.append(Row(n, {k: ("" if v is None else v) for k, v in r.items()}))
        else:
            out.append(Row(n, r))
    return out


def is_datasets_target(path: str | Path, to_datasets: bool = False) -> bool:
    """An output path without a suffix (or an explicit flag) means a `datasets` save_to_disk dir."""
    return to_datasets or Path(path).suffix == ""


def write_rows(path: str | Path, rows: list[Any], to_datasets: bool = False) -> None:
    """Write rows atomically in the format the path names: .jsonl, .json, .csv or a `datasets` dir."""
    path = Path(path)
    if is_datasets_target(path, to_datasets):
        _write_datasets_dir(path, rows)
    elif path.suffix.lower() == ".json":
        write_text(path, json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
    elif path.suffix.lower() == ".csv":
        _write_csv(path, rows)
    else:
        write_jsonl(path, rows)


def _write_csv(path: Path, rows: list[Any]) -> None:
    if any(not isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: only flat objects can be written as CSV; use .jsonl")
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        for r in rows:  # nested values travel as JSON text
            w.writerow({k: v if isinstance(v, str) or v is None else compact_json(v) for k, v in r.items()})


def _write_datasets_dir(path: Path, rows: list[Any]) -> None:
    from datasets import Dataset

    if any(not isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: a `datasets` directory holds objects; wrap list rows (e.g. --to messages)")
    check_replaceable(path, "OUT")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        Dataset.from_list(rows).save_to_disk(str(tmp))
        _check_survives(rows, tmp, path)
        mark(tmp, "datasets")
        replace_dir(tmp, path, "OUT")  # the old copy goes only once the new one is complete
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: cannot write a `datasets` directory ({e})") from None


def _check_survives(rows: list[Any], tmp: Path, path: Path) -> None:
    """Arrow pads keys a nested object lacks with nulls (hotel search arguments would gain
    `"name": null`): refuse a directory whose rows no longer read as the same conversations."""
    for i, ((_, back), row) in enumerate(zip(read_rows(tmp), rows), 1):
        try:
            before = to_conversation(row, check=False)[0].turns
        except DataError:
            continue  # not a conversation (text-label ...): nothing to compare
        try:
            after = to_conversation(back, check=False)[0].turns
        except DataError:
            after = None
        if after != before:
            raise DataError(f"{path}: row {i} would not read back the same from a `datasets` directory "
                            "(Arrow fills missing nested keys with null); write .jsonl, or convert --to messages")


def check_format(fmt: str, extra: tuple[str, ...] = ()) -> None:
    """ConfigError unless `fmt` is auto, a registered reader, or one of `extra`."""
    valid = ("auto", *READERS, *extra)
    if fmt not in valid:
        raise ConfigError(f"--format '{fmt}' is unknown; valid: {', '.join(valid)}")


def to_conversation(data: Any, fmt: str = "auto", check: bool = True) -> tuple[Conversation, str]:
    """A row as a Conversation (checked against the schema unless `check` is False) and the format
    name; DataError says why not."""
    if fmt != "auto" and fmt not in READERS:
        raise DataError(f"data format '{fmt}' is unknown; valid: auto, {', '.join(READERS)}")
    refuse_preference(data)
    name = fmt if fmt != "auto" else sniff_format(data)
    if name is None:
        raise DataError(f"cannot tell the format of this row; valid formats: {', '.join(READERS)}")
    conv = READERS[name].parse(data)
    if check:
        check_conversation(conv)
    return conv, name


def turn_text(t: Turn) -> str:
    """What a turn says: its content, or the tool name + arguments, or the records, as compact JSON."""
    if t.role == "tool_call":
        return f"{t.name}{compact_json(t.arguments)}"
    if t.role == "tool_result":
        return t.records if isinstance(t.records, str) else compact_json(t.records)
    return t.content


def conversation_text(conv: Conversation) -> str:
    return "\n".join(f"{t.role}: {turn_text(t)}" for t in conv.turns)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def field_value(data: Any, field: str, line: int, path: str | Path = "") -> Any:
    """The top-level `field` of a row; DataError naming the line when it is missing."""
    if not isinstance(data, dict) or field not in data:
        raise DataError(f"{path}:{line}: row has no field '{field}'")
    return data[field]


def label_key(value: Any) -> str:
    """A hashable, printable class label for any JSON value."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def valid_rows(rows: list[Row], path: str | Path) -> list[Row]:
    """The rows, or DataError naming the first unparseable line (for commands that need all rows)."""
    for r in rows:
        if r.error:
            raise DataError(f"{path}:{r.line}: {r.error} (run `tunelab data validate` / `clean` first)")
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows
