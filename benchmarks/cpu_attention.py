"""Causal attention of one decoder layer, bf16, forward and backward: torch's SDPA (CPU flash attention) against
tunelab's CPU kernel (models/cpu_attention.cpp), at the presets' attention shapes.

    .venv/bin/python benchmarks/cpu_attention.py [--tokens 600 1200 2400] [--rounds 6] [--out cpu_attention]

SmolLM2-135M: 9 query heads, 3 key/value heads of 64; gemma3-270m: 4 and 1 of 256. Each round times 5 calls of
each (SDPA and kernel alternating, so a slow phase of the machine hits both); the table has the medians over the
rounds. Writes benchmarks/results/NAME.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {"smollm2-135m": (9, 3, 64), "gemma3-270m": (4, 1, 256)}


def timed(fn, reps: int = 5) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1000


def layer(heads: int, kv_heads: int, head_dim: int, tokens: int, rounds: int) -> dict:
    from tunelab.models.cpu_attention import attention

    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, heads, tokens, head_dim, generator=g).bfloat16().requires_grad_()
    k, v = (torch.randn(1, kv_heads, tokens, head_dim, generator=g).bfloat16().requires_grad_() for _ in "kv")
    dout = torch.randn(1, heads, tokens, head_dim, generator=g).bfloat16()
    scale = head_dim ** -0.5
    gqa = kv_heads != heads
    fwd = {"sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa),
           "tunelab": lambda: attention(q, k, v, scale)}
    outs = {name: f() for name, f in fwd.items()}
    bwd = {name: (lambda o=o: torch.autograd.grad(o, (q, k, v), dout, retain_graph=True)) for name, o in outs.items()}
    times = {f"{name}_{part}": [] for name in fwd for part in ("fwd", "bwd")}
    for fn in list(fwd.values()) + list(bwd.values()):
        fn()  # warm-up
    for _ in range(rounds):
        for name in fwd:
            times[f"{name}_fwd"].append(timed(fwd[name]))
            times[f"{name}_bwd"].append(timed(bwd[name]))
    return {key: statistics.median(v) for key, v in times.items()}


def main() -> None:
    from tunelab.models.cpu_attention import load
    from tunelab.train.precision import machine

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, nargs="+", default=[600, 1200, 2400])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", default="cpu_attention")
    args = ap.parse_args()
    if not load():
        raise SystemExit("tunelab's CPU attention kernel cannot run here (see the log line above)")
    rows = []
    for model, (heads, kv_heads, head_dim) in SHAPES.items():
        for tokens in args.tokens:
            t = layer(heads, kv_heads, head_dim, tokens, args.rounds)
            sdpa, ours = t["sdpa_fwd"] + t["sdpa_bwd"], t["tunelab_fwd"] + t["tunelab_bwd"]
            flops = 2 * heads * tokens * tokens * head_dim * 3.5  # causal: forward 2 matmuls, backward 5, half each
            rows.append(f"| {model} | {tokens} | {t['sdpa_fwd']:.2f} | {t['sdpa_bwd']:.2f} | {t['tunelab_fwd']:.2f} | "
                        f"{t['tunelab_bwd']:.2f} | **{sdpa / ours:.2f}x** | {flops / ours / 1e6:.0f} |")
            print(rows[-1], flush=True)
    text = "\n".join([
        "# Causal attention of one layer on the CPU: SDPA against tunelab's kernel", "",
        f"Command: `python benchmarks/cpu_attention.py --tokens {' '.join(map(str, args.tokens))} "
        f"--rounds {args.rounds} --out {args.out}`", "",
        f"Machine: {machine()}. bf16 inputs, batch 1, forward and backward (the gradients of q, k and v); "
        f"medians over {args.rounds} rounds of 5 calls, SDPA and the kernel alternating.", "",
        "| shapes of | tokens | SDPA fwd ms | SDPA bwd ms | tunelab fwd ms | tunelab bwd ms | speed-up (fwd+bwd) "
        "| tunelab GFLOP/s |",
        "|---|---|---|---|---|---|---|---|", *rows, ""])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
