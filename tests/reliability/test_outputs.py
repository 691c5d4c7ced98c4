"""Never lose a user's files: outputs are checked before anything is written, only directories tunelab made
are replaced, and a replacement is swapped in only once it is complete."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.train.job import train
from tunelab.utils.errors import ConfigError
from tunelab.utils.safety import MARKER


def tunelab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tunelab.cli.main", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in err[0], err[0]


def tiny_cfg(model_dir, sample_path, out, **train_kw):
    return {"model": {"name_or_path": str(model_dir)},
            "data": {"train_file": str(sample_path), "max_length": 256, "cache": False},
            "method": {"r": 4, "alpha": 8},
            "train": {"output_dir": str(out), "max_steps": 2, "logging_steps": 1, "overwrite": True, **train_kw}}


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of a user's project (a git repository with source and recipes), as the working directory."""
    root = tmp_path / "proj"
    for rel in (".git/HEAD", "src/code.py", "recipes/r.yaml"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    monkeypatch.chdir(root)
    return root


@pytest.mark.parametrize("out", ["", ".", "..", "{root}"])
def test_train_refuses_cwd_parents_and_repo_root(project, tiny_llama, sample_path, out):
    before = snapshot(project)
    with pytest.raises(ConfigError, match="train.output_dir"):
        train(tiny_cfg(tiny_llama, sample_path, out.format(root=project)))
    assert snapshot(project) == before


def test_train_output_may_not_hold_its_data(tmp_path, tiny_llama, sample_path):
    data = tmp_path / "d" / "train.jsonl"
    data.parent.mkdir()
    data.write_bytes(sample_path.read_bytes())
    with pytest.raises(ConfigError, match="holds the input"):
        train(tiny_cfg(tiny_llama, data, tmp_path / "d"))
    assert data.read_bytes() == sample_path.read_bytes()


def test_overwrite_refuses_a_directory_tunelab_did_not_make(tmp_path, tiny_llama, sample_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    with pytest.raises(ConfigError, match="not made by tunelab"):
        train(tiny_cfg(tiny_llama, sample_path, mine))
    assert (mine / "chapter1.tex").read_text() == "years of work"


@pytest.mark.parametrize("bad", [{"gradient_accumulation_steps": 0}, {"per_device_train_batch_size": 0},
                                 {"learning_rate": float("nan")}, {"max_grad_norm": -1}])
def test_a_bad_setting_fails_before_the_old_run_is_touched(tmp_path, tiny_llama, sample_path, bad):
    out = tmp_path / "run"
    train(tiny_cfg(tiny_llama, sample_path, out))
    before = snapshot(out)
    with pytest.raises(ConfigError, match=next(iter(bad))):
        train(tiny_cfg(tiny_llama, sample_path, out, **bad))
    assert snapshot(out) == before


def test_a_failing_replacement_leaves_the_old_run_whole(tmp_path, tiny_llama, sample_path, monkeypatch):
    out = tmp_path / "run"
    train(tiny_cfg(tiny_llama, sample_path, out))
    before = snapshot(out)

    def crash(*a, **k):
        raise RuntimeError("died inside the Trainer")

    monkeypatch.setattr("tunelab.train.job.SFTTrainer.train", crash)
    with pytest.raises(RuntimeError):
        train(tiny_cfg(tiny_llama, sample_path, out, seed=7))
    assert snapshot(out) == before  # the new run was staged beside it, never in it
    monkeypatch.undo()
    summary = train(tiny_cfg(tiny_llama, sample_path, out, seed=7))  # a later overwrite replaces it
    assert summary["run_dir"] == str(out) and (out / MARKER).is_file()
    assert json.loads((out / "config.yaml").read_text().split("seed: ")[1].split("\n")[0]) == 7
    assert not list(tmp_path.glob(".run.*"))  # no staging or old copy left behind


def test_data_commands_refuse_to_overwrite_their_input(tmp_path, sample_path):
    d = tmp_path / "d"
    d.mkdir()
    raw = d / "raw.jsonl"
    raw.write_bytes(sample_path.read_bytes())
    (d / "notes.txt").write_text("keep me")
    before = snapshot(d)
    one_line_error(tunelab("data", "clean", str(raw), str(d)), "holds the input")  # no suffix: a datasets dir
    one_line_error(tunelab("data", "balance", str(raw), str(raw), "--by", "kind"), "is the input")
    one_line_error(tunelab("data", "convert", str(raw), str(raw), "--to", "messages"), "is the input")
    raw2 = d / "train.jsonl"
    raw2.write_bytes(raw.read_bytes())
    before["train.jsonl"] = raw2.read_bytes()
    one_line_error(tunelab("data", "split", str(raw2), str(d)), "is the input")
    assert snapshot(d) == before


def test_split_keeps_files_it_did_not_write(tmp_path, sample_path):
    out = tmp_path / "heldout"
    out.mkdir()
    (out / "test.jsonl").write_text("{}\n")
    one_line_error(tunelab("data", "split", str(sample_path), str(out), "--ratios", "2,1,1"), "not written by tunelab")
    assert (out / "test.jsonl").read_text() == "{}\n"
    fresh = tmp_path / "fresh"
    assert tunelab("data", "split", str(sample_path), str(fresh), "--ratios", "1,1").returncode == 0
    assert tunelab("data", "split", str(sample_path), str(fresh), "--ratios", "1,1").returncode == 0  # rerun


def test_datasets_dir_replaced_only_when_tunelab_made_it(tmp_path, sample_path):
    foreign = tmp_path / "ds"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("x")
    one_line_error(tunelab("data", "convert", str(sample_path), str(foreign), "--to", "messages"), "not made by tunelab")
    assert (foreign / "mine.txt").read_text() == "x"
    ours = tmp_path / "ours"
    assert tunelab("data", "convert", str(sample_path), str(ours), "--to", "messages").returncode == 0
    assert tunelab("data", "convert", str(sample_path), str(ours), "--to", "messages").returncode == 0
    from tunelab.data.readers import read_rows

    assert len(list(read_rows(ours))) == len(sample_path.read_text().splitlines())


@pytest.mark.parametrize("args, needle", [
    (["evaluate", "RUN", "--data", "x.jsonl", "--limit", "-1"], "--limit"),
    (["evaluate", "RUN", "--data", "x.jsonl", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["data", "split", "x.jsonl", "out", "--ratios", "nan,1"], "--ratios"),
    (["data", "clean", "x.jsonl", "y.jsonl", "--near", "2"], "--near"),
    (["hotel", "build-db", "--out", "h.db", "--n", "0"], "--n"),
    (["train", "r.yaml", "--train.time_budget_minutes=-1"], "time_budget_minutes"),
    (["train", "r.yaml", "--data.max_samples=-3"], "max_samples"),
    (["train", "r.yaml", "--eval.temperature=.nan"], "temperature"),
])
def test_numbers_out_of_range_stop_at_the_edge(tmp_path, args, needle):
    (tmp_path / "r.yaml").write_text("data: {train_file: x.jsonl}\n")
    proc = tunelab(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["r.yaml"]


def test_an_unwritable_output_is_one_line(tmp_path, sample_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for args in (["data", "convert", str(sample_path), str(blocker / "out.jsonl"), "--to", "messages"],
                 ["hotel", "build-db", "--out", str(blocker / "h.db"), "--n", "5"]):
        one_line_error(tunelab(*args), str(blocker))
    assert blocker.read_text() == "x"


def test_a_replacement_killed_before_its_swap_is_swapped_in_by_resume(tmp_path, tiny_llama, sample_path):
    out = tmp_path / "run"
    train(tiny_cfg(tiny_llama, sample_path, out))
    staged = tmp_path / ".run.next"
    train(tiny_cfg(tiny_llama, sample_path, staged, save_steps=1, seed=5))  # a finished run, left unswapped
    (staged / MARKER).write_text((out / MARKER).read_text())
    with pytest.raises(ConfigError, match="finished replacement is now in place"):
        train(tiny_cfg(tiny_llama, sample_path, out, resume=True))
    assert "seed: 5" in (out / "config.yaml").read_text() and not staged.exists()


def test_a_swap_that_fails_puts_the_old_directory_back(tmp_path, monkeypatch):
    import os

    from tunelab.utils.safety import mark, replace_dir, staging_dir

    final = tmp_path / "run"
    final.mkdir()
    mark(final, "run")
    (final / "adapter.safetensors").write_text("old weights")
    new = staging_dir(final, "run")
    real = os.replace

    def failing(src, dst):
        if str(src) == str(new):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        replace_dir(new, final)
    assert (final / "adapter.safetensors").read_text() == "old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([final.name, new.name])  # no hidden .old left
