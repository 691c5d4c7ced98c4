"""The OpenAI chat-completions wire format <-> tunelab Turns.

Requests are checked field by field, so a bad one is a 400 that names the field (`param`); replies
and stream chunks are built in the shapes the official clients parse.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tunelab.data import codec
from tunelab.data.schema import Turn
from tunelab.data.tools import normalize_tools, with_tools
from tunelab.utils.errors import DataError
from tunelab.infer.engine import GenerationOptions
from tunelab.serve.errors import APIError

DEFAULT_MAX_TOKENS = 256


@dataclass
class ChatRequest:
    model: str
    turns: list[Turn]
    opts: GenerationOptions
    stream: bool = False
    stop: list[str] = field(default_factory=list)
    tools: list[dict] | None = None  # the client's tool list (even empty): it runs the calls itself
    include_usage: bool = False


def _bad(message: str, param: str) -> APIError:
    return APIError(400, message, param=param, code="invalid_value")


def _number(body: dict, key: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(key)
    if v is None:
        return default
    # JSON NaN / Infinity parse to floats that slip past any range comparison
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi \
            or (lo_open and v == lo):
        raise _bad(f"'{key}' must be a number in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}", key)
    return float(v)


def messages_to_turns(messages: Any) -> list[Turn]:
    """OpenAI messages -> Turns (data/codec.py, strict); a bad message is a 400 naming its place."""
    try:
        return codec.messages_to_turns(messages, strict=True)
    except codec.MessageError as e:
        raise _bad(e.message, e.param) from None


def parse_chat_request(body: Any, max_tokens_cap: int, max_prompt_tokens: int | None = None) -> ChatRequest:
    """A request body -> ChatRequest; max_tokens is capped at `max_tokens_cap`, never refused for size.

    The prompt's token count is checked where it is rendered (GenerationOptions.max_prompt_tokens).
    """
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", "")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' must be a model id from /v1/models", "model")
    if body.get("n", 1) != 1:
        raise _bad("only n=1 is supported", "n")
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(key)
    if max_tokens is None:
        max_tokens = min(DEFAULT_MAX_TOKENS, max_tokens_cap)
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _bad(f"'{key}' must be an integer >= 1 (values over {max_tokens_cap} are lowered to it), "
                   f"got {max_tokens!r}", key)
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) and s for s in stop)):
        raise _bad("'stop' must be a string or a list of up to 4 non-empty strings", "stop")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(
            isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name") for t in tools)):
        raise _bad("'tools' must be a list of {type: function, function: {name, ...}}", "tools")
    opts = GenerationOptions(max_new_tokens=min(max_tokens, max_tokens_cap),
                             temperature=_number(body, "temperature", 0.0, 0.0, 2.0),  # greedy unless asked
                             top_p=_number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True),
                             max_prompt_tokens=max_prompt_tokens)
    stream_opts = body.get("stream_options") or {}
    turns = messages_to_turns(body.get("messages"))
    if tools is not None:  # the client's tools go on the system turn, rendered as in training
        try:
            tools = normalize_tools(tools)
        except DataError as e:
            raise _bad(str(e), "tools") from None
        turns = with_tools(turns, tools)
    return ChatRequest(model=model, turns=turns, opts=opts,
                       stream=bool(body.get("stream", False)), stop=stop, tools=tools,
                       include_usage=bool(isinstance(stream_opts, dict) and stream_opts.get("include_usage")))


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def tool_call_json(turn: Turn, index: int | None = None) -> dict:
    """A tool_call Turn as an OpenAI tool call (data/codec.py), with its stream index when given."""
    out = codec.tool_call_message(turn)
    return out if index is None else {"index": index, **out}


def message_of(turn: Turn, finish: str) -> tuple[dict, str]:
    """(assistant message, finish_reason) for the turn a model produced."""
    if turn.role == "tool_call":
        return {"role": "assistant", "content": None, "tool_calls": [tool_call_json(turn)]}, "tool_calls"
    return {"role": "assistant", "content": turn.content}, finish


def completion_body(cid: str, model: str, turn: Turn, finish: str, usage: dict) -> dict:
    message, finish = message_of(turn, finish)
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage}


def chunk(cid: str, model: str, created: int, delta: dict, finish: str | None = None,
          usage: dict | None = None) -> str:
    """One SSE event holding a chat.completion.chunk."""
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if usage is not None:  # the usage chunk of stream_options.include_usage has no choices
        body["choices"], body["usage"] = [], usage
    return sse(body)


def sse(obj: Any) -> str:
    return "data: " + (obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)) + "\n\n"
