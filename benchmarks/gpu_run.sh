#!/bin/bash
# The GPU benchmarks, on the lent GPU machine (no registry, no hub there). Run from the repository root:
#
#   bash benchmarks/gpu_run.sh prepare        # here: wheels + data + model config into .gpu/ (git-ignored)
#   bash benchmarks/gpu_run.sh run [ARGS]     # there, with .gpu carried: installs the wheels into /tmp,
#                                             # runs train_throughput/gpu.py, copies the tables to $OUT
#
# tunelab runs with the versions it pins (transformers 5.24.0, peft 0.21.2) and
# LLaMA-Factory 0.9.5 with the versions its own install resolved on the CPU machine (transformers 5.6.0,
# peft 0.18.1, accelerate 1.11.0, datasets 4.0.0, trl 0.24.0), each in its own PYTHONPATH; torch and the
# rest are the machine's.
set -euo pipefail
W=.gpu
case "${1:-}" in
prepare)
    P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
    mkdir -p $W/whl_tl $W/whl_lf $W/smollm2
    # no `datasets` for tunelab: its training never needs it (the Trainer takes lists) and its pyarrow pin
    # could clash with the machine's
    python3 -m pip download -q $P -d $W/whl_tl transformers==5.24.0 peft==0.21.2 huggingface_hub==2.4.0 \
        httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 tokenizers==0.23.3 fsspec==2026.9.0 regex==2026.11.19
    python3 -m pip download -q $P -d $W/whl_lf llamafactory==0.9.5 transformers==5.6.0 peft==0.18.1 \
        accelerate==1.11.0 datasets==4.0.0 trl==0.24.0 dill==0.3.8 multiprocess==0.70.16 omegaconf==2.4.0 \
        tokenizers==0.22.2 fsspec==2025.3.0 opentelemetry-api==1.45.2 regex==2026.11.19
    model=$(python3 -c "from tunelab.models import resolve_model_dir; print(resolve_model_dir('smollm2-135m-instruct'))")
    find "$model" -maxdepth 1 -type f ! -name '*.safetensors' -exec cp {} $W/smollm2/ \;
    # the same synthesized dialogs as run.py: its first 320 training dialogs
    python3 -c "import sys; sys.path.insert(0, 'benchmarks/train_throughput'); import run; print(run.make_data(320, 40))"
    cp benchmarks/out/train_throughput/train320.jsonl $W/train.jsonl
    du -sh $W
    ;;
run)
    shift
    pip_in() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$1" "$2"/*.whl; }
    pip_in /tmp/site_tl $W/whl_tl
    pip_in /tmp/site_lf $W/whl_lf
    export PYTHONPATH=$PWD/src:/tmp/site_tl PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv
    python3 -c "import torch, transformers, peft, tunelab.train.job; print('tunelab env', torch.__version__, transformers.__version__, peft.__version__, torch.cuda.get_device_name(0))"
    PYTHONPATH=/tmp/site_lf python3 -c "import transformers, peft, trl, datasets, llamafactory.train.tuner; print('LF env', transformers.__version__, peft.__version__, trl.__version__, datasets.__version__)"
    out=${OUT:-/tmp/out}
    status=0
    python3 benchmarks/train_throughput/gpu.py --train $W/train.jsonl --model-config $W/smollm2 --out /tmp/tt \
        --results "$out" --lf-python python3 --lf-path /tmp/site_lf "$@" || status=$?
    (cd /tmp/tt && tar czf "$out/logs.tgz" --exclude=model --exclude='*.safetensors' --exclude='*.bin' --exclude='lf-tokenized' \
        --exclude='lf-datasets-cache' --exclude='checkpoint-*' . ) || true
    exit $status
    ;;
*)
    echo "usage: bash benchmarks/gpu_run.sh prepare|run [gpu.py args]" >&2; exit 2 ;;
esac
