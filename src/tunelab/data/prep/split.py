"""`tunelab data split`: reproducible, stratified, grouped train/dev/test or k-fold splits, with a
leakage check (no group and no identical row content in two splits) before anything is written."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

from tunelab.data.prep.rows import content_hash, field_value, label_key, load_rows, valid_rows
from tunelab.utils.errors import ConfigError, DataError
from tunelab.utils.io import write_jsonl
from tunelab.utils.safety import prepare_out_dir

SPLIT_NAMES = ("train", "dev", "test")
_NOT_CONTENT = ("id", "weight")  # keys that make otherwise identical rows look different


def parse_ratios(text: str | list | tuple) -> list[float]:
    """'8,1,1' -> [0.8, 0.1, 0.1]; two or three non-negative numbers, the first positive."""
    try:
        vals = [float(x) for x in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        raise ConfigError(f"--ratios '{text}' must be numbers like 8,1,1") from None
    if len(vals) not in (2, 3) or not all(math.isfinite(v) and v >= 0 for v in vals) or vals[0] <= 0:
        raise ConfigError(f"--ratios '{text}': give 2 or 3 non-negative numbers (train,dev[,test]), train > 0")
    return [v / sum(vals) for v in vals]


def content_key(row: Any, group: str | None = None) -> str:
    """Identity of a row's content: its canonical JSON without id, weight and the group field."""
    if isinstance(row, dict):
        row = {k: v for k, v in row.items() if k not in _NOT_CONTENT and k != group}
    return content_hash(json.dumps(row, ensure_ascii=False, sort_keys=True))


def _units(rows: list, lines: list[int], group: str | None, path) -> list[list[int]]:
    """Row indices joined into units that must share a split: same group value or same content."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple, int] = {}
    for i, (line, row) in enumerate(zip(lines, rows)):
        keys = [("c", content_key(row, group))]
        if group:
            keys.append(("g", label_key(field_value(row, group, line, path))))
        for key in keys:
            if key in first:
                parent[find(i)] = find(first[key])
            else:
                first[key] = i
    units: dict[int, list[int]] = {}
    for i in range(len(rows)):
        units.setdefault(find(i), []).append(i)
    return list(units.values())  # in order of each unit's first row


def _strata(rows, lines, units, stratify, path) -> dict[str, list[list[int]]]:
    if not stratify:
        return {"": units}
    out: dict[str, list[list[int]]] = {}
    for u in units:  # a unit's stratum: the most common label among its rows
        labels = Counter(label_key(field_value(rows[i], stratify, lines[i], path)) for i in u)
        out.setdefault(labels.most_common(1)[0][0], []).append(u)
    return out


def _ordered(units: list[list[int]], rng: random.Random) -> list[list[int]]:
    units = list(units)
    rng.shuffle(units)
    return sorted(units, key=len, reverse=True)  # big groups first: the small ones even out the ratios


def split_rows(rows: list[Any], ratios=(8, 1, 1), stratify: str | None = None, group: str | None = None,
               seed: int = 0, lines: list[int] | None = None, path: str | Path = "") -> dict[str, list[Any]]:
    """Split rows into train/dev(/test) by `ratios` (e.g. "8,1,1").

    Same rows, ratios and seed give the same splits. Rows sharing a `group` value, or identical
    content, land in one split; with `stratify` each label is split in the ratios on its own. Rows
    keep their file order inside a split. Raises DataError on leakage or a row missing a field.
    """
    fractions = parse_ratios(ratios)
    lines = lines or list(range(1, len(rows) + 1))
    rng = random.Random(seed)
    assigned: dict[int, int] = {}
    strata = _strata(rows, lines, _units(rows, lines, group, path), stratify, path)
    have, done = [0] * len(fractions), 0
    for label in sorted(strata):
        # Each unit to the split furthest below its share of the rows so far: within a label the
        # ratios hold to about one row, and labels too small to split still spread across splits.
        for u in _ordered(strata[label], rng):
            done += len(u)
            s = max(range(len(fractions)), key=lambda j: (fractions[j] * done - have[j], -j))
            have[s] += len(u)
            assigned.update((i, s) for i in u)
    out = {SPLIT_NAMES[s]: [rows[i] for i in sorted(assigned) if assigned[i] == s] for s in range(len(fractions))
           if fractions[s] > 0}  # "9,1,0": no test file
    check_leakage(out, group)
    return out


def kfold_rows(rows: list[Any], k: int, stratify: str | None = None, group: str | None = None, seed: int = 0,
               lines: list[int] | None = None, path: str | Path = "") -> list[dict[str, list[Any]]]:
    """K folds [{"train": rows, "dev": rows}, ...]: every row is in exactly one fold's dev, groups
    and identical rows stay together, labels spread evenly with `stratify`; seeded."""
    if k < 2 or k > len(rows):
        raise ConfigError(f"--kfold {k}: need 2 <= K <= number of rows ({len(rows)})")
    lines = lines or list(range(1, len(rows) + 1))
    rng = random.Random(seed)
    fold_of: dict[int, int] = {}
    overall = [0] * k
    strata = _strata(rows, lines, _units(rows, lines, group, path), stratify, path)
    for label in sorted(strata):
        have = [0] * k
        for u in _ordered(strata[label], rng):
            f = min(range(k), key=lambda j: (have[j], overall[j], j))
            have[f] += len(u)
            overall[f] += len(u)
            fold_of.update((i, f) for i in u)
    folds = []
    for f in range(k):
        fold = {"train": [rows[i] for i in sorted(fold_of) if fold_of[i] != f],
                "dev": [rows[i] for i in sorted(fold_of) if fold_of[i] == f]}
        check_leakage(fold, group)
        folds.append(fold)
    return folds


def check_leakage(splits: dict[str, list[Any]], group: str | None = None) -> None:
    """Raise DataError when a group value or a row's content appears in two splits."""
    owner: dict[tuple, tuple[str, int]] = {}
    for name, rows in splits.items():
        for pos, row in enumerate(rows, 1):
            keys = [("content", content_key(row, group))]
            if group and isinstance(row, dict) and group in row:
                keys.append((f"group {group}={label_key(row[group])!r}", ""))
            for key in keys:
                prev = owner.setdefault(key, (name, pos))
                if prev[0] != name:
                    what = key[0] if key[0] != "content" else "identical row content"
                    raise DataError(f"leakage: {what} is in both {prev[0]} (row {prev[1]}) and {name} (row {pos})")


def split_file(inp: str | Path, outdir: str | Path, ratios="8,1,1", stratify: str | None = None,
               group: str | None = None, seed: int = 0, kfold: int = 0) -> dict:
    """Write OUTDIR/{train,dev,test}.jsonl, or OUTDIR/fold_i/{train,dev}.jsonl with `kfold`;
    returns rows per split (and per label with `stratify`)."""
    if not kfold:
        parse_ratios(ratios)  # a bad option fails before the input is read
    rows = valid_rows(load_rows(inp), inp)
    data, lines = [r.data for r in rows], [r.line for r in rows]
    outdir = Path(outdir)
    if kfold:
        folds = kfold_rows(data, kfold, stratify, group, seed, lines, inp)
        layout = {f"fold_{i}/{name}": part for i, fold in enumerate(folds) for name, part in fold.items()}
    else:
        layout = split_rows(data, ratios, stratify, group, seed, lines, inp)
    prepare_out_dir(outdir, [f"{name}.jsonl" for name in layout], [inp], "OUTDIR")
    report = {"seed": seed, "splits": {}}
    for name, part in layout.items():  # everything is checked before the first file is written
        write_jsonl(outdir / f"{name}.jsonl", part)
        entry = {"rows": len(part), "file": str(outdir / f"{name}.jsonl")}
        if stratify:
            entry["labels"] = dict(Counter(label_key(r[stratify]) for r in part))
        report["splits"][name] = entry
    return report
