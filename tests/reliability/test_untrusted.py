"""A run directory is untrusted input: it cannot turn on remote code, its weights are checked, and its
database never depends on the current directory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SAMPLE
from tunelab.cli.main import build_parser, main
from tunelab.config import load_config, save_config
from tunelab.utils.errors import ConfigError, DataError, ModelError


@pytest.fixture(scope="module")
def trained(tiny_llama, tmp_path_factory):
    """(root, run): a 2-step LoRA run trained in `root` with a relative output_dir and a relative db."""
    from tunelab.domains.hotel import build_db
    from tunelab.train.job import train

    root = tmp_path_factory.mktemp("untrusted")
    build_db(root / "hotels.db", n=30)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        train({"model": {"name_or_path": str(tiny_llama)},
               "data": {"train_file": str(SAMPLE), "max_length": 256, "domain": "hotel", "db": "hotels.db"},
               "method": {"r": 4, "alpha": 8, "dropout": 0.0},
               "train": {"output_dir": "runs/x", "max_steps": 2, "per_device_train_batch_size": 2}})
    finally:
        os.chdir(cwd)
    return root, root / "runs" / "x"


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoint-*"))
    return dest


def cli(argv: list[str], capsys) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err.strip()


# 1. remote code: only the command line turns it on

def evil_run(tmp_path: Path, tiny_llama: Path) -> tuple[Path, Path]:
    """A full-weights run whose config.yaml asks for trust_remote_code and whose config.json maps to
    Python shipped in the run; that Python writes a marker file when it runs."""
    run, marker = tmp_path / "evil", tmp_path / "ran.txt"
    shutil.copytree(tiny_llama, run)
    (run / "evil_code.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import LlamaConfig\n\n\nclass EvilConfig(LlamaConfig):\n    pass\n")
    cfg = json.loads((run / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil_code.EvilConfig"}
    (run / "config.json").write_text(json.dumps(cfg))
    save_config(load_config(overrides={"model": {"name_or_path": str(tiny_llama), "trust_remote_code": True}}),
                run / "config.yaml")
    (run / "run.json").write_text("{}")  # it looks finished
    return run, marker


def test_run_config_cannot_run_code_shipped_in_the_run(tiny_llama, tmp_path, caplog):
    from tunelab.infer.engine import load_engine
    from tunelab.infer.multi import MultiEngine

    run, marker = evil_run(tmp_path, tiny_llama)
    with caplog.at_level("WARNING", logger="tunelab"):
        load_engine(run, device="cpu")  # chat, evaluate and export load through here
        MultiEngine.load([run], device="cpu")  # serve and webui load through here
    assert not marker.exists(), "a run's config.yaml ran the run's own Python"
    assert "trust_remote_code: ignored" in caplog.text
    for command in (["chat", "r"], ["evaluate", "r", "--data", "d"], ["export", "r", "--merge", "o"], ["serve", "r"]):
        assert build_parser().parse_args(command + ["--trust-remote-code"]).trust_remote_code
    # the command-line flag is what turns it on (the class then fails to load: a ModelError, one line)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    proc = subprocess.run([sys.executable, "-m", "tunelab.cli.main", "chat", str(run), "--trust-remote-code"],
                          input="/exit\n", capture_output=True, text=True, timeout=300, env=env)
    assert marker.exists(), proc.stderr[-2000:]


# 2. weights: safetensors only, headers and checksums checked

def test_training_records_weight_checksums(trained):
    _, run = trained
    summary = json.loads((run / "run.json").read_text())
    digest = hashlib.sha256((run / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert summary["checksums"] == {"adapter_model.safetensors": digest}


def test_corrupt_truncated_and_pickle_weights_are_one_line_errors(trained, tmp_path, capsys):
    from tunelab.infer.engine import load_engine

    _, run = trained
    flipped = copy_run(run, tmp_path / "flipped")
    data = bytearray((flipped / "adapter_model.safetensors").read_bytes())
    data[-64:] = b"\xff" * 64  # bad tensor bytes, header intact: today this evaluates to <pad>, exit 0
    (flipped / "adapter_model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="adapter_model.safetensors: sha256 does not match"):
        load_engine(flipped, device="cpu")

    truncated = copy_run(run, tmp_path / "truncated")
    (truncated / "adapter_model.safetensors").write_bytes(bytes(data[:-100]))
    with pytest.raises(ModelError, match="adapter_model.safetensors: not a valid safetensors file"):
        load_engine(truncated, device="cpu")

    pickled = copy_run(run, tmp_path / "pickled")
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ModelError, match="adapter_model.bin: pickle weights are not loaded"):
        load_engine(pickled, device="cpu")
    rc, err = cli(["evaluate", str(truncated), "--data", str(SAMPLE), "--out", str(tmp_path / "ev")], capsys)
    assert rc == 2 and err.startswith("tunelab: error: ") and len(err.splitlines()) == 1


# 3. the run's database: absolute in run.json, never resolved against the current directory

def test_run_db_does_not_depend_on_the_current_directory(trained, tmp_path, monkeypatch):
    from tunelab.domains.hotel import build_db
    from tunelab.infer.engine import load_engine
    from tunelab.infer.multi import read_run_info

    root, run = trained
    assert json.loads((run / "run.json").read_text())["db"] == str((root / "hotels.db").resolve())
    build_db(tmp_path / "hotels.db", n=5)  # another directory's database of the same name
    monkeypatch.chdir(tmp_path)
    assert load_engine(run, device="cpu").db == str((root / "hotels.db").resolve())
    # a run made before run.json recorded `db`, in a project moved elsewhere: resolved where training
    # ran, found from config.yaml's relative output_dir
    moved = tmp_path / "moved"
    old = copy_run(run, moved / "runs" / "x")
    shutil.copy(root / "hotels.db", moved / "hotels.db")
    summary = json.loads((old / "run.json").read_text())
    del summary["db"]
    (old / "run.json").write_text(json.dumps(summary))
    assert read_run_info(old).db == str((moved / "hotels.db").resolve())
    assert read_run_info(old, db="hotels.db").db == str(tmp_path / "hotels.db")  # --db: as the user typed it


def test_db_override_must_exist(trained, tmp_path, monkeypatch):
    from tunelab.evaluate.job import evaluate, score_predictions
    from tunelab.infer.engine import load_engine
    from tunelab.train.job import train

    _, run = trained
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="hotel.db"):
        load_engine(run, device="cpu", db="hotel.db")  # misspelt: hotels.db
    with pytest.raises(DataError, match="hotel.db"):
        evaluate(run, SAMPLE, db="hotel.db", out_dir=tmp_path / "ev")
    with pytest.raises(DataError, match="hotel.db"):
        score_predictions(SAMPLE, "hotel", "hotel.db")  # `tunelab score --db`: no silent drop of the tool-execution metric
    with pytest.raises(ConfigError, match="data.db 'hotel.db'"):
        train({"data": {"train_file": str(SAMPLE), "db": "hotel.db"}, "train": {"output_dir": str(tmp_path / "r")}})
    assert not (tmp_path / "r").exists()
