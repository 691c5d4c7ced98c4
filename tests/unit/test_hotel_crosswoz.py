"""CrossWOZ dialog import: hotel-only filter, act -> search argument mapping, real data smoke test."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tunelab.domains.hotel import build_db, import_dialogs, validate_arguments
from tunelab.domains.hotel.crosswoz import parse_range
from tunelab.utils.errors import DataError

CROSSWOZ = Path(__file__).resolve().parents[2].parent / "shared/data/crosswoz"


def msg(role, content, acts):
    key = "user_state" if role == "usr" else "sys_state"
    return {"content": content, "role": role, "dialog_act": acts, key: []}


FIXTURE = {
    "1": {
        "sys-usr": [1, 1], "type": "单领域",
        "goal": [[1, "酒店", "酒店类型", "舒适型", False], [1, "酒店", "酒店设施-健身房", "是", False],
                 [1, "酒店", "名称", "", False]],
        "messages": [
            msg("usr", "找个有健身房的舒适型酒店，300到500元。",
                [["Inform", "酒店", "酒店类型", "舒适型"], ["Inform", "酒店", "酒店设施-健身房", "是"],
                 ["Inform", "酒店", "价格", "300-500元"], ["Request", "酒店", "名称", ""]]),
            msg("sys", "推荐甲酒店。", [["Inform", "酒店", "名称", "甲酒店"]]),
            msg("usr", "评分要4.5分以上。", [["Inform", "酒店", "评分", "4.5分以上"]]),
            msg("sys", "那就乙酒店。", [["Inform", "酒店", "名称", "乙酒店"]]),
            msg("usr", "乙酒店电话多少？", [["Inform", "酒店", "名称", "乙酒店"], ["Request", "酒店", "电话", ""]]),
            msg("sys", "010-12345678。", [["Inform", "酒店", "电话", "010-12345678"]]),
            msg("usr", "谢谢。", [["General", "thank", "none", "none"]]),
            msg("sys", "不客气。", [["General", "welcome", "none", "none"]]),
        ],
    },
    "2": {
        "sys-usr": [1, 1], "type": "独立多领域",
        "goal": [[1, "酒店", "酒店类型", "经济型", False], [2, "餐馆", "名称", "", False]],
        "messages": [msg("usr", "找个经济型酒店。", [["Inform", "酒店", "酒店类型", "经济型"]]),
                     msg("sys", "丙酒店。", [])],
    },
}


def roles_and_args(dialog):
    return [(t["role"], t.get("arguments")) for t in dialog["dialog"]]


def test_fixture_conversion(tmp_path):
    src = tmp_path / "val.json"
    src.write_text(json.dumps(FIXTURE, ensure_ascii=False), encoding="utf-8")
    dialogs, report = import_dialogs(src)
    assert report["kept"] == 1 and report["skipped_non_hotel"] == 1 and report["dialogs_read"] == 2
    assert report["counts"]["search_turns"] == 3 and report["counts"]["user_turns"] == 4
    (d,) = dialogs
    assert d["id"] == "crosswoz-1" and d["kind"] == "crosswoz"
    first = {"type": "舒适型", "facilities": ["健身房"], "price_range_lower": 300, "price_range_upper": 500}
    assert roles_and_args(d) == [
        ("user", None), ("search", first), ("return", None), ("assistant", None),
        ("user", None), ("search", {**first, "rating_range_lower": 4.5}), ("return", None), ("assistant", None),
        ("user", None), ("search", {"name": "乙酒店"}), ("return", None), ("assistant", None),
        ("user", None), ("assistant", None),
    ]
    assert d["dialog"][0]["content"] == "找个有健身房的舒适型酒店，300到500元。"
    assert all(t["records"] == [] for t in d["dialog"] if t["role"] == "return")
    assert all(validate_arguments(t["arguments"]) == [] for t in d["dialog"] if t["role"] == "search")


def test_zip_and_db_records(tmp_path):
    src = tmp_path / "val.json.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("val.json", json.dumps(FIXTURE, ensure_ascii=False))
    build_db(tmp_path / "h.db", n=200)
    dialogs, report = import_dialogs(src, tmp_path / "h.db")
    returns = [t for t in dialogs[0]["dialog"] if t["role"] == "return"]
    assert returns[0]["records"] and all("健身房" in r["facilities"] for r in returns[0]["records"])
    assert returns[-1]["records"] == []  # 乙酒店 is not in the synthetic database


@pytest.mark.parametrize("value, unit, integer, expected", [
    ("300-400元", "元", True, (300, 400)), ("1000元以上", "元", True, (1000, None)),
    ("<500", "元", True, (None, 500)), (">300", "元", True, (300, None)), ("500元以下", "元", True, (None, 500)),
    ("4.5分以上", "分", False, (4.5, None)), (">4.5", "分", False, (4.5, None)), ("4-5", "分", False, (4, 5)),
    ("5分", "分", False, (5, 5)), ("便宜", "元", True, None), ("500-300", "元", True, None),
])
def test_parse_range(value, unit, integer, expected):
    assert parse_range(value, unit, integer) == expected


def test_unparsed_values_are_reported(tmp_path):
    bad = json.loads(json.dumps(FIXTURE))
    bad["1"]["messages"][2]["dialog_act"] = [["Inform", "酒店", "评分", "很高"]]
    src = tmp_path / "v.json"
    src.write_text(json.dumps(bad, ensure_ascii=False), encoding="utf-8")
    dialogs, report = import_dialogs(src)
    assert report["counts"]["unparsed_values"] == 1 and report["examples"]["unparsed_values"] == ["评分='很高'"]
    assert report["counts"]["search_turns"] == 2


def test_read_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        import_dialogs(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{\n\"a\": }", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json:2: invalid JSON"):
        import_dialogs(tmp_path / "bad.json")


def test_real_val_split():
    src = CROSSWOZ / "val.json.zip"
    if not src.is_file():
        pytest.skip(f"{src} not present")
    dialogs, report = import_dialogs(src)
    assert 5 <= report["kept"] <= 20 and report["kept"] == len(dialogs)
    assert report["kept"] + report["skipped_non_hotel"] + report["skipped_malformed"] == report["dialogs_read"]
    assert report["counts"]["search_turns"] >= report["kept"]
    for d in dialogs:
        assert d["dialog"][0]["role"] == "user"
        for t in d["dialog"]:
            if t["role"] == "search":
                assert t["arguments"] and validate_arguments(t["arguments"]) == []
