"""Row iteration over JSONL/JSON files and the reader registry.

A reader turns one parsed row into a Conversation or raises DataError with the reason; this module
adds the file and line, and either stops or skips-and-counts (`skip_invalid`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from tunelab.data.readers.preference import refuse_preference
from tunelab.data.schema import Conversation, check_conversation
from tunelab.utils.errors import DataError


@dataclass
class Reader:
    name: str
    sniff: Callable[[Any], bool]  # does this row look like my format?
    parse: Callable[[Any], Conversation]


READERS: dict[str, Reader] = {}
# No conversation nests this deep; far deeper rows overflow Python's stack in json and the renderer.
MAX_DEPTH = 100


def register_reader(name: str, sniff: Callable[[Any], bool]):
    def deco(fn: Callable[[Any], Conversation]):
        READERS[name] = Reader(name, sniff, fn)
        return fn

    return deco


def read_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed row) from .jsonl, a .json list, .csv/.tsv (header row), .parquet (row
    number), or a `datasets` directory; a table's `messages`/`conversations`/`tools` cells are parsed as
    JSON. A row that cannot be parsed comes as a DataError (with the source text in `.raw`) in place of
    the row, so callers choose to stop, skip or report it."""
    path = Path(path)
    if path.is_dir():
        yield from _dataset_dir_rows(path)
        return
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    if path.suffix.lower() in (".csv", ".tsv"):
        yield from (_json_cells(n, row) for n, row in _csv_rows(path))
        return
    if path.suffix.lower() == ".parquet":
        yield from (_json_cells(n, row) for n, row in _parquet_rows(path))
        return
    text = _read_utf8(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        except RecursionError:
            raise DataError(f"{path}: JSON nested too deeply to read (limit {MAX_DEPTH} levels)") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: a .json data file must hold a list of rows")
        for i, row in enumerate(data):
            yield i + 1, _too_deep("") if deeper_than(row, MAX_DEPTH) else row  # index stands in for the line
        return
    # split on "\n" only: str.splitlines() would also break at U+2028 inside a JSON string
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            yield lineno, _too_deep(line) if deeper_than(row, MAX_DEPTH) else row
        except json.JSONDecodeError as e:
            err = DataError(f"invalid JSON ({e.msg} at column {e.colno})")
            err.raw = line
            yield lineno, err
        except RecursionError:
            yield lineno, _too_deep(line)


def _read_utf8(path: Path) -> str:
    """The file's text; DataError naming the file and line of the first byte that is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save it as UTF-8") from None
        raise


def _too_deep(raw: str) -> DataError:
    err = DataError(f"JSON nested deeper than {MAX_DEPTH} levels")
    err.raw = raw
    return err


def deeper_than(obj: Any, limit: int) -> bool:
    """Whether lists and dicts in `obj` nest more than `limit` levels (walked without recursion)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack += [(v, depth + 1) for v in (node.values() if isinstance(node, dict) else node)]
    return False


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows as dicts of the header's columns; a missing cell is None; numbered by the record's first
    line (a quoted cell may span lines)."""
    with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: Excel writes a BOM
        reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        start = 2  # line 1 is the header
        try:
            for rec in reader:
                if None in rec:  # DictReader files surplus cells under the key None
                    err = DataError("more cells than header columns")
                    err.raw = json.dumps(rec[None], ensure_ascii=False)
                    yield start, err
                else:
                    yield start, dict(rec)
                start = reader.line_num + 1
        except UnicodeDecodeError:
            _read_utf8(path)  # raises the DataError that names the line
            raise


# Columns of a table (CSV, parquet) that hold JSON: a `messages` cell is a JSON list in a CSV file.
JSON_COLUMNS = ("messages", "conversations", "tools")


def _json_cells(lineno: int, row: Any) -> tuple[int, Any]:
    """A table row with its JSON columns parsed (a cell that is not JSON: a DataError naming the column)."""
    if not isinstance(row, dict):
        return lineno, row
    for col in JSON_COLUMNS:
        cell = row.get(col)
        if isinstance(cell, str) and cell.strip():
            try:
                row[col] = json.loads(cell)
            except (ValueError, RecursionError) as e:
                err = DataError(f"column '{col}': not valid JSON ({str(e)[:120]})")
                err.raw = cell[:500]
                return lineno, err
    return lineno, row


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows of a parquet file as dicts, numbered from 1 (nested columns come as lists and dicts)."""
    try:
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
    except Exception as e:  # pyarrow's errors name no file: say which one and why
        raise DataError(f"{path}: not a readable parquet file ({str(e)[:200]})") from None
    n = 0
    for batch in table.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _dataset_dir_rows(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        from datasets import load_from_disk

        ds = load_from_disk(str(path))
    except Exception as e:
        raise DataError(f"{path}: not a `datasets` directory ({e})") from None
    if hasattr(ds, "keys"):  # a DatasetDict: take its train split
        ds = ds["train"] if "train" in ds else ds[list(ds.keys())[0]]
    for i, row in enumerate(ds):
        yield i + 1, row


def sniff_format(row: Any) -> str | None:
    for reader in READERS.values():
        try:
            if reader.sniff(row):
                return reader.name
        except Exception:
            continue
    return None


def read_conversations(
    path: str | Path, fmt: str = "auto", skip_invalid: bool = False, limit: int = 0
) -> tuple[list[Conversation], int]:
    """Read a whole file. Returns (conversations, number skipped). Errors name file:line and reason."""
    if fmt != "auto" and fmt not in READERS:
        raise DataError(f"data format '{fmt}' is unknown; valid: auto, {', '.join(READERS)}")
    convs: list[Conversation] = []
    skipped = 0
    for lineno, row in read_rows(path):
        where = f"{path}:{lineno}"
        try:
            if isinstance(row, DataError):
                raise row
            refuse_preference(row)
            name = fmt if fmt != "auto" else sniff_format(row)
            if name is None:
                raise DataError(
                    f"cannot tell the format of this row; valid formats: {', '.join(READERS)} "
                    "(set data.format)"
                )
            try:
                conv = READERS[name].parse(row)
            except RecursionError:  # a JSON string inside the row nests too deeply
                raise DataError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
            if any(deeper_than([t.arguments, t.records], MAX_DEPTH) for t in conv.turns):
                raise DataError(f"tool arguments or records nested deeper than {MAX_DEPTH} levels")
            check_conversation(conv)
        except DataError as e:
            if not skip_invalid:
                raise DataError(f"{where}: {e} (set data.skip_invalid=true to skip bad rows)") from None
            skipped += 1
            continue
        conv.source = where
        convs.append(conv)
        if limit and len(convs) >= limit:
            break
    if not convs:
        raise DataError(f"{path}: no valid rows" + (f" ({skipped} skipped)" if skipped else ""))
    return convs, skipped
