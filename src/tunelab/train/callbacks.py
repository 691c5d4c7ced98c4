"""Trainer callbacks: progress bar with tokens/s and ETA, JSONL metrics, time budget, loss plot."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from tqdm.auto import tqdm
from transformers import TrainerCallback

from tunelab.train.trainer import TokenMeter
from tunelab.utils.dist import rank0_says
from tunelab.utils.io import append_jsonl


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ProgressBar(TrainerCallback):
    def __init__(self, meter: TokenMeter, budget_s: float = 0.0, clock: "TimeBudget | None" = None):
        self.meter, self.budget_s, self.bar, self.loss = meter, budget_s, None, None
        self.clock = clock  # its dev-loss reserve shortens the training the budget allows

    def on_train_begin(self, args, state, control, **kw):
        # with a budget the planned steps say nothing of the end (an epoch may take a day): no total, so no
        # ETA, until the first step's pace sizes the bar to what the budget allows
        self.bar = tqdm(total=None if self.budget_s else state.max_steps, initial=state.global_step, desc="train",
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
            if done >= 1 and elapsed > 0:
                usable = self.budget_s - (self.clock.dev_estimate_s() if self.clock else 0.0)
                expected = self.bar.initial + int(done / elapsed * max(usable, 0.0))
                self.bar.total = max(state.global_step, min(state.max_steps, expected))
                self.bar.refresh()
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


# A dev-loss token costs a forward pass only; a training token a forward and a backward pass: about twice
# as much with a frozen base (erring long, so the dev loss ends inside the budget).
FORWARD_SPEEDUP = 2.0


class TimeBudget(TrainerCallback):
    """Stop cleanly (and save) once the wall-clock budget is spent, leaving time for the final dev loss:
    training stops when the time spent plus the dev loss's estimate (its tokens at the training pace measured
    after the first step, x FORWARD_SPEEDUP) reaches the budget. Under torchrun rank 0's clock decides and
    every rank gets its decision, so all stop after the same step (a rank left alone would hang)."""

    def __init__(self, budget_s: float, meter: TokenMeter, dev_tokens: int = 0):
        self.budget_s, self.meter, self.hit = budget_s, meter, False
        self.dev_tokens = dev_tokens
        self.mark: tuple[float, int] | None = None  # (time, tokens) at the end of the first step

    def dev_estimate_s(self) -> float:
        """Seconds the final dev loss should take, from the pace since the first step (whose one-off set-up
        would overstate it); 0 until a step after it has been timed."""
        if not self.dev_tokens or self.mark is None or self.meter.tokens <= self.mark[1]:
            return 0.0
        rate = (self.meter.tokens - self.mark[1]) / max(time.time() - self.mark[0], 1e-9)
        return self.dev_tokens / (rate * FORWARD_SPEEDUP)

    def on_train_begin(self, args, state, control, **kw):
        self.meter.start, self.meter.tokens = time.time(), 0  # on every rank (the progress bar is rank 0's)

    def on_step_end(self, args, state, control, **kw):
        if self.mark is None:
            self.mark = (time.time(), self.meter.tokens)
        if not self.budget_s:
            return control
        if rank0_says(time.time() - self.meter.start + self.dev_estimate_s() >= self.budget_s):
            self.hit = True
            control.should_training_stop = True
        return control


class StopFile(TrainerCallback):
    """Stop cleanly (and save, like the time budget) once `path` exists: how the web UI's Stop button asks."""

    def __init__(self, path: str):
        self.path, self.hit = Path(path) if path else None, False

    def on_step_end(self, args, state, control, **kw):
        if rank0_says(self.path is not None and self.path.exists()):
            self.hit = True
            control.should_training_stop = True
        return control


class DevLossBar(TrainerCallback):
    """A progress bar over the dev-loss batches (evaluation runs forward passes for minutes on a CPU)."""

    def __init__(self, batches: int):
        self.batches, self.bar = batches, None

    def on_prediction_step(self, args, state, control, **kw):
        if self.bar is None:
            self.bar = tqdm(total=self.batches, desc="dev loss", unit="batch", dynamic_ncols=True, leave=False)
        self.bar.update(1)

    def on_evaluate(self, args, state, control, **kw):
        if self.bar is not None:
            self.bar.close()
        self.bar = None
