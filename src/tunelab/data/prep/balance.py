"""`tunelab data balance`: even out classes by a top-level field, by down/upsampling or by weights."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.data.prep.rows import field_value, label_key, load_rows, valid_rows, write_rows
from tunelab.utils.errors import ConfigError, DataError
from tunelab.utils.safety import check_output

MODES = ("down", "up", "weight")


@dataclass
class BalanceReport:
    mode: str
    by: str
    before: dict = field(default_factory=dict)  # label -> rows
    after: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)  # label -> weight (mode weight)
    out: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v or k in ("before", "after")}


def balance_rows(rows: list[Any], by: str, mode: str = "down", seed: int = 0,
                 lines: list[int] | None = None, path: str | Path = "") -> tuple[list[Any], BalanceReport]:
    """Balance `rows` (objects) by their top-level field `by`.

    down: every class sampled (without replacement, seeded) to the smallest class's size; up: every
    class filled to the largest's by duplicating its rows (whole copies first, then a seeded sample);
    weight: every row gets "weight" = N / (classes * class size), so weights average exactly 1.
    Every class keeps at least one row, and kept rows stay in file order (a duplicate follows its
    original). A row without `by` is a DataError naming its line.
    """
    if mode not in MODES:
        raise ConfigError(f"--mode '{mode}' is not one of {', '.join(MODES)}")
    lines = lines or list(range(1, len(rows) + 1))
    classes: dict[str, list[int]] = defaultdict(list)
    for i, (line, row) in enumerate(zip(lines, rows)):
        classes[label_key(field_value(row, by, line, path))].append(i)
    if not classes:
        raise DataError(f"{path}: no rows to balance")
    report = BalanceReport(mode, by, before={k: len(v) for k, v in classes.items()})
    rng = random.Random(seed)
    copies = Counter()  # row index -> times it is written
    if mode == "weight":
        n, k = len(rows), len(classes)
        report.weights = {c: n / (k * len(idx)) for c, idx in classes.items()}
        out = [{**row, "weight": report.weights[label_key(row[by])]} for row in rows]  # replaces any old weight
        report.after = dict(report.before)
        return out, report
    target = (min if mode == "down" else max)(len(v) for v in classes.values())
    for c in sorted(classes):  # sorted: the seeded draws do not depend on file order of classes
        idx = classes[c]
        if mode == "down":
            copies.update(rng.sample(idx, target))
        else:
            whole, rest = divmod(target, len(idx))
            copies.update(idx * whole)
            copies.update(rng.sample(idx, rest))
    out = [rows[i] for i in range(len(rows)) for _ in range(copies[i])]
    report.after = {c: sum(copies[i] for i in idx) for c, idx in classes.items()}
    return out, report


def balance_file(inp: str | Path, out: str | Path, by: str, mode: str = "down", seed: int = 0,
                 to_datasets: bool = False) -> BalanceReport:
    """Balance the rows of `inp` and write them to `out` (atomically); returns per-class counts."""
    check_output(out, [inp], "OUT")
    rows = valid_rows(load_rows(inp), inp)
    kept, report = balance_rows([r.data for r in rows], by, mode, seed, [r.line for r in rows], inp)
    write_rows(out, kept, to_datasets)
    report.out = str(out)
    return report
