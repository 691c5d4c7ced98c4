"""Does the activation budget's per-layer checkpointing hold under train.compile? Peak RSS and step time.

    .venv/bin/python benchmarks/budget_compile.py

SmolLM2-135M-Instruct, LoRA r8 on q,v, frozen linears in bf16, bf16 autocast, three training steps on one
random 2048-token sequence, four processes: with and without torch.compile, with no budget and with a
50 MB budget (every one of the 30 layers checkpoints). Prints peak RSS after the steps and the last step's
seconds; writes benchmarks/results/budget_compile.md.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TOKENS = 2048


def child(budget_mb: float, compiled: bool) -> dict:
    import torch

    from tunelab.config.schema import MethodConfig, ModelConfig
    from tunelab.methods import TrainContext, get_method
    from tunelab.models import load_model
    from tunelab.train.loss import lm_loss
    from tunelab.train.memory import ActivationBudget
    from tunelab.train.precision import autocast, store_frozen_linears
    from tunelab.train.trainer import compile_layers

    torch.manual_seed(0)
    model, _, _ = load_model(ModelConfig(name_or_path="smollm2-135m-instruct"), "cpu")
    model = get_method("lora").apply(model, MethodConfig(r=8, alpha=16, dropout=0.0, target_modules=["q_proj", "v_proj"]),
                                     TrainContext("cpu", 0))
    store_frozen_linears(model, torch.bfloat16)
    budget = ActivationBudget.for_model(model, budget_mb, lambda: autocast("bf16", "cpu")) if budget_mb else None
    if compiled:
        compile_layers(model)
    model.train()
    k, seconds = 0, 0.0
    for _ in range(3):
        ids = torch.randint(0, 49000, (1, TOKENS))
        k = budget.fit(TOKENS) if budget else 0
        t = time.perf_counter()
        with autocast("bf16", "cpu"):
            loss, _ = lm_loss(model, {"input_ids": ids, "labels": ids.clone()})
        loss.backward()
        seconds = time.perf_counter() - t
    return {"compile": compiled, "budget_mb": budget_mb, "layers_checkpointed": k, "last_step_s": round(seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    if len(sys.argv) == 3:
        print(json.dumps(child(float(sys.argv[1]), sys.argv[2] == "1")))
        return
    rows = []
    for compiled in (False, True):
        for budget_mb in (0, 50):
            out = subprocess.run([sys.executable, __file__, str(budget_mb), str(int(compiled))],
                                 capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    lines = ["# Activation budget under torch.compile", "", "Command: `python benchmarks/budget_compile.py`", "",
             f"One random {TOKENS}-token sequence, three steps, bf16 autocast, LoRA r8 q,v; last step's time.", "",
             "| compile | budget MB | layers checkpointed | last step s | peak RSS MB |", "|---|---|---|---|---|"]
    lines += [f"| {r['compile']} | {r['budget_mb']:g} | {r['layers_checkpointed']} | {r['last_step_s']} | {r['peak_rss_mb']} |"
              for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    tmp = RESULTS / "budget_compile.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(RESULTS / "budget_compile.md")


if __name__ == "__main__":
    main()
