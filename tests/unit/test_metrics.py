"""Task metrics pinned to hand-computed values."""

from __future__ import annotations

import json
import math

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from tunelab.evaluate.metrics import (
    bleu4,
    classification_metrics,
    parse_rendered,
    render_turn,
    role_accuracy,
    rouge,
    score_file,
    score_items,
    slot_counts,
    slot_exact_match,
    slot_prf,
    tool_execution_match,
)
from tunelab.utils.errors import DataError


def S(args) -> str:
    return "search:\n" + json.dumps(args, ensure_ascii=False)


def A(text: str) -> str:
    return "assistant: " + text


def item(label: str, predict) -> dict:
    return {"label": label, "predict": predict}


# ----------------------------------------------------------------------------- render / parse


def test_render_and_parse_round_trip():
    s = render_turn({"role": "search", "arguments": {"type": "舒适型", "facilities": ["暖气"]}})
    assert s == 'search:\n{"type": "舒适型", "facilities": ["暖气"]}'
    assert parse_rendered(s) == ("search", {"type": "舒适型", "facilities": ["暖气"]})
    a = render_turn({"role": "assistant", "content": "好的，为您查询。"})
    assert a == "assistant: 好的，为您查询。"
    assert parse_rendered(a) == ("assistant", "好的，为您查询。")
    with pytest.raises(ValueError):
        render_turn({"role": "user", "content": "hi"})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("search:\nnot json", ("search", None)),
        ('search:\n["a", "b"]', ("search", None)),
        ("search:\nnull", ("search", None)),
        ("search:", ("search", None)),
        ("", (None, None)),
        (None, (None, None)),
        (123, (None, None)),
        ("garbage text", (None, None)),
        ("assistant:", ("assistant", "")),
        ('  search: {"a": 1}', ("search", {"a": 1})),
    ],
)
def test_parse_malformed(text, expected):
    assert parse_rendered(text) == expected


# ----------------------------------------------------------------------------- slots


def test_slot_counts_cases():
    gold = {"type": "舒适型", "facilities": ["暖气", "wifi"]}
    # scalar right, one list element right, one wrong, an extra key
    assert slot_counts({"type": "舒适型", "facilities": ["暖气", "泳池"], "price_max": 300}, gold) == (2, 4, 3)
    # wrong value, missing key
    assert slot_counts({"type": "豪华型"}, gold) == (0, 1, 3)
    # reference definition: a predicted scalar against a gold list is wrong (`==`, not `in`)
    assert slot_counts({"facilities": "wifi"}, gold) == (0, 1, 3)
    # a predicted list element against a gold scalar: `==` per element, never a substring test
    assert slot_counts({"type": ["舒适型", "豪华型"]}, gold) == (1, 2, 3)
    assert slot_counts({"type": ["舒适"]}, gold) == (0, 1, 3)
    # null counts as a predicted slot and is never correct, even against a gold null
    assert slot_counts({"rating": None}, {"rating": None}) == (0, 1, 1)
    assert slot_counts({"rating": None}, {"rating": 4}) == (0, 1, 1)
    assert slot_counts({"rating": None}, {}) == (0, 1, 0)
    assert slot_counts({"facilities": [None, "wifi"]}, {"facilities": [None, "wifi"]}) == (1, 2, 2)
    # unparseable / non-dict arguments predict nothing
    assert slot_counts(None, gold) == (0, 0, 3)
    assert slot_counts(["暖气"], gold) == (0, 0, 3)
    # empty list is no slot; duplicates each count (reference definition)
    assert slot_counts({"facilities": []}, gold) == (0, 0, 3)
    assert slot_counts({"facilities": ["暖气", "暖气"]}, {"facilities": ["暖气"]}) == (2, 2, 1)


def test_slot_prf_by_hand():
    items = [
        # correct 2, pred 4, gold 3
        item(S({"type": "舒适型", "facilities": ["暖气", "wifi"]}),
             S({"type": "舒适型", "facilities": ["暖气", "泳池"], "price_max": 300})),
        # wrong value + missing key: correct 0, pred 1, gold 2
        item(S({"name": "如家", "price_min": 100}), S({"name": "汉庭"})),
        # scalar vs gold list, null vs null: both wrong (reference definition): correct 0, pred 2, gold 2
        item(S({"facilities": ["wifi"], "rating": None}), S({"facilities": "wifi", "rating": None})),
        # reply where a search was due: pred 0, gold 1
        item(S({"type": "豪华型"}), A("好的")),
        # search where a reply was due: not counted at all
        item(A("您好"), S({"type": "豪华型", "name": "x"})),
    ]
    r = slot_prf(items)
    assert r["slot_p"] == pytest.approx(100 * 2 / 7)
    assert r["slot_r"] == pytest.approx(100 * 2 / 8)
    assert r["slot_f1"] == pytest.approx(100 * 4 / 15)  # 2*(2/7)*(1/4) / (2/7 + 1/4)


def test_slot_prf_malformed_predictions():
    gold = S({"type": "舒适型", "facilities": ["暖气"]})  # 2 gold slots
    items = [
        item(gold, "search:\nnot json"),
        item(gold, 'search:\n["舒适型"]'),
        item(gold, ""),
        item(gold, None),
        item(gold, "garbage"),
        item(gold, S({"type": "舒适型", "extra": None})),  # 1 correct of 2 predicted
    ]
    r = slot_prf(items)
    assert r["slot_p"] == pytest.approx(50.0)
    assert r["slot_r"] == pytest.approx(100 * 1 / 12)
    assert r["slot_f1"] == pytest.approx(100 * 2 * 0.5 * (1 / 12) / (0.5 + 1 / 12))


def test_slot_prf_nothing_predicted_or_no_search_items():
    assert slot_prf([item(S({"a": 1}), A("x"))]) == {"slot_p": 0.0, "slot_r": 0.0, "slot_f1": 0.0}
    assert slot_prf([item(A("x"), S({"a": 1}))]) == {"slot_p": 0.0, "slot_r": 0.0, "slot_f1": 0.0}
    assert slot_prf([]) == {"slot_p": 0.0, "slot_r": 0.0, "slot_f1": 0.0}


# ----------------------------------------------------------------------------- BLEU / ROUGE


def test_bleu_identical_is_100():
    assert bleu4([item(A("您好，请问需要什么帮助？"), A("您好，请问需要什么帮助？"))]) == pytest.approx(100.0)


def test_bleu_is_char_level_nltk_method3():
    gold, pred = "为您找到了三家舒适型酒店", "为您找到两家舒适型的酒店"
    expected = 100 * sentence_bleu([list(gold)], list(pred), smoothing_function=SmoothingFunction().method3)
    assert bleu4([item(A(gold), A(pred))]) == pytest.approx(expected)
    assert 0 < expected < 100


def test_bleu_short_hypothesis_by_hand():
    # hyp "你好" vs ref "你好吗": p1 = 2/2, p2 = 1/1; p3, p4 have no n-grams -> method3 gives 1/2, 1/4.
    # BP = exp(1 - 3/2). BLEU = exp(-0.5) * (1 * 1 * 1/2 * 1/4) ** (1/4)
    assert math.exp(-0.5) * (1 / 8) ** 0.25 == pytest.approx(0.36064528799877893)
    assert bleu4([item(A("你好吗"), A("你好"))]) == pytest.approx(36.064528799877893)
    # "abxdef" vs "abcdef": p = 5/6, 3/5, 1/4, and 0/3 -> 1/(2*3); BP = 1
    assert bleu4([item(A("abcdef"), A("abxdef"))]) == pytest.approx(100 * (1 / 48) ** 0.25)


def test_bleu_wrong_role_empty_and_mean():
    assert bleu4([item(A("您好"), S({"type": "x"}))]) == 0.0
    assert bleu4([item(A("您好"), A(""))]) == 0.0
    assert bleu4([item(A("您好"), "")]) == 0.0
    assert bleu4([item(A(""), A(""))]) == 0.0
    # mean over assistant-gold items only; search-gold items are skipped
    items = [item(A("您好，请问"), A("您好，请问")), item(A("您好"), "garbage"), item(S({"a": 1}), A("x"))]
    assert bleu4(items) == pytest.approx(50.0)
    assert bleu4([]) == 0.0


def test_rouge_chinese_pair():
    # jieba: ref "我想订 一家 北京 的 酒店", hyp "我要 订 一家 北京 酒店"
    # unigrams 3/5 both ways; bigrams 1/4 (一家 北京); LCS 3
    r = rouge([item(A("我想订一家北京的酒店"), A("我要订一家北京酒店"))])
    assert r["rouge-1"] == pytest.approx(60.0, abs=1e-4)
    assert r["rouge-2"] == pytest.approx(25.0, abs=1e-4)
    assert r["rouge-l"] == pytest.approx(60.0, abs=1e-4)


def test_rouge_empty_and_wrong_role():
    zero = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    assert rouge([item(A("您好"), A(""))]) == zero
    assert rouge([item(A(""), A("您好"))]) == zero
    assert rouge([item(A("您好"), A("   "))]) == zero
    assert rouge([item(A("您好"), S({"a": 1}))]) == zero
    assert rouge([item(A("您好"), None)]) == zero
    assert rouge([]) == zero


# ----------------------------------------------------------------------------- roles, exact, exec


def test_role_accuracy():
    items = [
        item(A("a"), A("b")),  # hit
        item(S({"a": 1}), "search:\nbroken"),  # hit: role is search even if args don't parse
        item(S({"a": 1}), A("b")),  # miss
        item(A("a"), "garbage"),  # miss
        item("garbage", "garbage"),  # miss: None never matches
    ]
    assert role_accuracy(items) == pytest.approx(40.0)
    assert role_accuracy([]) == 0.0


def test_slot_exact_match_order_insensitive():
    gold = S({"type": "舒适型", "facilities": ["暖气", "wifi"]})
    items = [
        item(gold, S({"facilities": ["wifi", "暖气"], "type": "舒适型"})),  # hit
        item(gold, S({"facilities": ["wifi"], "type": "舒适型"})),  # miss
        item(gold, S({"facilities": ["wifi", "暖气"], "type": "舒适型", "x": None})),  # extra key: miss
        item(gold, A("好的")),  # miss
        item(A("好的"), S({"type": "舒适型"})),  # not a search item
    ]
    assert slot_exact_match(items) == pytest.approx(25.0)


HOTELS = {"如家": ("经济型", ["wifi"]), "汉庭": ("经济型", ["wifi", "暖气"]), "希尔顿": ("豪华型", ["暖气", "泳池"])}


def fake_search(prefix: str, args: dict):
    assert prefix == "search"
    if not set(args) <= {"type", "facilities"} or not isinstance(args.get("facilities", []), list):
        return None
    return [
        name
        for name, (t, fac) in HOTELS.items()
        if args.get("type", t) == t and all(f in fac for f in args.get("facilities", []))
    ]


def test_tool_execution_match():
    items = [
        # different args, same result set (汉庭)
        item(S({"type": "经济型", "facilities": ["暖气"]}), S({"facilities": ["wifi", "暖气"]})),
        # different result
        item(S({"type": "经济型"}), S({"type": "豪华型"})),
        # invalid predicted args -> None -> miss
        item(S({"type": "经济型"}), S({"price": 1})),
        # unparseable / wrong role -> miss
        item(S({"type": "经济型"}), "search:\n{bad"),
        item(S({"type": "经济型"}), A("好的")),
        # not a search item
        item(A("好的"), S({"type": "经济型"})),
    ]
    assert tool_execution_match(items, fake_search) == pytest.approx(20.0)

    def raising(prefix, args):
        if "boom" in args:
            raise TypeError("bad")
        return ["x"]

    assert tool_execution_match([item(S({"a": 1}), S({"boom": 1}))], raising) == 0.0


def test_a_call_of_another_tool_is_wrong_whatever_its_arguments():
    gold = "get_weather:\n" + json.dumps({"city": "北京"}, ensure_ascii=False)
    items = [item(gold, S({"city": "北京"})), item(gold, gold)]
    assert role_accuracy(items) == 50.0
    assert slot_prf(items)["slot_p"] == 100.0 and slot_prf(items)["slot_r"] == 50.0
    assert tool_execution_match(items, lambda prefix, args: [prefix, args["city"]]) == 50.0
    assert score_items(items)["n_search"] == 2


def test_classification_metrics_by_hand():
    golds = ["a", "a", "b", "b", "c", "c"]
    preds = ["a", "b", "b", "b", "c", "a"]
    # a: P 1/2 R 1/2 F 1/2; b: P 2/3 R 1 F 4/5; c: P 1 R 1/2 F 2/3
    r = classification_metrics(golds, preds)
    assert r["accuracy"] == pytest.approx(100 * 4 / 6)
    assert r["macro_f1"] == pytest.approx(100 * (1 / 2 + 4 / 5 + 2 / 3) / 3)
    # a label only predicted counts with F1 0
    assert classification_metrics(["a", "a"], ["a", "z"]) == pytest.approx(
        {"accuracy": 50.0, "macro_f1": 100 * (2 / 3 + 0) / 2}
    )
    assert classification_metrics([], []) == {"accuracy": 0.0, "macro_f1": 0.0}
    with pytest.raises(ValueError):
        classification_metrics(["a"], [])


# ----------------------------------------------------------------------------- score_items / file


def test_score_items_keys_counts_rounding():
    items = [
        item(S({"type": "经济型"}), S({"type": "经济型"})),
        item(S({"type": "经济型", "facilities": ["wifi"]}), S({"type": "豪华型"})),
        item(A("你好吗"), A("你好")),
        item("junk", ""),
    ]
    r = score_items(items)
    assert r["n_items"] == 4 and r["n_search"] == 2 and r["n_assistant"] == 1
    assert "tool_execution_match" not in r
    assert r["role_accuracy"] == 75.0
    assert r["slot_p"] == 50.0 and r["slot_r"] == pytest.approx(33.3333) and r["slot_f1"] == 40.0
    assert r["slot_exact_match"] == 50.0
    assert r["bleu-4"] == 36.0645
    assert set(r) >= {"rouge-1", "rouge-2", "rouge-l"}
    assert all(round(v, 4) == v for v in r.values())
    r2 = score_items(items, run_tool=fake_search)
    assert r2["tool_execution_match"] == 50.0


def test_score_file(tmp_path):
    p = tmp_path / "pred.jsonl"
    rows = [
        {"label": S({"type": "经济型"}), "predict": S({"type": "经济型"})},
        {"label": A("您好"), "predict": None},  # null predict = empty prediction
    ]
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "\n", encoding="utf-8")
    r = score_file(p)
    assert r["n_items"] == 2 and r["slot_f1"] == 100.0 and r["bleu-4"] == 0.0 and r["role_accuracy"] == 50.0


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("{not json", "invalid JSON"),
        ('{"label": "assistant: x"}', "missing key 'predict'"),
        ('["assistant: x", "assistant: x"]', "JSON object"),
        ('{"label": 3, "predict": "assistant: x"}', "'label' must be a string"),
    ],
)
def test_score_file_bad_line(tmp_path, bad_line, reason):
    p = tmp_path / "pred.jsonl"
    good = json.dumps({"label": A("x"), "predict": A("x")})
    p.write_text(f"{good}\n{good}\n{bad_line}\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        score_file(p)
    assert f"{p}:3:" in str(e.value)
    assert reason in str(e.value)


def test_score_file_missing(tmp_path):
    with pytest.raises(DataError):
        score_file(tmp_path / "nope.jsonl")
