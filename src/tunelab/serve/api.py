"""An OpenAI-compatible HTTP API over loaded runs: /health, /v1/models, /v1/chat/completions.

Limits come first, in the order a request meets them: API key (401), body size (413), request
fields (400), model id among the loaded runs only (404, never read as a path), queue room (429 with
Retry-After), prompt tokens (400 context_length_exceeded), time (504). Generation runs on worker
threads, so the event loop keeps answering /health and refusing what does not fit while replies are
being generated; up to `batch_max` requests run at once and those of one adapter decode together
(serve/worker.py, infer/continuous.py). A timeout, a disconnected client or a matched stop string ends
generation within one decoding step and frees its place; an error in generation is answered (500).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import threading
import time
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tunelab.config.load import check_ranges
from tunelab.config.schema import ServeConfig
from tunelab.data.schema import Turn
from tunelab.data.template import compact_json
from tunelab.domains import domain_tools, get_domain
from tunelab.infer.agent import FALLBACK, Agent
from tunelab.infer.engine import ChatEngine, PromptTooLong
from tunelab.infer.multi import MultiEngine
from tunelab.infer.stream import cut_at_stop
from tunelab.infer.tools import Toolbox, domain_toolbox, offered_specs
from tunelab.serve.errors import APIError, error_body, install_handlers
from tunelab.serve.limits import default_max_prompt_tokens
from tunelab.serve.protocol import ChatRequest, chunk, completion_body, new_id, parse_chat_request, sse, tool_call_json
from tunelab.serve.worker import GenerationWorker, count_tokens, finish_reason, stream_turn
from tunelab.utils.errors import TunelabError

POLL_S = 0.5  # how often a waiting request checks whether its client is still there


def create_app(engines: MultiEngine, cfg: ServeConfig | None = None, tools: Toolbox | None = None,
               **overrides) -> FastAPI:
    """The API app, per `cfg` (ServeConfig; `overrides` replace its fields). `execute_tools` runs a run's
    domain tools server-side (the Agent loop) for clients that send no `tools` of their own, so a plain
    client gets the final answer; `tools` (a user's module, `--tools`) are run so too. A call to any other
    tool comes back to the client as `tool_calls`. A client that sends `tools` runs every call itself.

    `max_prompt_tokens` (0: the model's context length) refuses longer prompts; /health answers 503
    "degraded" once the running job is `stuck_margin_s` past its `timeout_s`.
    """
    cfg = dataclasses.replace(cfg or ServeConfig(), **overrides)
    check_ranges(cfg, "serve")
    api_key, max_body_bytes, max_tokens_cap = cfg.api_key or None, cfg.max_body_bytes, cfg.max_tokens_cap
    queue_size, timeout_s, execute_tools, stuck_margin_s = cfg.queue_size, cfg.timeout_s, cfg.execute_tools, \
        cfg.stuck_margin_s
    max_prompt_tokens = cfg.max_prompt_tokens or default_max_prompt_tokens(engines.model)
    if execute_tools:  # a missing database is a start-up error, not a 500 on the first request
        for name in engines.runs:
            domain_tools(engines.engine_for(name).domain, engines.engine_for(name).db)
    user_tools = tools or Toolbox()
    for name in engines.names:  # prompts offer the tools that can run, beside the run's training tools
        engine = engines.engine_for(name)
        plugin = get_domain(engine.domain) if execute_tools else None
        runnable = Toolbox(specs=list(plugin.tool_specs) if plugin else []).merged(user_tools)
        engine.renderer.tools = offered_specs(engine.renderer.tools, runnable, user_tools)
    batch_max = min(cfg.batch_max, queue_size)  # more generation threads than admitted requests would idle
    if batch_max > 1:  # 1: the plain generate path, one request at a time
        engines.enable_batching(batch_max)
    worker = GenerationWorker(queue_size, batch_max)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        worker.shutdown()

    # no docs pages: they load their scripts from a CDN
    app = FastAPI(title="tunelab", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    install_handlers(app)
    app.state.worker, app.state.engines = worker, engines

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise APIError(401, "invalid API key: send it as 'Authorization: Bearer KEY'", code="invalid_api_key")

    def model_card(name: str) -> dict:
        return {"id": name, "object": "model", "created": 0, "owned_by": "tunelab"}

    @app.get("/health")
    async def health():
        busy = worker.busy_for()
        stuck = busy > timeout_s + stuck_margin_s  # cancelled long ago and still running: needs a look
        body = {"status": "degraded" if stuck else "ok", "models": engines.names, "in_flight": worker.in_flight,
                "queue_size": queue_size, "busy_for_s": round(busy, 1)}
        return JSONResponse(body, status_code=503 if stuck else 200)

    @app.get("/v1/models")
    async def list_models(request: Request):
        check_key(request)
        return {"object": "list", "data": [model_card(n) for n in engines.names]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str, request: Request):
        check_key(request)
        _engine(engines, model_id)
        return model_card(model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        req = parse_chat_request(await _read_json(request, max_body_bytes), max_tokens_cap, max_prompt_tokens)
        engine = _engine(engines, req.model)
        runs_tools = bool((execute_tools and engine.domain) or user_tools.tools)
        server_tools = (lambda: _runnable(engine, execute_tools, user_tools)) if (
            runs_tools and req.tools is None and req.turns[-1].role == "user") else None
        if req.stream:
            return await _stream(request, worker, engine, req, server_tools, timeout_s)
        cancel = threading.Event()
        fut = asyncio.wrap_future(worker.submit(lambda: _complete(engine, req, server_tools, cancel), cancel))
        try:
            done = await _wait(request, fut, timeout_s)
        finally:
            if not fut.done():  # timed out, client gone or request cancelled: stop generating
                cancel.set()
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it any more
        if not done:
            raise APIError(504, f"generation took longer than {timeout_s:g} s", code="timeout")
        try:
            turn, finish, usage = fut.result()
        except Exception as e:
            raise job_error(e) from None
        return JSONResponse(completion_body(new_id(), req.model, turn, finish, usage))

    return app


def job_error(e: BaseException) -> APIError:
    """What a failed generation job answers: 400 for what the request asked, 500 for the rest."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, PromptTooLong):
        return APIError(400, str(e), param="messages", code="context_length_exceeded")
    if isinstance(e, TunelabError):
        return APIError(400, str(e), code="invalid_value")
    return APIError(500, f"generation failed: {type(e).__name__}: {e}", code="generation_error")


async def _wait(request: Request, fut: asyncio.Future, timeout_s: float) -> bool:
    """True once `fut` is done, False when `timeout_s` ran out first; APIError 499 if the client left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := deadline - loop.time()) > 0:
        done, _ = await asyncio.wait({fut}, timeout=min(left, POLL_S))
        if done:
            return True
        if await request.is_disconnected():
            raise APIError(499, "the client closed the request", code="client_closed")
    return fut.done()


def _engine(engines: MultiEngine, name: str) -> ChatEngine:
    if name not in engines.names:
        raise APIError(404, f"model '{name}' does not exist; loaded: {', '.join(engines.names)}",
                       param="model", code="model_not_found")
    return engines.engine_for(name)


async def _read_json(request: Request, limit: int):
    """The body as JSON, refused with 413 past `limit` bytes (declared or counted while reading)."""
    too_big = APIError(413, f"request body over {limit} bytes", code="request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    data = bytearray()
    async for part in request.stream():
        data += part
        if len(data) > limit:
            raise too_big
    try:
        return json.loads(data)
    except ValueError as e:
        raise APIError(400, f"the body is not valid JSON: {e}", code="invalid_json") from None


def _runnable(engine: ChatEngine, execute_tools: bool, user_tools: Toolbox) -> Toolbox:
    """The tools the server runs for `engine`: its domain's (execute_tools) and the user's module's."""
    return (domain_toolbox(engine.domain, engine.db) if execute_tools else Toolbox()).merged(user_tools)


def _agent_turns(engine: ChatEngine, req: ChatRequest, reply_fn, tools: Callable[[], Toolbox]):
    """Run the Agent loop with the server's tools over the request's last user message; a call to another
    tool ends it and is the reply (the client runs it)."""
    plugin = get_domain(engine.domain)
    # tools opened on the worker thread that uses them (SQLite)
    return Agent(reply_fn, tools().tools, fallback=plugin.fallback_reply if plugin else FALLBACK,
                 return_unknown=True).respond(req.turns[:-1], req.turns[-1].content)


def _complete(engine: ChatEngine, req: ChatRequest, server_tools: Callable[[], Toolbox] | None,
              cancel: threading.Event) -> tuple[Turn, str, dict]:
    """(turn, finish_reason, usage), on a worker thread."""

    def reply(turns: list[Turn]) -> Turn:
        if req.stop:  # streamed inside, so generation ends at a stop string instead of running on to max_tokens
            return stream_turn(engine, turns, req.opts, req.stop, lambda _text: None, cancel)[0]
        return engine.reply(turns, req.opts, cancel=cancel)

    turn = _agent_turns(engine, req, reply, server_tools).reply if server_tools else reply(req.turns)
    if turn.role != "assistant":
        return turn, "tool_calls", _usage(engine, req.turns, turn)
    text, stopped = cut_at_stop(turn.content, req.stop)
    out = Turn("assistant", content=text)
    return out, finish_reason(engine, turn.content, req.opts, stopped), _usage(engine, req.turns, out)


def _usage(engine: ChatEngine, turns: list[Turn], turn: Turn) -> dict:
    prompt = len(engine.renderer.prompt_ids(turns))
    text = turn.content if turn.role == "assistant" else compact_json({"name": turn.name, "arguments": turn.arguments})
    completion = count_tokens(engine, text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _stream(request: Request, worker: GenerationWorker, engine: ChatEngine, req: ChatRequest,
                  server_tools: Callable[[], Toolbox] | None, timeout_s: float) -> StreamingResponse:
    """SSE chat.completion.chunk events ending in `data: [DONE]`. The status is decided before the
    first byte: a request still queued when its time runs out gets a real 504, not a broken stream."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def push(kind: str, value=None) -> None:
        loop.call_soon_threadsafe(events.put_nowait, (kind, value))

    def job() -> None:
        emit = lambda text: push("text", text)  # noqa: E731
        try:
            if server_tools:
                result = _agent_turns(engine, req, lambda t: stream_turn(engine, t, req.opts, req.stop, emit, cancel)[0],
                                      server_tools)
                if result.fallback:  # the agent's own words: never streamed by the model
                    emit(result.reply.content)
                turn, finish = result.reply, "tool_calls" if result.reply.role == "tool_call" else "stop"
            else:
                turn, finish = stream_turn(engine, req.turns, req.opts, req.stop, emit, cancel)
            push("done", (turn, finish, _usage(engine, req.turns, turn) if req.include_usage else None))
        except Exception as e:  # reported in the stream; the worker goes on
            push("error", e)

    fut = worker.submit(job, cancel)
    deadline = loop.time() + timeout_s
    getter = asyncio.ensure_future(events.get())
    try:
        started = await _wait(request, getter, timeout_s)
    finally:
        if not getter.done():  # timed out, client gone or request cancelled: stop generating
            getter.cancel()
            cancel.set()
            fut.cancel()
    if not started:
        raise APIError(504, f"generation did not start within {timeout_s:g} s", code="timeout")
    first = getter.result()
    if first[0] == "error":
        raise job_error(first[1])
    cid, created = new_id(), int(time.time())

    async def body():
        event = first
        try:
            yield chunk(cid, req.model, created, {"role": "assistant", "content": ""})
            while True:
                kind, value = event
                if kind == "text":
                    yield chunk(cid, req.model, created, {"content": value})
                elif kind == "error":
                    e = job_error(value)
                    yield sse(error_body(e.status, e.message, e.param, e.code))
                    break
                else:
                    turn, finish, usage = value
                    if turn.role == "tool_call":
                        yield chunk(cid, req.model, created, {"tool_calls": [tool_call_json(turn, 0)]})
                    yield chunk(cid, req.model, created, {}, finish)
                    if usage is not None:
                        yield chunk(cid, req.model, created, {}, usage=usage)
                    break
                try:
                    event = await asyncio.wait_for(events.get(), max(deadline - loop.time(), 0.001))
                except asyncio.TimeoutError:
                    yield sse(error_body(504, f"generation took longer than {timeout_s:g} s", code="timeout"))
                    break
            yield sse("[DONE]")
        finally:
            cancel.set()  # client gone (the task is cancelled here) or stream over: generation stops

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

