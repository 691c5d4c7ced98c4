"""The web UI's Train tab: a run in a subprocess started, watched, stopped (and saved), then chatted with,
replies streamed; in headless Chromium, with every request off the loopback refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
pytest.importorskip("gradio")

from tests.conftest import SAMPLE, make_tokenizer  # noqa: E402
from tests.serve.test_webui import CHROME_ARGS, CHROMIUM, _free_port  # noqa: E402
from tunelab.data.template import get_template  # noqa: E402
from tunelab.infer.engine import GenerationOptions  # noqa: E402
from tunelab.serve.chat_stream import stream_agent  # noqa: E402
from tunelab.serve.train_process import TrainProcess, overrides_for  # noqa: E402
from tunelab.utils.errors import ConfigError  # noqa: E402

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "webui_train.png"


def write_recipe(root: Path, model: Path) -> Path:
    """A tiny run that trains until stopped (many steps, a loss logged at each)."""
    root.mkdir(parents=True, exist_ok=True)
    recipe = {"model": {"name_or_path": str(model)},
              "data": {"train_file": str(SAMPLE), "dev_file": str(SAMPLE), "max_length": 256, "cache": False},
              "method": {"name": "lora", "r": 4},
              "train": {"output_dir": "runs/ignored", "max_steps": 5000, "logging_steps": 1, "learning_rate": 1e-3,
                        "mixed_precision": "no"}}
    path = root / "tiny_lora.yaml"
    path.write_text(json.dumps(recipe), encoding="utf-8")  # JSON is YAML
    return path


class FakeEngine:
    """Streams fixed pieces; what stream_agent needs of a ChatEngine."""

    domain, db = "", ""

    def __init__(self, tmp_path):
        self.template = get_template("chatml", make_tokenizer(tmp_path / "tok"))

    def stream(self, turns, opts, cancel=None):
        yield from ["Hel", "lo", " the", "re"]


def test_stream_agent_shows_the_reply_as_it_grows(tmp_path):
    steps = list(stream_agent(FakeEngine(tmp_path), [], "hi", GenerationOptions(max_new_tokens=8)))
    assert [text for text, _ in steps[:-1]] == ["Hel", "Hello", "Hello the", "Hello there"]
    text, result = steps[-1]
    assert text == "Hello there" and [t.role for t in result.turns] == ["user", "assistant"]
    assert all(r is None for _, r in steps[:-1])


def test_a_bad_form_value_starts_nothing(tiny_llama, tmp_path):
    recipe = write_recipe(tmp_path / "recipes", tiny_llama)
    with pytest.raises(ConfigError, match="method.r.*>= 1"):
        TrainProcess(recipe, {"rank": 0}, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    lines = overrides_for({"rank": 4.0, "train_file": "a.jsonl, b.jsonl", "model": " "}, tmp_path / "o", tmp_path / "s")
    assert "--method.r=4" in lines and '--data.train_file=["a.jsonl", "b.jsonl"]' in lines
    assert not any(x.startswith("--model.") for x in lines)  # an empty field keeps the recipe's value


def test_train_tab_in_headless_chromium(tiny_llama, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing")
    from tunelab.serve.train_ui import build_train_ui
    from tunelab.serve.webui import launch

    recipes = write_recipe(tmp_path / "recipes", tiny_llama).parent
    demo = build_train_ui(recipes, tmp_path / "runs", device="cpu", max_new_tokens=8, poll_s=0.5)
    port = _free_port()
    launch(demo, "127.0.0.1", port, prevent_thread_lock=True)
    outside: list[str] = []

    def only_loopback(route):
        host = urlparse(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    def text(selector: str) -> str:
        return page.locator(selector).inner_text()

    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", only_loopback)
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            assert page.locator("#train-model input, #train-model textarea").first.input_value() == str(tiny_llama)
            page.locator("#train-start").click()
            page.wait_for_function("document.querySelector('#train-status').innerText.includes('running')",
                                   timeout=30_000)
            # the plot follows the run: a few logged steps, then more
            page.wait_for_function("/step ([3-9]|\\d\\d+)/.test(document.querySelector('#train-status').innerText)",
                                   timeout=90_000)
            step = int(text("#train-status").split("step ")[1].split()[0])
            page.wait_for_function(
                f"parseInt(document.querySelector('#train-status').innerText.split('step ')[1]) > {step}",
                timeout=30_000)
            assert page.locator("#loss-plot canvas, #loss-plot svg").count() > 0
            page.locator("#train-stop").click()  # stops at the next step and saves
            page.wait_for_function("document.querySelector('#train-status').innerText.includes('finished')",
                                   timeout=90_000)
            page.wait_for_function("document.querySelector('#train-results').innerText.includes('train_loss')",
                                   timeout=30_000)
            assert "stopped_by_request" in text("#train-results")
            page.locator("#train-message textarea").fill("hello")
            page.locator("#train-send").click()
            page.wait_for_function(
                "[...document.querySelectorAll('#train-chat .message')].length >= 2 && "
                "[...document.querySelectorAll('#train-chat .message')].at(-1).innerText.trim().length > 0",
                timeout=60_000)
            assert "hello" in text("#train-chat")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            browser.close()
    finally:
        job = demo.train_session.job
        if job is not None and job.state in ("running", "stopping"):
            job.stop()
            job.stop()  # the second one ends the process
            job.wait(30)
        demo.close()
    assert outside == [], f"the page reached outside the loopback: {outside}"
    summary = json.loads((job.output_dir / "run.json").read_text())
    assert summary["stopped_by_request"] is True and 3 <= summary["steps"] < 5000
    assert SCREENSHOT.read_bytes()[:4] == b"\x89PNG"
