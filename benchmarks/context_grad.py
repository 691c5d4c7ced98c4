"""A training step with the context's backward left out (train.context_grad=false) against the full step.

    .venv/bin/python benchmarks/context_grad.py [--config recipes/hotel_lora.yaml] [--rows 24] [--lora-layers 0,9]

Renders the first --rows training conversations of the recipe that fit its max_length, as `tunelab train`
does, and times one optimizer-free training step (forward + backward of the target-only loss, one
conversation per step, as the recipe trains) on the preset in fp32, LoRA r16 on every linear layer of the
last N layers for each N of --lora-layers (0: all), with context_grad true and false interleaved row by row.
Reports the median step time of each, the ratio, and checks both give the same loss. The gradients differ by
design (the context's keys and values are constants in the false case). Writes
benchmarks/results/context_grad.md (--out to name it otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import torch
from step_timing import lora_on_last, timed_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="recipes/hotel_lora.yaml")
    ap.add_argument("--rows", type=int, default=24)
    ap.add_argument("--lora-layers", default="0,9")
    ap.add_argument("--out", default="context_grad")
    args = ap.parse_args()
    from tunelab.config import load_config
    from tunelab.data.dataset import read_data, train_source
    from tunelab.data.render import Renderer
    from tunelab.data.template import get_template
    from tunelab.models import load_tokenizer, resolve_model_dir
    from tunelab.train.precision import machine
    from tunelab.utils.io import write_text

    cfg = load_config(args.config, [])
    convs, _ = read_data(train_source(cfg.data), dataclasses.replace(cfg.data, max_samples=4 * args.rows))
    model_dir = resolve_model_dir(cfg.model.name_or_path)
    tok = load_tokenizer(model_dir)
    renderer = Renderer(get_template(cfg.data.template, tok, cfg.data.tool_results), tok, cfg.data.system_prompt)
    rows = [r for r in (renderer.encode(c) for c in convs) if len(r.input_ids) <= cfg.data.max_length][: args.rows]
    batches = [{"input_ids": torch.tensor([r.input_ids]), "labels": torch.tensor([r.labels])} for r in rows]
    tokens = sum(len(r.input_ids) for r in rows)
    targets = sum(sum(1 for x in r.labels if x != -100) for r in rows)
    torch.manual_seed(0)
    lines = [f"# A training step without the context's backward ({cfg.model.name_or_path}, fp32)", "",
             f"Command: `{' '.join(['python benchmarks/context_grad.py', *sys.argv[1:]])}`", "",
             f"Machine: {machine()}", "",
             f"{len(rows)} conversations of {args.config}'s training data, {tokens / len(rows):.1f} tokens and "
             f"{targets / len(rows):.1f} targets each on average; one per step, each timed with both settings "
             "(order alternating), the first two rows as warm-up.", "",
             "| LoRA layers | step, context_grad true | step, false | speed-up | loss equal |", "|---|---|---|---|---|"]
    for n in (int(x) for x in args.lora_layers.split(",")):
        model, params, label = lora_on_last(model_dir, n)
        times = {True: [], False: []}
        worst = 0.0
        for i, batch in enumerate(batches):
            losses = {}
            for flag in ((True, False) if i % 2 else (False, True)):
                elapsed, losses[flag] = timed_step(model, params, batch, context_grad=flag)
                if i >= 2:
                    times[flag].append(elapsed)
            worst = max(worst, abs(losses[True] - losses[False]) / abs(losses[True]))
        full, frozen = statistics.median(times[True]), statistics.median(times[False])
        lines.append(f"| {label} | {full:.3f} s | {frozen:.3f} s | {full / frozen:.2f}x | "
                     f"{'yes' if worst < 1e-4 else 'NO'} (largest relative difference {worst:.1e}) |")
        print(lines[-1], flush=True)
        del model
    path = Path(__file__).parent / "results" / f"{args.out}.md"
    write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
