"""data.openings: each conversation's opening (up to its first answer or call before any tool result) as extra,
cheap rows, batched into steps of their own that both collators take as one batch."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import make_tokenizer
from tunelab.config import load_config
from tunelab.data.collate import PackCollator, PadCollator
from tunelab.data.dataset import batch_openings, encode_rows, opening, read_data
from tunelab.data.render import Renderer
from tunelab.data.schema import Conversation, Turn
from tunelab.data.template import get_template
from tunelab.train.tasks.base import dev_config
from tunelab.utils.errors import ConfigError


@pytest.fixture(scope="module")
def renderer(tmp_path_factory):
    tok = make_tokenizer(tmp_path_factory.mktemp("tok"))
    return Renderer(get_template("chatml", tok), tok, "你是助手")


def _conv(*turns):
    return Conversation(list(turns), "f.jsonl:1")


CALL = Turn("tool_call", name="search_hotels", arguments={"type": "舒适型"})
RESULT = Turn("tool_result", name="search_hotels", records=[{"name": "A"}])


def test_opening_is_the_first_decision_before_any_record():
    user, reply = Turn("user", "有舒适型的吗？"), Turn("assistant", "有A。")
    assert opening(_conv(user, CALL, RESULT, reply)).turns == [user, CALL]
    greet = _conv(Turn("system", "s"), Turn("user", "你好"), Turn("assistant", "您好"), user, CALL, RESULT, reply)
    assert [t.role for t in opening(greet).turns] == ["system", "user", "assistant"]
    assert opening(_conv(user, reply)) is None  # the whole conversation already is its opening
    labelled = _conv(Turn("user", "a"), Turn("assistant", "b", target=False), user, CALL, RESULT, reply)
    assert opening(labelled).turns[-1] is CALL  # the first *target* turn ends it


def _rows(renderer, sample_path, **data):
    cfg = load_config(overrides={"data": {"train_file": str(sample_path), **data}}).data
    convs = read_data(cfg.train_file, cfg)
    return convs[0], *encode_rows(cfg.train_file, convs, cfg, renderer)


def test_openings_are_prefixes_of_their_conversations_batched_by_length(renderer, sample_path):
    convs, plain, _ = _rows(renderer, sample_path)
    _, rows, stats = _rows(renderer, sample_path, openings=1.0)
    assert rows[:len(plain)] == plain and stats.openings == len(rows) - len(plain) > 0
    whole = {tuple(r["input_ids"]): r for r in plain}
    for o in rows[len(plain):]:  # the same ids and labels as the start of one conversation's row
        n = len(o["input_ids"])
        assert any(ids[:n] == tuple(o["input_ids"]) and r["labels"][:n] == o["labels"] for ids, r in whole.items())
        last = max(i for i, label in enumerate(o["labels"]) if label != -100)
        assert n - last <= 2  # it ends with its target turn (and the template's separator after it)
    steps = batch_openings(list(rows), stats, 3)
    assert steps[:len(plain)] == plain and stats.opening_steps == len(steps) - len(plain) == -(-stats.openings // 3)
    parts = [p for s in steps[len(plain):] for p in s["parts"]]
    assert len(parts) == stats.openings and [len(p["input_ids"]) for p in parts] == sorted(
        len(o["input_ids"]) for o in rows[len(plain):])
    assert len(_rows(renderer, sample_path, openings=2.0)[1]) - len(plain) == 2 * stats.openings
    half = len(_rows(renderer, sample_path, openings=0.5)[1]) - len(plain)
    assert half == round(0.5 * stats.openings)
    assert "plus %d openings" % stats.openings in stats.line("train")
    assert batch_openings(plain, _rows(renderer, sample_path)[2], 3) == plain  # off: rows untouched
    assert stats.openings == sum(opening(c) is not None for c in convs)  # one per conversation that has one


def test_a_step_of_openings_is_one_batch_for_both_collators(renderer, sample_path):
    _, rows, stats = _rows(renderer, sample_path, openings=1.0)
    step = batch_openings(rows, stats, 4)[-stats.opening_steps]
    parts = step["parts"]
    padded = PadCollator(0)([step])
    assert padded["input_ids"].shape == (len(parts), max(len(p["input_ids"]) for p in parts))
    assert padded["attention_mask"].sum().item() == sum(len(p["input_ids"]) for p in parts)
    packed = PackCollator()([step])
    assert packed["cu_seq_lens_q"].tolist() == torch.tensor([0] + [len(p["input_ids"]) for p in parts]).cumsum(0).tolist()
    assert padded["openings"].item() == packed["openings"].item() == len(parts)  # counted for the meter
    one = PadCollator(0)([rows[0]])  # a plain row is unchanged
    assert one["input_ids"].shape == (1, len(rows[0]["input_ids"])) and "openings" not in one


def test_dev_rows_never_get_openings():
    cfg = load_config(overrides={"data": {"openings": 1.0, "dev_file": "d.jsonl"}})
    assert cfg.data.openings == 1.0 and dev_config(cfg).openings == 0.0
    with pytest.raises(ConfigError, match="data.openings"):
        load_config(overrides={"data": {"openings": -1}})
