"""Learning rates by dev loss at a fixed step count: the hotel recipe trained N optimizer steps (same dialogs in
the same order, the cosine over those steps) once per (learning rate, LoRA+ ratio) pair, each in its own
`tunelab train` process, and the dev loss of each. A cheap screen before a full `make run`-sized run: it ranks
how much each setting learns per step, not what the 18-minute budget reaches.

    .venv/bin/python benchmarks/lr_sweep.py [--grid 1e-3:0 5e-4:4 ...] [--steps 80] [--out lr_sweep] [-- OVERRIDES]

OVERRIDES go to every run (for example `--method.lora_layers=9`). Needs the data of `make run` (data/hotel/).
Results go to benchmarks/results/NAME.md with the command and the machine; runs under benchmarks/out/lr_sweep/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tunelab.train.precision import machine
from tunelab.utils.io import write_text

ROOT = Path(__file__).resolve().parents[1]
GRID = ["1e-3:0", "5e-4:4", "2.5e-4:16", "1e-3:4", "5e-4:16"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/hotel_lora.yaml")
    ap.add_argument("--grid", nargs="+", default=GRID, help="LR:RATIO pairs (ratio 0: plain LoRA)")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--out", default="lr_sweep")
    args, overrides = ap.parse_known_args()
    overrides = [o for o in overrides if o != "--"]
    tunelab = Path(sys.executable).with_name("tunelab")
    rows = []
    for pair in args.grid:
        lr, ratio = pair.split(":")
        run = ROOT / "benchmarks/out/lr_sweep" / f"lr{lr}_ratio{ratio}"
        cmd = [str(tunelab), "train", args.recipe, f"--train.learning_rate={lr}",
               f"--method.loraplus_lr_ratio={ratio}", "--train.time_budget_minutes=0",
               f"--train.max_steps={args.steps}", "--train.save_steps=0", "--train.overwrite=true",
               f"--train.output_dir={run}", *overrides]
        log = run.parent / f"{run.name}.log"  # not with_suffix: "lr2.5e-4..." has a dot
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=True)
        r = json.loads((run / "run.json").read_text())
        rows.append((lr, ratio, r["steps"], r["dev_loss"], r["tokens_per_s"], r["peak_rss_mb"]))
        print(f"lr {lr} ratio {ratio}: {r['steps']} steps, dev loss {r['dev_loss']:.4f}", flush=True)
    command = "python benchmarks/lr_sweep.py " + " ".join(sys.argv[1:])
    table = "\n".join(f"| {lr} | {ratio} | {float(lr) * (float(ratio) or 1):g} | {steps} | {dev:.4f} | {tps} | {rss} |"
                      for lr, ratio, steps, dev, tps, rss in rows)
    write_text(ROOT / "benchmarks/results" / f"{args.out}.md", f"""# Learning rate x LoRA+ ratio by dev loss after {args.steps} steps

Command: `{command}`

Machine: {machine()}. Recipe: {args.recipe}.

| learning rate (A factors) | LoRA+ ratio | B factors' rate | steps | dev loss | tokens/s | peak RSS MB |
|---|---|---|---|---|---|---|
{table}

Same dialogs in the same order for every row (train.seed), the cosine over the {args.steps} steps. A screen of
learning per step: the full-budget run decides.
""")


if __name__ == "__main__":
    main()
