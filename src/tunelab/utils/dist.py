"""Multi-process helpers (torchrun, accelerate launch): who is rank 0, and one-writer sections whose
failure on rank 0 reaches every rank as the same one-line error instead of a hang.

All are no-ops in a single process (no process group, or a group of one), so library code calls them
unconditionally.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

from tunelab.utils.errors import TunelabError

T = TypeVar("T")


def _group():
    """torch.distributed when a process group of more than one process is up, else None."""
    try:
        import torch.distributed as dist
    except ImportError:  # a torch built without distributed support
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def world_size() -> int:
    """Processes in the job: the process group's size, else torchrun's WORLD_SIZE, else 1."""
    dist = _group()
    return dist.get_world_size() if dist else int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    """This process's global rank (0 in a single process)."""
    dist = _group()
    return dist.get_rank() if dist else int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if (dist := _group()) is not None:
        dist.barrier()


_LEFT: list = []  # the groups leave_group destroyed, kept until release_groups() or the interpreter's exit


def leave_group() -> None:
    """Every rank leaves the process group together (a barrier, then destroy): a rank that exits with the
    group still up can abort in its teardown (gloo: "terminate called without an active exception") while
    rank 0 still works. After this, rank() and world_size() read torchrun's environment.

    The group object itself is kept (`_LEFT`): the model's DDP/FSDP wrapper still holds it, and were the
    wrapper's C++ side to drop the last reference when train() returns, ~ProcessGroupGloo would join gloo's
    worker threads with the GIL held while a worker waits for the GIL to free a tensor of the last
    collective: a hang (rank 1 of a CI run, stuck as train() returned). torch's Python binding of the group
    drops the GIL before destroying it, so the last reference must be a Python one: release_groups()."""
    if (dist := _group()) is not None:
        dist.barrier()
        _LEFT.append(dist.group.WORLD)
        dist.destroy_process_group()


def release_groups() -> None:
    """Destroy the groups leave_group kept, after whatever else held them (the model wrappers of a returned
    train(), freed by a collection here) is gone, so gloo's threads are joined with the GIL released."""
    if _LEFT:
        import gc

        gc.collect()
        _LEFT.clear()


def broadcast_object(value: Any = None) -> Any:
    """Rank 0's `value` on every rank (pickled; small values only)."""
    dist = _group()
    if dist is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank0_says(flag: bool) -> bool:
    """Rank 0's `flag` on every rank (the flag itself in one process): a stop decision all ranks act on at the
    same step, since a rank that stops alone leaves the others waiting in a collective."""
    return bool(broadcast_object(flag)) if world_size() > 1 else flag


def gather_object(value: Any) -> list:
    """Every rank's `value`, in rank order, on every rank."""
    dist = _group()
    if dist is None:
        return [value]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def _run_on_main(fn: Callable[[], T]) -> tuple[T | None, tuple[type, str] | None]:
    """Rank 0 runs `fn`; its error (type, message) or None reaches every rank."""
    value, error = None, None
    if is_main():
        try:
            value = fn()
        except TunelabError as e:
            error = (type(e), str(e))
            broadcast_object(error)
            raise
        except BaseException as e:  # a crash on rank 0: the others stop with its message, not a timeout
            broadcast_object((TunelabError, f"rank 0 failed: {type(e).__name__}: {e}"))
            raise
    error = broadcast_object(error)
    if error is not None and not is_main():
        raise error[0](error[1])
    return value, error


def on_main(fn: Callable[[], T]) -> T:
    """`fn()` run by rank 0 only; every rank gets its (picklable) result, or raises its error."""
    value, _ = _run_on_main(fn)
    return broadcast_object(value)


def main_first(fn: Callable[[], T]) -> T:
    """`fn()` on rank 0 first, then on the other ranks (e.g. rank 0 builds a cache entry, the others
    read it); rank 0's error is raised on every rank."""
    value, _ = _run_on_main(fn)
    return value if is_main() else fn()
