"""What the LM head costs in a bf16 training step on a CPU, path by path (one process, the paths interleaved).

    .venv/bin/python benchmarks/head_ce.py [--model gemma3-270m] [--tokens 512] [--reps 9]

The recipe's step: the preset in fp32, LoRA r16 on every linear layer, frozen decoder linears stored in bf16,
bf16 autocast, one random row of `--tokens` tokens with the last sixth supervised (a hotel dialog row),
tunelab's target-only loss, forward + backward. Four ways to run the LM head at the supervised positions:

- `cast, plain`: the head stays fp32 and tied (autocast casts its 168M weights to bf16 in the forward pass
  and again in the backward pass); fp32 logits, log-softmax and their gradient as whole tensors (tunelab
  before this benchmark);
- `stored, plain`: the head's own bf16 copy (store_frozen_linears), the same plain logits;
- `cast once, fused`: fp32 head cast once per step, then train/head_ce.py (loss and gradient in one pass over
  row chunks, in a buffer reused across steps);
- `stored, fused`: both (what `tunelab train` does now).

Prints and writes benchmarks/results/head_ce.md (head_ce_MODEL.md for another model): the median step of each, and the same with glibc's mmap
for large blocks disabled (`MALLOC_MMAP_MAX_=0` in a child process), which shows what fresh pages cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

PATHS = ("cast, plain", "stored, plain", "cast once, fused", "stored, fused")


def measure(model_name: str, tokens: int, reps: int) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab.models import resolve_model_dir
    from tunelab.train.head_ce import head_ce
    from tunelab.train.loss import causal_lm
    from tunelab.train.precision import frozen_linears

    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(model_name), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    lm = causal_lm(model)
    head = lm.get_output_embeddings()
    for m in frozen_linears(model):
        if m is not head:
            m.to(torch.bfloat16)
    fp32_head = head.weight
    bf16_head = torch.nn.Parameter(fp32_head.detach().bfloat16(), requires_grad=False)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, lm.config.vocab_size, (1, tokens), generator=g)
    n_targets = tokens // 6
    targets = ids[0, tokens - n_targets:]
    params = [p for p in model.parameters() if p.requires_grad]

    def step(path: str) -> float:
        head.weight = bf16_head if path.startswith("stored") else fp32_head
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = lm.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state[0, -n_targets - 1:-1]
            if path.endswith("plain"):
                loss = F.cross_entropy(head(hidden).float(), targets, reduction="sum")
            else:
                loss = head_ce(hidden, head.weight, targets, dtype=torch.bfloat16)
        (loss / n_targets).backward()
        elapsed = time.perf_counter() - start
        for p in params:
            p.grad = None
        return elapsed

    times = {p: [] for p in PATHS}
    for path in PATHS:
        step(path)  # warm-up
    for _ in range(reps):
        for path in PATHS:
            times[path].append(step(path))
    return {p: round(statistics.median(t), 3) for p, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.tokens, args.reps)))
        return
    argv = [sys.executable, __file__, "--child", "--model", args.model, "--tokens", str(args.tokens),
            "--reps", str(args.reps)]
    rows = {}
    for label, env in (("glibc defaults", {}), ("MALLOC_MMAP_MAX_=0", {"MALLOC_MMAP_MAX_": "0"})):
        out = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, check=True)
        rows[label] = json.loads(out.stdout.strip().splitlines()[-1])
        print(label, rows[label], flush=True)
    from tunelab.train.precision import machine

    cmd = "python benchmarks/head_ce.py" + "".join(f" --{k} {v}" for k, v in
                                                    (("model", args.model), ("tokens", args.tokens)) if v)
    lines = [f"# The LM head in a bf16 training step ({args.model}, {args.tokens} tokens, {args.tokens // 6} supervised)",
             "", f"Command: `{cmd}` (median of {args.reps} steps per path, the paths interleaved; "
             f"machine: {machine()})", "",
             "| head path | " + " | ".join(rows) + " |", "|---|" + "---|" * len(rows)]
    for p in PATHS:
        lines.append(f"| {p} | " + " | ".join(f"{rows[r][p]:.3f} s" for r in rows) + " |")
    base, new = rows["glibc defaults"]["cast, plain"], rows["glibc defaults"]["stored, fused"]
    lines += ["", f"stored, fused vs cast, plain (glibc defaults): **{base / new:.2f}x** per step."]
    name = "head_ce" + ("" if args.model == "gemma3-270m" else f"_{args.model}")
    out = Path(__file__).parent / "results" / f"{name}.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
