"""Finished requests' KV caches, kept a while: a prompt that starts like one of them prefills only the rest.

An agent's second pass (the prompt, the call it made, the tool's result) and a chat's next turn begin
with the tokens of the request before; every request of a run begins with its system prompt. The
batch decoder puts a row's cache here when the row ends and takes the longest shared prefix (same
adapter, at least MIN_TOKENS) for the next prompt, on a fork cut back to that prefix. The oldest
entries go first once the caches pass `max_bytes`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from tunelab.models.compat import cache_bytes, fork_cache, own_cache

MIN_TOKENS = 16  # a shorter shared prefix saves less than the lookup and fork cost


def _shared(a: tuple[int, ...], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """(adapter, token ids) -> the KV cache of exactly those ids; LRU within `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Any, tuple[int, ...]], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self.reused = 0  # prompt tokens taken from here
        self.looked_up = 0  # prompt tokens of every lookup

    def put(self, adapter: str | None, ids: list[int], cache) -> None:
        """Keep `cache` (which holds exactly `ids`); the caller must not grow or crop it afterwards."""
        key = (adapter, tuple(ids))
        if len(ids) < MIN_TOKENS or key in self._entries:
            return
        size = cache_bytes(cache)
        if size > self.max_bytes:
            return
        self._entries[key] = (own_cache(cache), size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            self._bytes -= old

    def take(self, adapter: str | None, prompt: list[int]) -> tuple[Any, int]:
        """(a cache holding prompt[:n], n) for the longest kept prefix, n < len(prompt); (None, 0) if none."""
        self.looked_up += len(prompt)
        best, n = None, 0
        for key in self._entries:
            if key[0] == adapter:
                m = min(_shared(key[1], prompt), len(prompt) - 1)  # one token at least is fed: its logits are due
                if m > n:
                    best, n = key, m
        if best is None or n < MIN_TOKENS:
            return None, 0
        self._entries.move_to_end(best)
        cache = fork_cache(self._entries[best][0])
        if n < len(best[1]):
            try:
                cache.crop(n - len(best[1]))
            except (RuntimeError, ValueError):  # a sliding layer past its window cannot go back
                return None, 0
        self.reused += n
        return cache, n
