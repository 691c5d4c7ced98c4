"""What tunelab may do with a user's files.

Every command that writes checks its output path first (`check_output`): never empty, `.`, the current
directory or one above it, a home or filesystem root, a repository root, nor a path that is or holds one
of its inputs. A directory tunelab creates carries a marker file; only a marked directory is ever
removed or replaced (`replace_dir`, `remove_dir`), and a replacement is built beside the old one and
swapped in by rename once it is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from tunelab.utils.errors import ConfigError

MARKER = ".tunelab"


def check_output(out: str | Path, inputs: tuple | list = (), what: str = "output") -> Path:
    """`out` as a Path once it is safe to write there; ConfigError naming the reason otherwise."""
    if out is None or not str(out).strip():
        raise ConfigError(f"{what} is empty; give a file or directory path to write to")
    path = Path(out)
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise ConfigError(f"{what} '{out}' is the current directory or one above it; give a new path inside it")
    if real == Path(real.anchor) or real == Path.home().resolve():
        raise ConfigError(f"{what} '{out}' is a root or home directory; give a new path inside it")
    if (real / ".git").exists():
        raise ConfigError(f"{what} '{out}' is a repository root; give a new path inside it")
    for inp in inputs:
        if inp is None or not str(inp).strip():
            continue
        src = Path(inp).resolve()
        if src == real:
            raise ConfigError(f"{what} '{out}' is the input {inp}; write to another path")
        if real in src.parents:
            raise ConfigError(f"{what} '{out}' holds the input {inp}; write to a directory that does not contain it")
    return path


def mark(directory: Path, kind: str) -> None:
    """Stamp a directory as made by tunelab (and so replaceable by it)."""
    (Path(directory) / MARKER).write_text(json.dumps({"made_by": "tunelab", "kind": kind}) + "\n")


def is_marked(directory: Path) -> bool:
    return (Path(directory) / MARKER).is_file()


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def remove_dir(path: Path) -> None:
    """rmtree a directory tunelab made; refuse anything else."""
    path = Path(path)
    if not path.exists():
        return
    if path.is_symlink() or not path.is_dir() or not (is_marked(path) or is_empty_dir(path)):
        raise ConfigError(f"{path} was not made by tunelab (no {MARKER} marker); not removing it")
    shutil.rmtree(path)


def staging_dir(final: Path, kind: str) -> Path:
    """A fresh marked directory beside `final`, to be swapped in with `replace_dir` when complete."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".new", dir=final.parent))
    mark(tmp, kind)
    return tmp


def check_replaceable(final: Path, what: str = "output") -> None:
    """ConfigError unless `final` is absent, an empty directory, or a directory tunelab made."""
    final = Path(final)
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise ConfigError(f"{what} '{final}' is a file or a link, not a directory tunelab made; not replacing it")
    if final.exists() and not (is_empty_dir(final) or is_marked(final)):
        raise ConfigError(f"{what} '{final}' was not made by tunelab (no {MARKER} marker); not replacing it: "
                          "remove it yourself or choose another path")


def replace_dir(new: Path, final: Path, what: str = "output") -> Path:
    """Swap the complete directory `new` in at `final`; the old one (if tunelab made it) goes only after."""
    new, final = Path(new), Path(final)
    check_replaceable(final, what)
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.rmdir(old)
        os.replace(final, old)
    try:
        os.replace(new, final)
    except OSError:
        if old is not None:  # put the old one back: a failed swap loses nothing
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def prepare_out_dir(outdir: str | Path, files: list[str], inputs: tuple | list = (), what: str = "OUTDIR") -> Path:
    """A directory about to get `files` (names inside it): none of them may be an input, and files already
    there are overwritten only in a directory tunelab wrote them to before (it carries the marker)."""
    outdir = check_output(outdir, (), what)
    for name in files:
        check_output(outdir / name, inputs, what)
    there = [name for name in files if (outdir / name).exists()]
    if there and not is_marked(outdir):
        raise ConfigError(f"{what} '{outdir}' already holds {', '.join(there)}, not written by tunelab; "
                          "remove them yourself or choose another directory")
    outdir.mkdir(parents=True, exist_ok=True)
    if not is_marked(outdir):
        mark(outdir, "data")
    return outdir
