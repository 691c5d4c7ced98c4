"""Generation that always ends: in the engine, the HTTP API and the terminal chat.

A sampling error must reach the caller and free the worker; a consumer that goes away (closed
stream, disconnected client, stop string, timeout) must end generation within a few decoding
steps; prompts have a token cap; bad options are one line, never a traceback or a hang.

Decoding steps are counted by a logits processor that also forces one CJK character per step, so
text flows piece by piece and a random tiny model never ends its turn on its own.
"""

from __future__ import annotations

import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.serve.test_api import trained_runs  # noqa: E402
from tunelab.data.schema import Turn  # noqa: E402
from tunelab.infer.engine import ChatEngine, GenerationOptions, PromptTooLong  # noqa: E402
from tunelab.utils.errors import ConfigError  # noqa: E402

URL = "/v1/chat/completions"
LONG = 2000  # max tokens of a generation that would run ~20 s if nothing stopped it
HI = [{"role": "user", "content": "hi"}]


class Counted:
    """An engine's model that counts decoding steps, sleeps `step_s` in each and forces `token_id`."""

    def __init__(self, model, token_id: int, step_s: float = 0.01):
        self.model, self.token_id, self.step_s = model, token_id, step_s
        self.steps = 0
        self.returned = threading.Event()

    def generate(self, **kw):
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList

        outer = self

        class Force(LogitsProcessor):
            def __call__(self, input_ids, scores):
                outer.steps += 1
                time.sleep(outer.step_s)
                forced = torch.full_like(scores, float("-inf"))
                forced[:, outer.token_id] = 0.0
                return forced

        self.returned.clear()
        try:
            return self.model.generate(**kw, logits_processor=LogitsProcessorList([Force()]))
        finally:
            self.returned.set()

    def __getattr__(self, name):
        return getattr(self.model, name)


def count_steps(monkeypatch, engine: ChatEngine, step_s: float = 0.01) -> Counted:
    counted = Counted(engine.model, engine.tokenizer.convert_tokens_to_ids("你"), step_s)
    monkeypatch.setattr(engine, "model", counted)
    return counted


def in_thread(fn, timeout: float):
    """fn() on a daemon thread: ('ok', value) or ('error', exc), or ('hung', None) past `timeout`."""
    out: list = []

    def run():
        try:
            out.append(("ok", fn()))
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out.append(("error", e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else ("hung", None)


@pytest.fixture(scope="module")
def tiny_engine(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.data.template import get_template

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    return ChatEngine(AutoModelForCausalLM.from_pretrained(tiny_llama), tok, get_template("auto", tok))


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory):
    return trained_runs(tiny_llama, tmp_path_factory)


@pytest.fixture(scope="module")
def engines(runs):
    from tunelab.infer.multi import MultiEngine

    return MultiEngine.load([runs[0]], device="cpu")


def serve(engines, **kw):
    from tunelab.serve.api import create_app
    from tunelab.serve.server import BackgroundServer

    return BackgroundServer(create_app(engines, **{"queue_size": 1, "timeout_s": 30, "max_tokens_cap": LONG, **kw}))


def post(srv, body: dict, timeout: float = 15) -> httpx.Response:
    return httpx.post(srv.url + URL, json={"model": "run_a", "messages": HI, **body}, timeout=timeout)


def quick_reply_ok(srv) -> None:
    """The worker is free: a small request is answered at once (queue_size 1: a busy worker is 429)."""
    start = time.monotonic()
    r = post(srv, {"max_tokens": 2})
    assert r.status_code == 200, r.text
    assert time.monotonic() - start < 5


# --- 1. an error inside the generation thread --------------------------------------------------

def test_sampling_error_in_stream_is_raised_not_hung(tiny_engine):
    opts = GenerationOptions(max_new_tokens=8, temperature=1e-300)  # inf/nan probabilities in sampling
    kind, value = in_thread(lambda: list(tiny_engine.stream([Turn("user", content="hi")], opts)), 20)
    assert kind == "error" and isinstance(value, RuntimeError), (kind, value)


def test_sampling_error_is_500_and_frees_the_worker(engines):
    with serve(engines) as srv:
        for stream in (True, False):
            r = post(srv, {"temperature": 1e-300, "max_tokens": 8, "stream": stream})
            assert r.status_code == 500 and r.json()["error"]["code"] == "generation_error", r.text
            assert "RuntimeError" in r.json()["error"]["message"]
            quick_reply_ok(srv)
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"


def test_chat_reports_a_failed_turn_and_goes_on(runs, monkeypatch, capsys):
    from tunelab.cli import chat

    lines = iter(["hi", "/exit"])
    monkeypatch.setattr("builtins.input", lambda _prompt="": next(lines))
    kind, value = in_thread(lambda: chat.chat_loop(str(runs[0]), max_new_tokens=8, temperature=1e-300), 60)
    assert kind == "ok", (kind, value)
    assert "tunelab: error: generation failed: RuntimeError" in capsys.readouterr().err


# --- 2. generation stops when nobody wants more --------------------------------------------------

def test_consumer_stopping_early_ends_generate_within_a_few_steps(tiny_engine, monkeypatch):
    counted = count_steps(monkeypatch, tiny_engine)
    pieces = tiny_engine.stream([Turn("user", content="hi")], GenerationOptions(max_new_tokens=LONG))
    got = [next(pieces) for _ in range(3)]
    pieces.close()
    assert counted.returned.is_set()  # close() returns once generate has returned
    assert got == ["你"] * 3 and counted.steps < 50  # of LONG: a busy machine may let it run a few ahead


def test_reply_cancel_ends_generate_within_a_few_steps(tiny_engine, monkeypatch):
    counted = count_steps(monkeypatch, tiny_engine)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    kind, turn = in_thread(lambda: tiny_engine.reply([Turn("user", content="hi")], GenerationOptions(
        max_new_tokens=LONG), cancel=cancel), 10)
    assert kind == "ok" and 0 < counted.steps < 200 and turn.content.startswith("你")


def test_disconnected_stream_client_stops_generation(engines, monkeypatch):
    counted = count_steps(monkeypatch, engines.engine_for("run_a"))
    with serve(engines) as srv:
        with httpx.stream("POST", srv.url + URL, json={"model": "run_a", "messages": HI, "max_tokens": LONG,
                                                        "stream": True}, timeout=15) as r:
            for i, _line in enumerate(r.iter_lines()):
                if i >= 6:
                    break
        assert counted.returned.wait(5), f"still generating after {counted.steps} steps"
        assert counted.steps < 200
        quick_reply_ok(srv)


@pytest.mark.parametrize("stream", [True, False])
def test_matched_stop_string_stops_generation(engines, monkeypatch, stream):
    counted = count_steps(monkeypatch, engines.engine_for("run_a"))
    with serve(engines) as srv:
        r = post(srv, {"max_tokens": LONG, "stop": ["你你你"], "stream": stream})
        assert r.status_code == 200
        assert counted.returned.wait(5) and counted.steps < 100
        if not stream:
            assert r.json()["choices"][0]["message"]["content"] == "" and \
                r.json()["choices"][0]["finish_reason"] == "stop"
        quick_reply_ok(srv)


@pytest.mark.parametrize("stream", [True, False])
def test_request_timeout_stops_generation(engines, monkeypatch, stream):
    counted = count_steps(monkeypatch, engines.engine_for("run_a"))
    with serve(engines, timeout_s=0.5) as srv:
        r = post(srv, {"max_tokens": LONG, "stream": stream})
        if stream:  # the stream had started: the timeout comes as its last error event
            assert r.status_code == 200 and '"code": "timeout"' in r.text
        else:
            assert r.status_code == 504
        assert counted.returned.wait(5) and counted.steps < 300
        quick_reply_ok(srv)


# --- 3. a cap on prompt tokens --------------------------------------------------------------------

def test_prompt_over_the_token_cap_is_refused(tiny_engine, engines):
    long_turn = [Turn("user", content="x" * 400)]
    with pytest.raises(PromptTooLong, match="over the limit of 100"):
        tiny_engine.reply(long_turn, GenerationOptions(max_new_tokens=2, max_prompt_tokens=100))
    with serve(engines, max_prompt_tokens=100) as srv:
        for stream in (True, False):
            r = post(srv, {"messages": [{"role": "user", "content": "x" * 400}], "stream": stream})
            err = r.json()["error"]
            assert r.status_code == 400 and err["code"] == "context_length_exceeded" and err["param"] == "messages"
        quick_reply_ok(srv)


def test_default_prompt_cap_is_the_models_context(engines):
    with serve(engines) as srv:  # the tiny model's max_position_embeddings is 2048
        r = post(srv, {"messages": [{"role": "user", "content": "x" * 3000}], "max_tokens": 1})
        assert r.status_code == 400 and "over the limit of 2048" in r.json()["error"]["message"]


# --- /health sees stuck work ------------------------------------------------------------------------

def test_health_is_503_degraded_while_a_job_runs_past_its_timeout(engines, monkeypatch):
    gate = threading.Event()
    monkeypatch.setattr(engines.engine_for("run_a"), "reply", lambda *a, **kw: (gate.wait(20), Turn(
        "assistant", content="late"))[1])  # a job that ignores its cancel flag
    with serve(engines, timeout_s=0.3, stuck_margin_s=0.3) as srv:
        assert post(srv, {}).status_code == 504
        time.sleep(0.5)
        h = httpx.get(srv.url + "/health")
        assert h.status_code == 503 and h.json()["status"] == "degraded"
        assert h.json()["busy_for_s"] >= 0.6 and h.json()["in_flight"] == 1
        gate.set()
        deadline = time.monotonic() + 5
        while httpx.get(srv.url + "/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(srv.url + "/health").json() | {"models": None} == {
            "status": "ok", "models": None, "in_flight": 0, "queue_size": 1, "busy_for_s": 0.0}


# --- 4. bad values are refused with one line ---------------------------------------------------------

def test_nan_request_values_are_400_naming_the_field(engines):
    with serve(engines) as srv:
        for field in ("temperature", "top_p"):  # JSON NaN parses to a float that passes any range check
            body = f'{{"model": "run_a", "messages": [{{"role": "user", "content": "hi"}}], "{field}": NaN}}'
            r = httpx.post(srv.url + URL, content=body, headers={"content-type": "application/json"}, timeout=15)
            assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text


@pytest.mark.parametrize("kw", [{"max_new_tokens": -1}, {"max_new_tokens": 0}, {"max_new_tokens": 2.5},
                                {"temperature": float("nan")}, {"temperature": -0.1}, {"temperature": float("inf")},
                                {"top_p": 0.0}, {"top_p": float("nan")}, {"max_prompt_tokens": 0}])
def test_generation_options_refuse_bad_values(kw):
    with pytest.raises(ConfigError, match=next(iter(kw))):
        GenerationOptions(**kw)


@pytest.mark.parametrize("argv,name", [
    (["chat", "RUN", "--max-new-tokens", "-1"], "max_new_tokens"),
    (["chat", "RUN", "--temperature", "nan"], "temperature"),
    (["chat", "RUN", "--temperature", "-1"], "temperature"),
    (["serve", "RUN", "--port", "70000"], "port"),
    (["serve", "RUN", "--queue-size", "0"], "queue_size"),
    (["serve", "RUN", "--timeout", "-1"], "timeout"),
    (["serve", "RUN", "--timeout", "nan"], "timeout"),
    (["serve", "RUN", "--max-tokens-cap", "0"], "max_tokens_cap"),
    (["serve", "RUN", "--max-body-bytes", "0"], "max_body_bytes"),
    (["serve", "RUN", "--max-prompt-tokens", "-1"], "max_prompt_tokens"),
    (["webui", "RUN", "--port", "0"], "port"),
    (["webui", "RUN", "--max-new-tokens", "0"], "max_new_tokens"),
])
def test_bad_cli_options_are_one_line_exit_2_before_loading(tmp_path, capsys, argv, name):
    from tunelab.cli.main import main

    argv = [str(tmp_path / "no_run") if a == "RUN" else a for a in argv]  # loading it would fail otherwise
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tunelab: error:") and name.replace("_", "-") in err and "\n" not in err, err
