"""A domain's synthesized dialogs on disk: deduplicated, split 8:1:1 (train/dev/test) by `kind`, written
atomically; the splitting itself is `tunelab data split`'s (data/prep/split.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tunelab.data.prep.split import content_key, split_rows
from tunelab.utils.io import write_jsonl
from tunelab.utils.safety import prepare_out_dir

SPLIT_FILES = ["train.jsonl", "dev.jsonl", "test.jsonl"]


def write_splits(rows: list[dict], out_dir: str | Path, seed: int = 0, inputs: tuple | list = (),
                 stratify: str = "kind") -> dict[str, Any]:
    """Write OUT_DIR/{train,dev,test}.jsonl (8:1:1 per `stratify` value, deterministic in seed); rows with
    identical content (ids aside) are kept once. Returns rows per split, duplicates dropped, rows per kind."""
    out_dir = prepare_out_dir(out_dir, SPLIT_FILES, inputs, "--out")
    seen, unique = set(), []
    for row in rows:
        key = content_key(row)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    splits = split_rows(unique, "8,1,1", stratify=stratify, seed=seed)
    for name, part in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", part)
    return {**{name: len(part) for name, part in splits.items()}, "duplicates_dropped": len(rows) - len(unique),
            "by_kind": dict(sorted(Counter(str(r.get(stratify)) for r in unique).items()))}


def synthesize_splits(domain, n: int, seed: int, resource: str, out_dir: str | Path) -> dict[str, Any]:
    """`tunelab data synth`: `n` dialogs from the domain's generator, split and written to out_dir."""
    inputs = [resource] if resource else []
    prepare_out_dir(out_dir, SPLIT_FILES, inputs, "--out")  # before generating: a bad --out fails at once
    return {"domain": domain.name, **write_splits(domain.generate(n, seed, resource), out_dir, seed, inputs)}
