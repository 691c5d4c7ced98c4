#!/bin/bash
# Scale-out on GPUs (not run yet: no GPU in the session that wrote it). One FSDP and one ZeRO-3 run of the
# hotel recipe, then a table of their figures in benchmarks/results/scale_out_gpu.md. Needs `make run`'s
# data steps (data/hotel/*) and, for ZeRO-3, `pip install --no-build-isolation -e '.[deepspeed]'`.
#
#   bash benchmarks/scale_out_gpu.sh [NPROC]      # NPROC: GPUs to use (default: all visible)
set -euo pipefail
N=${1:-$(python3 -c "import torch; print(torch.cuda.device_count())")}
TL="python3 -m tunelab.cli.main"
COMMON=(--nproc "$N" --train.num_train_epochs=1 --train.save_steps=0 --train.eval_steps=0 --eval.dev_items=0)
$TL train recipes/hotel_lora_gpu.yaml "${COMMON[@]}" --train.fsdp=full_shard --train.output_dir=runs/scale_fsdp
$TL train recipes/hotel_lora_gpu.yaml "${COMMON[@]}" --train.deepspeed=zero3 --train.output_dir=runs/scale_zero3
mkdir -p benchmarks/results
python3 - "$N" <<'PY' | tee benchmarks/results/scale_out_gpu.md
import json, sys
print(f"# hotel_lora_gpu.yaml, 1 epoch, {sys.argv[1]} GPU process(es): `bash benchmarks/scale_out_gpu.sh {sys.argv[1]}`\n")
print("| engine | steps | train loss | dev loss | time s | tokens/s total | peak MB per rank |")
print("|---|---|---|---|---|---|---|")
for name in ("fsdp", "zero3"):
    r = json.load(open(f"runs/scale_{name}/run.json"))
    peaks = ", ".join(str(x["peak_mb"]) for x in r["ranks"])
    print(f"| {name} | {r['steps']} | {r['train_loss']:.4f} | {r['dev_loss']} | {r['train_time_s']} | "
          f"{r['total_tokens_per_s']} | {peaks} |")
PY
