"""End to end on CPU: train a tiny random model, see the loss fall, reload the adapter, chat, resume."""

import json
import subprocess
import sys

import pytest
import torch

from tunelab.train.job import train


def cfg(model_dir, sample_path, out, **train_kw):
    return {"model": {"name_or_path": str(model_dir)},
            "data": {"train_file": str(sample_path), "dev_file": str(sample_path), "max_length": 512},
            "method": {"r": 32, "alpha": 64, "dropout": 0.0},
            "train": {"output_dir": str(out), "max_steps": 30, "learning_rate": 3e-3, "logging_steps": 1,
                      "per_device_train_batch_size": 2, "lr_scheduler_type": "constant", **train_kw}}


@pytest.fixture(scope="module")
def run(tiny_llama, tmp_path_factory):
    from tests.conftest import SAMPLE

    out = tmp_path_factory.mktemp("runs") / "tiny"
    c = cfg(tiny_llama, SAMPLE, out, save_steps=15)
    c["eval"] = {"dev_items": 3, "max_new_tokens": 6}
    summary = train(c)
    return out, summary


def test_loss_falls_and_artifacts_exist(run):
    out, summary = run
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3  # a tiny random model moves slowly
    assert all("tokens_per_s" in r for r in rows)
    for name in ["config.yaml", "run.json", "adapter_config.json", "adapter_model.safetensors", "loss.png",
                 "checkpoint-15", "checkpoint-30", "tokenizer.json"]:
        assert (out / name).exists(), name
    assert summary["dev_loss"] is not None and summary["trainable_params"] > 0
    assert summary["dev_metrics"]["n_items"] == 3 and (out / "eval-hotel_sample" / "report.md").is_file()
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_adapter_loads_in_plain_peft(run, tiny_llama):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, _ = run
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model = PeftModel.from_pretrained(base, out)
    lora = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert lora
    b = dict(model.named_parameters())[next(n for n in lora if "lora_B" in n)]
    assert b.abs().sum() > 0  # trained, not the zero init


def test_engine_generates_after_training(run):
    from tests.conftest import greedy_reply
    from tunelab.data.schema import Turn
    from tunelab.infer.engine import GenerationOptions, load_engine

    out, _ = run
    engine = load_engine(out, device="cpu")
    turns, opts = [Turn("user", content="电话是多少？")], GenerationOptions(max_new_tokens=12)
    reply = engine.reply(turns, opts)
    expected = greedy_reply(engine, turns, 12)
    assert (reply.role, reply.content, reply.arguments) == (expected.role, expected.content, expected.arguments)
    # streaming yields the same greedy turn, piece by piece
    streamed = engine.template.parse_reply("".join(engine.stream(turns, opts)))
    assert (streamed.role, streamed.content, streamed.arguments) == (reply.role, reply.content, reply.arguments)


def test_cli_chat_multi_turn(run):
    out, _ = run
    proc = subprocess.run([sys.executable, "-m", "tunelab.cli.main", "chat", str(out), "--max-new-tokens", "6"],
                          input="你好\n电话是多少？\n/exit\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("assistant> ") == 2


def test_resume_continues_from_checkpoint(tiny_llama, sample_path, tmp_path):
    out = tmp_path / "resume"
    train(cfg(tiny_llama, sample_path, out, max_steps=4, save_steps=2))
    summary = train(cfg(tiny_llama, sample_path, out, max_steps=6, save_steps=2, resume=True))
    assert summary["steps"] == 6
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_time_budget_stops_cleanly(tiny_llama, sample_path, tmp_path):
    summary = train(cfg(tiny_llama, sample_path, tmp_path / "b", max_steps=10_000, time_budget_minutes=0.02))
    assert summary["stopped_by_time_budget"] and 0 < summary["steps"] < 10_000
    assert (tmp_path / "b" / "adapter_model.safetensors").is_file()


def test_evaluate_writes_predictions_metrics_report(run, sample_path, tmp_path):
    from tunelab.evaluate.job import evaluate

    out, _ = run
    m = evaluate(out, sample_path, limit=5, out_dir=tmp_path / "ev", batch_size=2, max_new_tokens=8)
    rows = [json.loads(l) for l in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and rows[0]["label"].startswith("search:\n")
    assert m["n_items"] == 5 and 0 <= m["slot_f1"] <= 100 and m["items_per_s"] > 0
    assert "| slot F1 |" in (tmp_path / "ev" / "report.md").read_text()
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_search"] >= 1
    # the error analysis: each row keeps its context, metrics.json and report.md carry the analysis
    assert rows[0]["user"] and "records" in rows[0] and any(r["records"] for r in rows)
    assert set(m["analysis"]) >= {"roles", "slots", "swaps", "replies"}
    assert "## Error analysis" in (tmp_path / "ev" / "report.md").read_text()


def test_time_budget_schedule_decays_lr_over_time(tiny_llama, sample_path, tmp_path):
    out = tmp_path / "t"
    c = cfg(tiny_llama, sample_path, out, max_steps=-1, num_train_epochs=1000, time_budget_minutes=0.1,
            lr_scheduler_type="cosine", warmup_steps=0)
    c["data"]["dev_file"] = ""  # no dev loss to leave time for: the whole 6 s budget trains
    summary = train(c)
    assert summary["stopped_by_time_budget"]
    lrs = [json.loads(l)["learning_rate"] for l in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    # cosine over the 6 s budget toward its 10% floor, whatever the step count
    assert len(lrs) >= 3 and lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.6 * lrs[0]


def test_a_schedule_whose_epochs_end_before_the_budget_lands_on_its_floor(tiny_llama, sample_path, tmp_path):
    out = tmp_path / "e"
    c = cfg(tiny_llama, sample_path, out, max_steps=-1, num_train_epochs=2, time_budget_minutes=30,
            lr_scheduler_type="cosine", warmup_steps=1)
    summary = train(c)
    assert not summary["stopped_by_time_budget"] and summary["steps"] == 6  # 6 dialogs, batch 2, 2 epochs
    lrs = [json.loads(l)["learning_rate"] for l in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert lrs[-1] == pytest.approx(0.1 * 3e-3)  # the floor, though only a sliver of the budget was spent
    assert lrs == sorted(lrs[:1]) + sorted(lrs[1:], reverse=True)  # warm-up, then down


def test_second_identical_train_hits_the_tokenization_cache(tiny_llama, sample_path, tmp_path, caplog, monkeypatch):
    import logging

    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    c = cfg(tiny_llama, sample_path, tmp_path / "a", max_steps=1)
    c["data"]["dev_file"] = ""
    with caplog.at_level(logging.INFO, logger="tunelab"):
        train(c)
        assert "from the cache" not in caplog.text
        c["train"]["output_dir"] = str(tmp_path / "b")
        train(c)
    assert "tokenized rows from the cache" in caplog.text and "saved" in caplog.text


def test_kfold_reports_mean_and_std(tiny_llama, sample_path, tmp_path):
    from tunelab.config import load_config
    from tunelab.data.prep import split_file
    from tunelab.train.kfold import train_kfold

    split_file(sample_path, tmp_path / "folds", kfold=3, seed=0)
    c = cfg(tiny_llama, sample_path, tmp_path / "k", max_steps=2)
    report = train_kfold(load_config(overrides=c), tmp_path / "folds")
    assert len(report["folds"]) == 3 and report["dev_loss_std"] >= 0
    assert (tmp_path / "k" / "kfold.json").is_file() and (tmp_path / "k" / "fold_2" / "adapter_config.json").is_file()


def test_row_weights_scale_the_loss(tiny_llama, sample_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.data.collate import PadCollator
    from tunelab.data.readers import read_conversations
    from tunelab.data.render import Renderer
    from tunelab.data.template import get_template
    from tunelab.train.loss import lm_loss

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    convs, _ = read_conversations(sample_path)
    r = Renderer(get_template("auto", tok), tok)
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in (r.encode(c) for c in convs[:2])]
    plain = PadCollator(tok.pad_token_id)(rows)
    base, _ = lm_loss(model, plain, num_items=1)
    one, _ = lm_loss(model, PadCollator(tok.pad_token_id)([rows[0]]), num_items=1)
    weighted = PadCollator(tok.pad_token_id)([{**rows[0], "weight": 3.0}, {**rows[1], "weight": 1.0}])
    got, _ = lm_loss(model, weighted, num_items=1)
    torch.testing.assert_close(got, base + 2 * one, rtol=1e-4, atol=1e-3)


def test_packing_trains_like_padding_and_settings_reach_the_run(tiny_llama, sample_path, tmp_path):
    """Same seed, same batches: a packed row gives the padded batch's loss (the model
    sees the same conversations apart), and the rendering settings are kept for chat and evaluate."""
    def first_losses(name, **data):
        c = cfg(tiny_llama, sample_path, tmp_path / name, max_steps=3, threads=1)
        c["data"].update(data)
        summary = train(c)
        rows = [json.loads(l) for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if "loss" in r], summary

    padded, _ = first_losses("padded")
    packed, summary = first_losses("packed", packing=True)
    assert packed[0] == pytest.approx(padded[0], rel=1e-5)
    assert packed == pytest.approx(padded, rel=1e-3)  # Adam's first steps amplify float noise a little
    assert summary["packing"] is True and summary["threads"] == 1
    as_json, summary = first_losses("json", tool_results="json")
    assert as_json != pytest.approx(padded, rel=1e-4)  # other tokens
    from tunelab.infer.engine import load_engine

    assert summary["tool_results"] == "json" and load_engine(tmp_path / "json").template.tool_results == "json"
    # the hotel view: records keep only the facilities the dialog names; chat and evaluate render them so too
    _, full = first_losses("full", domain="hotel")
    _, summary = first_losses("view", record_view="relevant", domain="hotel")
    assert summary["train_data"]["target_tokens"] == full["train_data"]["target_tokens"]
    assert summary["train_data"]["tokens"] < full["train_data"]["tokens"]  # facilities nobody named are left out
    engine = load_engine(tmp_path / "view")
    assert summary["record_view"] == "relevant" and engine.renderer.view is not None
    assert load_engine(tmp_path / "padded").renderer.view is None


def test_compiled_layers_train_and_save_a_plain_adapter(tiny_llama, sample_path, tmp_path):
    """train.compile=true compiles the decoder layers in place: the run trains and its adapter has the
    usual keys (no `_orig_mod.`), so plain peft loads it."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from tunelab.train.trainer import compile_layers

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert compile_layers(model) == 2 and all(l._compiled_call_impl is not None for l in model.model.layers)
    c = cfg(tiny_llama, sample_path, tmp_path / "compiled", max_steps=2, compile=True)
    summary = train(c)
    assert summary["steps"] == 2
    with safe_open(str(tmp_path / "compiled" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("_orig_mod" not in k for k in keys) and any("lora_A" in k for k in keys)


def test_bad_eval_decode_fails_before_the_run_dir_is_touched(tiny_llama, sample_path, tmp_path):
    from tunelab.utils.errors import ConfigError

    c = cfg(tiny_llama, sample_path, tmp_path / "never")
    c["eval"] = {"dev_items": 2, "decode": "beam"}
    with pytest.raises(ConfigError, match="eval.decode: 'beam' is not a valid choice; valid: dialog, batch"):
        train(c)
    assert not (tmp_path / "never").exists()


def test_eval_decode_batch_at_the_end_of_training(tiny_llama, sample_path, tmp_path):
    c = cfg(tiny_llama, sample_path, tmp_path / "b", max_steps=2)
    c["eval"] = {"dev_items": 2, "max_new_tokens": 4, "decode": "batch"}
    metrics = train(c)["dev_metrics"]
    assert metrics["n_items"] == 2 and "draft_tokens" not in metrics  # the dialog path reports its drafts


def test_activation_budget_and_padding_reach_the_run(tiny_llama, sample_path, tmp_path):
    """A 1 MB activation budget on this data checkpoints some batches' layers; the run records it and the
    bucket size; asking for both full checkpointing and a budget, or a negative size, is an error."""
    from tunelab.utils.errors import ConfigError

    c = cfg(tiny_llama, sample_path, tmp_path / "budget", max_steps=3, activation_memory_mb=1)
    c["data"]["pad_to_multiple_of"] = 32
    summary = train(c)
    b = summary["activation_budget"]
    assert summary["pad_to_multiple_of"] == 32 and b["budget_mb"] == 1 and b["layers"] == 2
    assert b["batches"] == 3 and b["batches_checkpointed"] >= 1 and b["kb_per_token_layer"] > 0
    with pytest.raises(ConfigError, match="set one of them"):
        train(cfg(tiny_llama, sample_path, tmp_path / "both", gradient_checkpointing=True, activation_memory_mb=1))
    bad = cfg(tiny_llama, sample_path, tmp_path / "neg")
    bad["data"]["pad_to_multiple_of"] = -8
    with pytest.raises(ConfigError, match="data.pad_to_multiple_of: -8 is out of range; valid: >= 0"):
        train(bad)
    assert not (tmp_path / "both").exists() and not (tmp_path / "neg").exists()


def test_openings_train_as_steps_of_their_own(tiny_llama, sample_path, tmp_path):
    """One epoch, one row a step: every conversation once, and the openings in steps of two."""
    c = cfg(tiny_llama, sample_path, tmp_path / "open", max_steps=-1, num_train_epochs=1,
            per_device_train_batch_size=1, threads=1)
    c["data"].update(openings=1.0, openings_per_step=2)
    summary = train(c)
    data = summary["train_data"]
    assert data["openings"] > 0 and data["opening_steps"] == -(-data["openings"] // 2)
    assert summary["steps"] == data["conversations"] + data["opening_steps"]
    assert summary["tokens"] == data["tokens"] + data["opening_tokens"]  # the meter saw every opening
    assert summary["openings_trained"] == data["openings"]
    assert summary["opening_batches_trained"] == data["opening_steps"]
