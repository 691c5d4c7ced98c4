"""report.md: the metrics as a table and a sample of what the model got wrong."""

from __future__ import annotations

from pathlib import Path

from tunelab.utils.io import write_text

ROWS = [("role_accuracy", "role accuracy"), ("slot_p", "slot P"), ("slot_r", "slot R"), ("slot_f1", "slot F1"),
        ("slot_exact_match", "slot exact match"), ("tool_execution_match", "tool execution match"),
        ("bleu-4", "BLEU-4"), ("rouge-1", "ROUGE-1"), ("rouge-2", "ROUGE-2"), ("rouge-l", "ROUGE-L")]


def metrics_table(metrics: dict) -> str:
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {label} | {metrics[key]:.2f} |" for key, label in ROWS if key in metrics]
    lines += [f"| {key} | {metrics[key]:.2f} |" for key in metrics.get("domain_metrics", [])]  # the domain's own
    return "\n".join(lines)


def write_report(path: Path, metrics: dict, rows: list[dict], n_examples: int = 8) -> None:
    wrong = [r for r in rows if r["label"] != r["predict"]]
    parts = [
        f"# Evaluation of `{metrics.get('run_dir', '')}`",
        f"Data: `{metrics.get('data_file', '')}`: {metrics['n_items']} items "
        f"({metrics['n_search']} tool calls, {metrics['n_assistant']} replies); "
        f"{metrics.get('items_per_s', 0)} items/s, {metrics.get('new_tokens_per_s', 0)} new tokens/s.",
        metrics_table(metrics),
        f"## {len(wrong)} of {len(rows)} predictions differ from the gold turn; the first {min(n_examples, len(wrong))}",
    ]
    for r in wrong[:n_examples]:
        parts.append(f"`{r.get('source', '')}`\n\n```\ngold:    {r['label']}\npredict: {r['predict']}\n```")
    write_text(path, "\n\n".join(parts) + "\n")
