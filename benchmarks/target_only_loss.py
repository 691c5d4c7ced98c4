"""Training tokens/s with the LM head at supervised positions only vs. full logits, same run.

    .venv/bin/python benchmarks/target_only_loss.py [--model gemma3-270m] [--seq 256] [--targets 32] [--steps 6]

Both variants train the same LoRA model on the same batch; the loss values are printed side by side
to show they agree. Results go to benchmarks/results/target_only_loss.md with the command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from tunelab.config.schema import MethodConfig, ModelConfig
from tunelab.methods import apply_method
from tunelab.models import load_model
from tunelab.train.loss import lm_loss
from tunelab.utils.io import write_text


def bench(model, batch, target_only: bool, steps: int) -> tuple[float, float]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    loss, _ = lm_loss(model, batch, target_only=target_only)  # warm-up step, not timed
    loss.backward()
    opt.zero_grad()
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = lm_loss(model, batch, target_only=target_only)
        loss.backward()
        opt.step()
        opt.zero_grad()
    elapsed = time.perf_counter() - start
    return batch["input_ids"].numel() * steps / elapsed, float(loss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--targets", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok, _ = load_model(ModelConfig(name_or_path=args.model))
    model = apply_method(model, MethodConfig(r=8, alpha=16, dropout=0.0))
    ids = torch.randint(1000, 20000, (args.batch, args.seq))
    labels = torch.full_like(ids, -100)
    labels[:, -args.targets:] = ids[:, -args.targets:]
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():  # same weights, both losses: they must agree
        l_full = float(lm_loss(model, batch, target_only=False)[0])
        l_fast = float(lm_loss(model, batch, target_only=True)[0])
    # Alternate the order so drift of a noisy machine does not favour one side.
    full1, _ = bench(model, batch, False, args.steps)
    fast1, _ = bench(model, batch, True, args.steps)
    fast2, _ = bench(model, batch, True, args.steps)
    full2, _ = bench(model, batch, False, args.steps)
    full, fast = (full1 + full2) / 2, (fast1 + fast2) / 2
    cmd = "python benchmarks/target_only_loss.py " + " ".join(sys.argv[1:])
    table = (
        f"# Target-only LM head vs full logits ({args.model}, LoRA r8, T={args.seq}, "
        f"{args.targets} target tokens, batch {args.batch}, {torch.get_num_threads()} threads)\n\n"
        f"Command: `{cmd.strip()}`\n\n"
        "| loss | tokens/s | loss at the same weights |\n|---|---|---|\n"
        f"| full logits | {full:.1f} | {l_full:.5f} |\n"
        f"| target-only | {fast:.1f} | {l_fast:.5f} |\n\n"
        f"Speed-up: **{fast / full:.2f}x** (mean of two alternating runs of {args.steps} steps each)\n"
    )
    print(table)
    out = Path(__file__).parent / "results" / "target_only_loss.md"
    write_text(out, table)


if __name__ == "__main__":
    main()
