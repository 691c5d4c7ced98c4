"""Every method on the hotel recipe with the same budget, then one comparison table per test set.

    .venv/bin/python benchmarks/methods.py [--minutes 5 | --steps 30] [--items 60] [--real 40] [--methods lora,...]

Each method trains in its own process (so peak RSS is its own) with the same data, batch and max_length and
the same budget: `--minutes` of wall clock (the learning rate decays over it, as in `make run`) or `--steps`
optimizer steps (adalora, whose rank schedule needs a step count, gets the steps lora made in those minutes:
train lora first). Each is then evaluated on the same first `--items` synthetic test items and, with `--real N`,
on the first N dialogs of the real-guest dev set (benchmarks/hotel_real.py: the hotel part of CrossWOZ's
validation dialogs, skipped when ../shared is absent). `tunelab compare` makes the tables, written with this
command to benchmarks/results/methods.md (+ methods_chart.png), or NAME.md with `--name NAME`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from hotel_real import DEFAULT_FILE, prepare  # benchmarks/ is on sys.path when this script runs

from tunelab.evaluate.compare import compare
from tunelab.train.precision import machine
from tunelab.utils.io import write_text

REPO = Path(__file__).resolve().parents[1]
# prompt_tuning, p_tuning, prefix_tuning: the highest rate of each screen by dev loss, which was also its best
# (benchmarks/results/lr_sweep_{prompt_tuning,p_tuning,prefix}_avx2*.md); the others as first chosen
LR = {"ia3": 5e-3, "prompt_tuning": 3e-1, "p_tuning": 1e-1, "prefix_tuning": 1e-1, "full": 3e-5, "freeze": 1e-4}


def tunelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab.cli.main", *args], cwd=REPO, capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=0, help="time budget per method (overrides --steps)")
    ap.add_argument("--real", type=int, default=0, help="also evaluate on the first N real-guest dialogs")
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--max-length", type=int, default=768)
    ap.add_argument("--methods", default="lora,dora,adalora,ia3,prompt_tuning,p_tuning,prefix_tuning,full,freeze")
    ap.add_argument("--out", default="runs/methods")
    ap.add_argument("--reuse", action="store_true", help="keep methods already trained and evaluated in --out")
    ap.add_argument("--name", default="methods", help="results file stem: benchmarks/results/NAME.md, NAME_chart.png")
    args = ap.parse_args()
    runs, refused = [], []
    real = None
    if args.real and DEFAULT_FILE.is_file():
        real = prepare(DEFAULT_FILE, REPO / args.out / "real", args.real)[:2]
    budget = ([f"--train.time_budget_minutes={args.minutes}", "--train.max_steps=-1"] if args.minutes
              else [f"--train.max_steps={args.steps}", "--train.time_budget_minutes=0"])
    for name in args.methods.split(","):
        out = f"{args.out}/{name}"
        if args.reuse and (REPO / out / "eval-test" / "metrics.json").is_file():
            runs.append(out)
            continue
        method_budget = budget
        lora_run = REPO / args.out / "lora" / "run.json"
        if name == "adalora" and args.minutes and lora_run.is_file():
            # adalora lays its rank schedule over max_steps, so it gets the steps lora made in the same minutes
            method_budget = [f"--train.max_steps={json.loads(lora_run.read_text())['steps']}",
                             "--train.time_budget_minutes=0"]
        # every method adapts every layer (the recipe's lora_layers is LoRA's own lever; other methods refuse it)
        proc = tunelab("train", "recipes/hotel_lora.yaml", f"--method.name={name}", "--method.lora_layers=0",
                       f"--train.output_dir={out}",
                       "--train.overwrite=true",  # a rerun replaces the method's run (recipes no longer say so)
                       *method_budget, "--train.save_steps=0", f"--train.learning_rate={LR.get(name, 1e-3)}",
                       f"--data.max_length={args.max_length}", "--data.dev_max_samples=16",
                       "--train.lr_scheduler_type=cosine")
        if proc.returncode != 0:
            refused.append((name, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"))
            print(f"{name}: {refused[-1][1]}", flush=True)
            continue
        ev = tunelab("evaluate", out, "--data", "data/hotel/test.jsonl", "--limit", str(args.items),
                     "--max-new-tokens", "96", "--db", "data/hotel/hotels.db")
        if real and ev.returncode == 0:
            ev = tunelab("evaluate", out, "--data", str(real[0]), "--db", str(real[1]), "--out", f"{out}/eval-real",
                         "--max-new-tokens", "96")
        if ev.returncode != 0:
            refused.append((name, "evaluation failed: " + ev.stderr.strip().splitlines()[-1]))
        runs.append(out)
        print(f"{name}: done", flush=True)
    chart = str(REPO / f"benchmarks/results/{args.name}_chart")
    table = compare(runs, out=chart, eval_name="eval-test") if runs else ""
    real_table = compare(runs, eval_name="eval-real") if runs and real else ""
    cmd = "python benchmarks/methods.py " + " ".join(sys.argv[1:])
    notes = "".join(f"- `{n}`: {why}\n" for n, why in refused)
    budget_text = f"{args.minutes:g} minutes" if args.minutes else f"{args.steps} steps"
    text = (f"# Methods on the hotel recipe (gemma3-270m, {budget_text} of 1-dialog steps each, max_length "
            f"{args.max_length}, CPU)\n\nCommand: `{cmd.strip()}`\n\nMachine: {machine()}.\n\n"
            f"## First {args.items} synthetic test items\n\n"
            f"{table}\n\n" + (f"## First {args.real} real-guest dev dialogs (CrossWOZ validation, hotel part)\n\n"
                              f"{real_table}\n\n" if real_table else "")
            + (f"Not run:\n{notes}" if notes else "") + f"\nChart (synthetic test): {args.name}_chart.png\n")
    print(text)
    write_text(REPO / f"benchmarks/results/{args.name}.md", text)


if __name__ == "__main__":
    main()
