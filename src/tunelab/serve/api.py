"""An OpenAI-compatible HTTP API over loaded runs: /health, /v1/models, /v1/chat/completions.

Limits come first, in the order a request meets them: API key (401), body size (413), request
fields (400), model id among the loaded runs only (404, never read as a path), queue room (429 with
Retry-After), time (504). Generation runs on one worker thread, so the event loop keeps answering
/health and refusing what does not fit while a reply is being generated.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tunelab.data.schema import Turn
from tunelab.data.template import compact_json
from tunelab.infer.agent import Agent
from tunelab.infer.engine import ChatEngine
from tunelab.infer.multi import MultiEngine
from tunelab.infer.tools import domain_tools
from tunelab.serve.errors import APIError, error_body, install_handlers
from tunelab.serve.protocol import (ChatRequest, chunk, completion_body, new_id, parse_chat_request, sse,
                                    tool_call_json)
from tunelab.serve.worker import GenerationWorker, count_tokens, cut_at_stop, finish_reason, stream_turn


def create_app(engines: MultiEngine, *, api_key: str | None = None, max_body_bytes: int = 1_000_000,
               max_tokens_cap: int = 512, queue_size: int = 8, timeout_s: float = 120.0,
               execute_tools: bool = False) -> FastAPI:
    """The API app. `execute_tools` runs a run's domain tools server-side (the Agent loop) for
    clients that send no `tools` of their own, so a plain client gets the final answer."""
    if execute_tools:  # a missing database is a start-up error, not a 500 on the first request
        for name in engines.runs:
            domain_tools(engines.engine_for(name).domain, engines.engine_for(name).db)
    worker = GenerationWorker(queue_size)

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
        return {"status": "ok", "models": engines.names, "in_flight": worker.in_flight, "queue_size": queue_size}

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
        req = parse_chat_request(await _read_json(request, max_body_bytes), max_tokens_cap)
        engine = _engine(engines, req.model)
        server_tools = bool(execute_tools and engine.domain and req.tools is None and req.turns[-1].role == "user")
        if req.stream:
            return await _stream(worker, engine, req, server_tools, timeout_s)
        cancel = threading.Event()
        fut = asyncio.wrap_future(worker.submit(lambda: _complete(engine, req, server_tools), cancel))
        done, _ = await asyncio.wait({fut}, timeout=timeout_s)
        if not done:
            cancel.set()
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it any more
            raise APIError(504, f"generation took longer than {timeout_s:g} s", code="timeout")
        turn, finish, usage = fut.result()
        return JSONResponse(completion_body(new_id(), req.model, turn, finish, usage))

    return app


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


def _agent_turns(engine: ChatEngine, req: ChatRequest, reply_fn):
    """Run the Agent loop with the run's domain tools over the request's last user message."""
    tools = domain_tools(engine.domain, engine.db)  # opened on the worker thread that uses it (SQLite)
    return Agent(reply_fn, tools).respond(req.turns[:-1], req.turns[-1].content)


def _complete(engine: ChatEngine, req: ChatRequest, server_tools: bool) -> tuple[Turn, str, dict]:
    """(turn, finish_reason, usage) on the worker thread, which alone uses the tokenizer."""
    if server_tools:
        turn = _agent_turns(engine, req, lambda turns: engine.reply(turns, req.opts)).reply
    else:
        turn = engine.reply(req.turns, req.opts)
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


async def _stream(worker: GenerationWorker, engine: ChatEngine, req: ChatRequest, server_tools: bool,
                  timeout_s: float) -> StreamingResponse:
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
                result = _agent_turns(engine, req, lambda t: stream_turn(engine, t, req.opts, req.stop, emit, cancel)[0])
                if result.fallback:  # the agent's own words: never streamed by the model
                    emit(result.reply.content)
                turn, finish = result.reply, "stop"
            else:
                turn, finish = stream_turn(engine, req.turns, req.opts, req.stop, emit, cancel)
            push("done", (turn, finish, _usage(engine, req.turns, turn) if req.include_usage else None))
        except Exception as e:  # reported in the stream; the worker goes on
            push("error", f"{type(e).__name__}: {e}")

    fut = worker.submit(job, cancel)
    deadline = loop.time() + timeout_s
    try:
        first = await asyncio.wait_for(events.get(), timeout_s)
    except asyncio.TimeoutError:
        cancel.set()
        fut.cancel()
        raise APIError(504, f"generation did not start within {timeout_s:g} s", code="timeout") from None
    if first[0] == "error":
        raise APIError(500, f"generation failed: {first[1]}", code="generation_error")
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
                    yield sse(error_body(500, f"generation failed: {value}", code="generation_error"))
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
            cancel.set()  # client gone or stream over: the job stops reading pieces

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

