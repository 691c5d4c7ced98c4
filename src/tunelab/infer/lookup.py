"""Prompt-lookup guesses: the tokens that followed the same n-gram earlier, for speculative decoding.

A guess only saves passes when it is right; a wrong one costs a few logits rows, never the output,
because the caller checks every guessed token against the model's own greedy choice.
"""

from __future__ import annotations


class NgramLookup:
    """n-gram (n = 1..longest) -> where it occurred with text after it.

    A later occurrence replaces an earlier one of the same or lower priority: the caller ranks its
    sources (in evaluation, the model's own replies over gold replies over the context).
    """

    def __init__(self, longest: int = 3):
        self.longest = longest
        self._after: dict[tuple[int, ...], tuple[int, list[int], int]] = {}

    def add(self, seq: list[int], start: int = 0, priority: int = 0) -> None:
        """Index the n-grams of seq that begin at `start` or later and have at least one token after them."""
        table = self._after
        for n in range(1, self.longest + 1):
            for i in range(start, len(seq) - n):
                key = tuple(seq[i:i + n])
                old = table.get(key)
                if old is None or old[0] <= priority:
                    table[key] = (priority, seq, i + n)

    def guess(self, history: list[int], k: int) -> list[int]:
        """Up to k tokens that followed history's last n tokens, the longest n with a match first."""
        if k <= 0:
            return []
        for n in range(min(self.longest, len(history)), 0, -1):
            hit = self._after.get(tuple(history[-n:]))
            if hit is not None:
                _, seq, pos = hit
                return seq[pos:pos + k]
        return []
