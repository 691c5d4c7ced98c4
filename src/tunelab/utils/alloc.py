"""Which malloc a tunelab process runs on: jemalloc or mimalloc where one is installed, glibc's otherwise.

A CPU training step frees and allocates activations of a new size at every step. glibc's malloc keeps the
freed memory, fragmented, in its heap, so a process's peak RSS grows well past what it holds at once;
jemalloc and mimalloc reuse it by size class. Same losses (an allocator changes no arithmetic), 18% less peak
RSS in a CPU training run on mimalloc (README, "Training throughput": the command and the figures). An allocator can only be chosen
before the process starts, so the `tunelab` command starts itself again with LD_PRELOAD set
(`cli/main.start`), as PyTorch's own CPU launcher (torch.backends.xeon.run_cpu) does.

TUNELAB_ALLOCATOR: `auto` (default: jemalloc from the system, else mimalloc from the cmeel-mimalloc wheel
tunelab installs, else glibc), `system` (glibc's, no preload) or the path of a malloc library to preload.
Linux only; elsewhere the system's allocator is used.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from tunelab.utils.errors import ConfigError

ENV = "TUNELAB_ALLOCATOR"
JEMALLOC = "libjemalloc.so.2"
MIMALLOC = "cmeel.prefix/lib/libmimalloc.so.3"
# mimalloc hands freed pages back to the OS after 10 ms by default; a training step reuses them at once,
# so it would fault them in again (48 dialogs, one run with the default purge: 250.5 s, against 185.0 and
# 190.9 s for the two runs with purging off in the README's malloc table; not alternated)
MIMALLOC_ENV = {"MIMALLOC_PURGE_DELAY": "-1"}
NAMES = ("jemalloc", "mimalloc", "tcmalloc")
TRIED = "TUNELAB_ALLOCATOR_TRIED"  # set in the restarted process and its children: never restart twice


def _lib_dirs() -> list[Path]:
    dirs = [Path(sys.prefix) / "lib"]
    if os.environ.get("CONDA_PREFIX"):
        dirs.append(Path(os.environ["CONDA_PREFIX"]) / "lib")
    multiarch = sysconfig.get_config_var("MULTIARCH")
    dirs += [Path("/usr/local/lib")] + ([Path("/usr/lib") / multiarch] if multiarch else []) + [
        Path("/usr/lib64"), Path("/usr/lib")]
    return dirs


def find_allocator(setting: str | None = None) -> tuple[Path, dict[str, str]] | None:
    """The malloc library to preload for `setting` (TUNELAB_ALLOCATOR when None) and the environment it
    wants, or None for the system's allocator."""
    setting = (os.environ.get(ENV, "auto") if setting is None else setting).strip() or "auto"
    if setting == "system" or not sys.platform.startswith("linux"):
        return None
    if setting != "auto":
        path = Path(setting).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV}={setting}: no such file; valid: auto, system, or the path of a malloc "
                              f"library such as {JEMALLOC}")
        return path, (MIMALLOC_ENV if "mimalloc" in path.name else {})
    for d in _lib_dirs():
        if (d / JEMALLOC).is_file():
            return d / JEMALLOC, {}
    for site in dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")):
        if (Path(site) / MIMALLOC).is_file():
            return Path(site) / MIMALLOC, MIMALLOC_ENV
    return None


def preload_env(environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """The environment to start this process again in with the allocator preloaded, or None when there is
    none to preload or it is already preloaded (or preloading was tried: a failed preload is not retried)."""
    environ = dict(os.environ if environ is None else environ)
    if environ.get(TRIED):
        return None
    found = find_allocator(environ.get(ENV, "auto"))
    if found is None:
        return None
    lib, extra = found
    preload = environ.get("LD_PRELOAD", "")
    if str(lib) in preload.split(":") or any(n in preload for n in NAMES):
        return None  # preloaded already, by this command or by the user
    return {**extra, **environ, "LD_PRELOAD": ":".join(filter(None, [str(lib), preload])),
            TRIED: "1"}


def restart_on_allocator() -> None:
    """Start this process again, same interpreter, flags and arguments, with the allocator preloaded; returns
    only when there is nothing to preload or the restart failed (then the system's allocator it is)."""
    env = preload_env()
    if env is not None:
        try:
            os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
        except OSError:
            pass


def active_allocator() -> str:
    """The malloc this process runs on, from the libraries mapped into it: jemalloc, mimalloc, tcmalloc or
    glibc (elsewhere than Linux: system)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return next((n for n in NAMES if f"lib{n}" in maps), "glibc")
