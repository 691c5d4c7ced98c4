"""Bytes the autograd graph keeps per token per decoder layer in a bf16 LoRA training step, with and without
tunelab's lean norm and MLP layers (models/fused.py) and CPU attention kernel.

    .venv/bin/python benchmarks/saved_activations.py [--models smollm2-135m-instruct gemma3-270m] [--tokens 512]

LoRA r8 on q_proj,v_proj with dropout 0.05 (tunelab's defaults), frozen linears stored in bf16, bf16 autocast,
one forward pass of the decoder over `tokens` tokens; each saved storage counted once, the weights not.
Writes benchmarks/results/saved_activations.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def kept_per_token_layer(name: str, tokens: int, lean: bool, kernel: bool) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab.models import resolve_model_dir
    from tunelab.models.attention import training_attention
    from tunelab.models.fused import lean_layers
    from tunelab.train.loss import causal_lm, decoder_layers
    from tunelab.train.precision import store_frozen_linears

    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(name), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]))
    store_frozen_linears(model, torch.bfloat16)
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    layers = decoder_layers(model)
    ids = torch.zeros((1, tokens), dtype=torch.long)
    with training_attention(model, packed=False, kernel=kernel), \
            (lean_layers(model, layers, lora=True) if lean else contextlib.nullcontext()), \
            torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        causal_lm(model).get_decoder()(input_ids=ids, use_cache=False)
    return sum(seen.values()) / tokens / len(layers)


def main() -> None:
    from tunelab.models.cpu_attention import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma3-270m"])
    ap.add_argument("--tokens", type=int, default=512)
    args = ap.parse_args()
    kernel = load()
    rows = []
    for name in args.models:
        plain = kept_per_token_layer(name, args.tokens, False, False)
        lean = kept_per_token_layer(name, args.tokens, True, False)
        both = kept_per_token_layer(name, args.tokens, True, True) if kernel else float("nan")
        rows.append(f"| {name} | {plain / 1024:.1f} | {lean / 1024:.1f} | {both / 1024:.1f} | "
                    f"{100 * (1 - lean / plain):.0f}% |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "# Activations kept for the backward pass, per token per decoder layer",
        "",
        f"Command: `python benchmarks/saved_activations.py --models {' '.join(args.models)} --tokens {args.tokens}`",
        "",
        "bf16 LoRA step (r8 on q_proj,v_proj, dropout 0.05, frozen linears stored in bf16), one forward pass of "
        f"{args.tokens} tokens; KB = 1024 bytes.",
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
