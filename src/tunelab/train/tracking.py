"""Experiment tracking through HF Trainer's own integrations (`train.report_to`: tensorboard, mlflow, wandb),
kept local by default, plus tunelab's figures and resolved config sent to the same backends at the end.

Defaults that keep a run inside its run directory and off the network (each only when the user has not
set it): tensorboard event files in RUN/tensorboard, an mlflow file store in RUN/mlruns, wandb offline
in RUN/wandb.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tunelab.config import Config
from tunelab.utils.log import log


def tracking_args(cfg: Config, output_dir: Path) -> dict:
    """TrainingArguments for `train.report_to` (where each backend writes: set_tracking_env)."""
    return {"report_to": list(cfg.train.report_to) or "none"}


def set_tracking_env(cfg: Config, run_dir: Path) -> None:
    """Point tensorboard, mlflow and wandb into the run directory, wandb offline (the user's own settings win)."""
    backends = set(cfg.train.report_to)
    if "tensorboard" in backends:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(Path(run_dir).resolve() / "tensorboard"))
    if "mlflow" in backends:
        if "MLFLOW_TRACKING_URI" not in os.environ:  # a local file store: mlflow-skinny has no database driver
            os.environ["MLFLOW_TRACKING_URI"] = (Path(run_dir).resolve() / "mlruns").as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 refuses it unless told
    if "wandb" in backends:
        os.environ.setdefault("WANDB_MODE", "offline")  # never blocks on a network
        os.environ.setdefault("WANDB_DIR", str(Path(run_dir).resolve()))
        os.environ.setdefault("WANDB_SILENT", "true")


def final_figures(summary: dict) -> dict[str, float]:
    """The run's numeric figures: throughput and memory (per rank and in total), losses, dev task metrics."""
    keys = ("train_loss", "dev_loss", "steps", "train_time_s", "tokens", "tokens_per_s", "total_tokens_per_s",
            "peak_rss_mb", "total_peak_mb", "world_size")
    out = {f"tunelab/{k}": float(summary[k]) for k in keys if isinstance(summary.get(k), (int, float))}
    for r in summary.get("ranks") or []:
        for k in ("tokens_per_s", "peak_mb", "target_tokens"):
            out[f"tunelab/rank{r['rank']}/{k}"] = float(r[k])
    if summary.get("ranks"):
        out["tunelab/target_tokens"] = float(sum(r["target_tokens"] for r in summary["ranks"]))
    for k, v in (summary.get("dev_metrics") or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"tunelab/dev/{k}"] = float(v)
    return out


def _flat(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def record_final(cfg: Config, summary: dict, run_dir: Path) -> None:
    """Send `final_figures(summary)` and the resolved config to every backend of train.report_to (rank 0)."""
    if not cfg.train.report_to:
        return
    import yaml

    config = dataclasses.asdict(cfg)
    figures = final_figures(summary)
    step = int(summary.get("steps") or 0)
    for backend in cfg.train.report_to:
        try:
            if backend == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                with SummaryWriter(log_dir=os.environ.get("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))) as w:
                    w.add_text("tunelab/config", "```yaml\n" + yaml.safe_dump(config, allow_unicode=True) + "```",
                               step)
                    for k, v in figures.items():
                        w.add_scalar(k, v, step)
            elif backend == "mlflow":
                import mlflow

                last = mlflow.last_active_run()  # the run HF's MLflowCallback opened and closed
                with mlflow.start_run(run_id=last.info.run_id if last else None):
                    mlflow.log_params({f"tunelab.{k}": v[:6000] for k, v in _flat(config).items()})
                    mlflow.log_metrics(figures, step=step)
                    mlflow.log_dict(config, "tunelab_config.json")
            elif backend == "wandb":
                import wandb

                if wandb.run is None:
                    continue
                wandb.run.config.update({"tunelab": config}, allow_val_change=True)
                wandb.run.log(figures)
                wandb.run.summary.update(figures)
                wandb.finish()
        except Exception as e:  # a tracker's failure never loses a finished run; say so in one line
            log.warning(f"train.report_to: {backend} did not take tunelab's final figures: {type(e).__name__}: {e}")
