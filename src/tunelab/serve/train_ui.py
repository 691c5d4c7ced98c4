"""The web UI's Train tab: pick a recipe, edit its common keys, start and stop a run, watch it, chat with it.

The run is a subprocess (serve/train_process.py); a timer reads its metrics.jsonl each second into the
loss and tokens/s plots. When it ends (its time budget, max_steps, or Stop, which saves) the page shows
its evaluation table, and the chat below talks to it, replies streamed token by token. One run at a
time: a page trains what the machine can.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

import threading  # noqa: E402
import typing  # noqa: E402
from pathlib import Path  # noqa: E402

from tunelab.config import load_config  # noqa: E402
from tunelab.config.schema import MethodConfig  # noqa: E402
from tunelab.data.schema import Turn  # noqa: E402
from tunelab.infer.engine import GenerationOptions, load_engine  # noqa: E402
from tunelab.serve.chat_stream import stream_agent  # noqa: E402
from tunelab.serve.limits import default_max_prompt_tokens  # noqa: E402
from tunelab.serve.train_process import TrainProcess, result_rows  # noqa: E402
from tunelab.utils.errors import TunelabError  # noqa: E402

METHODS = list(typing.get_args(typing.get_type_hints(MethodConfig)["name"]))


def recipe_files(recipes_dir: str | Path) -> list[str]:
    """The YAML recipes the picker offers, sorted."""
    d = Path(recipes_dir)
    return sorted(str(p) for p in d.glob("*.yaml")) if d.is_dir() else []


def recipe_values(recipe: str) -> dict:
    """The form's fields as the recipe sets them."""
    cfg = load_config(recipe)
    join = lambda v: ", ".join(v) if isinstance(v, list) else v  # noqa: E731
    return {"model": cfg.model.name_or_path, "method": cfg.method.name, "rank": cfg.method.r,
            "learning_rate": cfg.train.learning_rate, "time_budget_minutes": cfg.train.time_budget_minutes,
            "max_steps": cfg.train.max_steps, "train_file": join(cfg.data.train_file),
            "dev_file": join(cfg.data.dev_file)}


FIELDS = ["model", "method", "rank", "learning_rate", "time_budget_minutes", "max_steps", "train_file", "dev_file"]


class TrainSession:
    """The page's one run and the chat engine of the last finished one."""

    def __init__(self, runs_root: str | Path, device: str | None = None):
        self.runs_root, self.device = Path(runs_root), device
        self.job: TrainProcess | None = None
        self.engine, self.engine_dir = None, None
        self.lock = threading.Lock()

    def start(self, recipe: str, values: dict) -> TrainProcess:
        with self.lock:
            if self.job is not None and self.job.state in ("running", "stopping"):
                raise TunelabError(f"a run is in progress ({self.job.output_dir}); stop it first")
            self.job = TrainProcess(recipe, values, self.runs_root).start()
            return self.job

    def chat_engine(self):
        """The engine of the current run once it has finished (loaded once); TunelabError before that."""
        job = self.job
        if job is None or job.state != "finished":
            raise TunelabError("no finished run to chat with yet: start a run and wait for it to end (or Stop it)")
        with self.lock:
            if self.engine_dir != job.output_dir:
                self.engine, self.engine_dir = load_engine(job.output_dir, device=self.device), job.output_dir
            return self.engine


def status_line(job: TrainProcess | None, rows: list[dict]) -> str:
    if job is None:
        return "no run yet: pick a recipe, edit its keys, Start"
    last = next((r for r in reversed(rows) if "loss" in r), None)
    parts = [f"**{job.state}**", f"`{job.output_dir}`"]
    if last:
        parts += [f"step {last['step']}", f"loss {last['loss']:.4f}", f"{last.get('tokens_per_s', 0):.0f} tokens/s"]
    if job.state == "failed":
        parts.append(f"\n```\n{job.log_tail()}\n```")
    return " · ".join(parts)


def build_train_ui(recipes_dir: str | Path = "recipes", runs_root: str | Path = "runs", device: str | None = None,
                   max_new_tokens: int = 256, poll_s: float = 1.0):
    """The Train tab as a Gradio Blocks app (not launched)."""
    import gradio as gr
    import pandas as pd

    session = TrainSession(runs_root, device)
    recipes = recipe_files(recipes_dir)
    first = recipe_values(recipes[0]) if recipes else {}
    no_points = pd.DataFrame({"step": [], "loss": [], "tokens_per_s": []})
    no_results = pd.DataFrame([], columns=["metric", "value"])

    def on_recipe(recipe):
        try:
            v = recipe_values(recipe)
        except TunelabError as e:
            raise gr.Error(str(e)) from None
        return [v[f] for f in FIELDS]

    def on_start(recipe, *values):
        if not recipe:
            raise gr.Error("pick a recipe first")
        try:
            job = session.start(recipe, dict(zip(FIELDS, values)))
        except TunelabError as e:  # a bad key or value: one line, nothing started
            raise gr.Error(str(e)) from None
        return status_line(job, []), no_points, no_points, no_results

    def on_stop():
        if session.job is not None:
            session.job.stop()
        return status_line(session.job, session.job.metrics() if session.job else [])

    def on_tick():
        job = session.job
        if job is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        rows = job.metrics()
        points = pd.DataFrame([{"step": r["step"], "loss": r["loss"], "tokens_per_s": r.get("tokens_per_s", 0.0)}
                               for r in rows if "loss" in r], columns=["step", "loss", "tokens_per_s"])
        summary = job.summary() if job.state == "finished" else None
        results = pd.DataFrame(result_rows(summary), columns=["metric", "value"]) if summary else no_results
        return status_line(job, rows), points, points, results

    def on_message(message: str, chat: list, history: list):
        message = (message or "").strip()
        if not message:
            yield "", chat, history
            return
        try:
            engine = session.chat_engine()
        except TunelabError as e:
            raise gr.Error(str(e)) from None
        opts = GenerationOptions(max_new_tokens=max_new_tokens,
                                 max_prompt_tokens=default_max_prompt_tokens(engine.model))
        chat = list(chat or []) + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        try:
            for text, result in stream_agent(engine, [Turn(**t) for t in history], message, opts):
                chat[-1] = {"role": "assistant", "content": text}
                if result is not None:
                    history = history + [_turn_dict(t) for t in result.turns]
                yield "", chat, history
        except Exception as e:  # a prompt too long or a failed generation: say so, keep the page usable
            raise gr.Error(f"{type(e).__name__}: {e}") from None

    with gr.Blocks(title="tunelab: train", analytics_enabled=False) as demo:
        gr.Markdown("### tunelab: train a run, watch it, chat with it")
        with gr.Row():
            with gr.Column(scale=2):
                recipe = gr.Dropdown(recipes, value=recipes[0] if recipes else None, label="recipe",
                                     elem_id="train-recipe", allow_custom_value=True)
                model = gr.Textbox(first.get("model", ""), label="model", elem_id="train-model")
                with gr.Row():
                    method = gr.Dropdown(METHODS, value=first.get("method", "lora"), label="method",
                                         elem_id="train-method")
                    rank = gr.Number(first.get("rank", 8), label="rank", precision=0, elem_id="train-rank")
                with gr.Row():
                    lr = gr.Number(first.get("learning_rate", 2e-4), label="learning rate", elem_id="train-lr")
                    budget = gr.Number(first.get("time_budget_minutes", 0.0), label="time budget (min, 0: none)",
                                       elem_id="train-budget")
                    steps = gr.Number(first.get("max_steps", -1), label="max steps (-1: epochs)", precision=0,
                                      elem_id="train-steps")
                train_file = gr.Textbox(first.get("train_file", ""), label="train file(s), comma-separated",
                                        elem_id="train-file")
                dev_file = gr.Textbox(first.get("dev_file", ""), label="dev file(s)", elem_id="train-dev")
                with gr.Row():
                    start = gr.Button("Start", variant="primary", elem_id="train-start")
                    stop = gr.Button("Stop (saves)", variant="stop", elem_id="train-stop")
            with gr.Column(scale=3):
                status = gr.Markdown(status_line(None, []), elem_id="train-status")
                with gr.Row():
                    loss_plot = gr.LinePlot(no_points, x="step", y="loss", title="training loss", height=220,
                                            elem_id="loss-plot")
                    speed_plot = gr.LinePlot(no_points, x="step", y="tokens_per_s", title="tokens/s", height=220,
                                             elem_id="speed-plot")
                results = gr.Dataframe(no_results, label="evaluation (when the run ends)", interactive=False,
                                       elem_id="train-results")
        history = gr.State([])
        chatbot = gr.Chatbot(label="chat with the run", height=300, elem_id="train-chat")
        with gr.Row():
            box = gr.Textbox(placeholder="Type a message once the run has ended", show_label=False, scale=5,
                             elem_id="train-message", submit_btn=False)
            send = gr.Button("Send", elem_id="train-send", scale=1)
        fields = [model, method, rank, lr, budget, steps, train_file, dev_file]
        recipe.change(on_recipe, recipe, fields)
        start.click(on_start, [recipe, *fields], [status, loss_plot, speed_plot, results])
        stop.click(on_stop, None, status)
        gr.Timer(poll_s).tick(on_tick, None, [status, loss_plot, speed_plot, results], show_progress="hidden")
        send.click(on_message, [box, chatbot, history], [box, chatbot, history])
        box.submit(on_message, [box, chatbot, history], [box, chatbot, history])
    demo.train_session = session  # for tests and the launcher: the page's run
    return demo


def _turn_dict(turn: Turn) -> dict:
    """A Turn as the keyword arguments that rebuild it (gr.State keeps plain data)."""
    import dataclasses

    return {f.name: getattr(turn, f.name) for f in dataclasses.fields(turn)}
