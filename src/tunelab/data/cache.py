"""Tokenization cache: rendered rows stored under a key of everything that shapes them.

The key covers the data file's bytes, the tokenizer (vocab size + its serialized form or vocab),
the template name, system prompt, max_length, any extra settings the caller names, and the source
of the data package's readers/renderer/templates, so a code change never serves stale rows.
An entry is one .npz file: each list-of-ints row field stored ragged (values + offsets), other
per-row fields and the stats as JSON, plus how long the build took, so a hit can say what it saved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tunelab.utils.dist import main_first
from tunelab.utils.errors import DataError
from tunelab.utils.io import atomic_path

log = logging.getLogger("tunelab")
CACHE_VERSION = 2  # 2: turn text tokenized with special tokens off (data/render.py)
_DATA_PKG = Path(__file__).resolve().parent


def _hash_path(h, path: Path) -> None:
    if path.is_dir():  # a `datasets` directory: every file, by relative name
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode())
            _hash_path(h, f)
        return
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def tokenizer_identity(tokenizer) -> str:
    """Vocab size + a hash of the fast tokenizer's JSON (else of the sorted vocab) + specials."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        h.update(backend.to_str().encode("utf-8"))
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode("utf-8"))
    specials = {k: str(getattr(tokenizer, k, None)) for k in ("bos_token", "eos_token", "pad_token")}
    h.update(json.dumps(specials, sort_keys=True).encode())
    return f"{len(tokenizer)}:{h.hexdigest()}"


def _code_hash() -> str:
    """The data package's readers, schema, renderer and templates (not prep/ or this cache)."""
    h = hashlib.sha256()
    for f in sorted(_DATA_PKG.rglob("*")):
        rel = f.relative_to(_DATA_PKG).as_posix()
        if f.suffix in (".py", ".yaml") and not rel.startswith(("prep/", "cache.py")):
            h.update(rel.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def cache_key(path: str | Path | list, tokenizer, template_name: str, system_prompt: str, max_length: int,
              **extra: Any) -> str:
    """A sha256 hex key that changes when the input bytes, tokenizer, template, system prompt,
    max_length, any `extra` setting (JSON-able: format, skip_invalid, ...) or the data code change."""
    h = hashlib.sha256()
    paths = [path] if isinstance(path, (str, Path)) else list(path)  # a list: its files' bytes in order
    for i, p in enumerate(paths):
        if not Path(p).exists():
            raise DataError(f"{p}: data file not found")
        if i:
            h.update(b"\0next file\0")  # two files never hash like their concatenation in one
        _hash_path(h, Path(p))
    meta = {"v": CACHE_VERSION, "tokenizer": tokenizer_identity(tokenizer), "template": template_name,
            "system_prompt": system_prompt, "max_length": max_length, "extra": extra, "code": _code_hash()}
    h.update(json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
    return h.hexdigest()


def _stats_to_json(stats: Any) -> dict:
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        cls = type(stats)
        return {"type": f"{cls.__module__}:{cls.__qualname__}", "value": dataclasses.asdict(stats)}
    return {"type": None, "value": stats}


def _stats_from_json(obj: dict) -> Any:
    if obj["type"] and obj["type"].startswith("tunelab."):  # only our own classes are rebuilt
        module, name = obj["type"].split(":")
        return getattr(importlib.import_module(module), name)(**obj["value"])
    return obj["value"]


def _save(file: Path, rows: list[dict], stats: Any, seconds: float) -> None:
    arrays, other = {}, {}
    keys = list(rows[0]) if rows else []
    for k in keys:
        if all(isinstance(r[k], list) for r in rows):
            arrays[f"{k}.values"] = np.fromiter((x for r in rows for x in r[k]), dtype=np.int64)
            arrays[f"{k}.offsets"] = np.cumsum([0] + [len(r[k]) for r in rows], dtype=np.int64)
        else:
            other[k] = [r[k] for r in rows]
    meta = {"version": CACHE_VERSION, "n": len(rows), "keys": keys, "other": other,
            "stats": _stats_to_json(stats), "build_seconds": seconds}
    arrays["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    with atomic_path(file) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load(file: Path) -> tuple[list[dict], Any, float]:
    with np.load(file, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
        if meta["version"] != CACHE_VERSION:
            raise ValueError(f"cache version {meta['version']}")
        columns = {}
        for k in meta["keys"]:
            if k in meta["other"]:
                columns[k] = meta["other"][k]
            else:
                values, offsets = z[f"{k}.values"].tolist(), z[f"{k}.offsets"].tolist()
                columns[k] = [values[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    rows = [{k: columns[k][i] for k in meta["keys"]} for i in range(meta["n"])]
    return rows, _stats_from_json(meta["stats"]), float(meta["build_seconds"])


def load_or_build(key: str, build_fn: Callable[[], tuple[list[dict], Any]], cache_dir: str | Path,
                  no_cache: bool = False) -> tuple[list[dict], Any, bool, float | None]:
    """(rows, stats, hit, seconds_saved). On a hit the rows and stats come from
    cache_dir/<key>.npz and seconds_saved is the recorded build time minus the load time; on a miss
    `build_fn()` runs and its result is stored atomically (seconds_saved None). `no_cache` builds
    without reading or writing the cache. A corrupt entry is rebuilt, with a warning. Under torchrun rank 0
    builds the entry and the other ranks wait, then read it (or build their own where no file is shared)."""
    return main_first(lambda: _load_or_build(key, build_fn, cache_dir, no_cache))


def _load_or_build(key: str, build_fn, cache_dir, no_cache: bool):
    if no_cache:
        rows, stats = build_fn()
        return rows, stats, False, None
    file = Path(cache_dir) / f"{key}.npz"
    if file.is_file():
        t0 = time.perf_counter()
        try:
            rows, stats, built = _load(file)
            return rows, stats, True, max(0.0, built - (time.perf_counter() - t0))
        except Exception as e:  # a truncated or foreign file is not worth failing a run for
            log.warning(f"tokenization cache {file} is unreadable ({e}); rebuilding it")
    t0 = time.perf_counter()
    rows, stats = build_fn()
    _save(file, rows, stats, time.perf_counter() - t0)
    return rows, stats, False, None
