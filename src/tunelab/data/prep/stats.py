"""`tunelab data stats`: token lengths (as the trainer renders them), turns per dialog, labels, and
what a given max_length would truncate; optionally a length histogram as a PNG."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.data.prep.convert import row_conversation
from tunelab.data.prep.rows import check_format, label_key, load_rows
from tunelab.data.render import Renderer
from tunelab.data.template import get_template
from tunelab.utils.errors import DataError


class CharCounter:
    """Stands in for a tokenizer when none is given: one 'token' per character."""

    bos_token = eos_token = chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [0] * len(text)}

    def get_vocab(self) -> dict:
        return {}


@dataclass
class Stats:
    rows: int = 0
    invalid: int = 0  # rows that are not conversations (run `tunelab data validate` for why)
    unit: str = "tokens"  # or "characters" without a tokenizer
    lengths: list[int] = field(default_factory=list)
    turns_hist: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)  # from a top-level label or kind field
    max_length: int = 0
    truncated: int = 0  # rows longer than max_length: old turns would be dropped or the row lost

    @property
    def truncated_fraction(self) -> float:
        return self.truncated / len(self.lengths) if self.lengths else 0.0

    def percentile(self, q: float) -> int:
        """The nearest-rank q-th percentile of the lengths (0 when there are none)."""
        if not self.lengths:
            return 0
        s = sorted(self.lengths)
        return s[min(len(s) - 1, max(0, -(-int(q * len(s)) // 100) - 1))]

    def as_dict(self) -> dict:
        n = len(self.lengths)
        out = {"rows": self.rows, "invalid": self.invalid, "unit": self.unit,
               "length": {"min": min(self.lengths, default=0), "mean": round(sum(self.lengths) / n, 1) if n else 0,
                          "p50": self.percentile(50), "p90": self.percentile(90), "p99": self.percentile(99),
                          "max": max(self.lengths, default=0)},
               "turns_per_dialog": dict(sorted(self.turns_hist.items()))}
        if self.labels:
            out["labels"] = dict(self.labels.most_common())
        if self.max_length:
            out["max_length"] = self.max_length
            out["truncated"] = self.truncated
            out["truncated_fraction"] = round(self.truncated_fraction, 4)
        return out


def _load_tokenizer(tokenizer: Any):
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(tokenizer))
        except Exception as e:
            raise DataError(f"{tokenizer}: cannot load a tokenizer ({e})") from None
    return tokenizer


def dataset_stats(path: str | Path, tokenizer: Any = None, template: str = "auto", system_prompt: str = "",
                  max_length: int = 0, fmt: str = "auto") -> Stats:
    """Stats over every readable row of `path`. Lengths are of the whole conversation rendered with
    `template` (as training sees it before truncation) in tokens of `tokenizer` (an object or a
    tokenizer directory), or in characters when it is None. `truncated` counts rows longer than
    `max_length`. Rows that are not conversations are counted as invalid, not fatal."""
    check_format(fmt, ("text-label",))
    tok = _load_tokenizer(tokenizer)
    stats = Stats(unit="tokens" if tok is not None else "characters", max_length=max_length)
    tok = tok if tok is not None else CharCounter()
    renderer = Renderer(get_template(template, tok), tok, system_prompt)
    for r in load_rows(path):
        stats.rows += 1
        try:
            if r.error:
                raise DataError(r.error)
            conv = row_conversation(r.data, fmt)
        except DataError:
            stats.invalid += 1
            continue
        n = len(renderer.encode(conv).input_ids)
        stats.lengths.append(n)
        stats.turns_hist[len(conv.turns)] += 1
        stats.truncated += bool(max_length) and n > max_length
        label = next((r.data[k] for k in ("label", "kind") if isinstance(r.data, dict) and k in r.data), None)
        if label is not None:
            stats.labels[label_key(label)] += 1
    if not stats.lengths:
        raise DataError(f"{path}: no readable conversations ({stats.invalid} invalid rows)")
    return stats


def plot_lengths(stats: Stats, png: str | Path, bins: int = 40) -> Path:
    """Write a histogram of the lengths (with the max_length line) to `png`, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tunelab.utils.io import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(stats.lengths, bins=bins, color="#4C72B0")
    if stats.max_length:
        ax.axvline(stats.max_length, color="#C44E52", linestyle="--",
                   label=f"max_length {stats.max_length}: {stats.truncated_fraction:.1%} longer")
        ax.legend()
    ax.set_xlabel(f"length ({stats.unit})")
    ax.set_ylabel("rows")
    ax.set_title(f"{len(stats.lengths)} conversations")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(png)
