"""Tools as data (issue 22, friction 5): a row's `tools` are rendered in the system turn by every template,
in training, evaluation, chat and serve alike; `data validate` checks tool calls against their schemas;
a user's tools module runs in chat and serve, and other calls come back to the client as `tool_calls`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import REPO, make_tokenizer, write_jsonl
from tunelab.data.readers import read_conversations
from tunelab.data.render import IGNORE, Renderer
from tunelab.data.template import get_template
from tunelab.utils.errors import ConfigError, DataError

EXAMPLE = REPO / "examples" / "multitool"
SEND_EMAIL = {"type": "function", "function": {"name": "send_email", "description": "Send an email.", "parameters": {
    "type": "object", "properties": {"to": {"type": "string"}, "body": {"type": "string"}}, "required": ["to", "body"]}}}


def example_rows(n: int, seed: int = 0) -> list[dict]:
    spec = importlib.util.spec_from_file_location("multitool_make_data", EXAMPLE / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(n, seed)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("multitool") / "train.jsonl", example_rows(24))


@pytest.mark.parametrize("template", ["chatml", "gemma", "plain"])
def test_every_template_renders_the_rows_tools_in_the_system_turn(tok, data, template):
    from tunelab.evaluate.job import eval_items

    convs, _ = read_conversations(data)
    renderer = Renderer(get_template(template, tok), tok)
    enc = renderer.encode(convs[0])
    text = tok.decode(enc.input_ids)
    first_user = text.index("What") if "What" in text else text.index(convs[0].turns[1].content[:10])
    system = text[:first_user]
    for name in ("get_weather", "convert_units", "list_events"):
        assert f'"name": "{name}"' in system  # the schemas, before the first user turn
    assert '"required": ["value", "from_unit", "to_unit"]' in system
    # the schemas are prompt, never a target
    supervised = tok.decode([i for i, l in zip(enc.input_ids, enc.labels) if l != IGNORE])
    assert '"name": "get_weather"' not in supervised
    # evaluation contexts carry them too: the prompt of every item offers the tools
    context = eval_items(convs[:1])[0][0]
    assert '"name": "list_events"' in tok.decode(renderer.prompt_ids(context))


def test_offered_tools_fill_a_conversation_that_names_none_and_its_own_replace_them(tok):
    from tunelab.data.schema import Turn
    from tunelab.data.tools import with_tools

    r = Renderer(get_template("chatml", tok), tok, system_prompt="Be brief.", tools=[SEND_EMAIL])
    turns = [Turn("user", content="hi")]
    text = tok.decode(r.prompt_ids(turns))
    assert text.startswith("<|im_start|>system\nBe brief.") and "# Tools" in text and '"name": "send_email"' in text
    own = [{"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}}]
    text = tok.decode(r.prompt_ids(with_tools(turns, own)))
    assert '"name": "ping"' in text and "send_email" not in text and "Be brief." in text


def test_a_bad_tools_field_is_one_line_naming_the_row(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"tools": [{"type": "function", "function": {"description": "x"}}],
                                                 "messages": [{"role": "user", "content": "hi"},
                                                              {"role": "assistant", "content": "hello"}]}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: tools\[0\].function.name: a tool needs a non-empty name"):
        read_conversations(path)


def test_data_validate_checks_tool_calls_against_their_schemas(tmp_path, capsys):
    from tunelab.cli.main import main

    good = example_rows(3)
    for row in good:
        assert row["tools"]

    def call(name, args):
        row = json.loads(json.dumps(good[0]))
        row["messages"] = [{"role": "user", "content": "weather?"},
                           {"role": "assistant", "tool_calls": [{"function": {"name": name, "arguments": args}}]},
                           {"role": "tool", "content": "[]"}, {"role": "assistant", "content": "done"}]
        return row

    rows = good + [call("get_weather", {"city": 7}), call("get_weather", {"day": "yesterday", "city": "Oslo"}),
                   call("book_flight", {"to": "Oslo"}), call("convert_units", {"value": 1, "from_unit": "km"})]
    path = write_jsonl(tmp_path / "calls.jsonl", rows)
    assert main(["data", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:4: turn 3 (tool_call get_weather): arguments.city: 7 is not of type 'string'" in out
    assert f"{path}:5: turn 3 (tool_call get_weather): arguments.day: 'yesterday' is not one of" in out
    assert f"{path}:6: turn 3 (tool_call book_flight): tool 'book_flight' is not among the row's tools" in out
    assert f"{path}:7: turn 3 (tool_call convert_units): arguments: 'to_unit' is a required property" in out
    assert "7 rows, 3 valid, 4 invalid" in out


def test_a_tools_module_gives_specs_and_runs_checked_calls(tmp_path):
    from tunelab.infer.tools import load_tools_module

    box = load_tools_module(EXAMPLE / "tools.py")
    assert list(box.tools) == ["get_weather", "convert_units", "list_events"]
    weather = box.specs[0]["function"]
    assert weather["description"] == "The weather forecast for a city."
    assert weather["parameters"]["required"] == ["city"]
    assert weather["parameters"]["properties"]["day"] == {"type": "string", "enum": ["today", "tomorrow"],
                                                         "description": "today or tomorrow"}
    assert box.tools["get_weather"]({"city": "Paris", "day": "tomorrow"}) == {
        "ok": True, "records": [{"city": "Paris", "day": "tomorrow", "condition": "rain", "high_c": 18, "low_c": 11}]}
    bad = box.tools["convert_units"]({"value": "ten", "from_unit": "km", "to_unit": "mile"})
    assert not bad["ok"] and "value: 'ten' is not of type 'number'" in bad["error"]
    assert box.tools["get_weather"]({"city": "Atlantis"})["error"].startswith("ValueError: no forecast for 'Atlantis'")
    broken = tmp_path / "broken.py"
    broken.write_text("TOOLS = 3\n")
    with pytest.raises(ConfigError, match=r"--tools .*broken.py: needs TOOLS = \[function, ...\]"):
        load_tools_module(broken)


# --- end to end on a tiny model: train, chat, serve -----------------------------------------------------------

@pytest.fixture(scope="module")
def run(tiny_llama, data, tmp_path_factory) -> Path:
    from tunelab.train.job import train

    out = tmp_path_factory.mktemp("runs") / "multitool"
    train({"model": {"name_or_path": str(tiny_llama)},
           "data": {"train_file": str(data), "max_length": 2048, "cache": False},
           "method": {"r": 4, "alpha": 8, "dropout": 0.0},
           "train": {"output_dir": str(out), "max_steps": 3, "learning_rate": 1e-3,
                     "per_device_train_batch_size": 2}})
    return out


def scripted_generate(engine, outputs: list[str], prompts: list[str]):
    """`model.generate` that records each prompt and answers the next scripted text (a random tiny model
    cannot be made to call a tool): the engine's decoding and parsing of the reply run as they are."""
    import torch

    end = engine.renderer.ids(engine.template.end_text())

    def generate(input_ids, **kwargs):
        prompts.append(engine.tokenizer.decode(input_ids[0].tolist()))
        new = torch.tensor([engine.renderer.text_ids(outputs.pop(0)) + end], dtype=input_ids.dtype)
        if kwargs.get("streamer") is not None:  # chat streams: the prompt first (skipped), then the reply
            kwargs["streamer"].put(input_ids)
            kwargs["streamer"].put(new[0])
            kwargs["streamer"].end()
        return torch.cat([input_ids, new], dim=1)

    return generate


def test_the_run_remembers_its_tools_and_chat_offers_and_runs_them(run, monkeypatch, capsys):
    from tunelab.cli import chat
    from tunelab.infer.engine import load_engine

    assert [t["function"]["name"] for t in json.loads((run / "run.json").read_text())["tools"]] == [
        "get_weather", "convert_units", "list_events"]
    engine = load_engine(run, device="cpu")
    prompts: list[str] = []
    outputs = ['<tool_call>{"name":"get_weather","arguments":{"city":"Oslo"}}</tool_call>', "Cool, 15 C."]
    monkeypatch.setattr(engine.model, "generate", scripted_generate(engine, outputs, prompts))
    monkeypatch.setattr(chat, "load_engine", lambda *a, **k: engine)
    lines = iter(["Weather in Oslo?", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    chat.chat_loop(str(run), max_new_tokens=64, tools=str(EXAMPLE / "tools.py"))
    out = capsys.readouterr().out
    assert '[get_weather] {"city": "Oslo"}' in out and "[found 1]" in out and "assistant> Cool, 15 C." in out
    assert '"name": "get_weather"' in prompts[0] and '"name": "list_events"' in prompts[0]
    assert "cool" in prompts[1]  # the tool's record went back to the model


def test_serve_runs_registered_tools_and_returns_the_others_as_tool_calls(run, monkeypatch):
    httpx = pytest.importorskip("httpx")
    from tunelab.infer.multi import MultiEngine
    from tunelab.infer.tools import load_tools_module
    from tunelab.serve.api import create_app
    from tunelab.serve.server import BackgroundServer

    engines = MultiEngine.load([run], device="cpu")
    engine = engines.engine_for("multitool")
    app = create_app(engines, tools=load_tools_module(EXAMPLE / "tools.py"), timeout_s=60)
    prompts: list[str] = []
    outputs = ['<tool_call>{"name":"get_weather","arguments":{"city":"Paris","day":"tomorrow"}}</tool_call>',
               '<tool_call>{"name":"send_email","arguments":{"to":"ann@example.com","body":"rain"}}</tool_call>',
               '<tool_call>{"name":"send_email","arguments":{"to":"bob@example.com","body":"hi"}}</tool_call>']
    monkeypatch.setattr(engine.model, "generate", scripted_generate(engine, outputs, prompts))
    user = [{"role": "user", "content": "Tell Ann the weather in Paris tomorrow"}]
    with BackgroundServer(app) as srv:
        # no client tools: get_weather runs on the server, send_email (not registered) comes back to the client
        r = httpx.post(srv.url + "/v1/chat/completions", json={"model": "multitool", "messages": user}, timeout=60)
        choice = r.json()["choices"][0]
        assert r.status_code == 200 and choice["finish_reason"] == "tool_calls", r.text
        call = choice["message"]["tool_calls"][0]["function"]
        assert call["name"] == "send_email" and json.loads(call["arguments"]) == {"to": "ann@example.com",
                                                                                  "body": "rain"}
        assert '"name": "get_weather"' in prompts[0] and "rain" in prompts[1]
        # the client's tools: rendered in the system turn instead, and every call is the client's
        r = httpx.post(srv.url + "/v1/chat/completions", timeout=60,
                       json={"model": "multitool", "messages": user, "tools": [SEND_EMAIL]})
        call = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]
        assert json.loads(call["arguments"]) == {"to": "bob@example.com", "body": "hi"}
        assert '"name": "send_email"' in prompts[2] and '"name": "get_weather"' not in prompts[2]
