"""Terminal chat with a trained run: streaming, multi-turn, /reset and /exit."""

from __future__ import annotations

from tunelab.data.schema import Turn
from tunelab.infer.engine import GenerationOptions, load_engine


def chat_loop(run_dir: str, max_new_tokens: int = 256, temperature: float = 0.0) -> None:
    engine = load_engine(run_dir)
    opts = GenerationOptions(max_new_tokens=max_new_tokens, temperature=temperature)
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
        history.append(Turn("user", content=text))
        print("assistant> ", end="", flush=True)
        pieces = []
        for piece in engine.stream(history, opts):
            pieces.append(piece)
            print(piece, end="", flush=True)
        print()
        history.append(engine.template.parse_reply("".join(pieces)))
