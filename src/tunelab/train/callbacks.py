"""Trainer callbacks: progress bar with tokens/s and ETA, JSONL metrics, time budget, loss plot."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from tqdm.auto import tqdm
from transformers import TrainerCallback

from tunelab.train.trainer import TokenMeter
from tunelab.utils.dist import broadcast_object, world_size
from tunelab.utils.io import append_jsonl


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ProgressBar(TrainerCallback):
    def __init__(self, meter: TokenMeter, budget_s: float = 0.0):
        self.meter, self.budget_s, self.bar, self.loss = meter, budget_s, None, None

    def on_train_begin(self, args, state, control, **kw):
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train",
                        unit="step", dynamic_ncols=True)
        self.meter.start = time.time()
        self.meter.tokens = 0

    def on_step_end(self, args, state, control, **kw):
        self.bar.update(state.global_step - self.bar.n)
        elapsed = time.time() - self.meter.start
        postfix = {"loss": f"{self.loss:.4f}" if self.loss is not None else "-",
                   "tok/s": f"{self.meter.rate():.0f}"}
        if self.budget_s:
            postfix["budget_left"] = f"{max(self.budget_s - elapsed, 0) / 60:.1f}m"
            # the budget, not the epoch, ends this run: size the bar (and so its ETA) to the steps it allows
            done = state.global_step - self.bar.initial
            if done >= 3 and elapsed > 0:
                expected = self.bar.initial + int(done / elapsed * self.budget_s)
                self.bar.total = max(state.global_step, min(state.max_steps, expected))
        self.bar.set_postfix(postfix, refresh=False)

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.loss = logs["loss"]

    def on_train_end(self, args, state, control, **kw):
        if self.bar:
            self.bar.close()


class MetricsLog(TrainerCallback):
    """Every log event as one JSON line in metrics.jsonl, with tokens/s and peak RSS."""

    def __init__(self, path: Path, meter: TokenMeter, base=None):
        # base: the totals a resumed run starts from (train/checkpoints.Progress), so the columns run on
        self.path, self.meter = path, meter
        self.tokens0, self.targets0, self.elapsed0 = (base.tokens, base.target_tokens, base.train_s) if base else (0, 0, 0)

    def on_log(self, args, state, control, logs=None, **kw):
        row = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), **(logs or {}),
               "tokens_per_s": round(self.meter.rate(), 1), "tokens": self.tokens0 + self.meter.tokens,
               "target_tokens": self.targets0 + self.meter.targets,
               "elapsed_s": round(self.elapsed0 + time.time() - self.meter.start, 2),
               "peak_rss_mb": round(peak_rss_mb(), 1)}
        append_jsonl(self.path, row)


class TimeBudget(TrainerCallback):
    """Stop cleanly (and save) once the wall-clock budget is spent. Under torchrun rank 0's clock decides and
    every rank gets its decision, so all stop after the same step (clocks differ; a rank left alone hangs)."""

    def __init__(self, budget_s: float, meter: TokenMeter):
        self.budget_s, self.meter, self.hit = budget_s, meter, False

    def on_train_begin(self, args, state, control, **kw):
        self.meter.start, self.meter.tokens = time.time(), 0  # on every rank (the progress bar is rank 0's)

    def on_step_end(self, args, state, control, **kw):
        if not self.budget_s:
            return control
        spent = time.time() - self.meter.start >= self.budget_s
        if world_size() > 1:
            spent = bool(broadcast_object(spent))
        if spent:
            self.hit = True
            control.should_training_stop = True
        return control
