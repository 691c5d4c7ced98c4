"""The hotel SQLite database: schema, synthetic build, CrossWOZ import, read-only connect.

Schema: `hotels(id, name UNIQUE, type, address, subway, phone, price NULL, rating)` and
`facilities(hotel_id, pos, facility)`, one row per facility so a facility filter is an exact
string match per facility. Every writer builds into a temporary file and renames it into place.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from tunelab.domains.hotel.gen_hotels import generate_hotels
from tunelab.domains.hotel.tool import SQLITE_INT, is_text
from tunelab.utils.errors import DataError
from tunelab.utils.io import atomic_path

SCHEMA = """
CREATE TABLE hotels (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT,
    address TEXT,
    subway TEXT,
    phone TEXT,
    price INTEGER NULL,
    rating REAL
);
CREATE TABLE facilities (
    hotel_id INTEGER NOT NULL REFERENCES hotels(id),
    pos INTEGER NOT NULL,
    facility TEXT NOT NULL,
    PRIMARY KEY (hotel_id, facility)
);
CREATE INDEX facilities_by_name ON facilities(facility, hotel_id);
CREATE INDEX hotels_by_rank ON hotels(rating DESC, price);
"""
MAX_EXAMPLES = 3


def _write_db(path: str | Path, hotels: Iterable[dict]) -> None:
    """Write hotel dicts (already clean and uniquely named) into a fresh database at `path`."""
    with atomic_path(path) as tmp:
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(SCHEMA)
            for hid, h in enumerate(hotels, start=1):
                conn.execute(
                    "INSERT INTO hotels VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (hid, h["name"], h["type"], h["address"], h["subway"], h["phone"], h["price"], h["rating"]),
                )
                conn.executemany(
                    "INSERT INTO facilities VALUES (?, ?, ?)",
                    [(hid, pos, f) for pos, f in enumerate(h["facilities"])],
                )
            conn.commit()
        finally:
            conn.close()


def _stats(path: Path, hotels: list[dict]) -> dict[str, Any]:
    return {
        "path": str(path),
        "hotels": len(hotels),
        "by_type": dict(sorted(Counter(h["type"] for h in hotels).items())),
        "facilities": len({f for h in hotels for f in h["facilities"]}),
        "null_prices": sum(h["price"] is None for h in hotels),
    }


def build_db(path: str | Path, seed: int = 0, n: int = 1000) -> dict[str, Any]:
    """Build a synthetic Beijing hotel database of `n` hotels at `path`, deterministic in `seed`.

    Returns stats: path, hotels, by_type, facilities (distinct count), null_prices.
    """
    hotels = generate_hotels(seed, n)
    _write_db(path, hotels)
    return _stats(Path(path), hotels)


def _load_json(path: Path) -> Any:
    """Parse a JSON file; a missing file or bad JSON becomes a DataError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON at column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read") from None


def _note(report: dict, key: str, example: Any) -> None:
    """Count one cleaning event and keep the first few examples of it."""
    report["counts"][key] += 1
    examples = report["examples"].setdefault(key, [])
    if len(examples) < MAX_EXAMPLES:
        examples.append(example)


def _clean_text(value: Any, field: str, name: str, report: dict) -> str | None:
    if value is None:
        return None
    text = str(value)
    if not is_text(text):
        _note(report, f"bad_{field}", f"{name}: {text!r}")
        return None
    if text != text.strip():
        _note(report, "whitespace_stripped", f"{name}: {field}")
    return text.strip() or None


def _clean_number(value: Any, kind: type, field: str, name: str, report: dict) -> int | float | None:
    """Numbers pass through; numeric strings are converted; anything else becomes NULL (counted)."""
    if value is None:
        _note(report, f"null_{field}", name)
        return None
    converted = not (isinstance(value, (int, float)) and not isinstance(value, bool))
    try:
        number = kind(float(str(value).strip())) if converted else kind(value)
        if not (math.isfinite(number) and SQLITE_INT[0] <= number <= SQLITE_INT[1]):
            raise ValueError("out of range")
    except (ValueError, OverflowError):  # not a number, NaN, infinite, or beyond SQLite's integers
        _note(report, f"bad_{field}", f"{name}: {str(value)[:40]!r}")
        return None
    if converted:
        _note(report, f"converted_{field}", f"{name}: {value!r}")
    return number


def _clean_facilities(raw: Any, name: str, report: dict) -> list[str]:
    if not isinstance(raw, list):
        if raw is not None:
            _note(report, "bad_facility_list", f"{name}: {type(raw).__name__}")
        return []
    out: list[str] = []
    for item in raw:
        text = item.strip() if isinstance(item, str) and is_text(item) else ""
        if not text:
            _note(report, "blank_facilities_dropped", f"{name}: {item!r}")
        elif text in out:
            _note(report, "duplicate_facilities_dropped", f"{name}: {text}")
        else:
            if text != item:
                _note(report, "whitespace_stripped", f"{name}: facility {text}")
            out.append(text)
    return out


def _clean_row(row: Any, index: int, report: dict) -> dict | None:
    """One `[name, {...}]` pair -> hotel dict, or None when unusable (counted as skipped)."""
    if not (isinstance(row, list) and len(row) == 2 and isinstance(row[1], dict)):
        _note(report, "skipped_malformed", f"row {index}")
        return None
    rec = row[1]
    name = rec.get("名称") if isinstance(rec.get("名称"), str) else row[0]
    name = name.strip() if isinstance(name, str) and is_text(name) else ""
    if not name:
        _note(report, "skipped_malformed", f"row {index}: no name")
        return None
    if rec.get("领域", "酒店") != "酒店":
        _note(report, "skipped_other_domain", f"{name}: {rec.get('领域')}")
        return None
    return {
        "name": name,
        "type": _clean_text(rec.get("酒店类型"), "酒店类型", name, report),
        "address": _clean_text(rec.get("地址"), "地址", name, report),
        "subway": _clean_text(rec.get("地铁"), "地铁", name, report),
        "phone": _clean_text(rec.get("电话"), "电话", name, report),
        "price": _clean_number(rec.get("价格"), int, "price", name, report),
        "rating": _clean_number(rec.get("评分"), float, "rating", name, report),
        "facilities": _clean_facilities(rec.get("酒店设施"), name, report),
    }


def import_crosswoz(json_path: str | Path, db_path: str | Path) -> dict[str, Any]:
    """Import CrossWOZ `hotel_db.json` into a fresh database at `db_path`.

    Hotels with a null price are kept with price NULL; blank facility strings are dropped;
    text is stripped; rows without a name and repeated names are skipped. Returns a report:
    {"rows_read", "hotels", "counts": {event: n}, "examples": {event: [...]}}.
    Raises DataError naming the file (and line for bad JSON) when it cannot be read.
    """
    json_path = Path(json_path)
    data = _load_json(json_path)
    if not isinstance(data, list):
        raise DataError(f"{json_path}: expected a JSON list of [name, {{...}}] pairs, got {type(data).__name__}")
    report: dict[str, Any] = {"rows_read": len(data), "hotels": 0, "counts": Counter(), "examples": {}}
    hotels: list[dict] = []
    seen: set[str] = set()
    for index, row in enumerate(data):
        hotel = _clean_row(row, index, report)
        if hotel is None:
            continue
        if hotel["name"] in seen:
            _note(report, "duplicate_names_skipped", hotel["name"])
            continue
        seen.add(hotel["name"])
        hotels.append(hotel)
    if not hotels:
        raise DataError(f"{json_path}: no usable hotel rows among {len(data)}")
    _write_db(db_path, hotels)
    report["hotels"] = len(hotels)
    report["counts"] = dict(sorted(report["counts"].items()))
    return report


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the hotel database read-only. Raises DataError if missing or not a hotel database."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: hotel database not found (build one with build_db or import_crosswoz)")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("SELECT 1 FROM hotels JOIN facilities LIMIT 1").fetchall()
    except sqlite3.DatabaseError as e:
        conn.close()
        raise DataError(f"{path}: not a hotel database ({e})") from None
    return conn
