"""Preference training speed on the hotel recipe: TRL's own log-prob code (every position through the whole
vocabulary, fp32: before issue 17) vs tunelab's completion-only scoring, in fp32 and under the measured bf16
verdict, a few steps each on the same pairs.

    .venv/bin/python benchmarks/pref_speed.py --adapter runs/hotel_lora --pairs runs/prefs_compare/prefs.jsonl \
        [--task dpo] [--steps 4]

Each setting is one `tunelab train recipes/hotel_{task}.yaml` in its own process (its own peak RSS) on the
first 2 x steps pairs; the table (tokens/s, seconds per step, peak RSS, last loss and reward margin) is written
with this command to benchmarks/results/pref_speed_{task}.md. Timings need a quiet machine. --model and
--max-length make a tiny smoke run possible (a tiny model's adapter run as --adapter).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tunelab.utils.io import write_text

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {  # name: overrides
    "trl, fp32 (before)": ["--train.target_only_logits=false", "--train.mixed_precision=no"],
    "completion-only, fp32": ["--train.target_only_logits=true", "--train.mixed_precision=no"],
    "completion-only, auto": ["--train.target_only_logits=true", "--train.mixed_precision=auto"],
}


def run(args, name: str, overrides: list[str]) -> dict:
    out = Path(args.out) / "".join(c if c.isalnum() else "_" for c in name.split(" (")[0])
    cmd = [sys.executable, "-m", "tunelab.cli.main", "train", f"recipes/hotel_{args.task}.yaml",
           f"--model.adapter={args.adapter}", f"--data.train_file={args.pairs}", f"--data.db={args.db}",
           f"--data.max_samples={2 * args.steps}", f"--train.max_steps={args.steps}", "--train.time_budget_minutes=0",
           "--train.save_steps=0", "--train.logging_steps=1", "--train.overwrite=true", f"--train.output_dir={out}",
           *([f"--model.name_or_path={args.model}"] if args.model else []),
           *([f"--data.max_length={args.max_length}"] if args.max_length else []), *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{name}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
    summary = json.loads((out / "run.json").read_text())
    # the last logged step: DPO's first is always ln 2 and margin 0 (policy == reference before any update)
    last = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in l][-1]
    return {"setting": name, "precision": summary["mixed_precision"], "tokens/s": summary["tokens_per_s"],
            "s/step": round(summary["train_time_s"] / max(summary["steps"], 1), 1),
            "peak RSS (MB)": summary["peak_rss_mb"], "last loss": round(last["loss"], 4),
            "last margin": round(last.get("rewards/margins", float("nan")), 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="dpo", choices=["dpo", "orpo"])
    ap.add_argument("--adapter", default="runs/hotel_lora", help="the SFT run the preference run starts from")
    ap.add_argument("--pairs", default="data/hotel/prefs.jsonl", help="`tunelab hotel prefs` output")
    ap.add_argument("--db", default="data/hotel/hotels.db")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--model", default="", help="model.name_or_path (default: the recipe's gemma3-270m)")
    ap.add_argument("--max-length", type=int, default=0, help="data.max_length (default: the recipe's)")
    ap.add_argument("--only", default="", help="comma-separated setting names to run (default: all)")
    ap.add_argument("--out", default="runs/pref_speed")
    ap.add_argument("--results", default="")
    args = ap.parse_args()
    names = [n for n in SETTINGS if not args.only or any(o.strip() in n for o in args.only.split(","))]
    rows = [run(args, name, SETTINGS[name]) for name in names]
    cols = list(rows[0])
    table = "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                      + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])
    text = (f"# {args.task} speed: TRL's log-prob code vs completion-only scoring ({args.steps} steps, "
            f"{2 * args.steps} pairs)\n\nCommand: `python benchmarks/pref_speed.py {' '.join(sys.argv[1:])}`\n\n"
            f"{table}\n")
    print(text)
    write_text(REPO / (args.results or f"benchmarks/results/pref_speed_{args.task}.md"), text)


if __name__ == "__main__":
    main()
