"""The `search_hotels` tool: its JSON schema, a hand-written argument validator, and the search.

`search_hotels` never raises on bad arguments: it answers {"ok": False, "error": ...} so a model
calling it sees what was wrong, numbers SQLite cannot hold and text with lone surrogates (which a
JSON escape can carry) included. All SQL is parameterised; the name filter is a substring match
in which `%` and `_` are literal characters.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

HOTEL_TYPES = ("经济型", "舒适型", "高档型", "豪华型")
RANGES = (("price_range_lower", "price_range_upper"), ("rating_range_lower", "rating_range_upper"))
NUMBER_KEYS = tuple(k for pair in RANGES for k in pair)

SEARCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "酒店名称或其中一部分，如“天伦王朝”"},
        "type": {"type": "string", "enum": list(HOTEL_TYPES), "description": "酒店类型"},
        "facilities": {
            "type": "array",
            "items": {"type": "string"},
            "description": "必须全部具备的酒店设施，如[\"健身房\", \"接机服务\"]",
        },
        "price_range_lower": {"type": "number", "description": "每晚价格下限（元，含）"},
        "price_range_upper": {"type": "number", "description": "每晚价格上限（元，含）"},
        "rating_range_lower": {"type": "number", "description": "评分下限（含，满分5分）"},
        "rating_range_upper": {"type": "number", "description": "评分上限（含，满分5分）"},
    },
    "required": [],
    "additionalProperties": False,
}
VALID_KEYS = tuple(SEARCH_SCHEMA["properties"])

TOOL_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "search_hotels",
        "description": "按名称、类型、设施、价格区间和评分区间查询北京的酒店，结果按评分从高到低、价格从低到高排序。",
        "parameters": SEARCH_SCHEMA,
    },
}


SQLITE_INT = (-(2 ** 63), 2 ** 63 - 1)  # an int outside this overflows SQLite's INTEGER


def _is_number(value: Any) -> bool:
    # bool is a subclass of int in Python but never a number in JSON
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return SQLITE_INT[0] <= value <= SQLITE_INT[1]
    return isinstance(value, float) and math.isfinite(value)


def is_text(value: str) -> bool:
    """Encodable as UTF-8 (SQLite's encoding): no lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _nonblank_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and is_text(value)


def validate_arguments(args: Any) -> list[str]:
    """Return a list of error messages for `args` against SEARCH_SCHEMA; empty means valid."""
    if not isinstance(args, dict):
        return [f"arguments must be a JSON object, got {type(args).__name__}"]
    errors = []
    for key in args:
        if key not in VALID_KEYS:
            errors.append(f"unknown argument {_short(key)}; valid arguments: {', '.join(VALID_KEYS)}")
    if "name" in args and not _nonblank_str(args["name"]):
        errors.append(f"name must be a non-empty string of valid text, got {_short(args['name'])}")
    if "type" in args and args["type"] not in HOTEL_TYPES:
        errors.append(f"type must be one of {', '.join(HOTEL_TYPES)}, got {_short(args['type'])}")
    if "facilities" in args:
        facilities = args["facilities"]
        if not isinstance(facilities, list):
            errors.append(f"facilities must be a list of strings, got {type(facilities).__name__}")
        elif not all(_nonblank_str(f) for f in facilities):
            errors.append(f"facilities must be a list of non-empty strings of valid text, got {_short(facilities)}")
    for key in NUMBER_KEYS:
        if key in args and not _is_number(args[key]):
            errors.append(f"{key} must be a finite number within ±2^63, got {_short(args[key])}")
    for lower, upper in RANGES:
        lo, hi = args.get(lower), args.get(upper)
        if _is_number(lo) and _is_number(hi) and lo > hi:
            errors.append(f"{lower} ({lo}) is greater than {upper} ({hi})")
    return errors


def _short(value: Any, limit: int = 80) -> str:
    """repr of a client's value, cut short: a 10^6-digit number or a huge list would flood the error."""
    try:
        text = repr(value)
    except ValueError:  # int repr beyond Python's digit limit
        return f"an integer of over {limit} digits"
    return text if len(text) <= limit else text[:limit] + "..."


def _escape_like(text: str) -> str:
    """Make LIKE's wildcards literal; paired with ESCAPE '\\' in the query."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _build_query(args: dict, limit: int) -> tuple[str, list[Any]]:
    where, params = [], []
    if "name" in args:
        where.append("h.name LIKE ? ESCAPE '\\'")
        params.append(f"%{_escape_like(args['name'].strip())}%")
    if "type" in args:
        where.append("h.type = ?")
        params.append(args["type"])
    for key, column, op in (
        ("price_range_lower", "price", ">="), ("price_range_upper", "price", "<="),
        ("rating_range_lower", "rating", ">="), ("rating_range_upper", "rating", "<="),
    ):
        if key in args:
            where.append(f"h.{column} {op} ?")  # column and operator come from the fixed table above
            params.append(args[key])
    for facility in dict.fromkeys(f.strip() for f in args.get("facilities", [])):
        where.append("EXISTS (SELECT 1 FROM facilities f WHERE f.hotel_id = h.id AND f.facility = ?)")
        params.append(facility)
    sql = "SELECT h.id, h.name, h.type, h.address, h.subway, h.phone, h.price, h.rating FROM hotels h"
    if where:
        sql += " WHERE " + " AND ".join(where)
    # unknown prices sort after known ones; id makes ties deterministic
    sql += " ORDER BY h.rating DESC, h.price IS NULL, h.price ASC, h.id ASC LIMIT ?"
    params.append(limit)
    return sql, params


# Records shown per search: 3 keeps a return turn near 250 tokens on gemma3 (5 cost ~450), enough
# to recommend one hotel and mention alternatives.
DEFAULT_LIMIT = 3


def search_hotels(conn: sqlite3.Connection, args: Any, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """Search hotels matching every given argument; best rated first, then cheapest; at most `limit`.

    Returns {"ok": True, "records": [...]} with records {"name", "type", "address", "subway",
    "phone", "facilities", "price", "rating"} (price may be None), or {"ok": False, "error": str}.
    """
    errors = validate_arguments(args)
    if not (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1):
        errors.append(f"limit must be a positive integer, got {limit!r}")
    if errors:
        return {"ok": False, "error": "; ".join(errors)}
    sql, params = _build_query(args, limit)
    try:
        rows = conn.execute(sql, params).fetchall()
        records = []
        for hid, name, htype, address, subway, phone, price, rating in rows:
            facilities = [r[0] for r in conn.execute(
                "SELECT facility FROM facilities WHERE hotel_id = ? ORDER BY pos", (hid,))]
            records.append({"name": name, "type": htype, "address": address, "subway": subway,
                            "phone": phone, "facilities": facilities, "price": price, "rating": rating})
    except (sqlite3.Error, OverflowError, UnicodeError) as e:  # validated above; kept so the tool never raises
        return {"ok": False, "error": f"database error: {e}"}
    return {"ok": True, "records": records}
