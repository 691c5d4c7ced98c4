"""`tunelab webui`: a Gradio page to chat with trained runs and see what their tools found.

Chat on the left, the reply streamed token by token; on the right the adapter picker (when several runs are loaded), the last tool call's
arguments and the records it returned, in the columns the run's domain names. Every message goes through the Agent loop
with the run's domain tools (data.domain / data.db of its config); a run without a domain chats
plainly. Nothing here reaches the internet: analytics off, no share link, system fonts only.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

from tunelab.data.schema import Turn  # noqa: E402
from tunelab.domains import get_domain  # noqa: E402
from tunelab.infer.agent import Agent  # noqa: E402
from tunelab.infer.engine import GenerationOptions  # noqa: E402
from tunelab.infer.multi import MultiEngine  # noqa: E402
from tunelab.serve.chat_stream import stream_agent  # noqa: E402
from tunelab.serve.limits import default_max_prompt_tokens  # noqa: E402


def columns(engine) -> list[str]:
    """The record fields the results table shows for the run's domain (none without one)."""
    domain = get_domain(engine.domain)
    return list(domain.display_columns) if domain else []


def respond(engines: MultiEngine, model: str, message: str, history: list[Turn],
            opts: GenerationOptions) -> tuple[str, list[Turn], dict | None, list[list]]:
    """One user message through the agent: (reply text, new history, last tool call, result rows).

    The tool call is {"tool", "arguments", "error"} of the turn's last one (None when it made none);
    the rows are the records of its last successful one, one list per `columns(engine)`.
    """
    engine = engines.engine_for(model)
    # tools opened per message: Gradio answers from many threads
    result = Agent.for_domain(lambda turns: engine.reply(turns, opts), engine.domain, engine.db).respond(
        history, message)
    return (result.reply.content, history + result.turns, *panes(engine, result))


def respond_stream(engines: MultiEngine, model: str, message: str, history: list[Turn], opts: GenerationOptions):
    """`respond`, streamed: yields (reply so far, None, None, None) as tokens arrive, then once
    (reply, new history, last tool call, result rows) as `respond` returns them."""
    engine = engines.engine_for(model)
    for text, result in stream_agent(engine, history, message, opts):
        if result is None:
            yield text, None, None, None
        else:
            yield (text, history + result.turns, *panes(engine, result))


def panes(engine, result) -> tuple[dict | None, list[list]]:
    """(the turn's last tool call as {"tool", "arguments", "error"} or None, the records of its last successful
    one as rows of `columns(engine)`)."""
    search, rows, cols = None, [], columns(engine)
    for e in result.events:
        search = {"tool": e.name, "arguments": e.arguments, "error": e.error}
        if e.error is None:
            rows = [[_cell(r.get(c)) for c in cols] for r in e.records or [] if isinstance(r, dict)]
    return search, rows


def _cell(value):
    return "、".join(map(str, value)) if isinstance(value, list) else ("" if value is None else value)


def _theme():
    import gradio as gr

    # The default theme imports web fonts from a font CDN; system fonts keep the page offline.
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_webui(engines: MultiEngine, max_new_tokens: int = 256, temperature: float = 0.0):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr
    import pandas as pd

    opts = GenerationOptions(max_new_tokens=max_new_tokens, temperature=temperature,
                             max_prompt_tokens=default_max_prompt_tokens(engines.model))
    runs = [n for n in engines.names if n in engines.runs]
    choices = runs + [n for n in engines.names if n not in engines.runs]  # runs first, the base last
    first = engines.engine_for(choices[0])
    domain = get_domain(first.domain)
    empty = pd.DataFrame([], columns=columns(first))

    def on_message(message: str, chat: list, history: list, model: str):
        message = (message or "").strip()
        if not message:
            yield "", chat, history, gr.skip(), gr.skip()
            return
        chat = list(chat or []) + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        try:  # the reply streams into the last bubble token by token; the panes fill when the turn ends
            for reply, new_history, search, rows in respond_stream(engines, model or choices[0], message, history,
                                                                   opts):
                chat[-1] = {"role": "assistant", "content": reply}
                if new_history is None:
                    yield "", chat, history, gr.skip(), gr.skip()
        except Exception as e:  # a prompt too long or a failed generation: say so, keep the page usable
            raise gr.Error(f"{type(e).__name__}: {e}") from None
        cols = columns(engines.engine_for(model or choices[0]))
        yield "", chat, new_history, search, pd.DataFrame(rows, columns=cols)

    with gr.Blocks(title="tunelab", analytics_enabled=False) as demo:
        gr.Markdown("### tunelab: chat with a fine-tuned run")
        history = gr.State([])
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="chat", height=460, elem_id="chat", buttons=["copy", "copy_all"])
                hint = f"e.g. {domain.example}" if domain and domain.example else "Type a message"
                box = gr.Textbox(placeholder=hint, show_label=False,
                                 elem_id="message", submit_btn=False)
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    clear = gr.Button("Clear", elem_id="clear")
            with gr.Column(scale=2):
                picker = gr.Dropdown(choices, value=choices[0], label="adapter", elem_id="adapter",
                                     visible=len(runs) > 1)
                search = gr.JSON(label="tool call (last turn)", elem_id="search")
                records = gr.Dataframe(value=empty, label="records returned (last turn)", elem_id="hotels",
                                      interactive=False, wrap=True)
        outputs = [box, chatbot, history, search, records]
        box.submit(on_message, [box, chatbot, history, picker], outputs)
        send.click(on_message, [box, chatbot, history, picker], outputs)
        reset = lambda: ("", [], [], None, empty)  # noqa: E731
        clear.click(reset, None, outputs)
        picker.change(reset, None, outputs)  # a conversation belongs to one model
    return demo


def launch_webui(run_dirs: list[str], host: str = "127.0.0.1", port: int = 7860, device: str | None = None,
                 max_new_tokens: int = 256, prevent_thread_lock: bool = False, train: bool = False,
                 recipes_dir: str = "recipes", runs_root: str = "runs"):
    """Load the runs and serve the page on host:port (loopback unless told otherwise).

    With `train` (or no runs) the page gets the Train tab (serve/train_ui.py): a chat tab and a train tab
    side by side when both."""
    GenerationOptions(max_new_tokens=max_new_tokens)  # a bad value fails before the slow load
    demos, names = [], []
    if run_dirs:
        demos.append(build_webui(MultiEngine.load(run_dirs, device), max_new_tokens=max_new_tokens))
        names.append("Chat")
    if train or not run_dirs:
        from tunelab.serve.train_ui import build_train_ui

        demos.append(build_train_ui(recipes_dir, runs_root, device, max_new_tokens))
        names.append("Train")
    demo = demos[0] if len(demos) == 1 else tabbed(demos, names)
    return launch(demo, host, port, prevent_thread_lock)


def tabbed(demos: list, names: list[str]):
    """Several pages as the tabs of one."""
    import gradio as gr

    return gr.TabbedInterface(demos, names, title="tunelab", analytics_enabled=False)


def launch(demo, host: str, port: int, prevent_thread_lock: bool = False):
    demo.queue(default_concurrency_limit=1)  # one model, one generation at a time
    return demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, ssr_mode=False,
                       footer_links=[], theme=_theme(), prevent_thread_lock=prevent_thread_lock, quiet=True)
