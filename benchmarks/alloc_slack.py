"""How much of a bf16 training run's peak RSS is glibc heap slack (scratch measurement, one process per call).

    .venv/bin/python benchmarks/alloc_slack.py                     # plain: autocast bf16 only
    .venv/bin/python benchmarks/alloc_slack.py store               # + frozen linears stored in bf16
    .venv/bin/python benchmarks/alloc_slack.py store trim          # + malloc_trim(0) after each step
    .venv/bin/python benchmarks/alloc_slack.py -3=65536 -1=1048576 # mallopt(M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)

Trains SmolLM2-135M-Instruct (LoRA r8 q,v, AdamW) on the 12 dialogs that
benchmarks/train_throughput/run.py --n 12 wrote (run that first), batch 1, bf16 autocast, and prints the
seconds and the peak RSS. Used for the README's memory paragraph; not part of tunelab.
"""

import ctypes
import sys

libc = ctypes.CDLL("libc.so.6")
for arg in sys.argv[1:]:
    if "=" in arg:  # before torch allocates anything
        key, value = arg.split("=")
        libc.mallopt(int(key), int(value))

import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "train_throughput"))
import run as R  # noqa: E402


def main() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.data.collate import PadCollator
    from tunelab.data.readers import read_conversations
    from tunelab.data.render import Renderer
    from tunelab.data.template import get_template
    from tunelab.models import resolve_model_dir
    from tunelab.train.loss import lm_loss
    from tunelab.train.precision import store_frozen_linears

    md = resolve_model_dir(R.PRESET)
    tok = AutoTokenizer.from_pretrained(md)
    model = AutoModelForCausalLM.from_pretrained(md, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    renderer = Renderer(get_template("chatml", tok, "table"), tok, R.SYSTEM_PROMPT)
    encs = [renderer.encode(c) for c in read_conversations(str(R.OUT / "train12.jsonl"))[0]]
    model.train()
    if "store" in sys.argv:
        store_frozen_linears(model, torch.bfloat16)
    t = time.perf_counter()
    for enc in encs:
        batch = PadCollator(tok.pad_token_id)([{"input_ids": enc.input_ids, "labels": enc.labels}])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = lm_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if "trim" in sys.argv:
            libc.malloc_trim(0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{' '.join(sys.argv[1:]) or 'plain'}: {len(encs)} dialogs {time.perf_counter() - t:.1f} s, peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
