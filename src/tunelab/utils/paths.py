"""Where tunelab keeps its caches."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$TUNELAB_CACHE`, else `$XDG_CACHE_HOME/tunelab`, else `~/.cache/tunelab`."""
    if os.environ.get("TUNELAB_CACHE"):
        return Path(os.environ["TUNELAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tunelab"
