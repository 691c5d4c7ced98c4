"""The one OpenAI messages <-> Turn codec that the readers, the converter and the API share."""

import pytest

from tunelab.data.codec import MessageError, messages_to_turns, turns_to_messages
from tunelab.data.schema import Turn

TURNS = [Turn("system", content="s"), Turn("user", content="q"),
         Turn("tool_call", name="a", arguments={"x": 1}), Turn("tool_call", name="b", arguments={}),
         Turn("tool_result", name="a", records=[{"r": 1}]), Turn("tool_result", name="b", records={"error": "e"}),
         Turn("assistant", content="done")]


def key(turns):
    return [(t.role, t.content, t.name, t.arguments, t.records) for t in turns]


def test_round_trip_pairs_parallel_calls_with_their_results():
    msgs = turns_to_messages(TURNS)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert [c["function"]["name"] for c in msgs[2]["tool_calls"]] == ["a", "b"]
    assert [m["tool_call_id"] for m in msgs[3:5]] == [c["id"] for c in msgs[2]["tool_calls"]]
    assert key(messages_to_turns(msgs)) == key(TURNS)


def test_results_are_named_by_call_id_name_or_the_call_before():
    msgs = [{"role": "assistant", "tool_calls": [{"id": "k", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "k", "content": "1"},
            {"role": "assistant", "tool_calls": [{"name": "g", "arguments": {"y": 2}}]},  # flat, object arguments
            {"role": "tool", "content": "not json"}]
    turns = messages_to_turns(msgs)
    assert [(t.role, t.name) for t in turns] == [("tool_call", "f"), ("tool_result", "f"), ("tool_call", "g"),
                                                 ("tool_result", "g")]
    assert turns[1].records == 1 and turns[2].arguments == {"y": 2} and turns[3].records == "not json"


@pytest.mark.parametrize("messages, param", [
    ([{"role": "wizard", "content": "x"}], "messages[0].role"),
    ([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}],
     "messages[0].tool_calls[0].function.arguments"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "messages[0].content[0]"),
    ([], "messages"),
])
def test_strict_errors_name_the_place(messages, param):
    with pytest.raises(MessageError) as e:
        messages_to_turns(messages, strict=True)
    assert e.value.param == param and str(e.value).startswith(param)


def test_lenient_reading_keeps_text_parts():
    turns = messages_to_turns([{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]}])
    assert key(turns) == [("user", "hi", "", None, None)]
