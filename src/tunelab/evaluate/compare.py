"""`tunelab compare RUN_DIR...`: one table across runs, in the reference's columns, their error analyses side
by side, plus a bar chart."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.run_dir import RunDir
from tunelab.evaluate.analysis import CONFUSIONS
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import atomic_path, write_text
from tunelab.utils.safety import check_output


def _eval_dir(run_dir: Path, eval_name: str | None) -> Path | None:
    """The run's evaluation directory: `eval_name` under it, else its newest eval-* with a metrics.json."""
    dirs = [run_dir / eval_name] if eval_name else sorted(run_dir.glob("eval-*"), key=lambda p: p.stat().st_mtime)
    dirs = [d for d in dirs if (d / "metrics.json").is_file()]
    return dirs[-1] if dirs else None


def _read_metrics(eval_dir: Path | None) -> dict:
    if eval_dir is None:
        return {}
    path = eval_dir / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the evaluation ({str(e)[:200]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _source(path: Path, eval_name: str | None) -> tuple[Path | None, Path | None]:
    """(run dir, evaluation dir) of a compare argument: a run directory, or an evaluation directory (any
    directory with a metrics.json, e.g. one written with `evaluate --out`) whose run is its metrics'
    run_dir, else the directory above it when that is a run."""
    if (path / "run.json").is_file() or not (path / "metrics.json").is_file():
        return path, _eval_dir(path, eval_name)
    run = _read_metrics(path).get("run_dir")
    for candidate in ([Path(run)] if isinstance(run, str) and run else []) + [path.resolve().parent]:
        if (candidate / "run.json").is_file():
            return candidate, path
    return None, path


def _names(runs: list[Path | None], evals: list[Path | None]) -> list[str]:
    """Each row's name: the run directory's name, with its parent's where two runs share a name, and the
    evaluation's where one run is compared on several."""
    base = [r.resolve().name if r is not None else e.resolve().name for r, e in zip(runs, evals)]
    names = [f"{r.resolve().parent.name}/{b}" if r is not None and base.count(b) > 1 else b
             for r, b in zip(runs, base)]
    return [f"{n} ({e.name})" if e is not None and names.count(n) > 1 else n for n, e in zip(names, evals)]


def collect(run_dirs: list[str], eval_name: str | None = None) -> list[dict]:
    """One row per argument (a run directory or an evaluation directory): its name, its run's facts and
    the metrics of its evaluation."""
    sources = [_source(Path(p), eval_name) for p in run_dirs]
    names = _names([r for r, _ in sources], [e for _, e in sources])
    rows = []
    for name, (rd, ev) in zip(names, sources):
        run = RunDir.open(rd).summary() if rd is not None else {}
        m = _read_metrics(ev)
        rows.append({"run": name, "eval": ev.name if ev is not None else "-",
                     "model": Path(run.get("base_model") or "?").name, "method": run.get("method", "?"),
                     "bleu-4": m.get("bleu-4"), "slot_p": m.get("slot_p"), "slot_r": m.get("slot_r"),
                     "slot_f1": m.get("slot_f1"), "role_accuracy": m.get("role_accuracy"),
                     "trainable_params": run.get("trainable_params"), "train_time_s": run.get("train_time_s"),
                     "peak_rss_mb": run.get("peak_rss_mb"), "dev_loss": run.get("dev_loss"),
                     "analysis": m.get("analysis")})
    return rows


def _f(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(rows: list[dict]) -> str:
    head = ("| Run | Eval | Model | Method | BLEU-4 | SLOT-P | SLOT-R | SLOT-F1 | role acc | dev loss | trainable params "
            "| train time (s) | peak RSS (MB) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['run']} | {r['eval']} | {r['model']} | {r['method']} | {_f(r['bleu-4'])} | {_f(r['slot_p'])} | {_f(r['slot_r'])} "
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


def _slot_cell(a: dict | None, slot: str) -> str:
    if a is None:
        return "-"
    c = a["slots"].get(slot)
    return "/".join(str(c[k]) for k in ("missed", "extra", "wrong", "near_miss")) if c else "0/0/0/0"


def _facts_cell(a: dict, kind: str) -> str:
    f = a["replies"]["predicted"]["facts"].get(kind, {})
    return f"{f.get('unsupported', 0)} of {f.get('stated', 0)}"


def analysis_markdown(rows: list[dict]) -> str:
    """The error analyses of the runs side by side: role confusions, range swaps and reply facts (one row
    each, a column per run), then slot errors per slot name as missed/extra/wrong/near-miss per run. ''
    when no run's metrics.json has an analysis (older evaluations)."""
    runs = [(r["run"], r.get("analysis")) for r in rows]
    if not any(a for _, a in runs):
        return ""
    head = "| | " + " | ".join(name for name, _ in runs) + " |\n|---|" + "---|" * len(runs)

    def line(label: str, value) -> str:
        return f"| {label} | " + " | ".join("-" if a is None else str(value(a)) for _, a in runs) + " |"

    known = [a for _, a in runs if a]
    stems = sorted({s for a in known for s in a["swaps"]})
    kinds = sorted({k for a in known for k in a["replies"]["predicted"]["facts"]})
    lines = ["## Error analysis", "", head]
    lines += [line(f"role: {k.replace('_', ' ')}", lambda a, k=k: a["roles"].get(k, 0)) for k in CONFUSIONS]
    lines += [line(f"swap: {s}", lambda a, s=s: a["swaps"].get(s, 0)) for s in stems]
    lines.append(line("replies with an unsupported fact", lambda a: a["replies"]["predicted"]["replies_with_unsupported"]))
    lines.append(line("invented replies (facts after empty records)", lambda a: a["replies"]["predicted"]["invented"]))
    lines += [line(f"{k}: unsupported of stated", lambda a, k=k: _facts_cell(a, k)) for k in kinds]
    slots = sorted({s for a in known for s in a["slots"]})
    if slots:
        lines += ["", "Slot errors, missed/extra/wrong/near-miss (lists compare as sets):", "", head]
        lines += [f"| {s} | " + " | ".join(_slot_cell(a, s) for _, a in runs) + " |" for s in slots]
    return "\n".join(lines)


def compare(run_dirs: list[str], out: str | None = None, eval_name: str | None = None) -> str:
    rows = collect(run_dirs, eval_name)
    table = "\n\n".join(filter(None, [markdown(rows), analysis_markdown(rows)]))
    if out:
        out_path = check_output(out, run_dirs, "--out")
        write_text(out_path.with_suffix(".md"), table + "\n")
        bar_chart(rows, out_path.with_suffix(".png"))
    return table
