"""Self-Instruct without a model: the filter, the prompts' parsing, the seeds, and the job loop on a scripted generator."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SAMPLE, write_jsonl
from tunelab.data.prep.minhash import NearDuplicateIndex
from tunelab.data.prep.self_instruct_filter import FilterSettings, InstructionFilter
from tunelab.data.prep.self_instruct_prompts import (Seed, parse_answer, parse_call, parse_instructions,
                                                     read_seeds)
from tunelab.infer.self_instruct import SelfInstructOptions, rejected_path, self_instruct
from tunelab.utils.errors import ConfigError, DataError

POOL = ["写一首关于秋天的诗。", "Write a poem about the autumn leaves falling."]


@pytest.mark.parametrize("text, reason", [
    ("写一首关于秋天的短诗。", "rouge"),  # ROUGE-L 0.83 against the pool
    ("Write a poem about the autumn leaves falling down.", "rouge"),
    ("把这段话翻译成英文。", None),
    ("Summarize the following profile in one sentence.", None),  # "file" inside a word is no file
    ("Draw a picture of a cat sitting on a mat.", "unsupported"),
    ("画出这个函数的图像。", "unsupported"),
    ("好", "too_short"),
    ("，请把下面的话改写得更礼貌", "bad_start"),
    ("  ", "empty"),
    ("word " * 200, "too_long"),
])
def test_filter_reasons(text, reason):
    assert InstructionFilter(pool=list(POOL)).check(text)[0] == reason


def test_check_leaves_the_pool_and_commit_adds():
    f = InstructionFilter(pool=list(POOL))
    text = "把这段话翻译成英文。"
    assert f.check(text) == (None, 0.0) and f.check(text)[0] is None  # checking twice: still new
    assert f.commit(text) is None
    assert f.commit(text) == "rouge" and f.pool.count(text) == 1


def test_minhash_catches_what_rouge_lets_through():
    f = InstructionFilter(FilterSettings(rouge_threshold=1.0, near_threshold=0.9), pool=list(POOL))
    assert f.check(POOL[1])[0] == "near_duplicate"  # ROUGE-L 0.99999 < 1.0; the shingles are identical


def test_near_duplicate_find_stores_nothing():
    idx = NearDuplicateIndex()
    assert idx.find("the same sentence twice") is None and idx.find("the same sentence twice") is None
    assert idx.find_or_add("a", "the same sentence twice") is None
    assert idx.find("the same sentence twice")[0] == "a"


def test_parse_instructions_ends_at_a_blank_line_and_drops_a_cut_one():
    assert parse_instructions("把这句话翻译成英文\n任务4：总结这篇文章\n任务5：写一", "zh", complete=False) == \
        ["把这句话翻译成英文", "总结这篇文章"]
    assert parse_instructions(" Sort the list\nTask 9: Name a color\n\nunrelated", "en", complete=False) == \
        ["Sort the list", "Name a color"]


def test_parse_answer_and_call():
    assert parse_answer(" 无\n输出：春眠不觉晓", False, "zh") == ("", "春眠不觉晓")
    assert parse_answer(" 正面\n输入：这电影真好看", True, "zh") == ("这电影真好看", "正面")  # output-first
    assert parse_answer(" just an input", False, "en") is None
    assert parse_call('{"name":"search_hotels","arguments":{"type":"经济型"}} more') == \
        {"name": "search_hotels", "arguments": {"type": "经济型"}}
    assert parse_call('{"type":"经济型"}') is None and parse_call("{broken") is None


def test_read_seeds_formats(tmp_path):
    txt = tmp_path / "s.txt"
    txt.write_text("写一首诗\n\n翻译这句话\n", encoding="utf-8")
    assert [s.instruction for s in read_seeds(txt)] == ["写一首诗", "翻译这句话"]
    st = write_jsonl(tmp_path / "seed_tasks.jsonl", [
        {"instruction": "Is this positive?", "instances": [{"input": "great", "output": "yes"}], "is_classification": True},
        {"instruction": "Translate", "input": "hi", "output": "你好"}])
    assert read_seeds(st) == [Seed("Is this positive?", "great", "yes", True), Seed("Translate", "hi", "你好")]
    hotel = read_seeds(SAMPLE)
    assert hotel[0].call == {"name": "search_hotels",
                             "arguments": {"type": "舒适型", "facilities": ["暖气", "行李寄存"], "rating_range_lower": 4.5}}
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "ok", "output": "x"}, {"what": 1}])
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        read_seeds(bad)


class Scripted:
    """A generator that answers each prompt kind from a script (no model)."""

    style = "raw"

    def __init__(self, lists: list[str], answer: str = " 无\n输出：好的答案在这里", call: str = ""):
        self.lists, self.answer, self.call, self.calls = list(lists), answer, call, 0

    def reseed(self, seed):
        pass

    def complete(self, prompts, max_new_tokens, stop=None, greedy=False):
        out = []
        for p in prompts:
            if p.endswith("是否分类任务？"):
                out.append((" 否", True))
            elif p.endswith("输入："):
                out.append((self.answer, True))
            elif p.endswith("调用："):
                out.append((self.call, True))
            else:
                out.append((self.lists.pop(0) if self.lists else "", True))
        self.calls += 1
        return out


def test_job_keeps_filters_and_resumes(tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": "写一首关于秋天的诗。", "output": "秋风起"},
                                                    {"instruction": "把这段话翻译成英文。", "output": "Hello"}])
    out = tmp_path / "out.jsonl"
    gen = Scripted(["总结下面这篇文章的要点\n任务4：写一首关于秋天的短诗\n任务5：好", "给这家公司起一个名字"])
    opts = SelfInstructOptions(n=1, prompts_per_round=1, max_rounds=3)
    stats = self_instruct("unused", seeds, out, opts, generator=gen, progress=False)
    assert stats["kept"] == 1 and stats["rejected"] == {"rouge": 1, "too_short": 1} and stats["rounds"] == 1
    row = json.loads(out.read_text(encoding="utf-8"))
    assert row["instruction"] == "总结下面这篇文章的要点" and row["output"] == "好的答案在这里" and row["round"] == 0
    # resumed with a larger n: the kept row counts, the old counts stay, the round goes on
    stats = self_instruct("unused", seeds, out, SelfInstructOptions(n=2, prompts_per_round=1, max_rounds=3),
                          generator=gen, progress=False)
    assert stats["kept"] == 2 and stats["rejected"] == {"rouge": 1, "too_short": 1}
    assert [json.loads(x)["round"] for x in out.read_text(encoding="utf-8").splitlines()] == [0, 1]
    assert len(rejected_path(out).read_text(encoding="utf-8").splitlines()) == 2


def test_job_gives_up_after_max_rounds(tmp_path):
    seeds = tmp_path / "s.txt"
    seeds.write_text("写一首关于秋天的诗\n", encoding="utf-8")
    stats = self_instruct("unused", seeds, tmp_path / "o.jsonl", SelfInstructOptions(n=5, max_rounds=2),
                          generator=Scripted([]), progress=False)
    assert stats["kept"] == 0 and stats["rounds"] == 2


def test_domain_mode_keeps_calls_that_find_records(tmp_path):
    from tunelab.domains.hotel.db import build_db

    db = tmp_path / "h.db"
    build_db(db, seed=0, n=200)
    out = tmp_path / "req.jsonl"
    found = '{"name":"search_hotels","arguments":{"type":"经济型"}}'
    opts = SelfInstructOptions(n=1, prompts_per_round=1, max_rounds=1, domain="hotel", db=str(db))
    stats = self_instruct("unused", SAMPLE, out, opts, generator=Scripted(["想找一家便宜的经济型酒店"], call=found),
                          progress=False)
    assert stats["kept"] == 1
    msgs = json.loads(out.read_text(encoding="utf-8"))["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool"] and json.loads(msgs[2]["content"])
    for call, reason in [('{"name":"search_hotels","arguments":{"price_range_upper":1}}', "no_records"),
                         ('{"name":"search_hotels","arguments":{"stars":5}}', "invalid_call"),
                         ("not json", "not_a_call"), ('{"name":"book","arguments":{}}', "unknown_tool")]:
        o = tmp_path / f"{reason}.jsonl"
        stats = self_instruct("unused", SAMPLE, o, opts, generator=Scripted(["想找一家便宜的经济型酒店"], call=call),
                              progress=False)
        assert stats["kept"] == 0 and stats["rejected"] == {reason: 1}, call


def test_bad_options_fail_before_any_model(tmp_path):
    with pytest.raises(ConfigError, match="max_rounds"):
        SelfInstructOptions(max_rounds=0)
    seeds = tmp_path / "s.txt"
    seeds.write_text("写一首关于秋天的诗\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="tool call"):  # a domain mode needs seed calls to show the model
        self_instruct("no-such-model", seeds, tmp_path / "o.jsonl", SelfInstructOptions(domain="hotel"))
    with pytest.raises(ConfigError, match="--domain"):
        self_instruct("no-such-model", seeds, tmp_path / "o.jsonl", SelfInstructOptions(domain="nope"))


@pytest.mark.parametrize("inp, out, reason", [
    ("", "春眠不觉晓", None),
    ("", " ", "empty_output"),
    ("我喜欢游泳。", "我喜欢游泳。", "output_is_input"),
    ("没有\n输出：没有", "否定", "bad_format"),  # gemma3-270m's: the input ran on into an output field
    ("I like swimming.", "我喜欢游泳。\n我喜欢游泳。\n我喜欢游泳。", "repetitive"),
])
def test_answer_reasons(inp, out, reason):
    from tunelab.data.prep.self_instruct_filter import answer_reason

    assert answer_reason(inp, out) == reason


def test_domain_mode_with_a_run_uses_its_own_tool_call(tmp_path):
    """Chat style (a tunelab run trained for the domain): the request goes as a user turn, no few-shot calls."""
    from tunelab.data.schema import Turn
    from tunelab.domains.hotel.db import build_db

    class Run(Scripted):
        style = "chat"

        def reply_turns(self, contexts, max_new_tokens):
            assert all([t.role for t in c] == ["user"] for c in contexts)
            return [Turn("tool_call", name="search_hotels", arguments={"type": "经济型"}) for _ in contexts]

    db = tmp_path / "h.db"
    build_db(db, seed=0, n=200)
    seeds = tmp_path / "s.txt"  # plain requests: a run needs no seed calls
    seeds.write_text("附近有地铁站的豪华型酒店有哪些\n", encoding="utf-8")
    opts = SelfInstructOptions(n=1, prompts_per_round=1, max_rounds=1, domain="hotel", db=str(db))
    stats = self_instruct("unused", seeds, tmp_path / "o.jsonl", opts, style="chat",
                          generator=Run(["想找一家便宜的经济型酒店"]), progress=False)
    assert stats["kept"] == 1
