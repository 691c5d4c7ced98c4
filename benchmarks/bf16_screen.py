"""Why `train.mixed_precision: auto` screens with a matmul before its step probe: on a CPU without bf16
hardware the probe's bf16 step takes minutes, most of it the LM head's backward (targets x vocab by vocab x
hidden). Times, in fp32 and bf16, the screen (`time_bf16`: a matmul and an attention block of the model's
shapes) and that head backward at the probe's 85 supervised positions.

    .venv/bin/python benchmarks/bf16_screen.py [--models gemma3-270m smollm2-135m-instruct] [--out bf16_screen]

Results go to benchmarks/results/NAME.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from tunelab.config.schema import ModelConfig
from tunelab.models import load_model
from tunelab.train.loss import causal_lm
from tunelab.train.precision import PROBE, SCREEN_FLOOR, machine, model_shapes, time_bf16
from tunelab.utils.io import write_text


def head_backward_s(rows: int, weight: torch.Tensor, dtype: torch.dtype) -> float:
    """Seconds for grad_hidden = grad_logits @ W of the LM head, once warmed up."""
    w = weight.detach().to(dtype)
    g = torch.randn(rows, w.shape[0], generator=torch.Generator().manual_seed(0)).to(dtype)
    g @ w
    start = time.perf_counter()
    g @ w
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["gemma3-270m", "smollm2-135m-instruct"])
    p.add_argument("--out", default="bf16_screen", help="results file name")
    args = p.parse_args()
    supervised = int(PROBE["tokens"] * PROBE["supervised"])  # the probe's supervised positions
    rows = ["| model | screen: matmul bf16 speed-up | screen: attention | screen took (s) | head backward fp32 (s) "
            "| head backward bf16 (s) | auto |", "|---|---|---|---|---|---|---|"]
    for name in args.models:
        model, _, _ = load_model(ModelConfig(name_or_path=name), "cpu")
        shapes = model_shapes(model)
        start = time.time()
        screen = time_bf16(shapes)
        took = time.time() - start
        head = causal_lm(model).get_output_embeddings().weight
        fp32, bf16 = (head_backward_s(supervised, head, d) for d in (torch.float32, torch.bfloat16))
        verdict = "fp32 (screened)" if screen["matmul"] < SCREEN_FLOOR else "step probe decides"
        rows.append(f"| {name} | {screen['matmul']}x | {screen['attention']}x | {took:.1f} | {fp32:.3f} | "
                    f"{bf16:.3f} | {verdict} |")
        print(rows[-1], flush=True)
    cmd = "python " + " ".join(sys.argv)
    text = (f"# bf16 screen\n\n`{cmd}`\n\nMachine: {machine()}. The screen rules bf16 out below "
            f"{SCREEN_FLOOR}x; head backward: {supervised} rows.\n\n"
            + "\n".join(rows) + "\n")
    write_text(Path(__file__).parent / "results" / f"{args.out}.md", text)


if __name__ == "__main__":
    main()
