"""The batch decoder's prefix cache: longest kept prefix per adapter, cut back to it, oldest out first."""

import torch
from transformers import DynamicCache

from tunelab.infer.prefix_cache import MIN_TOKENS, PrefixCache
from tunelab.models.compat import cache_bytes


def cache_of(n: int) -> DynamicCache:
    cache = DynamicCache()
    for layer in range(2):
        cache.update(torch.randn(1, 2, n, 4), torch.randn(1, 2, n, 4), layer)
    return cache


def test_the_longest_shared_prefix_of_the_same_adapter_is_taken_and_cut_back():
    pc = PrefixCache(max_bytes=10**9)
    a, b = list(range(40)), list(range(30)) + [99] * 10
    pc.put("run0", a, cache_of(40))
    pc.put("run0", b, cache_of(40))
    pc.put("run1", list(range(60)), cache_of(60))
    cache, n = pc.take("run0", list(range(35)) + [7, 7])
    assert n == 35 and cache.get_seq_length() == 35  # from `a`, cropped to the shared 35 tokens
    cache, n = pc.take("run0", a)  # the whole prompt is kept: one token is still fed for its logits
    assert n == 39 and cache.get_seq_length() == 39
    assert pc.take("run0", [1000] + a) == (None, 0)
    assert pc.take("run2", a) == (None, 0)
    assert pc.take("run0", list(range(MIN_TOKENS - 1)) + [500, 501]) == (None, 0)  # too short to pay
    assert pc.reused == 35 + 39


def test_taking_leaves_the_kept_cache_whole_and_the_oldest_goes_first():
    size = cache_bytes(cache_of(20))
    pc = PrefixCache(max_bytes=int(size * 2.5))
    for k in range(3):
        pc.put(None, [k] * 20, cache_of(20))
    assert pc.take(None, [0] * 20 + [1]) == (None, 0)  # evicted
    cache, n = pc.take(None, [1] * 18 + [2])
    assert n == 18 and cache.get_seq_length() == 18
    cache.update(torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4), 0)  # the fork grows apart
    again, n = pc.take(None, [1] * 21)
    assert n == 20 and again.get_seq_length() == 20
