"""Run `tunelab train` in subprocesses (torchrun workers), offline, with their own tokenization cache."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "src/tunelab/data/samples/hotel_sample.jsonl"


def write_config(path: Path, model_dir: Path, out: Path, **train) -> Path:
    """A 4-step LoRA run of the sample dialogs in fixed data order, fp32 (bit-comparable across layouts)."""
    cfg = {"model": {"name_or_path": str(model_dir)},
           "data": {"train_file": str(SAMPLE), "max_length": 256},
           "method": {"r": 8, "alpha": 16, "dropout": 0.0},
           "train": {"output_dir": str(out), "max_steps": 4, "learning_rate": 1e-2, "lr_scheduler_type": "constant",
                     "per_device_train_batch_size": 1, "mixed_precision": "no", "logging_steps": 1, **train}}
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def env(tmp: Path, **extra: str) -> dict:
    paths = [str(REPO / "src"), *filter(None, extra.pop("PYTHONPATH", "").split(os.pathsep))]
    e = {**os.environ, "PYTHONPATH": os.pathsep.join(paths),
         "TUNELAB_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
         "PYTHONFAULTHANDLER": "1"}
    return {**e, **extra}


def tunelab(args: list[str], tmp: Path, timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
    """`tunelab ARGS` run to its end; past `timeout` its whole tree is killed (kill_tree) and the test fails
    with where each process waited: stderr's tail, long enough for every process's faulthandler stack (the
    workers' come before the elastic agent's, which alone filled 4,000 characters)."""
    with subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", *args], env=env(tmp, **extra_env), cwd=tmp,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree([p])
            out, err = p.communicate()
            raise AssertionError(f"tunelab {' '.join(args)}: still running after {timeout} s\n{err[-24000:]}")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def popen(args: list[str], tmp: Path, log: Path) -> subprocess.Popen:
    """`tunelab ARGS` started in the background, stdout and stderr into the file `log`."""
    with open(log, "wb") as out:  # the child holds its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", *args], env=env(tmp), cwd=tmp,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int | None]:
    """Every process's exit code; those still running after `timeout` seconds in all are killed (their
    whole tree: torchrun and its workers) and reported as None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.2)
    codes = [p.poll() for p in procs]
    kill_tree(procs)
    return codes


def kill_tree(procs: list[subprocess.Popen]) -> None:
    """Kill each running process and its descendants (torchrun starts each worker in a session of its own,
    so a process group would miss them), after SIGABRT has made faulthandler write each one's stack."""
    roots = [psutil.Process(p.pid) for p in procs if p.poll() is None]
    hung = [q for r in roots for q in (r, *r.children(recursive=True))]
    for q in hung:  # SIGABRT first: faulthandler (PYTHONFAULTHANDLER) writes where each process waits to its log
        with contextlib.suppress(psutil.NoSuchProcess):
            q.send_signal(signal.SIGABRT)
    time.sleep(3 if hung else 0)
    for q in hung:
        with contextlib.suppress(psutil.NoSuchProcess):
            q.kill()
    for p in procs:
        p.wait()


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wandb_records(path: Path) -> list:
    """The protobuf records of a wandb offline `run-*.wandb` file: wandb's LevelDB-style log (a 7-byte
    header, then 32 KiB blocks of chunks: crc32, length, type; FULL=1, FIRST=2, MIDDLE=3, LAST=4).
    wandb 0.31 ships no reader of its own; this is the format its own (Go) writer documents."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, records, pos, buf = path.read_bytes(), 32768, [], 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # too short for a chunk header: padding up to the next block
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if kind == 0:
            break
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            r = pb.Record()
            r.ParseFromString(buf)
            records.append(r)
            buf = b""
    return records
