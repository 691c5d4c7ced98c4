"""Deterministic 8:1:1 train/dev/test split of dialogs, stratified by dialog kind."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from tunelab.utils.io import write_jsonl
from tunelab.utils.safety import prepare_out_dir

SPLITS = (("train", 0.8), ("dev", 0.1), ("test", 0.1))


def write_splits(dialogs: list[dict], out_dir: str | Path, seed: int = 0, inputs: tuple | list = ()) -> dict[str, Any]:
    """Write train/dev/test.jsonl (8:1:1 per dialog kind, deterministic in seed), each atomically.

    Dialogs with identical turns are kept once. Returns counts per split and per kind.
    """
    out_dir = prepare_out_dir(out_dir, [f"{name}.jsonl" for name, _ in SPLITS], inputs, "--out")
    seen, unique = set(), []
    for d in dialogs:
        key = json.dumps(d["dialog"], ensure_ascii=False, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(d)
    order = {id(d): i for i, d in enumerate(unique)}
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for d in unique:
        by_kind[d["kind"]].append(d)
    rng = random.Random(seed)
    split_rows: dict[str, list[dict]] = {name: [] for name, _ in SPLITS}
    for kind in sorted(by_kind):
        group = sorted(by_kind[kind], key=lambda d: d["id"])
        rng.shuffle(group)
        n_test = round(len(group) * SPLITS[2][1])
        n_dev = round(len(group) * SPLITS[1][1])
        split_rows["test"] += group[:n_test]
        split_rows["dev"] += group[n_test:n_test + n_dev]
        split_rows["train"] += group[n_test + n_dev:]
    for name, rows in split_rows.items():
        rows.sort(key=lambda d: order[id(d)])
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    return {
        **{name: len(rows) for name, rows in split_rows.items()},
        "duplicates_dropped": len(dialogs) - len(unique),
        "by_kind": {k: len(v) for k, v in sorted(by_kind.items())},
    }
