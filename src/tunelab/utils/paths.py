"""Where tunelab keeps its caches."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$TUNELAB_CACHE`, else `$XDG_CACHE_HOME/tunelab`, else `~/.cache/tunelab`."""
    if os.environ.get("TUNELAB_CACHE"):
        return Path(os.environ["TUNELAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tunelab"


def cached_measurement(file: str, key: str, measure) -> tuple[dict, bool]:
    """(measurement, cached): the dict stored under `key` in the JSON file `file` of tunelab's cache directory, or
    `measure()` stored there first. A missing, unreadable or read-only cache only means measuring again."""
    import json

    from tunelab.utils.io import write_json

    path = cache_dir() / file
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        entries = {}
    entries = entries if isinstance(entries, dict) else {}
    if isinstance(entries.get(key), dict):
        return entries[key], True
    entries[key] = measure()
    try:
        write_json(path, entries)
    except OSError:  # a read-only cache: measure again next time
        pass
    return entries[key], False
