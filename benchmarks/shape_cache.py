"""Memory a bf16 CPU matmul keeps per new input shape, and what bucketing lengths does to it.

    .venv/bin/python benchmarks/shape_cache.py [--lengths 60] [--multiple 64]

oneDNN (PyTorch's bf16 matmul path on a CPU) builds a kernel ("primitive") per shape and keeps it in a
cache of up to 1024 entries (ONEDNN_PRIMITIVE_CACHE_CAPACITY). Training on dialogs of varying length makes a
new shape at nearly every step. This sweeps N lengths (900, 909, 918, ...) through three SmolLM2-sized
linear layers (576->1536, 1536->576, 576->576; bf16 weights under autocast, forward and backward), once with
each length as is and once padded up to a multiple, each in its own process, and prints the resident memory
added, the seconds, and what glibc's heap holds (mallinfo2: in use vs free) at the end.
Writes benchmarks/results/shape_cache.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20


def sweep(lengths: int, multiple: int) -> dict:
    import torch

    torch.manual_seed(0)
    layers = [torch.nn.Linear(i, o, bias=False).to(torch.bfloat16) for i, o in [(576, 1536), (1536, 576), (576, 576)]]
    start, t = rss_mb(), time.perf_counter()
    shapes = set()
    for i in range(lengths):
        n = -(-(900 + 9 * i) // multiple) * multiple
        shapes.add(n)
        x = torch.randn(n, 576, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layers[2](layers[1](layers[0](x).float().relu()))
        y.float().sum().backward()
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    m = libc.mallinfo2()
    return {"multiple": multiple, "shapes": len(shapes), "rss_added_mb": round(rss_mb() - start, 1),
            "seconds": round(time.perf_counter() - t, 2), "heap_in_use_mb": round(m.uordblks / 2**20, 1),
            "heap_free_mb": round(m.fordblks / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, default=60)
    ap.add_argument("--multiple", type=int, default=64)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(sweep(args.lengths, args.child)))
        return
    rows = []
    for multiple in (1, args.multiple):
        out = subprocess.run([sys.executable, __file__, "--lengths", str(args.lengths), "--child", str(multiple)],
                             capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    cmd = "python benchmarks/shape_cache.py " + " ".join(sys.argv[1:])
    lines = ["# bf16 matmul kernels per shape: memory and time, lengths as is vs bucketed", "",
             f"Command: `{cmd}`", "",
             f"{args.lengths} lengths (900 + 9 i tokens) through 576->1536->576->576 bf16 linear layers, forward and "
             "backward, 2 threads, one process per row.", "",
             "| padded to a multiple of | distinct shapes | RSS added MB | MB per shape | seconds | heap in use MB | heap free MB |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['multiple']} | {r['shapes']} | {r['rss_added_mb']} | "
                     f"{r['rss_added_mb'] / r['shapes']:.1f} | {r['seconds']} | {r['heap_in_use_mb']} | {r['heap_free_mb']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / "shape_cache.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(RESULTS / "shape_cache.md")


if __name__ == "__main__":
    main()
