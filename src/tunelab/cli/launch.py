"""`tunelab train CONFIG --nproc N`: start torchrun on this very command, checked first.

torchrun (torch.distributed.run) starts the N processes, watches them and stops the others when one
fails; each process runs `tunelab train CONFIG` as under a hand-written torchrun line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from tunelab.cli.args import POSITIVE, number
from tunelab.utils.errors import ConfigError


def add_launch_args(t: argparse.ArgumentParser) -> None:
    """The torchrun options of `tunelab train`."""
    t.add_argument("--nproc", type=POSITIVE, default=None,
                   help="start N training processes on this node with torchrun (DDP, or train.fsdp / "
                        "train.deepspeed); on GPUs one per GPU")
    t.add_argument("--nnodes", type=POSITIVE, default=1, help="nodes in the job (with --nproc; default 1)")
    t.add_argument("--node-rank", type=number(int, ge=0), default=0, help="this node's rank, 0 .. nnodes-1")
    t.add_argument("--master-addr", default="127.0.0.1", help="address of node 0 (default 127.0.0.1)")
    t.add_argument("--master-port", type=number(int, ge=1, le=65535), default=None,
                   help="port on node 0 (default: a free port on one node; 29500 across nodes)")


def torchrun_command(args, overrides: list[str]) -> list[str]:
    """The torchrun command line that runs `tunelab train` in every process of this node."""
    if args.node_rank >= args.nnodes:
        raise ConfigError(f"--node-rank {args.node_rank}: valid: 0 .. {args.nnodes - 1} (--nnodes {args.nnodes})")
    if args.kfold:
        raise ConfigError("--kfold trains fold after fold in one process; drop --nproc (or --kfold)")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}"]
    if args.nnodes == 1 and args.master_port is None:
        cmd.append("--standalone")  # a free port of its own: two jobs on one machine do not collide
    else:
        cmd += [f"--nnodes={args.nnodes}", f"--node_rank={args.node_rank}", f"--master_addr={args.master_addr}",
                f"--master_port={args.master_port or 29500}"]
    cmd += ["-m", "tunelab.cli.main", *(["--verbose"] if args.verbose else []), "train", args.config, *overrides]
    return cmd + (["--no-cache"] if args.no_cache else [])


def launch_train(args, overrides: list[str]) -> int:
    """Check the config (one line, before any process starts or model loads), then run torchrun."""
    from tunelab.config import load_config
    from tunelab.train.distributed import check_scale_out

    check_scale_out(load_config(args.config, overrides + (["--data.cache=false"] if args.no_cache else [])))
    cmd = torchrun_command(args, overrides)
    code = subprocess.call(cmd)
    if code:
        print(f"tunelab: error: training failed in at least one of {args.nproc * args.nnodes} processes "
              f"(torchrun exit {code}); torchrun stopped the others; the failing process's error is above",
              file=sys.stderr)
        return 2
    return 0
