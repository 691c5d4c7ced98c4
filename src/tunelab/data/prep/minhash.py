"""Near-duplicate detection: MinHash signatures over character shingles, LSH banding for candidates,
and an exact Jaccard check on the shingle sets before anything is called a duplicate."""

from __future__ import annotations

import zlib
from collections import defaultdict

import numpy as np

_PRIME = (1 << 61) - 1  # a*x + b stays below 2**63 for 32-bit x and a < 2**31


def shingles(text: str, k: int = 5) -> np.ndarray:
    """Sorted unique 32-bit hashes of the text's k-character windows (the whole text when shorter)."""
    grams = {text[i:i + k] for i in range(max(1, len(text) - k + 1))}
    return np.unique(np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint64, count=len(grams)))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    inter = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - inter
    return inter / union if union else 1.0


def _bands_for(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) whose LSH threshold (1/b)^(1/r) sits well below `threshold`, so that
    pairs at the threshold become candidates with near certainty; the exact check removes the rest."""
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if b < 1:
            break
        if (1 / b) ** (1 / r) <= max(threshold - 0.15, 0.05):
            best = (b, r)
    return best


class NearDuplicateIndex:
    """Texts added one by one; `find_or_add` returns the earlier key a text nearly duplicates
    (Jaccard of shingle sets >= threshold), or stores it and returns None. Deterministic per seed."""

    def __init__(self, threshold: float = 0.9, num_perm: int = 128, k: int = 5, seed: int = 1):
        self.threshold, self.k = threshold, k
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 31, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 31, size=num_perm, dtype=np.uint64)
        self.bands, self.rows = _bands_for(threshold, num_perm)
        self.buckets: list[dict[bytes, list]] = [defaultdict(list) for _ in range(self.bands)]
        self.sets: dict = {}

    def signature(self, sh: np.ndarray) -> np.ndarray:
        return ((self.a[:, None] * sh[None, :] + self.b[:, None]) % _PRIME).min(axis=1)

    def find_or_add(self, key, text: str) -> tuple[object, float] | None:
        """(key of the earlier near duplicate, its Jaccard) or None after adding `text` under `key`."""
        sh, keys = self._keys(text)
        found = self._find(sh, keys)
        if found is None:
            self._add(key, sh, keys)
        return found

    def find(self, text: str) -> tuple[object, float] | None:
        """(key of the stored text `text` nearly duplicates, its Jaccard) or None; stores nothing."""
        return self._find(*self._keys(text))

    def add(self, key, text: str) -> None:
        """Store `text` under `key`, unchecked."""
        self._add(key, *self._keys(text))

    def _keys(self, text: str) -> tuple[np.ndarray, list[bytes]]:
        sh = shingles(text, self.k)
        sig = self.signature(sh)
        return sh, [sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def _find(self, sh: np.ndarray, keys: list[bytes]) -> tuple[object, float] | None:
        seen = set()
        for band, bkey in zip(self.buckets, keys):
            for other in band.get(bkey, ()):
                if other in seen:
                    continue
                seen.add(other)
                j = jaccard(sh, self.sets[other])
                if j >= self.threshold:
                    return other, j
        return None

    def _add(self, key, sh: np.ndarray, keys: list[bytes]) -> None:
        self.sets[key] = sh
        for band, bkey in zip(self.buckets, keys):
            band[bkey].append(key)
