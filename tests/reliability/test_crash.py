"""Crash safety of training: kill -9 mid-step, mid-checkpoint and mid-final-save, then resume to the
same adapter and loss as a run that was never interrupted; torn metrics lines; seeded adapters."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import REPO, SAMPLE
from tunelab.train.checkpoints import MARKER, CheckpointMarker, Progress, resume_point
from tunelab.train.job import train
from tunelab.utils.errors import ConfigError
from tunelab.utils.safety import mark
from tunelab.utils.io import append_jsonl, read_jsonl_tolerant

# Run in a child process and SIGKILLed where the child signals (it touches a file, then sleeps).
CHILD = r"""
import json, os, sys, time
from pathlib import Path

cfg, where, flag = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

def pause():
    flag.touch()
    time.sleep(600)

if where == "step":  # inside step 4's forward pass; checkpoint-2 is complete
    from tunelab.train.trainer import SFTTrainer
    compute_loss = SFTTrainer.compute_loss
    def paused(self, model, inputs, *a, **k):
        if model.training and self.state.global_step == 3:
            pause()
        return compute_loss(self, model, inputs, *a, **k)
    SFTTrainer.compute_loss = paused
elif where == "checkpoint":  # half-way through HF writing checkpoint-4: its optimizer.pt is torn
    import torch
    save = torch.save
    def torn(obj, f, *a, **k):
        if str(f).endswith(os.path.join("checkpoint-4", "optimizer.pt")):
            Path(f).write_bytes(b"PK\x03\x04torn")
            pause()
        return save(obj, f, *a, **k)
    torch.save = torn
elif where == "final":  # all steps done, adapter written to the run dir, tokenizer and run.json not yet
    from transformers import PreTrainedTokenizerBase
    PreTrainedTokenizerBase.save_pretrained = lambda *a, **k: pause()

from tunelab.train.job import train
train(cfg)
"""


def cfg(model_dir, out, **train_kw):
    # dropout 0: LoRA dropout draws random masks; one thread: the same float sums in parent and child
    return {"model": {"name_or_path": str(model_dir)},
            "data": {"train_file": str(SAMPLE), "max_length": 512},
            "method": {"r": 8, "alpha": 16, "dropout": 0.0},
            "train": {"output_dir": str(out), "max_steps": 6, "save_steps": 2, "learning_rate": 3e-3,
                      "logging_steps": 1, "per_device_train_batch_size": 2, "threads": 1, **train_kw}}


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()  # train.threads=1 sets it process-wide
    yield
    torch.set_num_threads(n)


def adapter(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter_model.safetensors"))


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl_tolerant(run_dir / "metrics.jsonl") if "loss" in r]


@pytest.fixture(scope="module")
def reference(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("crash") / "uninterrupted"
    n = torch.get_num_threads()
    summary = train(cfg(tiny_llama, out))
    torch.set_num_threads(n)
    return summary, adapter(out), losses(out)


def kill_when_paused(config: dict, where: str, tmp: Path) -> None:
    flag, log = tmp / f"{where}.paused", tmp / f"{where}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(config), where, str(flag)],
                                stdout=err, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.time() + 300
        while not flag.exists():
            assert proc.poll() is None, f"child ended before the kill point:\n{log.read_text()[-3000:]}"
            assert time.time() < deadline, "child never reached the kill point"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def assert_same_run(out: Path, summary: dict, reference) -> None:
    ref_summary, ref_adapter, ref_losses = reference
    got = losses(out)
    assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6]  # no step logged twice
    assert got[-1][1] == pytest.approx(ref_losses[-1][1], abs=1e-4)
    assert summary["steps"] == 6
    assert summary["train_loss"] == pytest.approx(ref_summary["train_loss"], abs=1e-4)  # the whole run's
    assert summary["tokens"] == ref_summary["tokens"]
    tensors = adapter(out)
    assert tensors.keys() == ref_adapter.keys()
    for k, v in ref_adapter.items():
        torch.testing.assert_close(tensors[k], v, rtol=0, atol=1e-6)
    assert json.loads((out / "run.json").read_text())["tokens"] == ref_summary["tokens"]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]  # save_total_limit 2


def test_kill_during_a_step_then_resume_matches_the_uninterrupted_run(tiny_llama, tmp_path, reference):
    out = tmp_path / "run"
    kill_when_paused(cfg(tiny_llama, out), "step", tmp_path)
    assert (out / "checkpoint-2" / MARKER).is_file() and not (out / "run.json").exists()
    with open(out / "metrics.jsonl", "a") as f:  # a kill mid-write could leave this torn line
        f.write('{"step": 3, "lo')
    summary = train(cfg(tiny_llama, out, resume=True))
    assert_same_run(out, summary, reference)
    assert summary["resumed_from_step"] == 2 and (out / "loss.png").is_file()

    # resuming a finished run: one clear error, nothing touched
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(ConfigError, match="already finished at step 6; nothing to resume"):
        train(cfg(tiny_llama, out, resume=True))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_kill_during_a_checkpoint_save_resumes_from_the_last_complete_one(tiny_llama, tmp_path, reference, caplog):
    import logging

    out = tmp_path / "run"
    kill_when_paused(cfg(tiny_llama, out), "checkpoint", tmp_path)
    assert (out / "checkpoint-4").is_dir() and not (out / "checkpoint-4" / MARKER).exists()
    with caplog.at_level(logging.INFO, logger="tunelab"):
        summary = train(cfg(tiny_llama, out, resume=True))
    assert "resuming from checkpoint-2; removed partial checkpoint-4" in caplog.text
    assert_same_run(out, summary, reference)
    assert (out / "checkpoint-4" / MARKER).is_file()  # saved anew by the resumed run


def test_kill_during_the_final_save_leaves_no_run_json_and_resume_finishes_it(tiny_llama, tmp_path, reference):
    out = tmp_path / "run"
    kill_when_paused(cfg(tiny_llama, out), "final", tmp_path)
    # the adapter is there but the run is not finished: run.json is the last file a run writes
    assert (out / "adapter_model.safetensors").is_file() and not (out / "run.json").exists()
    summary = train(cfg(tiny_llama, out, resume=True))  # nothing left to train: totals from checkpoint-6
    assert_same_run(out, summary, reference)


def test_one_seed_gives_bit_identical_adapters(tiny_llama, tmp_path):
    train(cfg(tiny_llama, tmp_path / "a", max_steps=1, save_steps=0))
    train(cfg(tiny_llama, tmp_path / "b", max_steps=1, save_steps=0))
    a, b = adapter(tmp_path / "a"), adapter(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_append_after_a_torn_line_and_tolerant_read(tmp_path, caplog):
    from tunelab.train.plot import plot_loss

    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1, "loss": 2.0})
    with open(path, "a") as f:
        f.write('{"step": 2, "loss": 1.')  # torn by a kill
    append_jsonl(path, {"step": 3, "loss": 1.5})
    assert read_jsonl_tolerant(path) == [{"step": 1, "loss": 2.0}, {"step": 3, "loss": 1.5}]
    assert f"{path}:2: skipped a line" in caplog.text
    with open(path, "a") as f:
        f.write('{"step": 4')
    assert plot_loss(path, tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def _checkpoint(run: Path, step: int, complete: bool) -> Path:
    path = run / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (path / MARKER).write_text(json.dumps({"step": step, "tokens": 10 * step}))
    return path


def test_resume_point_skips_partial_and_never_deletes_without_a_complete_one(tmp_path, caplog):
    run = tmp_path / "run"
    old_partial, _, _, newer = (_checkpoint(run, 1, False), _checkpoint(run, 2, True),
                                _checkpoint(run, 4, True), _checkpoint(run, 10, False))
    (run / "checkpoint-x").mkdir()  # not ours: left alone
    unmarked = tmp_path / "copy"  # the same checkpoints in a directory tunelab did not make: nothing deleted
    shutil.copytree(run, unmarked)
    assert resume_point(unmarked)[0].name == "checkpoint-4" and (unmarked / "checkpoint-10").exists()
    mark(run, "run")
    with caplog.at_level("INFO", logger="tunelab"):
        path, progress = resume_point(run)
    assert path.name == "checkpoint-4" and progress == Progress(step=4, tokens=40)
    assert "resuming from checkpoint-4; removed partial checkpoint-10; skipped partial checkpoint-1" in caplog.text
    assert not newer.exists() and old_partial.exists() and (run / "checkpoint-x").exists()

    legacy = tmp_path / "legacy"  # checkpoints from before the markers: an error, not a deletion
    _checkpoint(legacy, 3, False)
    with pytest.raises(ConfigError, match="holds no complete checkpoint"):
        resume_point(legacy)
    assert (legacy / "checkpoint-3").exists()


def test_marker_rotates_only_complete_checkpoints(tmp_path):
    from tunelab.train.trainer import TokenMeter

    run = tmp_path / "run"
    _checkpoint(run, 2, True), _checkpoint(run, 4, True), _checkpoint(run, 6, False)
    marker = CheckpointMarker(TokenMeter(tokens=5), Progress(step=2, tokens=20), keep=1)
    state = SimpleNamespace(global_step=6, best_model_checkpoint=None)
    marker.on_save(SimpleNamespace(output_dir=str(run)), state, None)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-6"]
    assert json.loads((run / "checkpoint-6" / MARKER).read_text())["tokens"] == 25
