"""Every method on the hotel recipe with the same small budget, then one comparison table.

    .venv/bin/python benchmarks/methods.py [--steps 30] [--items 40] [--methods lora,dora,...]

Each method trains in its own process (so peak RSS is its own) with the same data, steps, batch and
max_length, then is evaluated on the same first test items; `tunelab compare` makes the table,
written with this command to benchmarks/results/methods.md (+ .png).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tunelab.evaluate.compare import compare
from tunelab.utils.io import write_text

REPO = Path(__file__).resolve().parents[1]
LR = {"ia3": 5e-3, "prompt_tuning": 5e-3, "p_tuning": 1e-3, "prefix_tuning": 1e-3, "full": 3e-5, "freeze": 1e-4}


def tunelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab.cli.main", *args], cwd=REPO, capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--methods", default="lora,dora,adalora,ia3,prompt_tuning,p_tuning,prefix_tuning,full,freeze")
    ap.add_argument("--out", default="runs/methods")
    ap.add_argument("--reuse", action="store_true", help="keep methods already trained and evaluated in --out")
    args = ap.parse_args()
    runs, refused = [], []
    for name in args.methods.split(","):
        out = f"{args.out}/{name}"
        if args.reuse and (REPO / out / "eval-test" / "metrics.json").is_file():
            runs.append(out)
            continue
        proc = tunelab("train", "recipes/hotel_lora.yaml", f"--method.name={name}", f"--train.output_dir={out}",
                       f"--train.max_steps={args.steps}", "--train.time_budget_minutes=0", "--train.save_steps=0",
                       f"--train.learning_rate={LR.get(name, 1e-3)}", "--data.max_length=512",
                       "--data.dev_max_samples=16", "--train.lr_scheduler_type=cosine")
        if proc.returncode != 0:
            refused.append((name, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"))
            print(f"{name}: {refused[-1][1]}", flush=True)
            continue
        ev = tunelab("evaluate", out, "--data", "data/hotel/test.jsonl", "--limit", str(args.items),
                     "--max-new-tokens", "96", "--db", "data/hotel/hotels.db")
        if ev.returncode != 0:
            refused.append((name, "evaluation failed: " + ev.stderr.strip().splitlines()[-1]))
        runs.append(out)
        print(f"{name}: done", flush=True)
    table = compare(runs, out=str(REPO / "benchmarks/results/methods_chart")) if runs else ""
    cmd = "python benchmarks/methods.py " + " ".join(sys.argv[1:])
    notes = "".join(f"- `{n}`: {why}\n" for n, why in refused)
    text = (f"# Methods on the hotel recipe (gemma3-270m, {args.steps} steps of 1 dialog, max_length 512, "
            f"first {args.items} test items, CPU)\n\nCommand: `{cmd.strip()}`\n\n{table}\n\n"
            + (f"Not run:\n{notes}" if notes else "") + "\nChart: methods_chart.png\n")
    print(text)
    write_text(REPO / "benchmarks/results/methods.md", text)


if __name__ == "__main__":
    main()
