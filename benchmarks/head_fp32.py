"""The LM head of an fp32 training step on a CPU: one matmul over the whole vocabulary vs blocks of its rows.

    .venv/bin/python benchmarks/head_fp32.py [--model gemma3-270m] [--tokens 512] [--blocks 0,1024,2048,4096] [--reps 7]

Where bf16 is slower than fp32 (a CPU without AVX512-BF16 or AMX), `tunelab train` computes the logits of the
supervised positions in fp32 (train/head_ce.py). For Gemma 3 that is a (targets x 640) by (640 x 262,144)
matmul per step, and with ~85 targets one such call ran far below the CPU's matmul rate. This times, in one
process with the settings interleaved, for each `train.head_ce.VOCAB_BLOCK` in --blocks (0: one matmul):
- the head alone: head_ce's forward and backward on random hidden states of the step's target count;
- the recipe's step: the preset in fp32, LoRA r16 on every linear layer of the last `--lora-layers` layers
  (default 9; 0: all), one random row of --tokens tokens with its last sixth supervised, forward + backward.
Checks that every setting gives the same loss and hidden-state gradient as one matmul, and writes
benchmarks/results/head_ce_fp32.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--blocks", default="0,1024,2048,4096")
    ap.add_argument("--lora-layers", type=int, default=9)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import tunelab.train.head_ce as hc
    from tunelab.models import resolve_model_dir
    from tunelab.train.loss import causal_lm, lm_loss
    from tunelab.train.precision import machine
    from tunelab.utils.io import write_text

    blocks = [int(b) for b in args.blocks.split(",")]
    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(args.model), dtype=torch.float32)
    n_layers = model.config.get_text_config().num_hidden_layers
    layers = list(range(n_layers - args.lora_layers, n_layers)) if args.lora_layers else None
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, layers_to_transform=layers,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"]))
    lm = causal_lm(model)
    head = lm.get_output_embeddings().weight
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, head.shape[0], (1, args.tokens), generator=g)
    n_targets = args.tokens // 6
    labels = ids.clone()
    labels[:, : args.tokens - n_targets] = -100
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}
    hidden = torch.randn(n_targets, head.shape[1], generator=g).requires_grad_()
    targets = ids[0, -n_targets:]
    params = [p for p in model.parameters() if p.requires_grad]

    def head_only(block: int) -> tuple[float, float, torch.Tensor]:
        hc.VOCAB_BLOCK = block
        hidden.grad = None
        start = time.perf_counter()
        loss = hc.head_ce(hidden, head, targets)
        loss.backward()
        return time.perf_counter() - start, loss.item(), hidden.grad.clone()

    def step(block: int) -> float:
        hc.VOCAB_BLOCK = block
        start = time.perf_counter()
        loss, _ = lm_loss(model, batch)
        loss.backward()
        elapsed = time.perf_counter() - start
        for p in params:
            p.grad = None
        return elapsed

    _, ref_loss, ref_grad = head_only(0)
    checks = {}
    for b in blocks:
        _, loss, grad = head_only(b)
        checks[b] = (abs(loss - ref_loss), (grad - ref_grad).abs().max().item())
        step(b)  # warm-up
    head_t, step_t = {b: [] for b in blocks}, {b: [] for b in blocks}
    for _ in range(args.reps):
        for b in blocks:
            head_t[b].append(head_only(b)[0])
            step_t[b].append(step(b))
    med = {b: (statistics.median(head_t[b]), statistics.median(step_t[b])) for b in blocks}
    flops = 2 * 2 * n_targets * head.shape[0] * head.shape[1]  # logits and the hidden states' gradient
    cmd = "python benchmarks/head_fp32.py " + " ".join(sys.argv[1:])
    lines = [f"# The LM head of an fp32 training step ({args.model}, {args.tokens} tokens, {n_targets} supervised)",
             "", f"Command: `{cmd.strip()}` (median of {args.reps} per setting, the settings interleaved; machine: "
             f"{machine()}). LoRA r16 on every linear layer of "
             + (f"the last {args.lora_layers} layers." if args.lora_layers else "every layer."), "",
             "| VOCAB_BLOCK | head fwd+bwd s | head GFLOP/s | step s | step vs one matmul | loss diff "
             "| grad max diff |",
             "|---|---|---|---|---|---|---|"]
    base = med[blocks[0]][1] if blocks[0] == 0 else None
    for b in blocks:
        h, s = med[b]
        vs = f"{base / s:.2f}x" if base else "-"
        lines.append(f"| {b or 'one matmul'} | {h:.3f} | {flops / h / 1e9:.0f} | {s:.3f} | {vs} | "
                     f"{checks[b][0]:.1e} | {checks[b][1]:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(Path(__file__).parent / "results" / "head_ce_fp32.md", text)


if __name__ == "__main__":
    main()
