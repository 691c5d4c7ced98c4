"""Continuous batching: the live requests of one adapter decode together, one forward pass per step.

Each request is prefilled alone (its own KV cache, its first token from the same pass `generate` would
run), then joins its adapter's group. A group decodes through one left-padded stacked cache
(`models/compat.py`), with per-row attention masks and positions, so the weights are read once per step
for every row. The stacked cache is rebuilt only when a row joins or leaves (between steps); a row
that ends (stop token, max_new_tokens) or is aborted (its consumer went away) leaves and frees its place.
Groups of different adapters take turns step by step, each step under the owner's adapter lock.

Greedy rows pick the argmax as `generate` does; only float rounding differs (a padded batch sums in
another order than one row alone), which can flip a near tie. Sampling rows use transformers' public
temperature / top-k / top-p warpers, one row at a time, so one row's sampling error fails that row only.
"""

from __future__ import annotations

import queue
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable

from tunelab.infer.prefix_cache import PrefixCache
from tunelab.models.compat import cache_row, stack_caches, stackable

END = object()  # put on a row's queue after its last token
SPARE = 64  # a stacked cache's room for new tokens: a step writes into it instead of copying the cache
PREFIX_BYTES = 256 * 2**20  # finished requests' caches kept for prompts that start like them
IDLE_S = 5.0  # the decoding thread ends after this long with nothing to do; the next request starts it again


@dataclass(eq=False)  # rows are compared by identity (membership of a batch)
class Row:
    """One request being decoded; its tokens (then END, or an exception) arrive on `out`."""

    adapter: str | None
    prompt: list[int]
    max_new: int
    stop: frozenset[int]
    sampler: Callable[[Any], int] | None  # None: greedy
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    abort: threading.Event = field(default_factory=threading.Event)  # set by the consumer that went away
    cache: Any = None
    length: int = 0  # tokens held by the cache (the prompt, then every fed token)
    last: int = -1  # the newest token, not yet fed
    made: int = 0
    ids: list[int] = field(default_factory=list)  # the prompt and every token made (the cache holds `length`)

    def tokens(self, alive: Callable[[], bool], poll_s: float = 0.05):
        """Yield this row's tokens until END; raise its error. Ends if the decoder thread dies."""
        while True:
            try:
                item = self.out.get(timeout=poll_s)
            except queue.Empty:
                if not alive() and self.out.empty():
                    raise RuntimeError("the batch decoding thread ended unexpectedly")
                yield None  # nothing yet: lets the consumer check its own stop flags
                continue
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


@dataclass
class _Group:
    rows: list[Row] = field(default_factory=list)  # the rows in `cache`, in its batch order
    cache: Any = None
    width: int = 0  # the stacked cache's length (padding included)


class BatchDecoder:
    """The decoding thread over a model shared by adapters; `submit` a prompt, read `Row.tokens()`.

    `activate(adapter)` is a context manager that holds the model with that adapter on (MultiEngine's);
    at most `batch_max` rows of one adapter decode in one pass, the rest wait for a place.
    """

    def __init__(self, model, activate: Callable[[str | None], AbstractContextManager], batch_max: int,
                 prefix_bytes: int = PREFIX_BYTES):
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self.model, self.activate, self.batch_max = model, activate, batch_max
        self.prefixes = PrefixCache(prefix_bytes)  # used by the decoding thread only
        self._cond = threading.Condition()
        self._waiting: list[Row] = []
        self._groups: dict[str | None, _Group] = {}
        self._turn = 0  # round-robin position over the adapters with work
        self._thread: threading.Thread | None = None

    def submit(self, adapter: str | None, prompt: list[int], max_new: int, stop: list[int],
               sampler: Callable[[Any], int] | None = None) -> Row:
        """Queue a prompt for decoding; it joins its adapter's group between two steps."""
        row = Row(adapter, list(prompt), max_new, frozenset(stop), sampler, ids=list(prompt))
        with self._cond:
            self._waiting.append(row)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="tunelab-batch-decode")
                self._thread.start()
            self._cond.notify()
        return row

    def alive(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def active(self) -> int:
        """Rows decoding or waiting to join."""
        with self._cond:
            return len(self._waiting) + sum(len(g.rows) for g in self._groups.values())

    # ------------------------------------------------------------------ the decoding thread

    def _run(self) -> None:
        import torch

        while True:
            with self._cond:
                if not self._has_work() and not self._cond.wait_for(self._has_work, timeout=IDLE_S):
                    self._thread = None  # a later submit starts a new thread
                    return
                adapter = self._next_adapter()
                room = self.batch_max - len(self._group(adapter).rows)
                joiners = [r for r in self._waiting if r.adapter == adapter][:max(room, 0)]
                self._waiting = [r for r in self._waiting if r not in joiners]
            group = self._group(adapter)
            try:
                with self.activate(adapter), torch.no_grad():
                    self._step(group, joiners)
            except Exception as e:  # a failed pass fails its rows; the thread goes on for the others
                for row in group.rows + joiners:
                    row.out.put(e)
                with self._cond:
                    group.rows, group.cache, group.width = [], None, 0

    def _has_work(self) -> bool:
        return bool(self._waiting) or any(g.rows for g in self._groups.values())

    def _group(self, adapter: str | None) -> _Group:
        return self._groups.setdefault(adapter, _Group())

    def _next_adapter(self) -> str | None:
        """The next adapter with rows or joiners, round robin, so no adapter waits for another to finish."""
        busy = list(dict.fromkeys([a for a, g in self._groups.items() if g.rows] + [r.adapter for r in self._waiting]))
        self._turn = (self._turn + 1) % len(busy)
        return busy[self._turn]

    def _step(self, group: _Group, joiners: list[Row]) -> None:
        """Prefill the joiners, regroup if anyone joined or left, then one decoding pass for the group."""
        import torch

        before = list(group.rows)
        for row in joiners:
            if not row.abort.is_set():
                self._prefill(row)
        rows = [r for r in before + joiners if r.length and not r.abort.is_set()]  # prefilled and not ended
        if rows != before:
            self._regroup(group, before, rows)
        if not group.rows:
            return
        n = len(rows)
        ids = torch.tensor([[r.last] for r in rows], device=self.model.device)
        kw = {}
        if n > 1:  # left padding: row b's real tokens are the last r.length of the cache, plus the new one
            mask = torch.ones((n, group.width + 1), dtype=torch.long)
            for b, r in enumerate(rows):
                mask[b, :group.width - r.length] = 0
            kw = dict(attention_mask=mask.to(self.model.device),
                      position_ids=torch.tensor([[r.length] for r in rows], device=self.model.device))
        res = self.model(input_ids=ids, cache=group.cache, use_cache=True, logits_to_keep=1, **kw)
        group.width += 1
        logits = res.logits[:, -1]
        greedy = logits.max(-1).indices.tolist()  # the first on a tie, as torch.argmax
        for b, r in enumerate(rows):
            r.length += 1
            self._emit(r, greedy[b] if r.sampler is None else self._sample(r, logits[b]))

    def _prefill(self, row: Row) -> None:
        import torch
        from transformers import DynamicCache

        cache, n = self.prefixes.take(row.adapter, row.prompt)
        if cache is None:
            cache = DynamicCache(config=self.model.config)
        res = self.model(input_ids=torch.tensor([row.prompt[n:]], device=self.model.device), cache=cache,
                         use_cache=True, logits_to_keep=1)
        row.cache, row.length = cache, len(row.prompt)
        logits = res.logits[0, -1]
        self._emit(row, int(logits.max(-1).indices) if row.sampler is None else self._sample(row, logits))

    def _sample(self, row: Row, logits) -> int | None:
        try:
            return row.sampler(logits)
        except Exception as e:  # this row only (inf/nan probabilities, say)
            row.out.put(e)
            row.abort.set()
            return None

    def _emit(self, row: Row, token: int | None) -> None:
        if token is None or row.abort.is_set():
            return
        row.last, row.made = token, row.made + 1
        row.ids.append(token)
        row.out.put(token)
        if token in row.stop or row.made >= row.max_new:
            row.out.put(END)
            row.abort.set()  # ended: leaves the group before the next pass

    def _regroup(self, group: _Group, before: list[Row], rows: list[Row]) -> None:
        """One cache for `rows`: each kept row's own cache out of the old stack, stacked again."""
        if len(before) > 1:
            for b, r in enumerate(before):
                r.cache = cache_row(group.cache, b, r.length)
        if len(rows) > 1 and not all(stackable(r.cache) for r in rows):
            raise RuntimeError("this model's KV cache cannot be batched; serve with batch_max 1")
        group.rows = rows
        group.width = max((r.length for r in rows), default=0)
        group.cache = rows[0].cache if len(rows) == 1 else stack_caches([r.cache for r in rows],
                                                                          [r.length for r in rows],
                                                                          spare=SPARE) if rows else None
        if len(rows) > 1:
            for r in rows:  # the stack holds them now; the old tensors can go
                r.cache = None
        for r in before:
            if r not in rows:  # ended or gone: its cache may start the next prompt (an agent's next pass)
                self.prefixes.put(r.adapter, r.ids[:r.length], r.cache)
                r.cache = None


def sampler_for(temperature: float, top_p: float, top_k: int | None) -> Callable[[Any], int]:
    """One row's logits -> a sampled token id, through transformers' public warpers (as `generate` samples)."""
    import torch
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))

    def sample(logits) -> int:
        scores = warpers(None, logits[None].float())
        return int(torch.multinomial(torch.softmax(scores, dim=-1), 1)[0, 0])

    return sample
