"""The web UI: the agent turn behind it, then the page itself in headless Chromium.

The browser test types a message, waits for the reply, and checks the search pane and the hotel
table; the reply function is scripted (a search, then an answer) so the panes are deterministic.
Requests the page makes off the loopback are recorded and refused: there must be none.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
pytest.importorskip("gradio")

from tests.serve.test_api import SEARCH, scripted, trained_runs  # noqa: E402
from tunelab.domains import get_domain  # noqa: E402
from tunelab.infer.engine import GenerationOptions  # noqa: E402
from tunelab.infer.multi import MultiEngine  # noqa: E402
from tunelab.serve.webui import build_webui, columns, launch, respond, respond_stream  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "webui.png"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def engines(tiny_llama, tmp_path_factory):
    run_a, run_b, _ = trained_runs(tiny_llama, tmp_path_factory)
    return MultiEngine.load([run_a, run_b], device="cpu")


@pytest.fixture(scope="module")
def hotels(tiny_llama, tmp_path_factory):
    from tunelab.domains.hotel import connect, search_hotels

    return search_hotels(connect(trained_runs(tiny_llama, tmp_path_factory)[2]), SEARCH)["records"]


def test_respond_runs_the_tools_and_fills_the_panes(engines, hotels, monkeypatch):
    monkeypatch.setattr(engines.engine_for("run_a"), "reply", scripted())
    reply, history, search, rows = respond(engines, "run_a", "找酒店", [], GenerationOptions(max_new_tokens=8))
    assert reply == f"found {len(hotels)}: {hotels[0]['name']}"
    assert search == {"tool": "search_hotels", "arguments": SEARCH, "error": None}
    cols = columns(engines.engine_for("run_a"))
    assert cols == list(get_domain("hotel").display_columns) and cols[0] == "name"
    assert [r[0] for r in rows] == [h["name"] for h in hotels] and len(rows[0]) == len(cols)
    assert [t.role for t in history] == ["user", "tool_call", "tool_result", "assistant"]


def test_respond_with_the_real_model_and_no_domain(engines):
    reply, history, search, rows = respond(engines, engines.base_id, "你好", [], GenerationOptions(max_new_tokens=6))
    assert isinstance(reply, str) and reply and history[0].content == "你好"
    assert rows == []  # no domain, no tools: nothing can return records
    calls = [t for t in history if t.role == "tool_call"]
    assert (search is None) == (not calls)
    assert search is None or "unknown tool" in search["error"]


def streamed(engine):
    """engine.stream for `scripted()`: the scripted turn's text as the model would write it, 3 characters a piece."""
    reply = scripted()

    def stream(turns, opts=None, cancel=None):
        body = engine.template.pieces(reply(turns))[1]
        yield from (body[i:i + 3] for i in range(0, len(body), 3))

    return stream


def test_respond_stream_grows_the_reply_then_fills_the_panes(engines, hotels, monkeypatch):
    engine = engines.engine_for("run_a")
    monkeypatch.setattr(engine, "stream", streamed(engine))
    steps = list(respond_stream(engines, "run_a", "找酒店", [], GenerationOptions(max_new_tokens=8)))
    partial, (reply, history, search, rows) = steps[:-1], steps[-1]
    assert reply == f"found {len(hotels)}: {hotels[0]['name']}"
    shown = [text for text, *rest in partial]
    assert len(shown) > 2 and all(rest == [None, None, None] for _, *rest in partial)
    assert all(reply.startswith(t) for t in shown) and shown[-1] == reply  # grows to the reply, no tool call text
    assert search["arguments"] == SEARCH and len(rows) == len(hotels)
    assert [t.role for t in history] == ["user", "tool_call", "tool_result", "assistant"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_in_headless_chromium(engines, hotels, monkeypatch):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing")
    monkeypatch.setattr(engines.engine_for("run_a"), "stream", streamed(engines.engine_for("run_a")))
    demo = build_webui(engines, max_new_tokens=8)
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

    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.route("**/*", only_loopback)
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            page.locator("#message textarea").fill("找一家酒店")
            page.locator("#send").click()
            reply = f"found {len(hotels)}: {hotels[0]['name']}"  # streamed: wait for the whole reply, not its start
            page.wait_for_function(f"document.querySelector('#chat').innerText.includes({reply!r})", timeout=60_000)
            assert reply in page.locator("#chat").inner_text()
            page.wait_for_function(
                f"document.querySelector('#hotels').innerText.includes({hotels[-1]['name']!r})", timeout=30_000)
            assert "rating_range_lower" in page.locator("#search").inner_text()
            assert page.locator("#adapter").is_visible()  # two runs: the picker shows
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            browser.close()
    finally:
        demo.close()
    assert outside == [], f"the page reached outside the loopback: {outside}"
    assert SCREENSHOT.read_bytes()[:4] == b"\x89PNG"
