"""`evaluate`'s batched generation vs. one `model.generate` per item, same model, same items.

    .venv/bin/python benchmarks/eval_speed.py runs/hotel_lora data/hotel/test.jsonl [--items 200] [--batch 8]

Both paths use the merged run, greedy decoding and the same stop tokens; the script checks that the
outputs agree and writes the table to benchmarks/results/eval_speed.md with the command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from tunelab.data.readers import read_conversations
from tunelab.evaluate.job import eval_items, render
from tunelab.infer.batch import generate_batch
from tunelab.infer.engine import GenerationOptions, load_engine
from tunelab.utils.io import write_text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("data")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    engine = load_engine(args.run_dir, device="cpu", merge=True)
    convs, _ = read_conversations(args.data)
    items = eval_items(convs)[: args.items]
    contexts = [c for c, _, _ in items]
    opts = GenerationOptions(max_new_tokens=args.max_new_tokens)

    start = time.perf_counter()
    batched, _ = generate_batch(engine, contexts, opts, batch_size=args.batch)
    t_batch = time.perf_counter() - start

    start = time.perf_counter()
    single = [engine.reply(c, opts) for c in contexts]  # the plain way: one generate call per item
    t_single = time.perf_counter() - start

    same = sum(render(a) == render(b) for a, b in zip(batched, single))
    cmd = "python benchmarks/eval_speed.py " + " ".join(sys.argv[1:])
    table = (
        f"# evaluate: batched generation vs one item at a time ({len(items)} hotel items, "
        f"{torch.get_num_threads()} CPU threads)\n\nCommand: `{cmd}`\n\n"
        "| path | seconds | items/s |\n|---|---|---|\n"
        f"| one `model.generate` per item | {t_single:.1f} | {len(items) / t_single:.3f} |\n"
        f"| `tunelab evaluate` (batch {args.batch}, sorted by length, left-padded, KV cache) | {t_batch:.1f} "
        f"| {len(items) / t_batch:.3f} |\n\n"
        f"Speed-up: **{t_single / t_batch:.2f}x**. Identical outputs: {same} of {len(items)} items "
        "(greedy; a difference comes from float rounding under padding flipping a near tie).\n"
    )
    print(table)
    write_text(Path(__file__).parent / "results" / "eval_speed.md", table)


if __name__ == "__main__":
    main()
