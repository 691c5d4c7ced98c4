"""Bytes the autograd graph keeps per token per decoder layer in a bf16 LoRA training step, with and without
tunelab's lean norm and MLP layers (models/fused.py) and CPU attention kernel.

    .venv/bin/python benchmarks/saved_activations.py [--models smollm2-135m-instruct gemma3-270m]

LoRA r8 on q_proj,v_proj with dropout 0.05 (tunelab's defaults), frozen linears stored in bf16, bf16 autocast;
measured as the activation budget measures it (train/memory.py: one forward pass of the decoder over its probe
tokens, each saved storage counted once, the weights not).
Writes benchmarks/results/saved_activations.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def kept_per_token_layer(name: str, lean: bool, kernel: bool) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab.models import resolve_model_dir
    from tunelab.models.attention import training_attention
    from tunelab.models.fused import lean_layers
    from tunelab.train.loss import decoder_layers
    from tunelab.train.memory import saved_bytes_per_token
    from tunelab.train.precision import store_frozen_linears

    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(name), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]))
    store_frozen_linears(model, torch.bfloat16)

    def training():  # what the activation budget's probe enters in a bf16 CPU run (train/job.py)
        stack = contextlib.ExitStack()
        stack.enter_context(training_attention(model, packed=False, kernel=kernel))
        if lean:
            stack.enter_context(lean_layers(model, decoder_layers(model), lora=True))
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        return stack

    return saved_bytes_per_token(model, training)


def main() -> None:
    from tunelab.models.cpu_attention import load
    from tunelab.train.memory import PROBE_TOKENS

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma3-270m"])
    args = ap.parse_args()
    kernel = load()
    rows = []
    for name in args.models:
        plain = kept_per_token_layer(name, False, False)
        lean = kept_per_token_layer(name, True, False)
        both = kept_per_token_layer(name, True, True) if kernel else float("nan")
        rows.append(f"| {name} | {plain / 1024:.1f} | {lean / 1024:.1f} | {both / 1024:.1f} | "
                    f"{100 * (1 - lean / plain):.0f}% |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "# Activations kept for the backward pass, per token per decoder layer",
        "",
        f"Command: `python benchmarks/saved_activations.py --models {' '.join(args.models)}`",
        "",
        "bf16 LoRA step (r8 on q_proj,v_proj, dropout 0.05, frozen linears stored in bf16), measured by the "
        f"activation budget's probe (train/memory.py, {PROBE_TOKENS} tokens); KB = 1024 bytes.",
        "",
        "| model | as transformers runs it (KB) | lean layers (KB) | lean layers + tunelab's attention kernel (KB) "
        "| saved by lean layers |",
        "|---|---|---|---|---|",
        *rows, ""])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "saved_activations.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
