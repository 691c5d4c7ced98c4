"""What the step-time benchmarks share (context_grad.py, record_view.py): the recipe's LoRA on the last N layers
of a preset in fp32, and one optimizer-free training step timed."""

from __future__ import annotations

import time

import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_on_last(model_dir, n: int):
    """(model in train mode, its trainable parameters, a label): LoRA r16 on every linear layer of the last `n`
    decoder layers (0: all), fp32."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    total = base.config.get_text_config().num_hidden_layers
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                                            layers_to_transform=list(range(total - n, total)) if n else None))
    model.train()
    return model, [p for p in model.parameters() if p.requires_grad], f"last {n}" if n else f"all {total}"


def timed_step(model, params, batch: dict, **loss_kw) -> tuple[float, float]:
    """(seconds, loss) of the target-only loss's forward and backward on `batch`; the gradients are dropped."""
    from tunelab.train.loss import lm_loss

    start = time.perf_counter()
    loss, _ = lm_loss(model, batch, **loss_kw)
    loss.backward()
    elapsed = time.perf_counter() - start
    for p in params:
        p.grad = None
    return elapsed, loss.item()
