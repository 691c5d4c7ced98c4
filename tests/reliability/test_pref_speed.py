"""Preference tasks score only completion tokens (models/compat_trl.py) with the same losses and rewards as
TRL's own code, under SFT's bf16 verdict; a prompt longer than data.max_length loses its oldest exchanges
instead of emptying the completion (ORPO's NaN on the hotel recipe)."""

import json
import math

import pytest

from tests.conftest import write_jsonl
from tunelab.train.job import train
from tunelab.utils.errors import DataError

HISTORY = [{"role": "user", "content": "你好，我想订酒店。"}, {"role": "assistant", "content": "好的，请问预算多少？"}]


def _rows(task: str, n: int = 4, history: int = 1) -> list[dict]:
    rows = [{"messages": HISTORY * history + [{"role": "user", "content": f"电话是多少？{i}"}],
             "chosen": f"电话是010-6512889{i}。", "rejected": "不客气"} for i in range(n)]
    if task != "kto":
        return rows
    return [{"messages": r["messages"], "completion": r[k], "label": k == "chosen"} for r in rows
            for k in ("chosen", "rejected")]


def _cfg(model, data, out, task, **train_kw):
    return {"model": {"name_or_path": str(model)}, "data": {"task": task, "train_file": str(data), "max_length": 160},
            "method": {"name": "lora", "r": 8, "dropout": 0.0},
            "train": {"output_dir": str(out), "max_steps": 2, "learning_rate": 1e-2, "per_device_train_batch_size": 2,
                      "logging_steps": 1, "seed": 0, "mixed_precision": "no", **train_kw}}


def _logged(run) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.fixture
def scored_rows(monkeypatch):
    """How many hidden states each call of TRL's chunked log-prob kernel through trl.kernels projects."""
    import trl.kernels
    import trl.trainer.utils  # binds TRL's own fused head to the real kernel first: it is not counted

    seen, real = [], trl.kernels.ChunkedLogProbFunction

    class Spy:
        @staticmethod
        def apply(hidden, *args):
            seen.append(hidden.shape[0])
            return real.apply(hidden, *args)

    monkeypatch.setattr(trl.kernels, "ChunkedLogProbFunction", Spy)
    return seen


@pytest.mark.parametrize("task", ["dpo", "kto", "simpo", "orpo"])
def test_completion_only_scoring_matches_trl(task, tiny_gemma, tmp_path, scored_rows):
    """Same per-step loss and rewards as TRL's full-sequence code (train.target_only_logits=false) on a tiny
    Gemma 3 (final logit soft-capping on); the LM head sees only completion tokens. ORPO's NLL term is over the
    chosen completion here (TRL's counts the prompt too), so its odds-ratio part and rewards are compared."""
    data = write_jsonl(tmp_path / "p.jsonl", _rows(task))
    train(_cfg(tiny_gemma, data, tmp_path / "full", task, target_only_logits=False))
    assert not scored_rows  # TRL's own path does not come through tunelab's scoring
    train(_cfg(tiny_gemma, data, tmp_path / "fast", task))
    # completion tokens only (under 24 per sequence, 4 sequences a batch; a prompt alone is over 30)
    assert scored_rows and max(scored_rows) <= 4 * 24, scored_rows
    full, fast = _logged(tmp_path / "full"), _logged(tmp_path / "fast")
    assert len(full) == len(fast) == 2
    keys = ["rewards/chosen", "rewards/rejected", "rewards/margins"] + (["loss"] if task != "orpo" else [])
    steps = 1 if task == "orpo" else 2  # ORPO's updates differ with its NLL term: the first step is compared
    for a, b in zip(full[:steps], fast[:steps]):
        for k in keys:
            assert b[k] == pytest.approx(a[k], rel=2e-3, abs=2e-4), (task, k, a[k], b[k])
        if task == "orpo":
            assert b["loss"] - b["nll_loss"] == pytest.approx(a["loss"] - a["nll_loss"], rel=2e-3, abs=2e-4)
            assert b["logps/chosen"] == pytest.approx(a["logps/chosen"], rel=2e-3, abs=2e-4)


def test_long_prompts_lose_old_exchanges_instead_of_going_nan(tiny_gemma, tmp_path):
    """ORPO on prompts longer than data.max_length: TRL 1.16 keeps the prompt whole and cuts the completion to
    nothing, whose averaged log-prob is 0/0 (NaN from the first step, and sequences of any length)."""
    data = write_jsonl(tmp_path / "p.jsonl", _rows("orpo", history=8))  # ~150 tokens of prompt each
    summary = train(_cfg(tiny_gemma, data, tmp_path / "run", "orpo") | {
        "data": {"task": "orpo", "train_file": str(data), "max_length": 64}})
    assert summary["pref"]["shortened_prompts"] == 4 and summary["pref"]["too_long"] == 0
    for row in _logged(tmp_path / "run"):
        assert all(math.isfinite(row[k]) for k in ("loss", "rewards/chosen", "rewards/rejected", "nll_loss")), row


def test_rows_whose_last_exchange_is_too_long_are_skipped_then_refused(tiny_llama, tmp_path):
    rows = _rows("dpo", n=3)
    rows[0]["messages"][-1]["content"] = "电话" * 80  # the last user turn alone is over max_length
    data = write_jsonl(tmp_path / "p.jsonl", rows)
    cfg = _cfg(tiny_llama, data, tmp_path / "run", "dpo", max_steps=1) | {
        "data": {"task": "dpo", "train_file": str(data), "max_length": 96}}
    assert train(cfg)["pref"]["too_long"] == 1
    cfg["data"]["max_length"] = 8
    cfg["train"]["output_dir"] = str(tmp_path / "none")
    with pytest.raises(DataError, match="longer than data.max_length=8 tokens; raise data.max_length"):
        train(cfg)
    assert not (tmp_path / "none").exists()


def test_preference_runs_take_the_measured_bf16_verdict(tiny_llama, tmp_path, monkeypatch):
    """mixed_precision auto times a training step of the model, as for SFT (it was fp32 without a look)."""
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    data = write_jsonl(tmp_path / "p.jsonl", _rows("dpo"))
    summary = train(_cfg(tiny_llama, data, tmp_path / "run", "dpo", mixed_precision="auto", max_steps=1))
    assert summary["bf16_measured"] is not None and summary["mixed_precision"] in ("bf16", "no")
