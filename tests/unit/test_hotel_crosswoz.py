"""CrossWOZ dialog import: the hotel part of every dialog, act -> search argument mapping, what is dropped and
why, records named first, and the real validation file (skips when absent)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tunelab.domains.hotel import (build_db, connect, import_crosswoz, import_dialogs, search_hotels,
                                   validate_arguments)
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
    # dialog 2 mixes a hotel and a restaurant goal: its hotel turn is kept now
    assert report["kept"] == 2 and report["dropped_dialogs"] == {} and report["dialogs_read"] == 2
    assert report["counts"]["search_turns"] == 4 and report["counts"]["user_turns"] == 5
    d = dialogs[0]
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
    assert report["counts"]["search_turns"] == 3


def test_read_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        import_dialogs(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{\n\"a\": }", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json:2: invalid JSON"):
        import_dialogs(tmp_path / "bad.json")


def test_real_val_split(tmp_path):
    src = CROSSWOZ / "val.json.zip"
    if not src.is_file():
        pytest.skip(f"{src} not present")
    import_crosswoz(CROSSWOZ / "hotel_db.json", tmp_path / "cw.db")
    dialogs, report = import_dialogs(src, tmp_path / "cw.db")
    assert report["kept"] >= 150 and report["kept"] == len(dialogs)
    assert report["kept"] + sum(report["dropped_dialogs"].values()) == report["dialogs_read"]
    c = report["counts"]
    assert c["user_turns"] + sum(report["dropped_turns"].values()) == c["user_turns_read"]
    assert c["user_turns"] == c["assistant_turns"] and c["search_turns"] >= report["kept"]
    assert {"other_domain", "near_place", "unservable_request", "mixed_domain"} <= set(report["dropped_turns"])
    assert all(1 <= len(report["examples"][r]) <= 5 for r in report["dropped_turns"])
    conn = connect(tmp_path / "cw.db")
    for d in dialogs:
        assert d["dialog"][0]["role"] == "user" and d["dialog"][-1]["role"] == "assistant"
        for t in d["dialog"]:
            if t["role"] == "search":
                assert t["arguments"] and validate_arguments(t["arguments"]) == []
                everything = {r["name"] for r in search_hotels(conn, t["arguments"], limit=2000)["records"]}
            if t["role"] == "return":  # every record is one the tool returns for the search's arguments
                assert {r["name"] for r in t["records"]} <= everything


# ---------------------------------------------------------------- multi-domain dialogs: what is kept and why

def usr(content, acts, informed=()):
    """A user message whose user_state marks the (goal id, slot) pairs in `informed` as informed."""
    state = [[g, "酒店", slot, "", True] for g, slot in informed]
    return {"content": content, "role": "usr", "dialog_act": acts, "user_state": state}


def sys(content, names=(), act="Inform"):
    return {"content": content, "role": "sys", "dialog_act": [[act, "酒店", "名称", n] for n in names]}


def convert(tmp_path, goal, messages, db=None):
    src = tmp_path / "d.json"
    src.write_text(json.dumps({"7": {"goal": goal, "messages": messages}}, ensure_ascii=False), encoding="utf-8")
    return import_dialogs(src, db)


def searches(dialogs):
    return [t["arguments"] for d in dialogs for t in d["dialog"] if t["role"] == "search"]


GOAL2 = [[1, "酒店", "酒店类型", "经济型", False], [2, "酒店", "评分", "4.5分以上", False],
         [3, "餐馆", "名称", "", False]]


def test_new_sub_goal_starts_from_empty_and_ranges_map_to_numbers(tmp_path):
    dialogs, report = convert(tmp_path, GOAL2, [
        usr("经济型，300到400元的。", [["Inform", "酒店", "酒店类型", "经济型"], ["Inform", "酒店", "价格", "300-400元"]],
            [(1, "酒店类型")]), sys("甲。", ["甲"]),
        usr("再给朋友找一家4.5分以上的。", [["Inform", "酒店", "评分", "4.5分以上"]], [(1, "酒店类型"), (2, "评分")]),
        sys("乙。", ["乙"]),
    ])
    first, second = searches(dialogs)
    assert first == {"type": "经济型", "price_range_lower": 300, "price_range_upper": 400}
    assert all(type(v) is int for k, v in first.items() if k.startswith("price"))
    assert second == {"rating_range_lower": 4.5} and type(second["rating_range_lower"]) is float


def test_mixed_and_other_domain_turns_dropped_and_their_constraints_not_carried(tmp_path):
    dialogs, report = convert(tmp_path, GOAL2, [
        usr("找家餐馆。", [["Inform", "餐馆", "名称", "丙"]]), sys("丙餐馆。"),
        usr("丙附近的经济型酒店，也帮我订个桌。", [["Inform", "酒店", "酒店类型", "经济型"], ["Inform", "餐馆", "名称", "丙"]],
            [(1, "酒店类型")]), sys("甲。", ["甲"]),
        usr("要300-400元的。", [["Inform", "酒店", "价格", "300-400元"]], [(1, "酒店类型")]), sys("乙。", ["乙"]),
        usr("谢谢。", [["General", "thank", "none", "none"]]), sys("不客气。"),
    ])
    assert searches(dialogs) == [{"price_range_lower": 300, "price_range_upper": 400}]
    assert report["dropped_turns"] == {"other_domain": 1, "mixed_domain": 1}
    assert [t["role"] for t in dialogs[0]["dialog"]] == ["user", "search", "return", "assistant", "user", "assistant"]
    assert report["examples"]["mixed_domain"] == ["7: 丙附近的经济型酒店，也帮我订个桌。"]


def test_sub_goal_near_a_place_is_dropped_whole(tmp_path):
    goal = [[1, "景点", "名称", "", False], [2, "酒店", "名称", "出现在id=1的周边酒店里", False],
            [2, "酒店", "酒店类型", "豪华型", False]]
    dialogs, report = convert(tmp_path, goal, [
        usr("景点周边的豪华型酒店？", [["Inform", "酒店", "酒店类型", "豪华型"]], [(2, "酒店类型")]), sys("甲。", ["甲"]),
        usr("甲的电话？", [["Request", "酒店", "电话", ""]]), sys("010-1。"),
        usr("谢谢。", [["General", "thank", "none", "none"]]), sys("不客气。"),
    ])
    assert dialogs == [] and report["dropped_dialogs"] == {"no_hotel_search": 1}
    assert report["dropped_turns"] == {"near_place": 2, "general_elsewhere": 1}


def test_select_act_marks_the_sub_goal_near_a_place(tmp_path):
    dialogs, report = convert(tmp_path, GOAL2, [
        usr("经济型的。", [["Inform", "酒店", "酒店类型", "经济型"]], [(1, "酒店类型")]), sys("甲。", ["甲"]),
        usr("就在景点附近找4.5分以上的。", [["Inform", "酒店", "评分", "4.5分以上"], ["Select", "酒店", "源领域", "景点"]],
            [(1, "酒店类型"), (2, "评分")]), sys("乙。", ["乙"]),
        usr("乙的地址？", [["Request", "酒店", "地址", ""]], [(1, "酒店类型"), (2, "评分")]), sys("某路。"),
    ])
    assert searches(dialogs) == [{"type": "经济型"}] and report["dropped_turns"] == {"near_place": 2}


def test_unservable_request_dropped_and_a_later_follow_up_kept(tmp_path):
    dialogs, report = convert(tmp_path, GOAL2, [
        usr("经济型的。", [["Inform", "酒店", "酒店类型", "经济型"]], [(1, "酒店类型")]), sys("甲。", ["甲"]),
        usr("周边有什么景点？", [["Request", "酒店", "周边景点", ""]]), sys("有丁。"),
        usr("电话呢？", [["Request", "酒店", "电话", ""]]), sys("010-1。"),
    ])
    assert [t.get("content") for t in dialogs[0]["dialog"] if t["role"] == "user"] == ["经济型的。", "电话呢？"]
    assert report["dropped_turns"] == {"unservable_request": 1}


def test_name_search_alone_unless_the_hotel_is_in_the_records(tmp_path):
    build_db(tmp_path / "h.db", n=200)
    top = search_hotels(connect(tmp_path / "h.db"), {"type": "经济型"})["records"][0]["name"]
    dialogs, report = convert(tmp_path, GOAL2, [
        usr("经济型的。", [["Inform", "酒店", "酒店类型", "经济型"]], [(1, "酒店类型")]), sys("甲。", [top]),
        usr(f"{top}电话？", [["Inform", "酒店", "名称", top], ["Request", "酒店", "电话", ""]]), sys("010-1。"),
        usr("北京饭店呢？", [["Inform", "酒店", "名称", "北京饭店"]]), sys("没有。"),
    ], tmp_path / "h.db")
    assert searches(dialogs) == [{"type": "经济型"}, {"name": "北京饭店"}]
    assert report["counts"]["name_already_in_records"] == 1


def test_records_put_the_hotels_the_reply_names_first(tmp_path):
    build_db(tmp_path / "h.db", n=200)
    conn = connect(tmp_path / "h.db")
    ranked = [r["name"] for r in search_hotels(conn, {"type": "经济型"}, limit=50)["records"]]
    other = search_hotels(conn, {"type": "豪华型"})["records"][0]["name"]
    dialogs, report = convert(tmp_path, GOAL2, [
        usr("经济型的。", [["Inform", "酒店", "酒店类型", "经济型"]], [(1, "酒店类型")]),
        sys("推荐两家。", [ranked[6], other, ranked[4]], act="Recommend"),
    ], tmp_path / "h.db")
    records = [r["name"] for t in dialogs[0]["dialog"] if t["role"] == "return" for r in t["records"]]
    assert records == [ranked[6], ranked[4], ranked[0]]  # named (matching) first, then the search's best
    assert report["counts"]["named_not_in_search"] == 1 and other not in records


def test_only_a_turn_that_states_a_constraint_searches_by_constraints(tmp_path):
    build_db(tmp_path / "h.db", n=200)
    top = search_hotels(connect(tmp_path / "h.db"), {"type": "经济型"})["records"][0]["name"]
    dialogs, report = convert(tmp_path, GOAL2, [
        usr("经济型的。", [["Inform", "酒店", "酒店类型", "经济型"]], [(1, "酒店类型")]), sys("甲。", [top]),
        # names the hotel and checks a facility of the goal on it: answered from the records
        usr(f"{top}有会议室吗？", [["Inform", "酒店", "名称", top], ["Inform", "酒店", "酒店设施-会议室", "是"]]),
        sys("有。"),
        usr("地址呢？", [["Request", "酒店", "地址", ""]]), sys("某路。"),
        # dropped (周边), and it named a hotel: the plain question after it has no search to stand on
        usr("北京饭店周边有什么景点？", [["Inform", "酒店", "名称", "北京饭店"], ["Request", "酒店", "周边景点", ""]]),
        sys("有丁。"),
        usr("价格呢？", [["Request", "酒店", "价格", ""]]), sys("500元。"),
    ], tmp_path / "h.db")
    assert searches(dialogs) == [{"type": "经济型"}]
    user_turns = [t["content"] for t in dialogs[0]["dialog"] if t["role"] == "user"]
    assert user_turns == ["经济型的。", f"{top}有会议室吗？", "地址呢？"]
    assert report["dropped_turns"] == {"unservable_request": 1, "no_search_before": 1}
