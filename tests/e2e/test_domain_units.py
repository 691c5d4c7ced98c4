"""The second domain end to end on a tiny model: synthesize, train, evaluate with its tool and metric, chat."""

import json
import subprocess
import sys

from tunelab.domains import get_domain
from tunelab.domains.data import synthesize_splits
from tunelab.train.job import train


def test_units_domain_trains_evaluates_and_chats(tiny_llama, tmp_path):
    data = tmp_path / "units"
    report = synthesize_splits(get_domain("units"), 80, 0, "", data)
    assert report["train"] + report["dev"] + report["test"] == 80 - report["duplicates_dropped"]
    summary = train({
        "model": {"name_or_path": str(tiny_llama)},
        "data": {"train_file": str(data / "train.jsonl"), "dev_file": str(data / "dev.jsonl"), "domain": "units",
                 "system_prompt": get_domain("units").system_prompt, "max_length": 512},
        "method": {"r": 8, "alpha": 16, "dropout": 0.0},
        "train": {"output_dir": str(tmp_path / "run"), "max_steps": 6, "learning_rate": 3e-3,
                  "per_device_train_batch_size": 4},
        "eval": {"dev_items": 6, "max_new_tokens": 8}})
    metrics = summary["dev_metrics"]
    assert metrics["n_items"] == 6 and "tool_execution_match" in metrics and "answer_value_match" in metrics
    rows = [json.loads(l) for l in (tmp_path / "run" / "eval-dev" / "predictions.jsonl").read_text().splitlines()]
    calls = [r for r in rows if not r["label"].startswith("assistant:")]
    assert all(r["label"].startswith("convert_units:\n") for r in calls)
    proc = subprocess.run([sys.executable, "-m", "tunelab.cli.main", "chat", str(tmp_path / "run"),
                           "--max-new-tokens", "6"], input="How many km is 3 miles?\n/exit\n",
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.count("assistant> ") == 1, proc.stderr
