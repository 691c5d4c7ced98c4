"""Greedy decoding of several sequences at once, each pass also checking guessed next tokens.

Every pass feeds each sequence's last token plus a guess of the tokens after it (`NgramLookup`).
One pass gives the logits after every fed token, so the guess's prefix that equals the greedy
tokens is accepted, with the greedy token after it, and the rest is cropped from the cache: the
output is greedy decoding's, only reached in fewer passes. Sequences of different lengths share a
pass through a left-padded stacked cache (`models/compat.py`), so the weights are read once for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.infer.lookup import NgramLookup
from tunelab.models.compat import cache_row, stack_caches

# On CPU the output layer's matmul (262k rows for Gemma 3) takes a slow path for 4 to 15 rows of
# logits with MKL: measured on gemma3-270m, 2 threads, a pass checking 8 tokens took 131 ms, one
# checking 16 took 118 ms, one token 52 ms. So a pass computes 1 to 3 rows, or 16 and more.
MIN_ROWS = 16


def fast_rows(n: int) -> int:
    """Logits rows to compute when n are needed (see MIN_ROWS); extra rows change no output."""
    return MIN_ROWS if 3 < n < MIN_ROWS else n


def greedy(logits) -> list[int]:
    """The argmax of every row (the first on a tie, as torch.argmax); max() is 3x faster than argmax() here."""
    return logits.max(-1).indices.tolist()


def accepted(greedy_ids: list[int], guess: list[int]) -> int:
    """Length of the guess's prefix that equals the greedy tokens."""
    return next((i for i, (g, d) in enumerate(zip(greedy_ids, guess)) if g != d), min(len(greedy_ids), len(guess)))


def cut(seq: list[int], stop: set[int], max_new: int) -> tuple[list[int], bool]:
    """seq through its first stop token, at most max_new tokens; True when generation ends there."""
    for i, t in enumerate(seq[:max_new]):
        if t in stop:
            return seq[:i + 1], True
    return seq[:max_new], len(seq) >= max_new


@dataclass
class Job:
    """A reply being decoded: `history` is prompt + reply so far; the cache holds all of it but the last token."""

    index: int
    cache: Any
    history: list[int]
    start: int  # where the reply begins in history
    offset: int = 0  # cache positions before history's first token (a prompt-learning adapter's virtual tokens)


def decode_pass(model, jobs: list[Job], lookup: NgramLookup, stop: set[int],
                max_new: int) -> tuple[list[Job], list[tuple[int, list[int]]]]:
    """One forward pass for all jobs: the jobs still running, and (index, reply ids) of those that ended."""
    import torch

    n = len(jobs)
    target = max(-(-MIN_ROWS // n) - 1, 1)  # guessed tokens per job for MIN_ROWS rows in all
    guesses = [lookup.guess(job.history, target) for job in jobs]
    k = max(len(g) for g in guesses)
    if n * (k + 1) > 3:
        k = target
    # the same number of tokens for every job; filler tokens are checked like guessed ones
    guesses = [g[:k] + (g or job.history)[-1:] * (k - len(g)) for g, job in zip(guesses, jobs)]
    ids = torch.tensor([job.history[-1:] + g for job, g in zip(jobs, guesses)], device=model.device)
    lengths = [job.offset + len(job.history) - 1 for job in jobs]
    if n == 1:
        cache, kw = jobs[0].cache, {}
    else:
        width = max(lengths)
        cache = stack_caches([job.cache for job in jobs], lengths)
        mask = [[0] * (width - length) + [1] * (length + k + 1) for length in lengths]
        positions = [list(range(length, length + k + 1)) for length in lengths]
        kw = dict(attention_mask=torch.tensor(mask, device=model.device),
                  position_ids=torch.tensor(positions, device=model.device))
    res = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=k + 1, **kw)
    running, finished = [], []
    for b, (job, guess) in enumerate(zip(jobs, guesses)):
        tokens = greedy(res.logits[b])
        a = accepted(tokens, guess)
        if n > 1:
            job.cache = cache_row(res.cache, b, lengths[b] + k + 1)
        job.cache.crop(a - k)  # drop the rejected guess (crop(0) only trims sliding windows)
        job.history += guess[:a] + [tokens[a]]
        seq, done = cut(job.history[job.start:], stop, max_new)
        if done:
            finished.append((job.index, seq))
        else:
            running.append(job)
    return running, finished
