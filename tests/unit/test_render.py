import pytest

from tests.conftest import make_tokenizer
from tunelab.data.readers import read_conversations
from tunelab.data.render import IGNORE, Renderer
from tunelab.data.schema import Conversation, Turn
from tunelab.data.template import compact_records, get_template


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def decode_targets(tok, enc):
    """Target tokens, split into runs of consecutive supervised positions."""
    runs, cur = [], []
    for i, l in zip(enc.input_ids, enc.labels):
        if l != IGNORE:
            assert l == i
            cur.append(i)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs


def test_only_assistant_and_tool_call_turns_are_targets(tok, sample_path):
    convs, _ = read_conversations(sample_path)
    r = Renderer(get_template("chatml", tok), tok, system_prompt="你是助手")
    enc = r.encode(convs[0])
    runs = decode_targets(tok, enc)
    assert runs == [
        '<tool_call>{"name":"search_hotels","arguments":{"type":"舒适型","facilities":["暖气","行李寄存"],"rating_range_lower":4.5}}</tool_call><|im_end|>',
        "推荐您去汉庭酒店(北京王府井店)，每晚468元，评分4.6。<|im_end|>",
        "汉庭酒店(北京王府井店)的电话是010-65128899。<|im_end|>",
    ]
    text = tok.decode(enc.input_ids)
    assert text.startswith("<|im_start|>system\n你是助手<|im_end|>\n<|im_start|>user\n找一家")
    assert "<|im_start|>tool\nname|type|address|subway|phone|facilities|price|rating\n汉庭酒店(北京王府井店)|舒适型|" in text


def test_auto_template_follows_the_model(tok):
    assert get_template("auto", tok).name == "chatml"


def test_gemma_template_has_bos_and_model_role(tok, sample_path):
    convs, _ = read_conversations(sample_path)
    enc = Renderer(get_template("gemma", tok), tok).encode(convs[1])
    text = tok.decode(enc.input_ids)
    assert text.startswith("<bos><start_of_turn>user\n天伦王朝酒店怎么样？<end_of_turn>\n<start_of_turn>model\n")


def test_compact_records_table_when_flat_json_lines_otherwise():
    table = [{"name": "A", "facilities": ["暖气", "wifi"], "price": None, "rating": 4.5},
             {"name": "B", "facilities": [], "price": 300, "rating": 4.0}]
    assert compact_records(table) == "name|facilities|price|rating\nA|暖气,wifi||4.5\nB||300|4.0"
    # different keys, a separator inside a cell, nesting: JSON lines, nulls dropped
    assert compact_records([{"a": 1, "b": None}, {"c": "中"}]) == '{"a":1}\n{"c":"中"}'
    assert compact_records([{"a": "x|y"}]) == '{"a":"x|y"}'
    assert compact_records([{"a": ["x,y"]}]) == '{"a":["x,y"]}'
    assert compact_records([{"a": {"b": 1}}]) == '{"a":{"b":1}}'
    assert compact_records([]) == "[]" and compact_records({"error": "bad"}) == '{"error":"bad"}'


def test_tool_results_as_table_or_plain_json(tok):
    from tunelab.utils.errors import ConfigError

    turn = Turn("tool_result", name="search_hotels", records=[{"name": "A", "price": 300}, {"name": "B", "price": 400}])
    assert get_template("chatml", tok).parts(turn)[1] == "name|price\nA|300\nB|400<|im_end|>"
    assert get_template("chatml", tok, "json").parts(turn)[1] == \
        '[{"name": "A", "price": 300}, {"name": "B", "price": 400}]<|im_end|>'
    with pytest.raises(ConfigError, match="tool_results 'xml' is unknown; valid: table, json"):
        get_template("chatml", tok, "xml")



def long_dialog(n):
    turns = [Turn("system", content="S")]
    for i in range(n):
        turns += [Turn("user", content=f"question {i} " * 3), Turn("assistant", content=f"answer {i} " * 3)]
    return Conversation(turns)


def test_truncation_drops_old_exchanges_never_halves_a_target(tok):
    r = Renderer(get_template("chatml", tok), tok)
    full = r.encode(long_dialog(6))
    assert full.dropped_turns == 0
    enc = r.encode(long_dialog(6), max_length=len(full.input_ids) // 2)
    assert len(enc.input_ids) <= len(full.input_ids) // 2
    assert enc.dropped_turns > 0 and enc.dropped_turns % 2 == 0  # whole exchanges
    text = tok.decode(enc.input_ids)
    assert text.startswith("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n")  # system kept
    assert "answer 5 answer 5 answer 5 <|im_end|>" in text  # the newest answer survives whole
    for run in decode_targets(tok, enc):
        assert run.endswith("<|im_end|>") and run.startswith("answer")


def test_too_long_for_any_target_returns_none(tok):
    r = Renderer(get_template("chatml", tok), tok)
    assert r.encode(long_dialog(1), max_length=10) is None


def test_prompt_ids_end_with_generation_prefix(tok):
    r = Renderer(get_template("chatml", tok), tok)
    ids = r.prompt_ids([Turn("user", content="hi")])
    assert tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_parse_reply():
    t = get_template("chatml")
    call = t.parse_reply('<tool_call>{"name":"search_hotels","arguments":{"type":"经济型"}}</tool_call><|im_end|>')
    assert call.role == "tool_call" and call.arguments == {"type": "经济型"} and call.name == "search_hotels"
    bad = t.parse_reply("<tool_call>{broken")
    assert bad.role == "tool_call" and bad.arguments is None and bad.content == "{broken"
    assert t.parse_reply("你好<|im_end|>junk").content == "你好"
