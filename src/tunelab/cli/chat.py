"""Terminal chat with a trained run: streaming, multi-turn, /reset and /exit.

When the run was trained for a domain with tools (data.domain), every turn goes through the agent
loop, and the search arguments and the records found are shown as they happen. `--tools my_tools.py` adds
a user's tool functions (tunelab/infer/tools.py); their specs, with the run's training tools, are offered
in the system turn. A turn that fails
(a history grown past the model's context, a generation error) is reported in one line and the
chat goes on.
"""

from __future__ import annotations

import json
import sys

from tunelab.data.schema import Turn
from tunelab.domains import get_domain
from tunelab.infer.agent import FALLBACK, Agent
from tunelab.infer.engine import GenerationOptions, PromptTooLong, load_engine
from tunelab.infer.stream import TurnStream
from tunelab.infer.tools import Toolbox, domain_toolbox, load_tools_module, offered_specs
from tunelab.serve.limits import default_max_prompt_tokens


def _streaming_reply(engine, opts):
    """reply_fn for the agent: streams a plain reply to the terminal, keeps tool calls quiet."""

    def reply(turns: list[Turn]) -> Turn:
        parser, opened = TurnStream(), False

        def show(text: str) -> None:
            nonlocal opened
            if parser.mode == "text" and not opened:
                print("assistant> ", end="")
                opened = True
            if text:
                print(text, end="", flush=True)

        for piece in engine.stream(turns, opts):
            show(parser.feed(piece))
        show(parser.finish())
        if opened:
            print()
        return engine.template.parse_reply(parser.raw)

    return reply


def _show_event(key: str):
    """Print a tool call's arguments and what it found (each record's `key` field), as it happens."""

    def show(e) -> None:
        args = json.dumps(e.arguments, ensure_ascii=False) if e.arguments is not None else "(malformed)"
        print(f"  [{e.name or 'tool'}] {args}")
        if e.error:
            print(f"  [error] {e.error}")
            return
        records = e.records if isinstance(e.records, list) else [e.records]
        shown = [str(r.get(key, "?")) if key and isinstance(r, dict) else json.dumps(r, ensure_ascii=False)[:80]
                 for r in records]
        print(f"  [found {len(shown)}] {', '.join(shown) if shown else '-'}")

    return show


def chat_loop(run_dir: str, max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
              trust_remote_code: bool = False, db: str | None = None, tools: str | None = None,
              base_model: str | None = None) -> None:
    """Chat in the terminal until /exit or end of input; ConfigError for bad options, before loading."""
    opts = GenerationOptions(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    user_tools = load_tools_module(tools) if tools else Toolbox()
    engine = load_engine(run_dir, trust_remote_code=trust_remote_code, db=db, base_model=base_model)
    opts.max_prompt_tokens = default_max_prompt_tokens(engine.model)
    domain = get_domain(engine.domain)
    runnable = domain_toolbox(engine.domain, engine.db).merged(user_tools)
    engine.renderer.tools = offered_specs(engine.renderer.tools, runnable, user_tools)
    agent = Agent(_streaming_reply(engine, opts), runnable.tools, fallback=domain.fallback_reply if domain else FALLBACK,
                  on_event=_show_event(domain.record_key if domain else ""))
    history: list[Turn] = []
    print("tunelab chat: type a message; /reset clears the history, /exit quits.")
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            print()
            return
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            history = []
            continue
        if not text:
            continue
        try:
            result = agent.respond(history, text)
        except PromptTooLong as e:
            print(f"tunelab: error: {e} (/reset clears the history)", file=sys.stderr)
            continue
        except Exception as e:  # a failed generation ends this turn, not the chat
            print(f"\ntunelab: error: generation failed: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        if result.fallback:
            print("assistant> " + result.reply.content)
        history += result.turns
