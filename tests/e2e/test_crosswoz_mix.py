"""Real dialogs mixed into training (`make run CROSSWOZ=...`): the validation file imported and split by
dialog, a tiny model trained a few steps on synthetic + real rows, and the real-dialog benchmark's import and
evaluation on that run. Skips when the CrossWOZ files are absent."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLE
from tunelab.cli.main import main
from tunelab.data.readers import read_conversations
from tunelab.evaluate.job import evaluate
from tunelab.train.job import train

ROOT = Path(__file__).resolve().parents[2]
CROSSWOZ = ROOT.parent / "shared/data/crosswoz"


def test_synthetic_plus_real_rows_train_and_the_benchmark_scores_the_run(tiny_llama, tmp_path, monkeypatch):
    src = CROSSWOZ / "val.json.zip"
    if not (src.is_file() and (CROSSWOZ / "hotel_db.json").is_file()):
        pytest.skip(f"{CROSSWOZ}: CrossWOZ files not present")
    monkeypatch.chdir(tmp_path)
    assert main(["hotel", "build-db", "--from-crosswoz", str(CROSSWOZ / "hotel_db.json"), "--out", "real/hotels.db"]) == 0
    assert main(["hotel", "import-crosswoz", str(src), "--db", "real/hotels.db", "--splits", "real"]) == 0
    splits = {n: [json.loads(l)["id"] for l in open(f"real/{n}.jsonl", encoding="utf-8")] for n in ("train", "dev", "test")}
    assert len(splits["train"]) >= 120 and len(splits["dev"]) >= 15 and len(splits["test"]) >= 15
    assert len({i for ids in splits.values() for i in ids}) == sum(map(len, splits.values()))  # split by dialog

    n_synth = len(read_conversations(SAMPLE)[0])
    summary = train({"model": {"name_or_path": str(tiny_llama)},
                     "data": {"train_file": [str(SAMPLE), "real/train.jsonl"], "dev_file": [str(SAMPLE), "real/dev.jsonl"],
                              "max_length": 256, "domain": "hotel", "cache": False},
                     "train": {"output_dir": "run", "max_steps": 3, "logging_steps": 1}})
    stats = summary["train_data"]
    assert stats["conversations"] + stats["too_long"] == n_synth + len(splits["train"])

    spec = importlib.util.spec_from_file_location("hotel_real", ROOT / "benchmarks/hotel_real.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data, db, report = bench.prepare(src, tmp_path / "bench", limit_dialogs=2)
    assert report["dialogs_evaluated"] == 2 and len(read_conversations(data)[0]) == 2
    metrics = evaluate("run", data, out_dir=tmp_path / "bench/eval", db=str(db), max_new_tokens=4, limit=6)
    assert metrics["n_items"] == 6 and "tool_execution_match" in metrics and "slot_f1" in metrics
    assert "dropped by reason" in bench.summary(report)
