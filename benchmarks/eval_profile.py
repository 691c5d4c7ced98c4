"""Where `tunelab evaluate`'s dialog path spends its time: seconds in draft passes and in decode passes, then
cProfile's top functions by own time.

    .venv/bin/python benchmarks/eval_profile.py RUN DATA [--items 200] [--batch 8]

Draft passes (`infer/dialog._chain_pass`: prompts fed, gold turns checked, forks made) and decode passes
(`spec_decode.decode_pass`) are timed where the dialog path calls them. Prints only; nothing is written.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import Counter

from tunelab.data.readers import read_conversations
from tunelab.evaluate.job import eval_items
from tunelab.infer import dialog
from tunelab.infer.engine import GenerationOptions, load_engine


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
    seconds, calls = Counter(), Counter()

    def timed(name, fn):
        def run(*a, **kw):
            start = time.perf_counter()
            out = fn(*a, **kw)
            seconds[name] += time.perf_counter() - start
            calls[name] += 1
            return out
        return run

    dialog._chain_pass = timed("draft passes", dialog._chain_pass)
    dialog.decode_pass = timed("decode passes", dialog.decode_pass)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    _, stats = dialog.generate_dialogs(engine, [(c, g) for c, g, _ in items],
                                       GenerationOptions(max_new_tokens=args.max_new_tokens), batch_size=args.batch,
                                       progress=False)
    profile.disable()
    print(f"generate_dialogs: {time.perf_counter() - start:.1f} s under cProfile; its own figures: {stats}")
    for name in seconds:
        print(f"{name}: {calls[name]}, {seconds[name]:.1f} s")
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
