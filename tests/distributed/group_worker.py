"""A torchrun worker for test_group.py: how many threads this process has with its gloo group up, after
leave_group() and a collection, and after release_groups() (gloo's worker threads end with the group)."""

import gc
import json
import os
from pathlib import Path

import torch.distributed as dist

from tunelab.utils.dist import leave_group, release_groups


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


dist.init_process_group("gloo")
dist.all_gather_object([None, None], {"rank": dist.get_rank()})  # a collective of Python-made tensors
counts = {"up": threads()}
leave_group()
gc.collect()
counts["left"] = threads()
release_groups()
counts["released"] = threads()
Path(f"rank{os.environ['RANK']}.json").write_text(json.dumps(counts))  # one file a rank: stdout interleaves
