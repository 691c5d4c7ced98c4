"""The generation threads behind the API, the bounded queue in front of them, and the text plumbing.

Up to `batch_max` requests run at once, each on a thread of its own; their generate calls meet in
the engines' BatchDecoder, where the requests of one adapter decode together (batch_max 1: one request
at a time, as before). Requests beyond that wait their turn in a queue of fixed size; a request that
finds it full is refused at once with 429 and a Retry-After estimate instead of hanging. A request that
times out or whose client goes away sets its cancel flag: a job still waiting is dropped, a running one
stops generating within one decoding step, and its slot is free once generation has ended.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from tunelab.data.schema import Turn
from tunelab.infer.engine import ChatEngine, GenerationOptions
from tunelab.infer.stream import TurnStream
from tunelab.serve.errors import APIError


class Cancelled(Exception):
    """The request went away (timeout, disconnect) before its job started."""


class GenerationWorker:
    """`batch_max` generation threads with at most `queue_size` requests admitted (running + waiting)."""

    def __init__(self, queue_size: int, batch_max: int = 1):
        if queue_size < 1 or batch_max < 1:
            raise ValueError("queue_size and batch_max must be at least 1")
        self.queue_size, self.batch_max = queue_size, batch_max
        self.in_flight = 0
        self._started: dict[int, float] = {}  # monotonic start of each running job, for /health
        self._lock = threading.Lock()
        self._seconds: deque[float] = deque(maxlen=20)  # recent job times, for Retry-After
        self._pool = ThreadPoolExecutor(max_workers=batch_max, thread_name_prefix="tunelab-generate")

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the rounds of batch_max jobs ahead times the recent mean job time."""
        mean = sum(self._seconds) / len(self._seconds) if self._seconds else 1.0
        return max(1, min(120, math.ceil(mean * math.ceil(max(self.in_flight, 1) / self.batch_max))))

    def busy_for(self) -> float:
        """Seconds the longest-running job has run so far (0 when idle)."""
        since = min(list(self._started.values()), default=None)  # a copy: jobs start and end meanwhile
        return time.monotonic() - since if since is not None else 0.0

    def submit(self, fn: Callable[[], object], cancel: threading.Event) -> Future:
        """Queue `fn`; APIError 429 at once when the queue is full."""
        with self._lock:
            if self.in_flight >= self.queue_size:
                raise APIError(429, f"server busy: {self.in_flight} requests queued (limit {self.queue_size}); "
                               "retry later", code="queue_full", headers={"Retry-After": str(self.retry_after())})
            self.in_flight += 1

        def job():
            if cancel.is_set():
                raise Cancelled()
            key, start = threading.get_ident(), time.monotonic()
            self._started[key] = start
            try:
                return fn()
            finally:
                self._started.pop(key, None)
                self._seconds.append(time.monotonic() - start)

        fut = self._pool.submit(job)
        fut.add_done_callback(self._leave)  # also runs when a waiting job is cancelled
        return fut

    def _leave(self, _fut: Future) -> None:
        with self._lock:
            self.in_flight -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def count_tokens(engine: ChatEngine, text: str) -> int:
    return len(engine.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


def finish_reason(engine: ChatEngine, text: str, opts: GenerationOptions, stopped: bool) -> str:
    """'stop' at the end of the turn or a stop string, 'length' when max_tokens ran out (by token count)."""
    return "length" if not stopped and count_tokens(engine, text) >= opts.max_new_tokens else "stop"


def stream_turn(engine: ChatEngine, turns: list[Turn], opts: GenerationOptions, stops: list[str],
                emit: Callable[[str], None], cancel: threading.Event) -> tuple[Turn, str]:
    """Stream the next turn: plain text goes to `emit` as it comes, a tool call is held and parsed.

    Returns (turn, finish_reason). Text is cut at the first of `stops`; generation ends there, or
    within one step of `cancel` being set, rather than running on to max_new_tokens.
    """
    parser = TurnStream(stops)
    shown: list[str] = []

    def show(text: str) -> None:
        if text:
            shown.append(text)
            emit(text)

    pieces = engine.stream(turns, opts, cancel=cancel)
    try:
        for piece in pieces:
            if cancel.is_set():
                break
            show(parser.feed(piece))
            if parser.done:
                break
    finally:
        if hasattr(pieces, "close"):  # the engine's generator: closing it ends generation now
            pieces.close()
    show(parser.finish())
    if parser.mode == "tool":
        return engine.template.parse_reply(parser.raw), "tool_calls"
    text = "".join(shown)
    return Turn("assistant", content=text.strip()), finish_reason(engine, parser.raw, opts, parser.done)
