"""Hotel database: deterministic synthetic build, CrossWOZ import with dirty rows, connect errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tunelab.domains.hotel import build_db, connect, import_crosswoz
from tunelab.utils.errors import DataError

CROSSWOZ = Path(__file__).resolve().parents[2].parent / "shared/data/crosswoz"
TYPES = {"经济型", "舒适型", "高档型", "豪华型"}


def dump(path):
    with sqlite3.connect(path) as conn:
        return (conn.execute("SELECT * FROM hotels ORDER BY id").fetchall(),
                conn.execute("SELECT * FROM facilities ORDER BY hotel_id, pos").fetchall())


def test_build_is_deterministic_per_seed(tmp_path):
    build_db(tmp_path / "a.db", seed=3, n=200)
    build_db(tmp_path / "b.db", seed=3, n=200)
    build_db(tmp_path / "c.db", seed=4, n=200)
    assert dump(tmp_path / "a.db") == dump(tmp_path / "b.db")
    assert dump(tmp_path / "a.db") != dump(tmp_path / "c.db")
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away


def test_build_is_sane(tmp_path):
    stats = build_db(tmp_path / "h.db", seed=0, n=300)
    assert stats["hotels"] == 300 and set(stats["by_type"]) == TYPES
    assert 30 <= stats["facilities"] <= 40
    hotels, facilities = dump(tmp_path / "h.db")
    assert len({h[1] for h in hotels}) == 300
    floors = {}
    for _id, name, htype, address, subway, phone, price, rating in hotels:
        assert htype in TYPES and address.startswith("北京") and address.endswith("号")
        assert "地铁站" in subway and phone.startswith("010-") and len(phone) == 12
        assert 3.0 <= rating <= 5.0 and round(rating, 1) == rating
        if price is not None:
            assert 100 <= price <= 3000
            floors.setdefault(htype, []).append(price)
    avg = {t: sum(p) / len(p) for t, p in floors.items()}
    assert avg["经济型"] < avg["舒适型"] < avg["高档型"] < avg["豪华型"]
    per_hotel = {}
    for hid, _pos, f in facilities:
        per_hotel.setdefault(hid, set()).add(f)
    share = lambda f, t: sum(f in per_hotel.get(h[0], ()) for h in hotels if h[2] == t) / stats["by_type"][t]
    assert share("24小时热水", "经济型") > 0.8
    assert share("室内游泳池", "豪华型") > share("室内游泳池", "经济型")


def test_build_rejects_bad_n(tmp_path):
    with pytest.raises(DataError, match="n must be"):
        build_db(tmp_path / "x.db", n=0)
    assert not (tmp_path / "x.db").exists()


def test_import_cleans_dirty_rows(tmp_path):
    rows = [
        ["甲酒店", {"领域": "酒店", "名称": "甲酒店", "酒店类型": "经济型", "地址": " 北京东城区某路1号 ",
                 "地铁": "东单地铁站A口", "电话": "010-12345678", "酒店设施": ["吹风机", "  ", "\n      ", " 暖气 "],
                 "价格": None, "评分": 4.2}],
        ["乙酒店", {"领域": "酒店", "名称": "乙酒店", "酒店类型": "豪华型", "地址": "北京朝阳区某路2号",
                 "地铁": "国贸地铁站", "电话": "010-87654321", "酒店设施": ["健身房", "SPA", ""], "价格": 900, "评分": 4.8}],
        ["乙酒店", {"领域": "酒店", "名称": "乙酒店", "酒店类型": "豪华型", "酒店设施": [], "价格": 1, "评分": 1.0}],
        "garbage",
    ]
    src = tmp_path / "hotel_db.json"
    src.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    report = import_crosswoz(src, tmp_path / "h.db")
    assert report["rows_read"] == 4 and report["hotels"] == 2
    counts = report["counts"]
    assert counts["null_price"] == 1 and counts["blank_facilities_dropped"] == 3
    assert counts["duplicate_names_skipped"] == 1 and counts["skipped_malformed"] == 1
    assert report["examples"]["null_price"] == ["甲酒店"]
    hotels, facilities = dump(tmp_path / "h.db")
    assert hotels[0][1:] == ("甲酒店", "经济型", "北京东城区某路1号", "东单地铁站A口", "010-12345678", None, 4.2)
    assert [f for h, _p, f in facilities if h == 1] == ["吹风机", "暖气"]
    assert hotels[1][6] == 900


def test_import_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.json: file not found"):
        import_crosswoz(tmp_path / "missing.json", tmp_path / "h.db")
    bad = tmp_path / "bad.json"
    bad.write_text('[\n["a", {}],\n oops]', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json:3: invalid JSON"):
        import_crosswoz(bad, tmp_path / "h.db")
    assert not (tmp_path / "h.db").exists()


def test_connect_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        connect(tmp_path / "none.db")
    (tmp_path / "junk.db").write_text("not sqlite")
    with pytest.raises(DataError, match="not a hotel database"):
        connect(tmp_path / "junk.db")


def test_connect_is_read_only(tmp_path):
    build_db(tmp_path / "h.db", n=20)
    conn = connect(tmp_path / "h.db")
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM hotels")
    conn.close()


def test_import_real_crosswoz_db(tmp_path):
    src = CROSSWOZ / "hotel_db.json"
    if not src.is_file():
        pytest.skip(f"{src} not present")
    report = import_crosswoz(src, tmp_path / "cw.db")
    assert report["hotels"] == report["rows_read"] > 1000
    assert report["counts"]["null_price"] > 50
    assert report["counts"]["blank_facilities_dropped"] >= 1
    from tunelab.domains.hotel import search_hotels
    conn = connect(tmp_path / "cw.db")
    assert "北京天伦王朝酒店" in [r["name"] for r in search_hotels(conn, {"name": "天伦王朝"})["records"]]
    assert conn.execute("SELECT COUNT(*) FROM facilities WHERE trim(facility) = ''").fetchone()[0] == 0
    conn.close()
