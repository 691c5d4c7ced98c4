"""Batched generation for evaluation: sorted by length, left-padded, KV cache, stop at end of turn."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from tunelab.data.schema import Turn
from tunelab.infer.engine import ChatEngine, GenerationOptions


def generate_batch(engine: ChatEngine, contexts: list[list[Turn]], opts: GenerationOptions,
                   batch_size: int = 8, progress: bool = True) -> tuple[list[Turn], dict]:
    """The next turn for every context, in input order, plus throughput figures."""
    import torch

    tok = engine.tokenizer
    prompts = [engine.renderer.prompt_ids(c) for c in contexts]
    # Longest first: similar lengths share a batch (less padding), and memory peaks at the start.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[Turn | None] = [None] * len(prompts)
    new_tokens = 0
    pad = tok.pad_token_id
    bar = tqdm(total=len(prompts), desc="generate", unit="item", disable=not progress, dynamic_ncols=True)
    start = time.time()
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            p = prompts[i]
            ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        ids, mask = ids.to(engine.model.device), mask.to(engine.model.device)
        with torch.no_grad():
            gen = engine.model.generate(input_ids=ids, attention_mask=mask, **engine.generate_kwargs(opts))
        for row, i in enumerate(idx):
            seq = gen[row, width:].tolist()
            cut = next((k for k, t in enumerate(seq) if t in engine.stop_ids), len(seq))
            new_tokens += cut
            text = tok.decode(seq[:cut], skip_special_tokens=False)
            out[i] = engine.template.parse_reply(text)
        bar.update(len(idx))
        bar.set_postfix(items_per_s=f"{bar.n / max(time.time() - start, 1e-9):.2f}", refresh=False)
    bar.close()
    elapsed = time.time() - start
    stats = {"items": len(prompts), "seconds": round(elapsed, 2),
             "items_per_s": round(len(prompts) / max(elapsed, 1e-9), 3),
             "new_tokens_per_s": round(new_tokens / max(elapsed, 1e-9), 1)}
    return out, stats
