"""Batched serving: concurrent requests of one adapter decode together and give the one-at-a-time outputs.

The engines hold a tiny random model with two in-memory LoRA adapters (random, so each changes the
outputs). The "one at a time" answers come from the plain generate path (no decoder); the batched ones
from N threads at once, released together so they share forward passes. A hook on the model counts
the rows of every forward pass, so a test knows batching really happened.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tunelab.data.schema import Turn
from tunelab.infer.engine import GenerationOptions
from tunelab.infer.multi import MultiEngine, RunInfo

QUESTIONS = ["你好", "有经济型酒店吗？请告诉我价格和电话号码，谢谢", "电话？", "hi there, any hotel near the subway?",
             "酒店" * 30, "x"]


def make_engines(model_dir: Path) -> MultiEngine:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(1)
    model = get_peft_model(base, LoraConfig(**cfg), adapter_name="run0")
    model.add_adapter("run1", LoraConfig(**cfg))
    runs = [RunInfo(name=name, run_dir=model_dir, base=model_dir, base_name="tiny", adapter=adapter, peft_type="LORA",
                    template="auto", tool_results="table", system_prompt="", domain="", db="")
            for name, adapter in (("run_a", "run0"), ("run_b", "run1"))]
    return MultiEngine(model, tok, runs, base_id="tiny")


@pytest.fixture(scope="module", params=["llama", "gemma"])
def engines(request, tiny_llama, tiny_gemma):
    e = make_engines(tiny_llama if request.param == "llama" else tiny_gemma)
    yield e
    e.decoder = None


@pytest.fixture
def rows_per_pass(engines):
    """The batch size of every forward pass of the shared model while the test runs."""
    seen: list[int] = []
    handle = engines.model.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    yield seen
    handle.remove()


def together(engines: MultiEngine, calls: list) -> list:
    """Run every call on its own thread, released at once: all are queued before the first pass."""
    out: dict[int, object] = {}

    def run(i, fn):
        try:
            out[i] = fn()
        except Exception as e:  # noqa: BLE001 - compared by the test
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, fn), daemon=True) for i, fn in enumerate(calls)]
    with engines.lock:  # the decoder waits for the lock before its first pass
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while engines.decoder.active() < len(calls) and time.monotonic() < deadline:
            time.sleep(0.01)
    for t in threads:
        t.join(60)
    return [out.get(i) for i in range(len(calls))]


def settled(engines, within_s: float = 5) -> bool:
    """True once the decoder holds no row (an aborted row leaves at the next step)."""
    deadline = time.monotonic() + within_s
    while engines.decoder.active() and time.monotonic() < deadline:
        time.sleep(0.01)
    return engines.decoder.active() == 0


def jobs(engines):
    """(model id, question) for every request: each adapter and the base, prompts of many lengths."""
    names = ["run_a", "run_b", engines.base_id]
    return [(names[i % 3], q) for i, q in enumerate(QUESTIONS * 2)]


def test_concurrent_greedy_replies_equal_one_at_a_time(engines, rows_per_pass):
    opts = GenerationOptions(max_new_tokens=20)
    work = jobs(engines)
    engines.decoder = None
    alone = [engines.engine_for(n).reply([Turn("user", content=q)], opts) for n, q in work]
    assert engines.enable_batching(8)
    rows_per_pass.clear()
    batched = together(engines, [lambda n=n, q=q: engines.engine_for(n).reply([Turn("user", content=q)], opts)
                                 for n, q in work])
    assert batched == alone
    assert max(rows_per_pass) == 4  # 12 requests, 3 models: 4 rows of one adapter per pass
    assert len(rows_per_pass) < 12 * 21 / 2  # far fewer passes than one per token of each request


def test_concurrent_streams_equal_one_at_a_time(engines):
    opts = GenerationOptions(max_new_tokens=16)
    work = jobs(engines)[:6]
    engines.decoder = None
    alone = [list(engines.engine_for(n).stream([Turn("user", content=q)], opts)) for n, q in work]
    engines.enable_batching(8)
    batched = together(engines, [lambda n=n, q=q: list(engines.engine_for(n).stream([Turn("user", content=q)], opts))
                                 for n, q in work])
    assert batched == alone  # the same pieces, not only the same text


def test_a_next_turn_prefills_only_what_follows_the_turn_before(engines, monkeypatch):
    """A chat's next turn (or an agent's next pass) starts with the previous request's tokens: the decoder
    takes them from the finished request's cache, and the reply is the one a fresh prefill gives."""
    engine = engines.engine_for("run_b")
    monkeypatch.setattr(engine, "stop_ids", [])  # the first reply runs its full length, every token cached
    opts = GenerationOptions(max_new_tokens=8)
    first = [Turn("user", content="酒店" * 20 + "？")]
    engines.decoder = None
    reply = engine.reply(first, opts)
    follow = first + [reply, Turn("user", content="电话？")]
    want = engine.reply(follow, opts)
    assert engines.enable_batching(2)  # a new decoder: nothing kept yet
    assert engine.reply(first, opts) == reply and engines.decoder.prefixes.reused == 0
    assert settled(engines)
    assert engine.reply(follow, opts) == want
    assert engines.decoder.prefixes.reused >= len(engine.renderer.prompt_ids(first))
    engines.enable_batching(8)


def test_a_cancelled_stream_leaves_the_batch_and_the_others_finish(engines, monkeypatch):
    """What the API does for a client that disconnects: it sets the request's cancel flag."""
    engines.enable_batching(8)
    engine = engines.engine_for("run_a")
    monkeypatch.setattr(engine, "stop_ids", [])  # a random model must not end its turn by itself here
    opts = GenerationOptions(max_new_tokens=12)
    want = engine.reply([Turn("user", content="电话？")], opts)
    cancel, pieces = threading.Event(), []
    endless = threading.Thread(target=lambda: pieces.extend(engine.stream(
        [Turn("user", content="你好")], GenerationOptions(max_new_tokens=100_000), cancel=cancel)), daemon=True)
    endless.start()
    deadline = time.monotonic() + 5
    while engines.decoder.active() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    other = together(engines, [lambda: engine.reply([Turn("user", content="电话？")], opts)])[0]
    assert other == want and endless.is_alive()  # decoded beside the endless one
    cancel.set()
    endless.join(10)
    assert not endless.is_alive() and pieces and settled(engines)  # its place is free


def test_cancel_ends_a_batched_reply(engines, monkeypatch):
    engines.enable_batching(8)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    engine = engines.engine_for("run_b")
    monkeypatch.setattr(engine, "stop_ids", [])
    start = time.monotonic()
    turn = engine.reply([Turn("user", content="hi")], GenerationOptions(max_new_tokens=100_000), cancel=cancel)
    assert time.monotonic() - start < 10 and turn.role in ("assistant", "tool_call")
    assert settled(engines)


def test_a_sampling_error_fails_its_request_only(engines):
    engines.decoder = None
    greedy = GenerationOptions(max_new_tokens=10)
    want = engines.engine_for("run_a").reply([Turn("user", content="你好")], greedy)
    engines.enable_batching(8)
    bad = GenerationOptions(max_new_tokens=10, temperature=1e-300)  # inf/nan probabilities
    got = together(engines, [lambda: engines.engine_for("run_a").reply([Turn("user", content="hi")], bad),
                             lambda: engines.engine_for("run_a").reply([Turn("user", content="你好")], greedy)])
    assert isinstance(got[0], RuntimeError) and got[1] == want


def test_sampled_replies_run_batched(engines):
    import torch

    engines.enable_batching(8)
    torch.manual_seed(0)
    opts = GenerationOptions(max_new_tokens=8, temperature=0.8, top_p=0.9)
    got = together(engines, [lambda: engines.engine_for("run_a").reply([Turn("user", content="你好")], opts)] * 3)
    assert all(isinstance(t, Turn) for t in got)


def test_worker_runs_batch_max_jobs_at_once():
    from tunelab.serve.worker import GenerationWorker

    worker = GenerationWorker(queue_size=4, batch_max=2)
    gate, running = threading.Event(), []

    def job():
        running.append(1)
        gate.wait(10)

    futs = [worker.submit(job, threading.Event()) for _ in range(3)]
    deadline = time.monotonic() + 5
    while len(running) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(running) == 2 and worker.in_flight == 3 and worker.busy_for() > 0
    gate.set()
    for f in futs:
        f.result(10)
    worker.shutdown()


# --- over HTTP: the server batches, and its answers are the one-at-a-time server's ---------------------

def streamed_text(sse: str) -> list[str]:
    """The content pieces of an SSE chat stream, in order."""
    events = [json.loads(e[6:]) for e in sse.split("\n\n") if e.startswith("data: {")]
    return [c["delta"]["content"] for e in events for c in e["choices"] if c["delta"].get("content")]


def ask_all(url: str, bodies: list[dict]) -> list:
    httpx = pytest.importorskip("httpx")
    out: dict[int, object] = {}

    def ask(i, body):
        r = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
        if body.get("stream"):
            out[i] = (r.status_code, streamed_text(r.text))
        else:
            out[i] = (r.status_code, r.json()["choices"][0]["message"]["content"],
                      r.json()["choices"][0]["finish_reason"])

    threads = [threading.Thread(target=ask, args=(i, b), daemon=True) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    return threads, out


def test_server_answers_concurrent_requests_batched_as_one_at_a_time(engines, rows_per_pass):
    pytest.importorskip("fastapi")
    from tunelab.serve.api import create_app
    from tunelab.serve.server import BackgroundServer

    stops = [[], ["。"], ["a", "e"]]
    bodies = [{"model": n, "messages": [{"role": "user", "content": q}], "max_tokens": 16, "stream": i % 2 == 0,
               "stop": stops[i % 3]} for i, (n, q) in enumerate(jobs(engines)[:9])]
    engines.decoder = None
    with BackgroundServer(create_app(engines, queue_size=16, batch_max=1)) as srv:
        alone = []
        for b in bodies:
            threads, out = ask_all(srv.url, [b])
            threads[0].join(60)
            alone.append(out[0])
    with BackgroundServer(create_app(engines, queue_size=16, batch_max=8)) as srv:
        with engines.lock:  # every request reaches the decoder before its first pass
            threads, out = ask_all(srv.url, bodies)
            deadline = time.monotonic() + 20
            while engines.decoder.active() < len(bodies) and time.monotonic() < deadline:
                time.sleep(0.01)
        for t in threads:
            t.join(60)
    assert [out.get(i) for i in range(len(bodies))] == alone
    assert max(rows_per_pass) == 3


def test_full_queue_is_429_at_once_while_a_batch_decodes(engines):
    httpx = pytest.importorskip("httpx")
    from tunelab.serve.api import create_app
    from tunelab.serve.server import BackgroundServer

    body = {"model": "run_a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with BackgroundServer(create_app(engines, queue_size=2, batch_max=2)) as srv:
        with engines.lock:  # the two admitted requests wait in the decoder
            threads, out = ask_all(srv.url, [body, body])
            deadline = time.monotonic() + 20
            while engines.decoder.active() < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            start = time.monotonic()
            r = httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=10)
            assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full" and time.monotonic() - start < 2
            assert httpx.get(srv.url + "/health").json()["in_flight"] == 2
        for t in threads:
            t.join(60)
        assert [out[i][0] for i in range(2)] == [200, 200] and out[0] == out[1]
