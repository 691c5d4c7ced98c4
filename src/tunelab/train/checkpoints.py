"""Crash-safe checkpoints: a checkpoint counts only once tunelab marked it complete after HF wrote it.

A kill while the Trainer writes `checkpoint-N` leaves a directory that looks like a checkpoint but is
torn. `CheckpointMarker.on_save` runs after HF has written every file of the checkpoint and then adds
`tunelab_complete.json` atomically; it also holds the run's running totals (tokens, time, loss sum), so a
resumed run reports the whole run, not only its resumed part. `resume_point` picks the newest marked one.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from tunelab.config.run_dir import RunDir
from tunelab.train.trainer import TokenMeter
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import read_jsonl_tolerant, write_json, write_jsonl
from tunelab.utils.log import log
from tunelab.utils.safety import is_marked

MARKER = "tunelab_complete.json"
_NAME = re.compile(r"checkpoint-(\d+)")


@dataclass
class Progress:
    """Totals of a run up to a checkpoint's step (all zero for a fresh run)."""

    step: int = 0
    tokens: int = 0
    target_tokens: int = 0
    train_s: float = 0.0
    loss_sum: float = 0.0  # sum of the per-step training losses, as HF's training_loss sums them


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `checkpoint-N` directory in run_dir, oldest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("checkpoint-*")
             if p.is_dir() and (m := _NAME.fullmatch(p.name))]
    return sorted(found)


def is_complete(path: Path) -> bool:
    return (path / MARKER).is_file()


class CheckpointMarker(TrainerCallback):
    """Marks each checkpoint complete once HF has saved it, then keeps only the newest `keep` complete ones.

    Rotation is done here rather than by HF (pass save_total_limit=None to the Trainer): HF deletes the
    older checkpoints before this marker exists, so a kill in between could leave no complete checkpoint.
    """

    def __init__(self, meter: TokenMeter, base: Progress, keep: int = 0):
        self.meter, self.base, self.keep = meter, base, keep

    def on_save(self, args, state, control, **kw):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not path.is_dir():  # a save that wrote elsewhere (e.g. hyperparameter search): nothing to mark
            return
        mark_complete(path, Progress(
            step=state.global_step, tokens=self.base.tokens + self.meter.tokens,
            target_tokens=self.base.target_tokens + self.meter.targets,
            train_s=round(self.base.train_s + time.time() - self.meter.start, 3),
            loss_sum=self.base.loss_sum + self.meter.loss_sum))
        if self.keep > 0:
            done = [p for _, p in checkpoints(Path(args.output_dir)) if is_complete(p)]
            best = Path(state.best_model_checkpoint) if state.best_model_checkpoint else None
            for old in done[:-self.keep]:
                if old != best:
                    remove_checkpoint(old)


def mark_complete(path: Path, progress: Progress) -> None:
    """Write the marker (atomically): from now on `path` is a checkpoint to resume from."""
    write_json(path / MARKER, dataclasses.asdict(progress))


def remove_checkpoint(path: Path) -> None:
    # unmark first: a kill during rmtree then leaves a partial checkpoint, never a marked torn one
    (path / MARKER).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def resume_point(run_dir: Path) -> tuple[Path, Progress]:
    """The newest complete checkpoint of run_dir and the run's totals at it.

    Partial checkpoints newer than it (torn by a kill) are removed, so the resumed run can save its own
    there; older ones are left alone. Raises ConfigError when no checkpoint is complete.
    """
    found = checkpoints(run_dir)
    complete = [(s, p) for s, p in found if is_complete(p)]
    if not complete:
        names = ", ".join(p.name for _, p in found) or "none"
        raise ConfigError(f"train.resume=true but {run_dir} holds no complete checkpoint (found: {names}; a "
                          f"checkpoint is complete once it holds {MARKER}); start again with --train.overwrite=true")
    step, path = complete[-1]
    # only in a run dir tunelab made (marked), and never through a link: a user's directory keeps its files
    partial = [p for s, p in found if s > step and not is_complete(p) and not p.is_symlink()] \
        if is_marked(run_dir) else []
    for p in partial:
        remove_checkpoint(p)
    older = [p.name for s, p in found if not is_complete(p) and p not in partial]
    log.info(f"resuming from {path.name}" + (f"; removed partial {', '.join(p.name for p in partial)}"
                                              if partial else "")
             + (f"; skipped partial {', '.join(older)} (left in place)" if older else ""))
    saved = json.loads((path / MARKER).read_text())
    fields = {f.name for f in dataclasses.fields(Progress)}
    return path, Progress(**{k: v for k, v in saved.items() if k in fields})


def trim_metrics(path: Path, step: int) -> int:
    """Keep only the metric rows logged up to `step` (a resumed run logs the later ones again); returns
    the number of rows dropped. Torn lines go too."""
    if not path.is_file():
        return 0
    rows = read_jsonl_tolerant(path)
    kept = [r for r in rows if isinstance(r, dict) and r.get("step", 0) <= step]
    write_jsonl(path, kept)
    return len(rows) - len(kept)


def finished_run(run_dir: Path, max_steps: int) -> int | None:
    """The step a finished run ended at, or None if it can still be resumed.

    Finished: run.json exists and the run reached train.max_steps (or, with max_steps <= 0, ran its
    epochs without being stopped by the time budget).
    """
    try:
        run = RunDir(run_dir).summary()
    except ConfigError:  # no run.json, or a damaged one: not finished
        return None
    steps = int(run.get("steps", 0))
    done = steps >= max_steps if max_steps > 0 else not run.get("stopped_by_time_budget")
    return steps if done else None


def whole_run_loss(base: Progress, segment_loss: float, steps: int) -> float:
    """HF's training_loss of a resumed run covers only its resumed steps: the mean over all steps."""
    if not base.step:
        return segment_loss
    return (base.loss_sum + segment_loss * (steps - base.step)) / max(steps, 1)
