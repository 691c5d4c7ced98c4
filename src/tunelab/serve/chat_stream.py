"""A chat turn through the agent loop, streamed: the reply's text as it is generated, then the result.

The agent (tools and all) runs in a worker thread whose reply function streams from the engine; the
caller iterates over what it has shown so far. A tool call is never shown as text (TurnStream holds it).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

from tunelab.data.schema import Turn
from tunelab.infer.agent import Agent, AgentResult
from tunelab.infer.engine import GenerationOptions
from tunelab.infer.stream import TurnStream

_DONE = object()


def stream_agent(engine, history: list[Turn], message: str,
                 opts: GenerationOptions) -> Iterator[tuple[str, AgentResult | None]]:
    """Yield (reply text so far, None) as pieces arrive, then (final reply, AgentResult) once.

    An error in generation is raised here, after the worker has ended."""
    pieces: queue.Queue = queue.Queue()
    cancel = threading.Event()  # set when the consumer goes away: generation stops within a step

    def reply(turns: list[Turn]) -> Turn:
        parser = TurnStream()
        pieces.put(None)  # a new model turn (after a tool call): the shown text starts again
        for piece in engine.stream(turns, opts, cancel=cancel):
            if text := parser.feed(piece):
                pieces.put(text)
        if text := parser.finish():
            pieces.put(text)
        return engine.template.parse_reply(parser.raw)

    outcome: list = []

    def run() -> None:
        try:
            outcome.append(Agent.for_domain(reply, engine.domain, engine.db).respond(history, message))
        except BaseException as e:  # handed to the consumer
            outcome.append(e)
        pieces.put(_DONE)

    worker = threading.Thread(target=run, daemon=True, name="tunelab-chat")
    worker.start()
    shown = ""
    try:
        while (item := pieces.get()) is not _DONE:
            shown = "" if item is None else shown + item
            if item:
                yield shown, None
    finally:
        cancel.set()
        worker.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    yield outcome[0].reply.content, outcome[0]
