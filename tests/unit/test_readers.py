import json

import pytest

from tests.conftest import write_jsonl
from tunelab.data.readers import read_conversations
from tunelab.utils.errors import DataError


def roles(conv):
    return [t.role for t in conv.turns]


def test_hotel_sample_reads(sample_path):
    convs, skipped = read_conversations(sample_path)
    assert len(convs) == 6 and skipped == 0
    assert roles(convs[0])[:4] == ["user", "tool_call", "tool_result", "assistant"]
    assert convs[0].turns[1].name == "search_hotels"
    assert convs[0].meta["kind"] == "by_facility"
    assert convs[0].source.endswith("hotel_sample.jsonl:1")


def test_turns_export_only_response_is_target(tmp_path):
    ctx = [{"role": "user", "content": "找酒店"}, {"role": "search", "arguments": {"type": "经济型"}},
           {"role": "return", "records": []}]
    row = {"context": json.dumps(ctx, ensure_ascii=False),
           "response": json.dumps({"role": "assistant", "content": "没有找到"}, ensure_ascii=False)}
    (conv,), _ = read_conversations(write_jsonl(tmp_path / "t.jsonl", [row]))
    assert roles(conv) == ["user", "tool_call", "tool_result", "assistant"]
    assert [t.is_target for t in conv.turns] == [False, False, False, True]


def test_openai_messages_with_tool_calls(tmp_path):
    row = {"messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "search_hotels", "arguments": "{\"type\": \"经济型\"}"}}]},
        {"role": "tool", "content": "[{\"name\": \"A\"}]"},
        {"role": "assistant", "content": "A"}]}
    (conv,), _ = read_conversations(write_jsonl(tmp_path / "m.jsonl", [row]))
    assert roles(conv) == ["system", "user", "tool_call", "tool_result", "assistant"]
    assert conv.turns[2].arguments == {"type": "经济型"}
    assert conv.turns[3].records == [{"name": "A"}] and conv.turns[3].name == "search_hotels"


def test_sharegpt(tmp_path):
    row = {"conversations": [{"from": "human", "value": "q"},
                             {"from": "function_call", "value": "{\"name\": \"f\", \"arguments\": {\"a\": 1}}"},
                             {"from": "observation", "value": "{\"r\": 2}"}, {"from": "gpt", "value": "a"}],
           "system": "sys"}
    (conv,), _ = read_conversations(write_jsonl(tmp_path / "s.jsonl", [row]))
    assert roles(conv) == ["system", "user", "tool_call", "tool_result", "assistant"]
    assert conv.turns[3].name == "f"


def test_alpaca_and_prompt_completion(tmp_path):
    rows = [{"instruction": "翻译", "input": "hello", "output": "你好", "history": [["q", "a"]]},
            {"prompt": "p", "completion": "c"}]
    convs, _ = read_conversations(write_jsonl(tmp_path / "a.jsonl", rows))
    assert roles(convs[0]) == ["user", "assistant", "user", "assistant"]
    assert convs[0].turns[2].content == "翻译\n\nhello"
    assert roles(convs[1]) == ["user", "assistant"]


def test_json_list_file(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"prompt": "p", "completion": "c"}]))
    convs, _ = read_conversations(p)
    assert len(convs) == 1


@pytest.mark.parametrize("bad,reason", [
    ("{not json", "invalid JSON"),
    (json.dumps({"foo": 1}), "cannot tell the format"),
    (json.dumps([{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]), "empty content"),
    (json.dumps([{"role": "user", "content": "x"}, {"role": "return", "records": []}, {"role": "assistant", "content": "y"}]),
     "tool result without a preceding tool call"),
    (json.dumps([{"role": "user", "content": "x"}, {"role": "search", "arguments": [1]}]), "must be a JSON object"),
    (json.dumps([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}, {"role": "system", "content": "z"}]),
     "system turn must come first"),
    (json.dumps({"prompt": "p", "completion": 3}), "must be strings"),
    (json.dumps([{"role": "user", "content": "only a question"}]), "no assistant or tool-call turn"),
])
def test_bad_rows_name_file_line_and_reason(tmp_path, bad, reason):
    good = json.dumps({"prompt": "p", "completion": "c"})
    p = tmp_path / "d.jsonl"
    p.write_text(good + "\n" + bad + "\n" + good + "\n")
    with pytest.raises(DataError) as e:
        read_conversations(p)
    assert f"{p}:2:" in str(e.value) and reason in str(e.value)
    convs, skipped = read_conversations(p, skip_invalid=True)
    assert len(convs) == 2 and skipped == 1


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_conversations(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="unknown"):
        read_conversations(tmp_path / "nope.jsonl", fmt="csvx")
