"""The loss curve PNG of a run, from its metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

from tunelab.utils.io import atomic_path, read_jsonl_tolerant


def plot_loss(metrics_path: Path, out_path: Path) -> Path | None:
    if not metrics_path.is_file():
        return None
    rows = [r for r in read_jsonl_tolerant(metrics_path) if isinstance(r, dict) and "step" in r]  # a kill may tear one
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    dev = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train and not dev:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    if dev:
        ax.plot(*zip(*dev), "o-", label="dev loss", lw=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per target token")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out_path
