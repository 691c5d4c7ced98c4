"""A training run in a subprocess, as the web UI's Train tab drives it: start, watch, stop, read its results.

The run is `tunelab train RECIPE --key=value ...` in its own process group, its output in `train.log`
beside the run. Stop writes the run's `train.stop_file`: training ends at the next step and saves, so a
stopped run can still be chatted with; a second Stop ends the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import tunelab
from tunelab.config import load_config
from tunelab.config.run_dir import RUN_FILE

COMMON_KEYS = {  # the form's fields: the override keys they set
    "model": "model.name_or_path", "method": "method.name", "rank": "method.r",
    "learning_rate": "train.learning_rate", "time_budget_minutes": "train.time_budget_minutes",
    "max_steps": "train.max_steps", "train_file": "data.train_file", "dev_file": "data.dev_file",
}


def overrides_for(values: dict, output_dir: Path, stop_file: Path) -> list[str]:
    """`--section.key=value` lines for the form's values (empty ones keep the recipe's), the output dir
    and the stop file. A data field with commas is a list of files."""
    out = []
    for name, key in COMMON_KEYS.items():
        value = values.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if key.startswith("data.") and "," in str(value):
            value = "[" + ", ".join(json.dumps(v.strip()) for v in str(value).split(",") if v.strip()) + "]"
        elif isinstance(value, float) and value.is_integer() and key in ("method.r", "train.max_steps"):
            value = int(value)  # a number box gives floats
        out.append(f"--{key}={value}")
    return out + [f"--train.output_dir={output_dir}", "--train.overwrite=false", "--train.resume=false",
                  f"--train.stop_file={stop_file}"]


class TrainProcess:
    """One run of `tunelab train` in a subprocess. `start` checks the config first (ConfigError, nothing
    started); `state` is "running", "stopping", "finished" (run.json written) or "failed"."""

    def __init__(self, recipe: str | Path, values: dict, runs_root: str | Path):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.output_dir = Path(runs_root).resolve() / f"webui-{stamp}"
        n = 1
        while self.output_dir.exists():
            n += 1
            self.output_dir = Path(runs_root).resolve() / f"webui-{stamp}-{n}"
        self.stop_file = self.output_dir.parent / f".{self.output_dir.name}.stop"
        self.recipe = str(recipe)
        self.overrides = overrides_for(values, self.output_dir, self.stop_file)
        self.cfg = load_config(self.recipe, self.overrides)  # a bad value: one line, before any process
        self.proc: subprocess.Popen | None = None
        self.log_path = self.output_dir.parent / f"{self.output_dir.name}.log"

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "tunelab.cli.main", "train", self.recipe, *self.overrides]

    def start(self) -> "TrainProcess":
        self.output_dir.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        src = str(Path(tunelab.__file__).resolve().parents[1])  # the tunelab this page runs, installed or not
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def stop(self) -> None:
        """First call: ask training to stop at the next step and save. Later calls: end the process."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if not self.stop_file.exists():
            self.stop_file.touch()
        else:
            os.killpg(self.proc.pid, signal.SIGTERM)

    @property
    def state(self) -> str:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        if code is None:
            return "stopping" if self.stop_file.exists() else "running"
        self.stop_file.unlink(missing_ok=True)
        return "finished" if code == 0 and (self.output_dir / RUN_FILE).is_file() else "failed"

    def metrics(self) -> list[dict]:
        """The rows of metrics.jsonl logged so far (a row being written is skipped)."""
        rows = []
        path = self.output_dir / "metrics.jsonl"
        if not path.is_file():
            return rows
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows

    def summary(self) -> dict | None:
        path = self.output_dir / RUN_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except ValueError:
            return None

    def log_tail(self, n: int = 3) -> str:
        """The last lines of the run's output (its error line when it failed)."""
        if not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
        return "\n".join([ln for ln in text.splitlines() if ln.strip()][-n:])

    def wait(self, timeout: float | None = None) -> int | None:
        return self.proc.wait(timeout) if self.proc is not None else None


def result_rows(summary: dict) -> list[list]:
    """The evaluation table of a finished run: [metric, value] for its losses, speed and task metrics."""
    keys = ["steps", "train_loss", "dev_loss", "tokens_per_s", "train_time_s", "stopped_by_time_budget",
            "stopped_by_request", "trainable_params", "peak_rss_mb"]
    rows = [[k, _fmt(summary[k])] for k in keys if summary.get(k) is not None]
    for k, v in (summary.get("dev_metrics") or {}).items():
        inner = v if isinstance(v, dict) else {"": v}  # one level of nesting: a group of metrics
        rows += [[f"dev {k} {name}".strip(), _fmt(x)] for name, x in inner.items() if isinstance(x, (int, float, str))]
    return rows


def _fmt(v):
    return round(v, 4) if isinstance(v, float) else v if isinstance(v, (int, str)) else str(v)
