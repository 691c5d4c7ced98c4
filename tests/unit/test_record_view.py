"""data.record_view=relevant: the hotel records keep the facilities the dialog names, in training and at
inference by one rule, and a run carries the setting to every engine that renders for it."""

from __future__ import annotations

import pytest

from tests.conftest import make_tokenizer
from tunelab.config import load_config
from tunelab.data.render import Renderer
from tunelab.data.schema import Conversation, Turn
from tunelab.data.template import compact_records, get_template
from tunelab.domains import record_view
from tunelab.domains.hotel.view import RelevantFacilities, named_facilities
from tunelab.utils.errors import ConfigError

VIEW = RelevantFacilities()
A = {"name": "A酒店", "price": 300, "facilities": ["暖气", "吹风机", "所有房间提供wifi", "免费停车位"]}
B = {"name": "B酒店", "price": 500, "facilities": ["24小时热水", "吹风机"]}


def test_facilities_named_by_the_search_or_by_a_guests_words():
    assert named_facilities({"facilities": ["暖气"]}, "") == {"暖气"}
    said = named_facilities(None, "房间能连WiFi吗？\n能停车吗")
    assert {"所有房间提供wifi", "部分房间提供wifi", "收费停车位", "免费停车位"} <= said
    assert "暖气" not in said and named_facilities(None, "找个经济型的") == set()
    assert "吹风机" in named_facilities({"type": "舒适型"}, "有吹风机吗")  # the name itself always counts


def test_records_keep_the_named_facilities_and_drop_the_field_when_none_is_named():
    assert VIEW([A, B], {"facilities": ["吹风机"]}, "") == [{**A, "facilities": ["吹风机"]}, {**B, "facilities": ["吹风机"]}]
    viewed = VIEW([A, B], {"facilities": ["暖气"]}, "")
    assert viewed[1]["facilities"] == []  # B has none of them: an empty list says so
    assert list(viewed[0]) == list(A)  # the field keeps its place: the table's columns stay in order
    assert VIEW([A, B], {"type": "舒适型"}, "你好") == [{k: v for k, v in r.items() if k != "facilities"} for r in (A, B)]
    assert A["facilities"] == ["暖气", "吹风机", "所有房间提供wifi", "免费停车位"]  # the input is not changed
    for other in ("无结果", [], [{"amount": 3}], {"facilities": ["暖气"]}):
        assert VIEW(other, None, "暖气") == other
    assert "吹风" in repr(VIEW)  # the tokenization cache keys on the repr: new cues render anew


DIALOG = [Turn("user", "找个舒适型的"), Turn("tool_call", name="search_hotels", arguments={"type": "舒适型"}),
          Turn("tool_result", name="search_hotels", records=[A, B]), Turn("assistant", "A酒店不错。"),
          Turn("user", "它有暖气吗？"), Turn("assistant", "有暖气。")]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"), extra_text=str(DIALOG))


def test_training_and_inference_read_a_record_alike_once_the_dialog_reaches_the_same_point(tok):
    viewed = Renderer(get_template("chatml", tok), tok, "你是助手", view=VIEW)
    full = Renderer(get_template("chatml", tok), tok, "你是助手")
    text = lambda ids: tok.decode(ids)
    trained = text(viewed.encode(Conversation(DIALOG)).input_ids)
    # the whole dialog names 暖气 (its second question), so the training row's records show it where a hotel has it
    assert compact_records([{**A, "facilities": ["暖气"]}, {**B, "facilities": []}]) in trained
    assert "吹风机" not in trained and "吹风机" in text(full.encode(Conversation(DIALOG)).input_ids)
    # at inference, before the question, nothing is named: the column is left out
    first = text(viewed.prompt_ids(DIALOG[:3]))
    assert "暖气" not in first and "facilities" not in first
    assert compact_records(VIEW([A, B], None, "")) in first
    # once the guest asks, the context's records show it: the training row's tokens up to that point
    asked = viewed.prompt_ids(DIALOG[:5])
    n = len(viewed.ids(viewed.template.generation_prefix()))
    assert viewed.encode(Conversation(DIALOG)).input_ids[:len(asked) - n] == asked[:-n]
    assert compact_records([{**A, "facilities": ["暖气"]}, {**B, "facilities": []}]) in text(asked)


def test_a_domain_without_a_view_is_refused_in_one_line_and_full_needs_none():
    assert record_view("", "full") is None and record_view("hotel", "full") is None
    assert record_view("hotel", "relevant") is not None
    with pytest.raises(ConfigError, match=r"data.record_view=relevant: data.domain 'units' has no such view.*hotel"):
        record_view("units", "relevant")
    with pytest.raises(ConfigError, match="record_view"):
        load_config(None, ["--data.record_view=some"])


def test_preference_prompts_read_records_through_the_view(tok):
    from tunelab.train.tasks.preference import PrefText

    prompt = PrefText(Renderer(get_template("chatml", tok), tok, "你是助手", view=VIEW)).prompt(DIALOG[:5], "f:1")
    assert compact_records([{**A, "facilities": ["暖气"]}, {**B, "facilities": []}]) in prompt
    assert "吹风机" in PrefText(Renderer(get_template("chatml", tok), tok, "你是助手")).prompt(DIALOG[:5], "f:1")
