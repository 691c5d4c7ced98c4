"""Does preference training pay on the hotel recipe? SFT alone vs SFT then DPO vs SFT then ORPO, same total minutes.

    .venv/bin/python benchmarks/prefs_compare.py [--sft-minutes 12 --pref-minutes 6] [--items 60] [--real 40]

Runs (each in its own process): `sft_long` (recipes/hotel_lora.yaml for sft+pref minutes), `sft` (the same for
sft minutes), then `dpo` and `orpo` (recipes/hotel_dpo.yaml, hotel_orpo.yaml) starting from `sft` for pref
minutes; so sft_long, dpo and orpo each cost the same total CPU time. Preference pairs come from `tunelab hotel
prefs` (--pairs). Each run is evaluated on the first --items synthetic test items and, with --real N, on the
first N real-guest dev dialogs (benchmarks/hotel_real.py); `tunelab compare` makes the tables, written with this
command to benchmarks/results/prefs_compare.md. --model / --data-dir / --steps make a tiny smoke run possible.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hotel_real import DEFAULT_FILE, prepare  # benchmarks/ is on sys.path when this script runs

from tunelab.evaluate.compare import compare
from tunelab.utils.io import write_text

REPO = Path(__file__).resolve().parents[1]


def tunelab(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "tunelab.cli.main", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.replace("\r", "\n").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("tunelab: error", "Traceback")) or "Error" in ln]
        sys.exit(f"tunelab {' '.join(args[:2])}: {(errors or lines or ['failed'])[-1]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sft-minutes", type=float, default=12)
    ap.add_argument("--pref-minutes", type=float, default=6)
    ap.add_argument("--steps", type=int, default=0, help="smoke test: steps per stage instead of minutes")
    ap.add_argument("--pairs", type=int, default=1500)
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--real", type=int, default=0, help="also evaluate on the first N real-guest dialogs")
    ap.add_argument("--model", default="", help="model.name_or_path for every run (default: the recipes')")
    ap.add_argument("--data-dir", default="data/hotel", help="holds hotels.db, train.jsonl, dev.jsonl, test.jsonl")
    ap.add_argument("--sft-long", default="", help="an existing run to use as sft_long (e.g. `make run`'s runs/hotel_lora:"
                    " recipes/hotel_lora.yaml on the same data for sft+pref minutes) instead of training it again")
    ap.add_argument("--eval-only", action="store_true", help="the runs exist under --out: only evaluate and tabulate")
    ap.add_argument("--pref-only", action="store_true", help="the pairs and the sft run exist under --out: train dpo "
                    "and orpo again from them, evaluate the runs whose evaluation is missing, tabulate")
    ap.add_argument("--out", default="runs/prefs_compare")
    ap.add_argument("--results", default="benchmarks/results/prefs_compare.md")
    args = ap.parse_args()
    data, out = Path(args.data_dir), Path(args.out)
    db, prefs = data / "hotels.db", out / "prefs.jsonl"
    common = [f"--data.db={db}", "--train.save_steps=0", "--train.overwrite=true",
              *([f"--model.name_or_path={args.model}"] if args.model else [])]
    sft_data = [f"--data.train_file={data / 'train.jsonl'}", f"--data.dev_file={data / 'dev.jsonl'}"]

    def budget(minutes: float) -> list[str]:
        if args.steps:
            return [f"--train.max_steps={args.steps * (2 if minutes > args.sft_minutes else 1)}",
                    "--train.time_budget_minutes=0"]
        return ["--train.max_steps=-1", f"--train.time_budget_minutes={minutes}"]

    total = args.sft_minutes + args.pref_minutes
    sft_long = args.sft_long or str(out / "sft_long")
    if not args.eval_only and not args.pref_only:
        tunelab("hotel", "prefs", "--db", str(db), "--n", str(args.pairs), "--out", str(prefs))
        if not args.sft_long:
            tunelab("train", "recipes/hotel_lora.yaml", *common, *sft_data, *budget(total),
                    f"--train.output_dir={sft_long}")
        tunelab("train", "recipes/hotel_lora.yaml", *common, *sft_data, *budget(args.sft_minutes),
                f"--train.output_dir={out}/sft")
    if not args.eval_only:
        for task in ("dpo", "orpo"):
            tunelab("train", f"recipes/hotel_{task}.yaml", *common, *budget(args.pref_minutes),
                    f"--model.adapter={out}/sft", f"--data.train_file={prefs}", f"--train.output_dir={out}/{task}")
    runs = [sft_long, *(str(out / r) for r in ("sft", "dpo", "orpo"))]
    real = prepare(DEFAULT_FILE, out / "real", args.real)[:2] if args.real and DEFAULT_FILE.is_file() else None
    for run in runs:
        done = Path(run, "eval-pc-test").is_dir() and (not real or Path(run, "eval-pc-real").is_dir())
        if args.pref_only and Path(run).name not in ("dpo", "orpo") and done:
            continue  # not trained again: evaluated before, on the same items
        tunelab("evaluate", run, "--data", str(data / "test.jsonl"), "--limit", str(args.items), "--db", str(db),
                "--max-new-tokens", "96", "--out", f"{run}/eval-pc-test")
        if real:
            tunelab("evaluate", run, "--data", str(real[0]), "--db", str(real[1]), "--out", f"{run}/eval-pc-real",
                    "--max-new-tokens", "96")
    table = compare(runs, eval_name="eval-pc-test")
    real_table = compare(runs, eval_name="eval-pc-real") if real else ""
    spent = f"{args.steps} steps per stage" if args.steps else f"{total:g} minutes each ({args.sft_minutes:g} SFT + " \
        f"{args.pref_minutes:g} preference for dpo/orpo)"
    text = (f"# SFT alone vs SFT then DPO vs SFT then ORPO on the hotel recipe ({spent})\n\n"
            f"Command: `python benchmarks/prefs_compare.py {' '.join(sys.argv[1:])}`\n\n`sft` is the run dpo and orpo "
            f"start from; `{Path(sft_long).name}` is SFT alone for the same total time.\n\n## First {args.items} synthetic test "
            f"items\n\n{table}\n\n" + (f"## First {args.real} real-guest dev dialogs\n\n{real_table}\n" if real_table else ""))
    print(text)
    write_text(REPO / args.results, text)


if __name__ == "__main__":
    main()
