"""Greedy evaluation decoding: one growing KV cache per dialog, the gold turn checked as a draft.

Items of one dialog share prefixes: item k+1's prompt is item k's prompt + the gold reply + the turns
after it. So one cache (batch size 1) feeds every token of a dialog once. The new prompt tokens and
the gold reply go through the model in one forward pass, whose logits give the model's greedy token
at every gold position: as far as they agree with the gold, the greedy output is known without
decoding. Causal attention lets one pass do this for all items of a dialog at once (the logits at an
item's positions see only the tokens before them), so a dialog costs one draft pass, not one per item. Where the model answers otherwise, the rest is decoded from a fork of the cache by
`spec_decode`, several items per pass, each pass also checking guessed next tokens.

Every output token is the argmax of the model's logits after the tokens before it, as in greedy
`generate`; only float rounding differs (a many-token or padded pass sums in another order than a
one-token one), which can flip a near tie.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from tunelab.data.schema import Turn
from tunelab.infer.batch import generate_batch
from tunelab.infer.engine import ChatEngine, GenerationOptions
from tunelab.infer.lookup import NgramLookup
from tunelab.infer.spec_decode import Job, accepted, cut, decode_pass, fast_rows, greedy
from tunelab.models.compat import crop_dialog_cache, dialog_decoder, fork_cache, stackable

# per draft pass: a whole dialog fits most times, while attention scores (T^2 per head) and logits
# (262k floats a row for Gemma 3) stay small
CHAIN_TOKENS = 2048
CHAIN_ROWS = 256


@dataclass
class _Fed:
    """A KV cache and the token ids it holds (after `offset` positions of a prompt-learning adapter's)."""

    cache: Any = None
    ids: list[int] = field(default_factory=list)
    offset: int = 0


@dataclass
class _Counts:
    new_tokens: int = 0
    prompt_tokens: int = 0  # prompt tokens of all items
    prefilled: int = 0  # prompt tokens actually fed (the rest came from the cache)
    draft_tokens: int = 0  # gold tokens checked as drafts (up to max_new_tokens each)
    accepted: int = 0  # of those, equal to the greedy token
    full: int = 0  # items whose output came from the draft pass alone
    draft_passes: int = 0  # forward passes that fed prompts and checked drafts (each for a chain of items)
    decode_passes: int = 0  # forward passes after the draft passes (each for up to batch_size items)


def drafts_apply(engine: ChatEngine, opts: GenerationOptions) -> bool:
    """Greedy decoding on a model that decodes on a cache of plain prompt tokens: any model, prompt, p- and
    prefix tuning included (their virtual tokens open each dialog's cache: models/compat.dialog_decoder)."""
    return opts.temperature <= 0 and dialog_decoder(engine.model) is not None


def generate_dialogs(engine: ChatEngine, items: list[tuple[list[Turn], Turn | None]], opts: GenerationOptions,
                     batch_size: int = 8, progress: bool = True) -> tuple[list[Turn], dict]:
    """The next turn for every (context, gold turn or None) item, in input order, plus throughput figures.

    Items in dialog order reuse the cache of the item before (found by a token prefix match, so any
    order is correct, only slower). Up to `batch_size` items that leave their draft are decoded
    together. Sampling (and prompt-learning types other than prompt, p- and prefix tuning) fall back to
    `generate_batch`.
    """
    if not drafts_apply(engine, opts):
        return generate_batch(engine, [c for c, _ in items], opts, batch_size=batch_size, progress=progress)
    import torch

    (model, open_cache), renderer = dialog_decoder(engine.model), engine.renderer
    stop, max_new = set(engine.stop_ids), opts.max_new_tokens
    batch_size = max(batch_size, 1)
    drafts = [renderer.body_ids(gold) if gold is not None else [] for _, gold in items]
    # guesses from the model's own replies first, then gold replies (the model was trained on such), then the context
    lookup = NgramLookup()
    for d in drafts:
        lookup.add(d, priority=1)
    counts, fed, jobs = _Counts(), _Fed(), []
    out: list[Turn | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc="generate", unit="item", disable=not progress, dynamic_ncols=True)
    start = time.time()

    def finish(i: int, seq: list[int]) -> None:
        lookup.add(seq, priority=2)
        seq = seq[:-1] if seq and seq[-1] in stop else seq
        counts.new_tokens += len(seq)
        out[i] = engine.template.parse_reply(engine.tokenizer.decode(seq, skip_special_tokens=False))
        bar.update(1)
        bar.set_postfix(items_per_s=f"{bar.n / max(time.time() - start, 1e-9):.2f}", refresh=False)

    def decode(until: int) -> None:
        nonlocal jobs
        while len(jobs) > until:
            batch = jobs[:batch_size]
            running, done = decode_pass(model, batch, lookup, stop, max_new)
            jobs = running + jobs[batch_size:]
            counts.decode_passes += 1
            for i, seq in done:
                finish(i, seq)

    prompts = [renderer.prompt_ids(context) for context, _ in items]
    with torch.no_grad():
        for chain in _chains(fed, prompts, drafts):
            reused = _reusable(fed, prompts[chain[0]])
            for i in chain:
                lookup.add(prompts[i], start=max(reused - lookup.longest, 0))
                lookup.add(drafts[i], priority=1)
                reused = len(prompts[i]) + len(drafts[i])
            for i, (seq, job) in zip(chain, _chain_pass(model, open_cache, fed,
                                                        [(prompts[i], drafts[i]) for i in chain], stop, max_new,
                                                        counts)):
                if job is None:
                    finish(i, seq)
                else:
                    job.index = i
                    jobs.append(job)
                    if not stackable(job.cache):
                        decode(0)
            decode(batch_size - 1)
        decode(0)
    bar.close()
    elapsed = time.time() - start
    stats = {"items": len(items), "seconds": round(elapsed, 2),
             "items_per_s": round(len(items) / max(elapsed, 1e-9), 3),
             "new_tokens_per_s": round(counts.new_tokens / max(elapsed, 1e-9), 1),
             "prompt_tokens_reused": round(1 - counts.prefilled / max(counts.prompt_tokens, 1), 3),
             "draft_tokens": counts.draft_tokens, "draft_tokens_accepted": counts.accepted,
             "draft_accept_rate": round(counts.accepted / max(counts.draft_tokens, 1), 3),
             "items_from_draft": counts.full, "draft_passes": counts.draft_passes,
             "decode_passes": counts.decode_passes}
    return out, stats


def _reusable(fed: _Fed, prompt: list[int]) -> int:
    """How many of prompt's first tokens the cache holds: the ids it shares with the prompt, short of the prompt's
    last (a pass needs one new token). With a record view a later question can re-render earlier records: the
    cache is then cut back to where the two part (`crop_dialog_cache`), not fed again from the start."""
    if fed.cache is None:
        return 0
    n = min(len(fed.ids), len(prompt) - 1)
    if prompt[:n] != fed.ids[:n]:
        n = next(k for k, (a, b) in enumerate(zip(prompt, fed.ids)) if a != b)
    return n


def _chains(fed: _Fed, prompts: list[list[int]], drafts: list[list[int]]):
    """Runs of consecutive items (lists of indices) whose prompts each extend the item before's prompt + draft,
    at most CHAIN_TOKENS new tokens and CHAIN_ROWS logits rows per run (unless one item alone has more):
    one draft pass each."""
    i = 0
    while i < len(prompts):
        ids = prompts[i] + drafts[i]
        size, rows, j = len(ids) - _reusable(fed, prompts[i]), len(drafts[i]) + 1, i + 1
        while j < len(prompts) and len(prompts[j]) > len(ids) and prompts[j][:len(ids)] == ids:
            size += len(prompts[j]) - len(ids) + len(drafts[j])
            rows += len(drafts[j]) + 1
            if size > CHAIN_TOKENS or rows > CHAIN_ROWS:
                break
            ids, j = prompts[j] + drafts[j], j + 1
        yield list(range(i, j))  # the caller's pass updates fed before the next run is formed
        i = j


def _chain_pass(model, open_cache, fed: _Fed, chain: list[tuple[list[int], list[int]]], stop: set[int],
                max_new: int, counts: _Counts) -> list[tuple[list[int], Job | None]]:
    """Feed a chain of (prompt, draft) items in one forward pass; leaves the last prompt + draft in `fed`.

    Causal attention makes the logits at an item's positions depend on the tokens before them only, so
    one pass over the whole chain checks every item's draft. For each item: the greedy reply ids
    (through the stop token, if any) when the draft settles them, else a Job that continues from the
    draft's accepted prefix (its index for the caller to set).
    """
    import torch

    reuse = _reusable(fed, chain[0][0])
    if fed.cache is None or reuse < len(fed.ids) and not (reuse and crop_dialog_cache(fed.cache, fed.offset + reuse)):
        reuse = 0
        fed.cache, fed.offset = open_cache()
    last_prompt, last_draft = chain[-1]
    ids = last_prompt + last_draft  # every item's prompt + draft is a prefix of it (see _chains)
    # each item's greedy tokens from its prompt's last token on: the token before each draft token, and after
    # the last (no further than max_new tokens)
    starts = [len(prompt) - 1 - reuse for prompt, _ in chain]
    x = torch.tensor([ids[reuse:]], device=model.device)
    counts.draft_passes += 1
    out, greedy_tokens = [], _draft_greedy(model, x, fed.cache, starts, [d[:max_new] for _, d in chain])
    for (prompt, draft), tokens in zip(chain, greedy_tokens):
        counts.prompt_tokens += len(prompt)
        counts.prefilled += len(prompt) - reuse
        reuse = len(prompt) + len(draft)  # the next item's prompt starts with this one's prompt + draft
        checked = min(len(draft), max_new)
        a = accepted(tokens, draft[:checked])
        counts.draft_tokens += checked
        counts.accepted += a
        seq, done = cut(draft[:a] + [tokens[a]], stop, max_new)
        if done:
            counts.full += bool(draft)
            out.append((seq, None))
            continue
        # The model leaves the draft: decode on from prompt + draft[:a], on a fork of the cache.
        cache = fork_cache(fed.cache)
        cache.crop(len(prompt) + a - len(ids))
        out.append((seq, Job(index=-1, cache=cache, history=prompt + seq, start=len(prompt), offset=fed.offset)))
    fed.ids = ids  # the whole last gold turn: the next item's prompt starts with (most of) it
    return out


def _draft_greedy(model, x, cache, starts: list[int], drafts: list[list[int]]) -> list[list[int]]:
    """Feed x on the cache; for each item, the greedy tokens at rows starts[i], starts[i] + 1, ... through the
    round that holds its first departure from drafts[i] (or through one past its end).

    The output layer is the costly part of a row (262k vocabulary rows for Gemma 3 against about 100M weights in
    all the layers below), and about half the drafted tokens lie past the item's first departure, where the
    greedy tokens are not needed. So the hidden states come first, then the output layer runs in rounds over
    each item's next rows (8, then 16, 32, ...), dropping the items that departed. A model without a separate
    decoder and output layer gets all rows in one pass.
    """
    import torch

    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = lm.get_output_embeddings() if hasattr(lm, "get_decoder") else None
    if head is None:
        rows = [r for s, d in zip(starts, drafts) for r in range(s, s + len(d) + 1)]
        rows += rows[-1:] * (fast_rows(len(rows)) - len(rows))
        tokens = greedy(model(input_ids=x, cache=cache, use_cache=True,
                              logits_to_keep=torch.tensor(rows, device=x.device)).logits[0])
        out, at = [], 0
        for d in drafts:
            out.append(tokens[at:at + len(d) + 1])
            at += len(d) + 1
        return out
    hidden = lm.get_decoder()(input_ids=x, cache=cache, use_cache=True).last_hidden_state[0]
    cap = getattr(lm.config, "final_logit_softcapping", None)
    out: list[list[int]] = [[] for _ in drafts]
    active, size = list(range(len(drafts))), 8
    while active:
        spans = [(i, len(out[i]), min(len(out[i]) + size, len(drafts[i]) + 1)) for i in active]
        rows = [starts[i] + r for i, lo, hi in spans for r in range(lo, hi)]
        rows += rows[-1:] * (fast_rows(len(rows)) - len(rows))
        logits = head(hidden[rows])
        if cap is not None:  # as the model's own forward does
            logits = torch.tanh(logits / cap) * cap
        tokens, at, active = greedy(logits), 0, []
        for i, lo, hi in spans:
            got = tokens[at:at + hi - lo]
            at += hi - lo
            out[i] += got
            if hi <= len(drafts[i]) and got == drafts[i][lo:hi]:
                active.append(i)
        size *= 2
    return out
