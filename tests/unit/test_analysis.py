"""Error analysis (tunelab.evaluate.analysis), the hotel reply_facts hook, and where they are reported."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tunelab.data.schema import Turn
from tunelab.domains.hotel.facts import reply_facts
from tunelab.evaluate.analysis import analyze, near_miss, range_pairs, slot_errors, worst
from tunelab.evaluate.compare import analysis_markdown, compare
from tunelab.evaluate.job import context_of, score_predictions
from tunelab.evaluate.parse import read_predictions
from tunelab.evaluate.report import write_report
from tunelab.utils.errors import DataError


def S(args, prefix: str = "search") -> str:
    return f"{prefix}:\n" + json.dumps(args, ensure_ascii=False)


def A(text: str) -> str:
    return "assistant: " + text


REC = [{"name": "北京天伦王朝酒店", "price": 815, "phone": "010-58168888", "address": "北京东城区王府井大街50号"},
       {"name": "汉庭酒店(北京王府井店)", "price": 468, "phone": "010-65128899", "address": "北京东城区东安门大街32号"}]


def counts(slots: dict, name: str) -> dict:
    return {k: v for k, v in slots[name].items() if v}


# ----------------------------------------------------------------------------- slots


def test_missed_extra_wrong_near_miss_per_slot():
    gold = {"type": "舒适型", "name": "北京天伦王朝酒店", "rating_range_lower": 4.5, "facilities": ["暖气"]}
    pred = {"type": "豪华型", "name": "北京天伦王朝", "price_range_upper": 500, "facilities": ["暖气"]}
    slots, swaps = slot_errors(pred, gold)
    assert swaps == []
    assert counts(slots, "type") == {"wrong": 1}
    assert counts(slots, "name") == {"near_miss": 1}  # containment: a paraphrase, not a different value
    assert counts(slots, "rating_range_lower") == {"missed": 1}
    assert counts(slots, "price_range_upper") == {"extra": 1}
    assert counts(slots, "facilities") == {"correct": 1}


def test_lists_compare_as_sets_with_near_misses_paired():
    gold = {"facilities": ["暖气", "酒店各处提供wifi", "健身房", "泳池"]}
    pred = {"facilities": ["健身房", "wifi", "暖气", "停车场", "暖气"]}  # other order, a duplicate
    slots, _ = slot_errors(pred, gold)
    assert counts(slots, "facilities") == {"correct": 2, "near_miss": 1, "missed": 1, "extra": 1}
    assert counts(slot_errors({"facilities": ["b", "a"]}, {"facilities": ["a", "b"]})[0], "facilities") == {"correct": 2}


def test_null_and_wrong_shape_are_wrong_never_correct():
    slots, _ = slot_errors({"type": None, "facilities": "暖气", "name": ["x"]},
                           {"type": None, "facilities": ["暖气"], "name": "x"})
    assert all(counts(slots, k) == {"wrong": 1} for k in ("type", "facilities", "name"))


@pytest.mark.parametrize("pred, gold, swapped", [
    ({"price_range_lower": 500, "price_range_upper": 300}, {"price_range_lower": 300, "price_range_upper": 500}, True),
    ({"price_range_lower": 500}, {"price_range_upper": 500}, True),  # the bound put under the other key
    ({"price_range_lower": 300, "price_range_upper": 500}, {"price_range_lower": 300, "price_range_upper": 500}, False),
    ({"price_range_lower": 300, "price_range_upper": 300}, {"price_range_lower": 300, "price_range_upper": 300}, False),
    ({"price_range_lower": 200, "price_range_upper": 300}, {"price_range_lower": 300, "price_range_upper": 500}, False),
])
def test_range_swaps_count_once_not_as_wrong_values(pred, gold, swapped):
    slots, swaps = slot_errors(pred, gold)
    assert swaps == (["price_range"] if swapped else [])
    if swapped:
        assert slots == {}


def test_ranges_come_from_a_generic_rule():
    assert range_pairs(["age_lower", "age_upper", "x_lower", "name"]) == {"age": ("age_lower", "age_upper")}
    slots, swaps = slot_errors({"age_lower": 9, "age_upper": 1, "n": 1}, {"age_lower": 1, "age_upper": 9, "n": 1})
    assert swaps == ["age"] and set(slots) == {"n"}


def test_near_miss_is_containment_of_strings():
    assert near_miss("wifi", "酒店各处提供wifi") and near_miss("北京天伦王朝酒店", "北京天伦王朝")
    assert not near_miss("如家", "汉庭") and not near_miss(500, 5000) and not near_miss("", "x")
    assert not near_miss("a", "a")


# ----------------------------------------------------------------------------- roles


def test_role_confusions_both_ways():
    rows = [
        {"label": S({"type": "舒适型"}), "predict": A("好的")},
        {"label": A("您好"), "predict": S({"type": "舒适型"})},
        {"label": S({"type": "舒适型"}), "predict": S({"a": 1}, "book")},
        {"label": S({"type": "舒适型"}), "predict": "search:\nnot json"},
        {"label": S({"type": "舒适型"}), "predict": "garbage"},
        {"label": A("您好"), "predict": ""},
        {"label": A("您好"), "predict": A("您好")},
        {"label": S({"type": "舒适型"}), "predict": S({"type": "舒适型"})},
    ]
    summary, per_item = analyze(rows)
    assert summary["roles"] == {"call_as_reply": 1, "reply_as_call": 1, "call_as_other_call": 1,
                                "call_unparseable": 1, "call_as_none": 1, "reply_as_none": 1}
    assert summary["n_search_scored"] == 1 and summary["slots"]["type"]["correct"] == 1
    assert [e["confusion"] is None for e in per_item] == [False] * 6 + [True, True]


# ----------------------------------------------------------------------------- hotel reply facts


def test_hotel_reply_facts_supported():
    reply = "推荐您去北京天伦王朝酒店，每晚815元，电话010-58168888，地址是北京东城区王府井大街50号。汉庭酒店(北京王府井店)也不错。"
    assert reply_facts(reply, REC) == {"name": (2, 0), "price": (1, 0), "phone": (1, 0), "address": (1, 0)}


def test_hotel_reply_facts_unsupported_per_kind():
    reply = ("推荐您去北京华京悦大酒店，也可以看看如家酒店(北京王府井店)，天伦王朝每晚900元，电话010-12345678，"
             "位于北京西城区西单北大街120号。把预算提高到600元以内试试。")
    assert reply_facts(reply, REC) == {"name": (2, 2), "price": (1, 1), "phone": (1, 1), "address": (1, 1)}


def test_hotel_generic_phrases_and_echoes_are_no_names():
    assert reply_facts("北京的酒店很多，北京经济型酒店也不少。", REC)["name"] == (0, 0)
    # the user's own words repeated after an empty search: no invented name
    assert reply_facts("抱歉，没有查到北京鑫都饭店。", [], "帮我查一下北京鑫都饭店。")["name"] == (0, 0)
    assert reply_facts("抱歉，没有查到北京鑫都饭店。", [], "")["name"] == (1, 1)


def test_invented_hotel_after_empty_records_and_gold_checked_alike():
    rows = [
        {"label": A("抱歉，没有查到北京鑫都饭店，您可以换个条件。"), "predict": A("推荐您去北京鑫都饭店，每晚300元。"),
         "user": "北京宏庭酒店怎么样？", "records": []},
        {"label": A("北京天伦王朝酒店每晚815元。"), "predict": A("北京天伦王朝酒店每晚900元。"),
         "user": "天伦王朝多少钱？", "records": REC},
        {"label": A("电话是010-58168888。"), "predict": A("电话是010-58168888。"), "user": "电话？", "records": REC},
        {"label": A("您好"), "predict": A("北京华都饭店"), "user": "hi"},  # an old row: no records, not checked
    ]
    summary, per_item = analyze(rows, reply_facts)
    pred, gold = summary["replies"]["predicted"], summary["replies"]["gold"]
    assert pred["n_replies"] == 3 and pred["invented"] == 1 and pred["replies_with_unsupported"] == 2
    assert pred["facts"]["name"] == {"stated": 2, "unsupported": 1, "replies_with_unsupported": 1}
    assert pred["facts"]["price"] == {"stated": 2, "unsupported": 2, "replies_with_unsupported": 2}
    assert gold["invented"] == 1 and gold["replies_with_unsupported"] == 1  # gold names the hotel it did not find
    assert per_item[3]["facts"] is None


def test_a_failing_hook_does_not_crash_the_analysis():
    def broken(reply, records, user):
        raise KeyError("x")

    summary, _ = analyze([{"label": A("a"), "predict": A("b"), "records": []}], broken)
    assert summary["replies"]["predicted"] == {"n_replies": 1, "replies_with_unsupported": 0, "invented": 0,
                                               "facts": {}}


# ----------------------------------------------------------------------------- worst items


def test_worst_orders_confusion_then_errors_then_bleu_and_skips_exact_matches():
    rows = [
        {"label": A("您好，欢迎光临"), "predict": A("您好，欢迎")},                       # high BLEU
        {"label": S({"type": "舒适型", "name": "x"}), "predict": S({"type": "豪华型"})},  # 2 slot errors
        {"label": A("您好，欢迎光临"), "predict": A("不")},                                # BLEU 0
        {"label": S({"type": "舒适型"}), "predict": A("好的")},                           # confusion
        {"label": S({"type": "舒适型"}), "predict": S({"type": "舒适型"})},               # exact
        {"label": S({"type": "舒适型"}), "predict": S({"type": "豪华型"})},               # 1 slot error
    ]
    _, per_item = analyze(rows)
    order = [rows.index(r) for r, _ in worst(rows, per_item, 20)]
    assert order == [3, 1, 5, 2, 0]
    assert len(worst(rows, per_item, 2)) == 2


# ----------------------------------------------------------------------------- rows, files, report, compare


def test_context_of_keeps_the_last_user_turn_and_tool_result():
    ctx = [Turn("user", "a"), Turn("tool_call", name="t", arguments={}), Turn("tool_result", name="t", records=[1]),
           Turn("assistant", "x"), Turn("user", "b")]
    assert context_of(ctx) == {"user": "b", "records": [1]}
    assert context_of([Turn("user", "a")]) == {"user": "a", "records": None}


def test_old_and_new_predictions_files_score(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"label": A("北京天伦王朝酒店"), "predict": A("北京华都饭店")}, ensure_ascii=False) + "\n")
    m = score_predictions(old, "hotel")
    assert m["n_items"] == 1 and m["analysis"]["replies"]["predicted"]["n_replies"] == 0
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"label": A("北京天伦王朝酒店"), "predict": A("北京华都饭店"), "source": "f#2",
                               "user": "有什么推荐", "records": REC}, ensure_ascii=False) + "\n")
    assert read_predictions(new)[0]["records"] == REC
    assert score_predictions(new, "hotel")["analysis"]["replies"]["predicted"]["facts"]["name"]["unsupported"] == 1
    new.write_text(json.dumps({"label": A("x"), "predict": A("x"), "user": 3}) + "\n")
    with pytest.raises(DataError, match=r"new.jsonl:1: 'user' must be a string or null"):
        read_predictions(new)


def test_report_has_analysis_sections_and_worst_items_with_context(tmp_path):
    rows = [{"label": S({"price_range_lower": 300, "price_range_upper": 500}), "user": "300到500的",
             "predict": S({"price_range_lower": 500, "price_range_upper": 300}), "source": "d#2", "records": None},
            {"label": A("北京天伦王朝酒店每晚815元。"), "predict": A("北京天伦王朝酒店每晚900元。"), "source": "d#4",
             "user": "多少钱", "records": REC}]
    metrics = {"n_items": 2, "n_search": 1, "n_assistant": 1, "slot_f1": 0.0}
    metrics["analysis"], per_item = analyze(rows, reply_facts)
    write_report(tmp_path / "report.md", metrics, rows, per_item)
    text = (tmp_path / "report.md").read_text()
    for heading in ("### Role confusions", "### Slot errors", "### Range swaps", "### Reply facts", "worst items"):
        assert heading in text
    assert "`d#2`: price_range lower/upper swapped" in text and "user:    300到500的" in text
    assert "`d#4`: 1 of 1 price not in the records" in text


def _run(tmp_path, name: str, analysis: dict | None):
    run = tmp_path / name
    (run / "eval-test").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")
    (run / "config.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"base_model": "m", "method": "lora"}))
    metrics = {"bleu-4": 1.0, "slot_f1": 2.0, **({"analysis": analysis} if analysis else {})}
    (run / "eval-test" / "metrics.json").write_text(json.dumps(metrics))
    return str(run)


def test_compare_shows_each_runs_error_analysis(tmp_path):
    rows = [{"label": S({"type": "舒适型", "name": "x"}), "predict": S({"type": "豪华型"})},
            {"label": S({"type": "舒适型"}), "predict": A("好")}]
    summary, _ = analyze(rows)
    out = compare([_run(tmp_path, "a", summary), _run(tmp_path, "b", None)])
    assert "## Error analysis" in out
    assert "| role: call as reply | 1 | - |" in out
    assert "| type | 0/0/1/0 | - |" in out and "| name | 1/0/0/0 | - |" in out
    assert analysis_markdown([{"run": "b", "analysis": None}]) == ""
    assert Counter(out.split("\n"))["| | a | b |"] == 2  # the confusion table and the slot table
