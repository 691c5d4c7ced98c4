"""search_hotels: schema validation, SQL safety, name matching, ordering and limit."""

from __future__ import annotations

import sqlite3

import pytest

from tunelab.domains.hotel import SEARCH_SCHEMA, TOOL_SPEC, build_db, connect, search_hotels, validate_arguments
from tunelab.domains.hotel.tool import DEFAULT_LIMIT


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("hotel") / "hotels.db"
    build_db(path, seed=0, n=200)
    conn = connect(path)
    yield path, conn
    conn.close()


def test_schema_shape():
    assert TOOL_SPEC["function"]["name"] == "search_hotels"
    assert TOOL_SPEC["function"]["parameters"] is SEARCH_SCHEMA
    assert SEARCH_SCHEMA["additionalProperties"] is False
    assert SEARCH_SCHEMA["properties"]["type"]["enum"] == ["经济型", "舒适型", "高档型", "豪华型"]
    assert SEARCH_SCHEMA["properties"]["facilities"]["items"] == {"type": "string"}


@pytest.mark.parametrize("args", [
    {}, {"name": "天伦王朝"}, {"type": "豪华型", "facilities": ["健身房", "SPA"]},
    {"price_range_lower": 100, "price_range_upper": 500.5, "rating_range_lower": 4.5, "rating_range_upper": 5},
    {"facilities": []},
])
def test_valid_arguments(args):
    assert validate_arguments(args) == []


@pytest.mark.parametrize("args, fragment", [
    (["type"], "JSON object"),
    ({"city": "北京"}, "unknown argument 'city'; valid arguments: name, type"),
    ({"type": "五星级"}, "type must be one of 经济型"),
    ({"name": 5}, "name must be"),
    ({"name": "  "}, "name must be"),
    ({"facilities": "健身房"}, "facilities must be a list"),
    ({"facilities": ["健身房", 3]}, "non-empty strings"),
    ({"price_range_upper": "500"}, "price_range_upper must be a finite number"),
    ({"price_range_upper": True}, "price_range_upper must be a finite number"),
    ({"rating_range_lower": float("nan")}, "rating_range_lower must be a finite number"),
    ({"price_range_lower": 600, "price_range_upper": 500}, "price_range_lower (600) is greater than price_range_upper (500)"),
    ({"rating_range_lower": 4.8, "rating_range_upper": 4.5}, "rating_range_lower (4.8) is greater"),
])
def test_invalid_arguments(args, fragment, db):
    errors = validate_arguments(args)
    assert any(fragment in e for e in errors), errors
    result = search_hotels(db[1], args)  # never raises
    assert result["ok"] is False and fragment in result["error"]


def test_every_error_reported():
    errors = validate_arguments({"foo": 1, "type": "x", "price_range_lower": False})
    assert len(errors) == 3


@pytest.mark.parametrize("name", ["'; DROP TABLE hotels; --", "%", "_", "%%", "酒店%", "\\", "\"", "如家_"])
def test_sql_metacharacters_are_harmless(name, db):
    path, conn = db
    result = search_hotels(conn, {"name": name})
    assert result == {"ok": True, "records": []}
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT COUNT(*) FROM hotels").fetchone()[0] == 200


def test_wildcards_are_literal(tmp_path):
    from tunelab.domains.hotel.db import _write_db
    rows = [{"name": n, "type": "经济型", "address": "a", "subway": "s", "phone": "p", "price": 200,
             "rating": 4.0, "facilities": ["吹风机"]} for n in ("百分百%酒店", "下划线_酒店", "普通酒店")]
    _write_db(tmp_path / "w.db", rows)
    conn = connect(tmp_path / "w.db")
    assert [r["name"] for r in search_hotels(conn, {"name": "%"})["records"]] == ["百分百%酒店"]
    assert [r["name"] for r in search_hotels(conn, {"name": "_"})["records"]] == ["下划线_酒店"]
    assert search_hotels(conn, {"name": "线_酒"})["records"][0]["name"] == "下划线_酒店"
    conn.close()


def test_short_name_finds_full_name(db):
    conn = db[1]
    full = conn.execute("SELECT name FROM hotels WHERE name LIKE '北京%' AND name NOT LIKE '%(%' LIMIT 1").fetchone()[0]
    core = full[2:-2]  # drop 北京 and the last two characters of the suffix
    names = [r["name"] for r in search_hotels(conn, {"name": core}, limit=50)["records"]]
    assert full in names and all(core in n for n in names)


def test_ordering_limit_and_filters(db):
    conn = db[1]
    args = {"type": "经济型", "price_range_upper": 400, "facilities": ["24小时热水", "吹风机"], "rating_range_lower": 4.0}
    records = search_hotels(conn, args, limit=50)["records"]
    assert records
    keys = [(-r["rating"], r["price"]) for r in records]
    assert keys == sorted(keys)
    for r in records:
        assert r["type"] == "经济型" and r["price"] <= 400 and r["rating"] >= 4.0
        assert {"24小时热水", "吹风机"} <= set(r["facilities"])
        assert set(r) == {"name", "type", "address", "subway", "phone", "facilities", "price", "rating"}
    assert search_hotels(conn, args, limit=3)["records"] == records[:3]
    assert len(search_hotels(conn, {})["records"]) == DEFAULT_LIMIT


def test_facility_match_is_exact(db):
    conn = db[1]
    assert search_hotels(conn, {"facilities": ["wifi"]})["records"] == []
    assert search_hotels(conn, {"facilities": ["24小时"]})["records"] == []
    recs = search_hotels(conn, {"facilities": ["健身房", "SPA"]}, limit=100)["records"]
    assert recs and all({"健身房", "SPA"} <= set(r["facilities"]) for r in recs)


def test_null_price_sorts_last_and_never_matches_a_price_range(tmp_path):
    from tunelab.domains.hotel.db import _write_db
    base = {"type": "经济型", "address": "a", "subway": "s", "phone": "p", "rating": 4.5, "facilities": []}
    _write_db(tmp_path / "n.db", [{**base, "name": "甲", "price": None}, {**base, "name": "乙", "price": 300}])
    conn = connect(tmp_path / "n.db")
    assert [r["name"] for r in search_hotels(conn, {})["records"]] == ["乙", "甲"]
    assert [r["name"] for r in search_hotels(conn, {"price_range_upper": 1000})["records"]] == ["乙"]
    assert search_hotels(conn, {"name": "甲"})["records"][0]["price"] is None
    conn.close()


def test_bad_limit_is_an_error_not_an_exception(db):
    assert search_hotels(db[1], {}, limit=0)["ok"] is False
