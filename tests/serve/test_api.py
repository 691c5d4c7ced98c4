"""The OpenAI-compatible API, driven over real HTTP with the official `openai` client.

Two tiny runs are trained on one tiny base model; a uvicorn server on a free loopback port serves
both. Where a random tiny model cannot be made to do something (call a tool, be slow), the engine's
reply or stream is replaced for that test only.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tunelab.data.schema import Turn  # noqa: E402
from tunelab.infer.engine import GenerationOptions  # noqa: E402
from tunelab.infer.multi import MultiEngine  # noqa: E402
from tunelab.serve.api import create_app  # noqa: E402
from tunelab.serve.server import BackgroundServer  # noqa: E402
from tunelab.utils.errors import ConfigError  # noqa: E402

KEY = "sk-test-key"
CAP = 24
SEARCH = {"rating_range_lower": 0}
_TRAINED: dict[str, tuple] = {}  # one training per test session, shared with test_webui


def trained_runs(tiny_llama: Path, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run_a, run_b, hotel db): two 10-step LoRA runs on the tiny model, both with the hotel domain."""
    if str(tiny_llama) not in _TRAINED:
        from tests.conftest import SAMPLE
        from tunelab.domains.hotel import build_db
        from tunelab.train.job import train

        root = tmp_path_factory.mktemp("serve_runs")
        db = root / "hotels.db"
        build_db(db, n=50)
        runs = []
        for name, lr, seed in [("run_a", 3e-3, 1), ("run_b", 1e-2, 2)]:
            train({"model": {"name_or_path": str(tiny_llama)},
                   "data": {"train_file": str(SAMPLE), "max_length": 384, "domain": "hotel", "db": str(db)},
                   "method": {"r": 8, "alpha": 16, "dropout": 0.0},
                   "train": {"output_dir": str(root / name), "max_steps": 10, "learning_rate": lr, "seed": seed,
                             "per_device_train_batch_size": 2, "lr_scheduler_type": "constant"}})
            runs.append(root / name)
        _TRAINED[str(tiny_llama)] = (runs[0], runs[1], db)
    return _TRAINED[str(tiny_llama)]


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory):
    return trained_runs(tiny_llama, tmp_path_factory)


@pytest.fixture(scope="module")
def engines(runs):
    return MultiEngine.load([runs[0], runs[1]], device="cpu")


@pytest.fixture(scope="module")
def server(engines):
    app = create_app(engines, api_key=KEY, max_body_bytes=64_000, max_tokens_cap=CAP, queue_size=8,
                     timeout_s=60, execute_tools=True)
    with BackgroundServer(app) as srv:
        yield srv


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def user(text="你好"):
    return [{"role": "user", "content": text}]


def healthy(url: str) -> bool:
    r = httpx.get(url + "/health", timeout=10)
    return r.status_code == 200 and r.json()["status"] == "ok"


def scripted(turns_seen: list | None = None, delay: threading.Event | None = None):
    """A reply function: a search first, then an answer naming the first hotel the search returned."""

    def reply(turns, opts=None, cancel=None):
        if turns_seen is not None:
            turns_seen.append((list(turns), opts))
        if delay is not None:
            delay.wait(10)
        if turns[-1].role == "tool_result":
            recs = turns[-1].records
            return Turn("assistant", content=f"found {len(recs)}: {recs[0]['name']}")
        return Turn("tool_call", name="search_hotels", arguments=dict(SEARCH))

    return reply


def stream_of(*pieces):
    return lambda turns, opts=None, cancel=None: iter(pieces)


# --- the engine: one base, two adapters -------------------------------------------------------

def test_adapters_equal_single_run_models(engines, runs):
    import torch

    from tunelab.infer.engine import load_engine

    assert engines.names == [engines.base_id, "run_a", "run_b"]
    ids = torch.tensor([engines.engine_for("run_a").renderer.prompt_ids([Turn("user", content="你好")])])
    logits = {}
    for name in engines.names:
        with engines.activate(engines.runs[name].adapter if name in engines.runs else None), torch.no_grad():
            logits[name] = engines.model(input_ids=ids).logits
    for name, run_dir in [("run_a", runs[0]), ("run_b", runs[1])]:
        single = load_engine(run_dir, device="cpu")
        with torch.no_grad():
            assert torch.allclose(logits[name], single.model(input_ids=ids).logits, atol=1e-5), name
        opts = GenerationOptions(max_new_tokens=12)
        assert engines.engine_for(name).reply([Turn("user", content="你好")], opts) == \
            single.reply([Turn("user", content="你好")], opts)
    assert not torch.allclose(logits["run_a"], logits["run_b"])
    assert not torch.allclose(logits["run_a"], logits[engines.base_id])


def test_engines_used_from_many_threads_keep_their_adapters(engines):
    opts = GenerationOptions(max_new_tokens=10)
    names = ["run_a", "run_b", engines.base_id] * 2
    want = {n: engines.engine_for(n).reply([Turn("user", content="电话？")], opts) for n in names[:3]}
    got: dict = {}
    threads = [threading.Thread(target=lambda i=i, n=n: got.update(
        {i: engines.engine_for(n).reply([Turn("user", content="电话？")], opts)})) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [got.get(i) for i in range(len(names))] == [want[n] for n in names]


def test_runs_on_other_bases_or_same_names_are_refused(runs, tmp_path):
    import shutil

    other = tmp_path / "x" / "run_b"
    shutil.copytree(runs[1], other)
    info = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**info, "model_dir": str(tmp_path)}))
    with pytest.raises(ConfigError, match="share one base model"):
        MultiEngine.load([runs[0], other], device="cpu")
    with pytest.raises(ConfigError, match="unique"):
        MultiEngine.load([runs[1], other], device="cpu")
    with pytest.raises(ConfigError, match="not a tunelab run directory"):
        MultiEngine.load([tmp_path], device="cpu")


# --- the API --------------------------------------------------------------------------------

def test_models_lists_base_and_each_run(client, engines):
    ids = [m.id for m in client.models.list()]
    assert ids == [engines.base_id, "run_a", "run_b"]
    assert client.models.retrieve("run_b").id == "run_b"


def test_non_streaming_reply_is_the_engines_reply(client, engines):
    opts = GenerationOptions(max_new_tokens=CAP)
    for name in ["run_a", "run_b", engines.base_id]:
        r = client.chat.completions.create(model=name, messages=user(), max_tokens=CAP, tools=[])
        expected = engines.engine_for(name).reply([Turn("user", content="你好")], opts)
        choice = r.choices[0]
        assert r.object == "chat.completion" and r.model == name and r.id.startswith("chatcmpl-")
        assert choice.finish_reason in ("stop", "length", "tool_calls")
        if expected.role == "assistant":
            assert choice.message.content == expected.content
        else:
            assert choice.message.tool_calls[0].function.name == expected.name
        assert r.usage.prompt_tokens > 0


def test_concurrent_requests_never_mix_adapters(client, engines):
    names = ["run_a", "run_b", engines.base_id] * 2
    want = {n: client.chat.completions.create(model=n, messages=user("电话是多少？"), max_tokens=CAP).choices[0].message
            for n in names[:3]}
    got: dict[int, object] = {}

    def ask(i, n):
        got[i] = client.chat.completions.create(model=n, messages=user("电话是多少？"), max_tokens=CAP).choices[0].message

    threads = [threading.Thread(target=ask, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(got) == len(names)
    for i, n in enumerate(names):
        assert got[i].content == want[n].content, n


def test_streaming_chunks_end_with_done(client, server):
    stream = client.chat.completions.create(model="run_a", messages=user(), max_tokens=12, stream=True)
    chunks = list(stream)
    assert chunks and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length", "tool_calls")
    body = {"model": "run_a", "messages": user(), "max_tokens": 4, "stream": True,
            "stream_options": {"include_usage": True}}
    raw = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                     timeout=60)
    events = [line for line in raw.text.split("\n\n") if line]
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    usage = json.loads(events[-2][6:])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] <= 4


def test_streaming_text_is_cut_at_stop_strings(client, engines, monkeypatch):
    monkeypatch.setattr(engines.engine_for("run_a"), "stream", stream_of("  Hello wo", "rld E", "ND more", " text"))
    chunks = list(client.chat.completions.create(model="run_a", messages=user(), stream=True, stop=["END"]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello world "
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tool_call_comes_back_as_tool_calls(client, engines, monkeypatch):
    monkeypatch.setattr(engines.engine_for("run_a"), "reply", scripted())
    tools = [{"type": "function", "function": {"name": "search_hotels", "parameters": {"type": "object"}}}]
    r = client.chat.completions.create(model="run_a", messages=user("找酒店"), tools=tools)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "search_hotels"
    assert json.loads(call.function.arguments) == SEARCH


def test_streamed_tool_call_comes_back_as_tool_calls(client, engines, monkeypatch):
    text = '<tool_call>{"name":"search_hotels","arguments":{"type":"经济型"}}</tool_call>'
    monkeypatch.setattr(engines.engine_for("run_b"), "stream", stream_of(text[:3], text[3:20], text[20:]))
    tools = [{"type": "function", "function": {"name": "search_hotels"}}]
    chunks = list(client.chat.completions.create(model="run_b", messages=user(), tools=tools, stream=True))
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "search_hotels"
    assert json.loads(calls[0].function.arguments) == {"type": "经济型"}
    assert not any(c.choices[0].delta.content for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_result_round_trip(client, engines, monkeypatch):
    seen: list = []
    monkeypatch.setattr(engines.engine_for("run_a"), "reply", scripted(seen))
    records = [{"name": "如家快捷酒店", "price": 298}]
    messages = user("找酒店") + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "search_hotels", "arguments": json.dumps(SEARCH)}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps(records, ensure_ascii=False)},
    ]
    r = client.chat.completions.create(model="run_a", messages=messages, tools=[])
    assert r.choices[0].message.content == "found 1: 如家快捷酒店" and r.choices[0].finish_reason == "stop"
    turns = seen[-1][0]
    assert [t.role for t in turns] == ["user", "tool_call", "tool_result"]
    assert turns[1].arguments == SEARCH and turns[2].name == "search_hotels" and turns[2].records == records


def test_execute_tools_answers_plain_clients(client, engines, runs, monkeypatch):
    from tunelab.domains.hotel import connect, search_hotels

    first = search_hotels(connect(runs[2]), SEARCH)["records"][0]["name"]
    seen: list = []
    monkeypatch.setattr(engines.engine_for("run_b"), "reply", scripted(seen))
    r = client.chat.completions.create(model="run_b", messages=user("找酒店"))  # no tools: the server runs them
    assert r.choices[0].message.content.endswith(first) and r.choices[0].finish_reason == "stop"
    assert [t.role for t in seen[-1][0]][-2:] == ["tool_call", "tool_result"]


def test_execute_tools_streams_the_final_answer(client, engines, monkeypatch):
    def stream(turns, opts=None, cancel=None):
        if turns[-1].role == "tool_result":
            return iter(["found ", f"{len(turns[-1].records)}"])
        return iter(['<tool_call>{"name":"search_hotels","arguments":{"rating_range_lower":0}}</tool_call>'])

    monkeypatch.setattr(engines.engine_for("run_a"), "stream", stream)
    chunks = list(client.chat.completions.create(model="run_a", messages=user("找酒店"), stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("found ") and int(text.split()[1]) > 0
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_max_tokens_is_capped(client, engines, monkeypatch):
    seen: list = []
    monkeypatch.setattr(engines.engine_for("run_a"), "reply", scripted(seen))
    client.chat.completions.create(model="run_a", messages=user(), max_tokens=100_000, tools=[])
    assert seen[-1][1].max_new_tokens == CAP


def test_wrong_or_missing_api_key_is_401(server):
    for key in ["wrong", ""]:
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key=key or "x", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="run_a", messages=user())
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    r = httpx.get(server.url + "/v1/models", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_unknown_model_is_404_never_a_path(client, runs):
    for name in ["nope", str(runs[0]), "../run_a", "run_a/../run_b"]:
        with pytest.raises(openai.NotFoundError) as e:
            client.chat.completions.create(model=name, messages=user())
        assert e.value.body["param"] == "model" and e.value.body["code"] == "model_not_found"


def test_bad_requests_are_400_naming_the_field(client, server):
    cases = [({"messages": []}, "messages"), ({"temperature": 5}, "temperature"),
             ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
             ({"stop": [1]}, "stop"), ({"n": 3}, "n")]
    for change, param in cases:
        body = {"model": "run_a", "messages": user(), **change}
        r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 400, change
        err = r.json()["error"]
        assert err["param"] == param and err["type"] == "invalid_request_error" and set(err) == {
            "message", "type", "param", "code"}
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400


def test_oversize_body_is_413_and_server_stays_healthy(server):
    body = {"model": "run_a", "messages": user("x" * 200_000)}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                   timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert healthy(server.url)


def test_full_queue_is_429_at_once_and_health_answers_meanwhile(engines, monkeypatch):
    gate = threading.Event()
    monkeypatch.setattr(engines.engine_for("run_a"), "reply", scripted(delay=gate))
    app = create_app(engines, queue_size=1, timeout_s=30)
    with BackgroundServer(app) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=30)
        first: dict = {}
        t = threading.Thread(target=lambda: first.update(r=c.chat.completions.create(
            model="run_a", messages=user(), tools=[])))
        t.start()
        deadline = time.monotonic() + 10
        while httpx.get(srv.url + "/health").json()["in_flight"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        start = time.monotonic()
        assert healthy(srv.url)  # the event loop answers while generation blocks the worker
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="run_a", messages=user(), tools=[])
        assert time.monotonic() - start < 2
        assert int(e.value.response.headers["retry-after"]) >= 1
        assert e.value.body["code"] == "queue_full"
        with pytest.raises(openai.RateLimitError):
            list(c.chat.completions.create(model="run_a", messages=user(), stream=True))
        gate.set()
        t.join(30)
        assert first["r"].choices[0].finish_reason == "tool_calls"
        assert healthy(srv.url)
        assert c.chat.completions.create(model="run_a", messages=user(), tools=[]).choices  # room again


def test_slow_generation_is_504(engines, monkeypatch):
    gate = threading.Event()
    monkeypatch.setattr(engines.engine_for("run_a"), "reply", scripted(delay=gate))
    monkeypatch.setattr(engines.engine_for("run_a"), "stream", lambda *a, **kw: (gate.wait(10), iter(["late"]))[1])
    with BackgroundServer(create_app(engines, timeout_s=0.5)) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=30)
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as e:
                c.chat.completions.create(model="run_a", messages=user(), tools=[], stream=stream)
            assert e.value.status_code == 504 and e.value.body["code"] == "timeout"
        gate.set()
        assert healthy(srv.url)


def test_cli_parsers_default_to_loopback():
    import argparse

    from tunelab.cli.serve import add_serve_parser, add_webui_parser

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_serve_parser(sub)
    add_webui_parser(sub)
    a = p.parse_args(["serve", "runs/a", "runs/b", "--api-key", "k", "--execute-tools"])
    assert (a.run_dirs, a.host, a.port, a.api_key, a.execute_tools) == (["runs/a", "runs/b"], "127.0.0.1", 8000, "k", True)
    w = p.parse_args(["webui", "runs/a"])
    assert (w.host, w.webui_port) == ("127.0.0.1", 7860)
