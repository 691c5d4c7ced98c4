"""Where `tunelab evaluate`'s dialog path spends its time: forward-pass seconds and tokens by pass kind, then
cProfile's top functions by own time.

    .venv/bin/python benchmarks/eval_profile.py RUN DATA [--items 200] [--batch 8]

Draft passes (`_chain_pass`: prompts fed, gold turns checked) and decode passes (`decode_pass`) are told apart by
the caller of the model's forward. Prints only; nothing is written.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections import Counter

from tunelab.data.readers import read_conversations
from tunelab.evaluate.job import eval_items
from tunelab.infer.dialog import generate_dialogs
from tunelab.infer.engine import GenerationOptions, load_engine

KINDS = ("_chain_pass", "decode_pass", "open_cache")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("data")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    engine = load_engine(args.run_dir, device="cpu", merge=True)
    convs, _ = read_conversations(args.data)
    items = eval_items(convs)[: args.items]
    seconds, calls, tokens = Counter(), Counter(), Counter()
    forward = type(engine.model).forward

    def timed_forward(self, *a, **kw):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name not in KINDS:
            frame = frame.f_back
        kind = frame.f_code.co_name if frame else "other"
        start = time.perf_counter()
        out = forward(self, *a, **kw)
        seconds[kind] += time.perf_counter() - start
        calls[kind] += 1
        tokens[kind] += kw["input_ids"].numel() if kw.get("input_ids") is not None else 0
        return out

    type(engine.model).forward = timed_forward
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    _, stats = generate_dialogs(engine, [(c, g) for c, g, _ in items], GenerationOptions(max_new_tokens=args.max_new_tokens),
                                batch_size=args.batch, progress=False)
    profile.disable()
    print(f"generate_dialogs: {time.perf_counter() - start:.1f} s under cProfile; its own figures: {stats}")
    for kind in seconds:
        print(f"{kind}: {calls[kind]} passes, {tokens[kind]} tokens fed, {seconds[kind]:.1f} s")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
