"""Batched generation for evaluation: sorted by length, left-padded, KV cache, stop at end of turn."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from tunelab.data.schema import Turn
from tunelab.infer.engine import ChatEngine, GenerationOptions


def generate_batch(engine: ChatEngine, contexts: list[list[Turn]], opts: GenerationOptions,
                   batch_size: int = 8, progress: bool = True) -> tuple[list[Turn], dict]:
    """The next turn for every context, in input order, plus throughput figures."""
    prompts = [engine.renderer.prompt_ids(c) for c in contexts]
    texts, _, stats = generate_ids(engine, prompts, opts, batch_size, progress)
    return [engine.template.parse_reply(t) for t in texts], stats


def generate_ids(engine: ChatEngine, prompts: list[list[int]], opts: GenerationOptions, batch_size: int = 8,
                 progress: bool = True, stop_strings: list[str] | None = None) -> tuple[list[str], list[bool], dict]:
    """(the text generated after each prompt, whether it ended by itself rather than at max_new_tokens,
    throughput figures), in input order. Text stops at the engine's stop ids and, when given, just
    before the first of `stop_strings`."""
    import torch

    tok = engine.tokenizer
    # Longest first: similar lengths share a batch (less padding), and memory peaks at the start.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    ended: list[bool] = [False] * len(prompts)
    extra = dict(stop_strings=stop_strings, tokenizer=tok) if stop_strings else {}
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
            gen = engine.model.generate(input_ids=ids, attention_mask=mask, **engine.generate_kwargs(opts), **extra)
        for row, i in enumerate(idx):
            seq = gen[row, width:].tolist()
            cut = next((k for k, t in enumerate(seq) if t in engine.stop_ids), len(seq))
            new_tokens += cut
            text = tok.decode(seq[:cut], skip_special_tokens=False)
            ended[i] = cut < opts.max_new_tokens
            for s in stop_strings or ():
                if s in text:
                    text, ended[i] = text[:text.index(s)], True
            out[i] = text
        bar.update(len(idx))
        bar.set_postfix(items_per_s=f"{bar.n / max(time.time() - start, 1e-9):.2f}", refresh=False)
    bar.close()
    elapsed = time.time() - start
    stats = {"items": len(prompts), "seconds": round(elapsed, 2),
             "items_per_s": round(len(prompts) / max(elapsed, 1e-9), 3),
             "new_tokens_per_s": round(new_tokens / max(elapsed, 1e-9), 1)}
    return out, ended, stats
