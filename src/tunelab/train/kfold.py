"""Train once per fold of `tunelab data split --kfold K` and report the dev loss as mean ± std."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from tunelab.config import Config
from tunelab.train.job import train
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import write_json
from tunelab.utils.log import log


def train_kfold(cfg: Config, folds_dir: str | Path) -> dict:
    """Each fold_i/{train,dev}.jsonl trains into <output_dir>/fold_i; returns per-fold and summary dev loss."""
    folds = sorted(p for p in Path(folds_dir).glob("fold_*") if (p / "train.jsonl").is_file())
    if len(folds) < 2:
        raise ConfigError(f"{folds_dir}: expected fold_0..fold_K-1 with train.jsonl and dev.jsonl "
                          "(make them with `tunelab data split IN OUT --kfold K`)")
    out = Path(cfg.train.output_dir)
    results = []
    for fold in folds:
        data = dataclasses.replace(cfg.data, train_file=str(fold / "train.jsonl"), dev_file=str(fold / "dev.jsonl"))
        run = dataclasses.replace(cfg.train, output_dir=str(out / fold.name))
        summary = train(dataclasses.replace(cfg, data=data, train=run))
        results.append({"fold": fold.name, "dev_loss": summary["dev_loss"], "train_loss": summary["train_loss"]})
    losses = [r["dev_loss"] for r in results]
    report = {"folds": results, "dev_loss_mean": statistics.mean(losses),
              "dev_loss_std": statistics.stdev(losses) if len(losses) > 1 else 0.0}
    write_json(out / "kfold.json", report)
    log.info(f"{len(folds)} folds: dev loss {report['dev_loss_mean']:.4f} ± {report['dev_loss_std']:.4f}")
    return report
