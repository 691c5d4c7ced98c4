"""The classic per-turn recipe, written out as the benchmark's reference point.

As in the ChatGLM-era hotel fine-tuning scripts: every answer (reply or tool call) of a dialog is its
own sample whose prompt repeats the whole context before it; prompts are cut to 2048 tokens from the
left, answers to 1024, and every sample is padded to 2048 + 1024 tokens; the model's own loss over
full logits; a plain Hugging Face `Trainer`. Tool results are JSON, as such datasets store them.

    python benchmarks/train_throughput/per_turn.py DATA --model-dir DIR --out DIR [--dialogs N]

Writes OUT/result.json (train seconds from the Trainer, tokens, peak RSS) and the LoRA adapter.
On a CUDA machine it trains there in bf16 (weights and autocast); otherwise on the CPU in fp32.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

MAX_SOURCE, MAX_TARGET = 2048, 1024


def samples(data: Path, model_dir: Path, system_prompt: str, dialogs: int) -> tuple[list[dict], int]:
    """One padded sample per target turn; also the count of dialogs used."""
    from transformers import AutoTokenizer

    from tunelab.data.readers import read_conversations
    from tunelab.data.render import IGNORE, Renderer
    from tunelab.data.template import get_template

    tok = AutoTokenizer.from_pretrained(model_dir)
    renderer = Renderer(get_template("chatml", tok, "json"), tok, system_prompt)
    convs, _ = read_conversations(str(data))
    convs = convs[:dialogs] if dialogs else convs
    width = MAX_SOURCE + MAX_TARGET
    out = []
    for conv in convs:
        for i, turn in enumerate(conv.turns):
            if not turn.is_target:
                continue
            prompt = renderer.prompt_ids(conv.turns[:i])[-MAX_SOURCE:]
            answer = renderer.ids(renderer.template.parts(turn)[1])[:MAX_TARGET]  # the reply and its end token
            ids = prompt + answer
            pad = width - len(ids)
            out.append({"input_ids": ids + [tok.pad_token_id] * pad,
                        "attention_mask": [1] * len(ids) + [0] * pad,
                        "labels": [IGNORE] * len(prompt) + answer + [IGNORE] * pad})
    return out, len(convs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--system-prompt", default="")
    ap.add_argument("--dialogs", type=int, default=0, help="time only the first N dialogs (0: all)")
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    rows, n_dialogs = samples(args.data, args.model_dir, args.system_prompt, args.dialogs)
    gpu = torch.cuda.is_available()  # on a GPU: bf16 weights and autocast, as such scripts run there
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.bfloat16 if gpu else torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    targs = TrainingArguments(output_dir=str(args.out), per_device_train_batch_size=1, num_train_epochs=1,
                              learning_rate=args.lr, lr_scheduler_type="cosine", seed=0, logging_steps=1,
                              save_strategy="no", report_to=[], use_cpu=not gpu, bf16=gpu, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=default_data_collator)
    metrics = trainer.train().metrics
    model.save_pretrained(args.out)
    real = sum(sum(r["attention_mask"]) for r in rows)
    result = {"system": "per-turn recipe", "dialogs": n_dialogs, "samples": len(rows), "bf16": gpu,
              "train_s": metrics["train_runtime"], "tokens": real, "padded_tokens": len(rows) * (MAX_SOURCE + MAX_TARGET),
              "train_loss": metrics["train_loss"],
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
