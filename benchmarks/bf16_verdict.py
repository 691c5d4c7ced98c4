"""The measurement behind `train.mixed_precision: auto` on this CPU: one training step of each preset with LoRA
r16 (forward and backward of the target-only loss, 512 tokens, a sixth supervised) in fp32 and under bf16
autocast, timed afresh (not read from the verdict cache).

    .venv/bin/python benchmarks/bf16_verdict.py [--models smollm2-135m-instruct gemma3-270m] [--dropout 0.05]
        [--repeat 1] [--out bf16_verdict]

--dropout 0 is the hotel recipe's LoRA; --repeat N times each model N times in one process, to show the spread.
Results go to benchmarks/results/NAME.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tunelab.config.schema import MethodConfig, ModelConfig
from tunelab.methods import apply_method
from tunelab.models import load_model
from tunelab.train.precision import BF16_MARGIN, machine, time_bf16_step
from tunelab.utils.io import write_text


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma3-270m"])
    p.add_argument("--dropout", type=float, default=MethodConfig.dropout, help="LoRA dropout")
    p.add_argument("--repeat", type=int, default=1, help="probes per model")
    p.add_argument("--out", default="bf16_verdict", help="results file name")
    args = p.parse_args()
    rows = ["| model | fp32 step (s) | bf16 step (s) | bf16 speed-up | auto picks | time to measure (s) |",
            "|---|---|---|---|---|---|"]
    for name in args.models:
        model, _, _ = load_model(ModelConfig(name_or_path=name), "cpu")
        model = apply_method(model, MethodConfig(name="lora", r=16, alpha=32, dropout=args.dropout))
        for _ in range(args.repeat):
            start = time.time()
            m = time_bf16_step(model)
            took = time.time() - start
            pick = "bf16" if m["step"] >= BF16_MARGIN else "fp32"
            rows.append(f"| {name} | {m['fp32_s']} | {m['bf16_s']} | {m['step']}x | {pick} | {took:.1f} |")
            print(rows[-1], flush=True)
    cmd = "python " + " ".join(sys.argv)
    text = (f"# bf16 verdict\n\n`{cmd}`\n\nMachine: {machine()}. LoRA r16, dropout {args.dropout}. "
            f"bf16 is picked at >= {BF16_MARGIN}x.\n\n"
            + "\n".join(rows) + "\n")
    write_text(Path(__file__).parent / "results" / f"{args.out}.md", text)


if __name__ == "__main__":
    main()
