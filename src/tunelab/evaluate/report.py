"""report.md: the metrics as a table, the error analysis, and the worst items with their context."""

from __future__ import annotations

from pathlib import Path

from tunelab.evaluate.analysis import SLOT_COLUMNS, item_errors, why, worst
from tunelab.utils.io import write_text

ROWS = [("role_accuracy", "role accuracy"), ("slot_p", "slot P"), ("slot_r", "slot R"), ("slot_f1", "slot F1"),
        ("slot_exact_match", "slot exact match"), ("tool_execution_match", "tool execution match"),
        ("bleu-4", "BLEU-4"), ("rouge-1", "ROUGE-1"), ("rouge-2", "ROUGE-2"), ("rouge-l", "ROUGE-L")]


def metrics_table(metrics: dict) -> str:
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {label} | {metrics[key]:.2f} |" for key, label in ROWS if key in metrics]
    lines += [f"| {key} | {metrics[key]:.2f} |" for key in metrics.get("domain_metrics", [])]  # the domain's own
    return "\n".join(lines)


def _table(head: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _facts_cell(summary: dict, kind: str) -> str:
    f = summary["facts"].get(kind, {})
    return f"{f.get('unsupported', 0)} of {f.get('stated', 0)}"


def analysis_sections(a: dict) -> list[str]:
    """report.md's error-analysis sections from metrics.json's "analysis" (tunelab.evaluate.analysis)."""
    parts = ["## Error analysis",
             "### Role confusions\n\n" + _table(["confusion", "items"],
                                                [[k.replace("_", " "), v] for k, v in a["roles"].items()])]
    slots = [[name, *(c[k] for k in SLOT_COLUMNS)] for name, c in a["slots"].items()]
    parts.append(f"### Slot errors ({a['n_search_scored']} search items predicted as the same search)\n\n"
                 "Lists compare as sets; a near miss is a paraphrase (one string contains the other).\n\n"
                 + (_table(["slot", *(k.replace("_", " ") for k in SLOT_COLUMNS)], slots) if slots else "none"))
    if a["swaps"]:
        parts.append("### Range swaps (lower and upper exchanged)\n\n"
                     + _table(["range", "items"], [[k, v] for k, v in a["swaps"].items()]))
    pred, gold = a["replies"]["predicted"], a["replies"]["gold"]
    if pred["n_replies"] or gold["n_replies"]:
        kinds = sorted(set(pred["facts"]) | set(gold["facts"]))
        parts.append(
            "### Reply facts not in the records of the context\n\n"
            "Facts a reply states that the context's last search result does not hold; gold replies are "
            "checked alike, so their column is the checker's own false alarms.\n\n"
            + _table(["", "predicted replies", "gold replies"],
                     [["replies checked", pred["n_replies"], gold["n_replies"]],
                      ["replies with an unsupported fact", pred["replies_with_unsupported"],
                       gold["replies_with_unsupported"]],
                      ["invented (facts stated after empty records)", pred["invented"], gold["invented"]],
                      *[[f"{k}: unsupported of stated", _facts_cell(pred, k), _facts_cell(gold, k)]
                        for k in kinds]]))
    return parts


def _quote(text) -> str:
    return str(text).replace("```", "'''")  # a model's output must not close the code block


def worst_section(rows: list[dict], per_item: list[dict], n: int = 20) -> str:
    """The n worst items with their context: role confusion first, then most errors, then lowest BLEU-4."""
    picked = worst(rows, per_item, n)
    n_wrong = sum(r["label"] != r["predict"] for r in rows)
    parts = [(f"## The {len(picked)} worst items ({n_wrong} of {len(rows)} predictions differ from the gold "
              "turn; role confusions first, then most slot errors or unsupported facts, then lowest BLEU-4)")]
    for r, e in picked:
        user = f"user:    {_quote(r['user'])}\n" if r.get("user") else ""
        parts.append(f"`{r.get('source', '')}`: {why(e)}\n\n```\n{user}gold:    {_quote(r['label'])}\n"
                     f"predict: {_quote(r['predict'])}\n```")
    return "\n\n".join(parts)


def write_report(path: Path, metrics: dict, rows: list[dict], per_item: list[dict] | None = None) -> None:
    """report.md: the metrics table, the error analysis (when metrics has one) and the 20 worst items."""
    if per_item is None:
        per_item = [item_errors(r) for r in rows]
    parts = [
        f"# Evaluation of `{metrics.get('run_dir', '')}`",
        f"Data: `{metrics.get('data_file', '')}`: {metrics['n_items']} items "
        f"({metrics['n_search']} tool calls, {metrics['n_assistant']} replies); "
        f"{metrics.get('items_per_s', 0)} items/s, {metrics.get('new_tokens_per_s', 0)} new tokens/s.",
        metrics_table(metrics),
    ]
    if "analysis" in metrics:
        parts += analysis_sections(metrics["analysis"])
    parts.append(worst_section(rows, per_item))
    write_text(path, "\n\n".join(parts) + "\n")
