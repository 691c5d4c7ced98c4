"""Preference tasks: bad rows and settings fail in one line before a model loads; the hotel recipe runs from
an SFT run; hotel pairs and eval pairs are valid preference rows."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, write_jsonl
from tunelab.data.prep.validate import validate_file
from tunelab.train.job import train
from tunelab.utils.errors import ConfigError, DataError

PAIR = {"messages": [{"role": "user", "content": "电话是多少？"}], "chosen": "010-65128899", "rejected": "不客气"}


def _cfg(model, data, out, task="dpo", **method):
    return {"model": {"name_or_path": str(model)}, "data": {"task": task, "train_file": str(data), "max_length": 128},
            "method": {"name": "lora", **method}, "train": {"output_dir": str(out), "max_steps": 2,
                                                            "per_device_train_batch_size": 2}}


def _cli(*args, cwd=None):
    env = {"PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "tunelab.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_sft_refuses_preference_rows_naming_the_task(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", [PAIR])
    with pytest.raises(DataError, match=r"p.jsonl:1: a preference row .*data.task dpo, orpo or simpo"):
        train(_cfg(tiny_llama, data, tmp_path / "run", task="sft"))
    kto = write_jsonl(tmp_path / "k.jsonl", [{"messages": PAIR["messages"], "completion": "好", "label": True}])
    with pytest.raises(DataError, match="data.task kto"):  # else read as messages / prompt_completion
        train(_cfg(tiny_llama, kto, tmp_path / "run", task="sft"))


def test_validate_knows_preference_rows(tmp_path):
    same = {**PAIR, "rejected": PAIR["chosen"]}
    bad_role = {**PAIR, "chosen": {"role": "user", "content": "x"}}
    kto = {"prompt": "hi", "completion": "好", "label": False}
    report = validate_file(write_jsonl(tmp_path / "p.jsonl", [PAIR, same, bad_role, kto]))
    assert report.formats == {"preference": 1, "kto": 1}
    assert [r for _, r in report.errors] == ["'chosen' and 'rejected' are the same turn: nothing to prefer",
                                             "'chosen' must be an assistant reply or a tool call, not a user turn"]


@pytest.mark.parametrize("change, words", [
    ({"method": {"name": "prompt_tuning"}}, "method.name prompt_tuning: task dpo .* needs one of lora"),
    ({"data": {"task": "kto"}, "train": {"per_device_train_batch_size": 1}}, "kto estimates its KL term"),
    ({"data": {"packing": True}}, "data.packing=true .* set data.packing=false"),
    ({"train": {"decision_weight": 5.0}}, "train.decision_weight=5.0 weighs the first token .* leave it at 1"),
    ({"data": {"openings": 1.0}}, "data.openings adds the openings of SFT conversations; task dpo has none: set data.openings=0"),
])
def test_settings_that_cannot_work_fail_at_config_time(change, words, tiny_llama, tmp_path):
    cfg = _cfg(tiny_llama, write_jsonl(tmp_path / "p.jsonl", [PAIR]), tmp_path / "run")
    for section, values in change.items():
        cfg[section].update(values)
    with pytest.raises(ConfigError, match=words):
        train(cfg)
    assert not (tmp_path / "run").exists()  # nothing written


def test_special_token_in_a_row_is_refused(tiny_llama, tmp_path):
    forged = {**PAIR, "rejected": "好<|im_end|>\n<|im_start|>user\n谢谢"}
    with pytest.raises(DataError, match=r"p.jsonl:1: the text holds the special token '<\|im_(end|start)\|>'"):
        train(_cfg(tiny_llama, write_jsonl(tmp_path / "p.jsonl", [forged]), tmp_path / "run"))


@pytest.fixture(scope="module")
def hotel(tmp_path_factory, tiny_llama):
    """A small hotel DB, its synthetic dialogs, an SFT LoRA run on them and preference pairs."""
    d = tmp_path_factory.mktemp("hotel")
    assert _cli("hotel", "build-db", "--out", str(d / "hotels.db"), "--n", "60").returncode == 0
    assert _cli("hotel", "synth", "--db", str(d / "hotels.db"), "--n", "40", "--out", str(d)).returncode == 0
    train({"model": {"name_or_path": str(tiny_llama)}, "data": {"train_file": str(d / "train.jsonl"), "max_length": 512},
           "method": {"name": "lora", "r": 8}, "train": {"output_dir": str(d / "sft"), "max_steps": 2}})
    r = _cli("hotel", "prefs", "--db", str(d / "hotels.db"), "--n", "30", "--out", str(d / "prefs.jsonl"))
    assert r.returncode == 0, r.stderr
    return d


def test_hotel_prefs_are_valid_realistic_mistakes(hotel):
    report = validate_file(hotel / "prefs.jsonl")
    assert report.ok and report.formats["preference"] == 30
    rows = [json.loads(l) for l in (hotel / "prefs.jsonl").read_text(encoding="utf-8").splitlines()]
    kinds = {r["kind"] for r in rows}
    assert kinds <= {"dropped_facility", "price_swapped", "stale_records", "unknown_hotel", "wrong_phone", "wrong_price"}
    assert len(kinds) >= 3
    for r in rows:
        if r["kind"] == "price_swapped":  # the bounds really are exchanged (or a one-sided bound flipped)
            c, j = r["chosen"]["arguments"], r["rejected"]["arguments"]
            assert (c.get("price_range_lower"), c.get("price_range_upper")) == (j.get("price_range_upper"),
                                                                               j.get("price_range_lower"))


def test_hotel_dpo_recipe_runs_from_the_sft_run(hotel, tiny_llama, tmp_path):
    out = tmp_path / "dpo"
    r = _cli("train", str(REPO / "recipes/hotel_dpo.yaml"), "--train.max_steps=2", f"--model.name_or_path={tiny_llama}",
             f"--model.adapter={hotel / 'sft'}", f"--data.train_file={hotel / 'prefs.jsonl'}",
             f"--data.db={hotel / 'hotels.db'}", f"--train.output_dir={out}", "--train.time_budget_minutes=0",
             "--data.max_length=512")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "run.json").read_text())
    assert summary["task"] == "dpo" and summary["steps"] == 2 and summary["start_adapter"] == str(hotel / "sft")
    assert not (out / "ref").exists()
    from safetensors.torch import load_file

    before, after = load_file(hotel / "sft" / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert before.keys() == after.keys()  # the SFT adapter trained on, not a new one
    assert any(not (before[k] == after[k]).all() for k in before)
    bad = _cli("train", str(REPO / "recipes/hotel_dpo.yaml"), f"--model.name_or_path={tiny_llama}",
               f"--model.adapter={hotel / 'sft'}", "--method.name=dora", f"--data.train_file={hotel / 'prefs.jsonl'}",
               f"--data.db={hotel / 'hotels.db'}", f"--train.output_dir={tmp_path / 'x'}")
    assert bad.returncode == 2 and "is a lora adapter; method.name is dora" in bad.stderr


def test_prefs_from_eval_pairs_wrong_predictions(hotel, tmp_path):
    from tunelab.evaluate.prefs_from_eval import prefs_from_predictions

    test = hotel / "test.jsonl"
    dialog = json.loads(test.read_text(encoding="utf-8").splitlines()[0])["dialog"]
    i = next(k for k, t in enumerate(dialog) if t["role"] == "search")
    gold = "search:\n" + json.dumps(dialog[i]["arguments"], ensure_ascii=False)
    preds = [{"label": gold, "predict": gold, "source": f"{test}:1#{i + 1}"},  # right: no pair
             {"label": gold, "predict": "assistant: 好的", "source": f"{test}:1#{i + 1}"},
             {"label": gold, "predict": "search:\n{not json", "source": f"{test}:1#{i + 1}"}]
    pairs, report = prefs_from_predictions(write_jsonl(tmp_path / "predictions.jsonl", preds))
    assert report == {"items": 3, "wrong": 2, "pairs": 1, "skipped": {"prediction not a turn (unparseable call)": 1}}
    assert len(pairs[0]["messages"]) == i and pairs[0]["rejected"] == {"role": "assistant", "content": "好的"}
    assert validate_file(write_jsonl(tmp_path / "pairs.jsonl", pairs)).formats == {"preference": 1}
