"""leave_group keeps the destroyed group object until release_groups: its last reference is a Python one,
so gloo's worker threads are joined with the GIL released, never from a C++ holder (DDP's) as train()
returns, where a worker waiting for the GIL hung the process (utils/dist.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.helpers import env

WORKER = Path(__file__).with_name("group_worker.py")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_the_left_group_lives_until_released(tmp_path):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(WORKER)], env=env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    for rank in (0, 1):
        c = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert c["left"] == c["up"] and c["released"] < c["left"], c  # gloo's threads end at release_groups
