"""The allocator the `tunelab` command starts itself on (utils/alloc.py, cli/main.start)."""

import os
import subprocess
import sys

import pytest

from tunelab.utils.alloc import ENV, TRIED, find_allocator, preload_env
from tunelab.utils.errors import ConfigError

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="preloading a malloc is Linux only")


def test_system_means_no_preload_and_a_missing_library_is_one_line_naming_the_variable(tmp_path):
    assert find_allocator("system") is None
    if sys.platform.startswith("linux"):
        with pytest.raises(ConfigError, match=f"{ENV}=.*nope.so: no such file; valid: auto, system"):
            find_allocator(str(tmp_path / "nope.so"))


@linux
def test_a_library_path_is_preloaded_first_once_and_mimalloc_keeps_its_freed_pages(tmp_path):
    lib = tmp_path / "libmimalloc.so.3"
    lib.write_bytes(b"")
    env = preload_env({ENV: str(lib), "LD_PRELOAD": "/opt/libother.so"})
    assert env["LD_PRELOAD"] == f"{lib}:/opt/libother.so"
    assert env["MIMALLOC_PURGE_DELAY"] == "-1" and env[TRIED] == "1"
    assert preload_env(env) is None  # started again: never a second time
    assert preload_env({ENV: str(lib), "LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}) is None  # the user's own
    assert preload_env({ENV: "system"}) is None
    assert preload_env({ENV: str(lib), "MIMALLOC_PURGE_DELAY": "5"})["MIMALLOC_PURGE_DELAY"] == "5"  # the user's wins


# after the exec the same -c program runs again, now preloaded; the CLI's main is replaced by a print
PROGRAM = ("import tunelab.cli.main as m; from tunelab.utils.alloc import active_allocator; "
           "m.main = lambda: print(active_allocator()) or 0; raise SystemExit(m.start())")


@linux
@pytest.mark.parametrize("setting", ["auto", "system"])
def test_the_command_starts_again_on_the_allocator_found(setting):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", TRIED)}
    proc = subprocess.run([sys.executable, "-c", PROGRAM], env={**env, ENV: setting}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = find_allocator(setting)
    expected = "glibc" if found is None else next(n for n in ("jemalloc", "mimalloc") if n in found[0].name)
    assert proc.stdout.strip() == expected
