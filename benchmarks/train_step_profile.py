"""Where one tunelab training step spends its time, and what eager attention would cost instead of SDPA.

    .venv/bin/python benchmarks/train_step_profile.py [--tokens 1200] [--targets 200] [--bf16]

SmolLM2-135M-Instruct preset, fp32 (--bf16: bf16 autocast with the frozen linear weights stored in bf16,
as `train.mixed_precision` does on an AMX CPU), LoRA r8 on q_proj,v_proj, one random sequence, tunelab's
target-only loss, forward + backward. Times the median of 3 steps for SDPA and for eager attention,
then profiles one SDPA step with torch.profiler and groups self CPU time into matmul, attention
kernels and the rest. Writes benchmarks/results/train_step_profile[_bf16].md with the command.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch


def build(attn: str, tokens: int, targets: int, bf16: bool = False):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab.models import resolve_model_dir
    from tunelab.train.loss import lm_loss

    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir("smollm2-135m-instruct"), dtype=torch.float32,
                                                 attn_implementation=attn)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    ids = torch.randint(0, 40000, (1, tokens))
    labels = ids.clone()
    labels[:, : tokens - targets] = -100
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}

    if bf16:
        from tunelab.train.precision import store_frozen_linears

        store_frozen_linears(model, torch.bfloat16)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = lm_loss(model, batch)
        loss.backward()

    return step


def median_step(step) -> float:
    step()  # warm-up
    times = []
    for _ in range(3):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1200)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast, frozen linear weights in bf16")
    args = ap.parse_args()
    sdpa = build("sdpa", args.tokens, args.targets, args.bf16)
    t_sdpa = median_step(sdpa)
    t_eager = median_step(build("eager", args.tokens, args.targets, args.bf16))
    with torch.profiler.profile() as prof:
        sdpa()
    groups = {"matmul (aten::mm, bmm, addmm)": 0.0, "SDPA flash attention, forward and backward": 0.0, "the rest": 0.0}
    for e in prof.key_averages():
        if e.key in ("aten::mm", "aten::bmm", "aten::addmm"):
            groups["matmul (aten::mm, bmm, addmm)"] += e.self_cpu_time_total
        elif "flash_attention" in e.key:
            groups["SDPA flash attention, forward and backward"] += e.self_cpu_time_total
        else:
            groups["the rest"] += e.self_cpu_time_total
    total = sum(groups.values())
    cmd = "python benchmarks/train_step_profile.py " + " ".join(sys.argv[1:])
    text = (f"# One training step: where the time goes ({args.tokens} tokens, {args.targets} targets, "
            f"{torch.get_num_threads()} CPU threads)\n\nCommand: `{cmd}`\n\n"
            f"SmolLM2-135M-Instruct {'bf16 autocast (frozen linears stored in bf16)' if args.bf16 else 'fp32'}, LoRA r8 on q_proj,v_proj, target-only loss, forward + backward.\n\n"
            "| attention | median step s |\n|---|---|\n"
            f"| sdpa (tunelab's default) | {t_sdpa:.2f} |\n| eager | {t_eager:.2f} |\n\n"
            "Self CPU time of one profiled SDPA step:\n\n| group | share |\n|---|---|\n"
            + "".join(f"| {k} | {100 * v / total:.1f}% |\n" for k, v in groups.items()))
    print(text)
    out = Path(__file__).parent / "results" / f"train_step_profile{'_bf16' if args.bf16 else ''}.md"
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)


if __name__ == "__main__":
    main()
