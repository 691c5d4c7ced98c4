"""`tunelab compare RUN_DIR...`: one table across runs, in the reference's columns, plus a bar chart."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.run_dir import RunDir
from tunelab.utils.io import atomic_path, write_text
from tunelab.utils.safety import check_output


def _eval_metrics(run_dir: Path, eval_name: str | None) -> dict:
    dirs = [run_dir / eval_name] if eval_name else sorted(run_dir.glob("eval-*"), key=lambda p: p.stat().st_mtime)
    dirs = [d for d in dirs if (d / "metrics.json").is_file()]
    return json.loads((dirs[-1] / "metrics.json").read_text()) if dirs else {}


def collect(run_dirs: list[str], eval_name: str | None = None) -> list[dict]:
    rows = []
    for rd in map(Path, run_dirs):
        run = RunDir.open(rd).summary()
        m = _eval_metrics(rd, eval_name)
        rows.append({"run": rd.name, "model": run.get("base_model", "?"), "method": run.get("method", "?"),
                     "bleu-4": m.get("bleu-4"), "slot_p": m.get("slot_p"), "slot_r": m.get("slot_r"),
                     "slot_f1": m.get("slot_f1"), "role_accuracy": m.get("role_accuracy"),
                     "trainable_params": run.get("trainable_params"), "train_time_s": run.get("train_time_s"),
                     "peak_rss_mb": run.get("peak_rss_mb"), "dev_loss": run.get("dev_loss")})
    return rows


def _f(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(rows: list[dict]) -> str:
    head = ("| Run | Model | Method | BLEU-4 | SLOT-P | SLOT-R | SLOT-F1 | role acc | dev loss | trainable params "
            "| train time (s) | peak RSS (MB) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['run']} | {r['model']} | {r['method']} | {_f(r['bleu-4'])} | {_f(r['slot_p'])} | {_f(r['slot_r'])} "
                     f"| {_f(r['slot_f1'])} | {_f(r['role_accuracy'])} | {_f(r['dev_loss'], '.4f')} "
                     f"| {_f(r['trainable_params'], ',')} | {_f(r['train_time_s'], '.0f')} | {_f(r['peak_rss_mb'], '.0f')} |")
    return "\n".join(lines)


def bar_chart(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("bleu-4", "BLEU-4"), ("slot_f1", "slot F1"), ("role_accuracy", "role acc")]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(rows) + 2), 4), dpi=110)
    width = 0.8 / len(keys)
    for k, (key, label) in enumerate(keys):
        xs = [i + k * width for i in range(len(rows))]
        ax.bar(xs, [r[key] or 0 for r in rows], width, label=label)
    ax.set_xticks([i + width for i in range(len(rows))], [f"{r['run']}\n{r['method']}" for r in rows], fontsize=8)
    ax.set_ylim(0, 100)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def compare(run_dirs: list[str], out: str | None = None, eval_name: str | None = None) -> str:
    rows = collect(run_dirs, eval_name)
    table = markdown(rows)
    if out:
        out_path = check_output(out, run_dirs, "--out")
        write_text(out_path.with_suffix(".md"), table + "\n")
        bar_chart(rows, out_path.with_suffix(".png"))
    return table
