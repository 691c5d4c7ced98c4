"""Which forms a model's replies take, against the gold: what greedy decoding made of the data's reply shares.

    .venv/bin/python benchmarks/reply_forms.py PREDICTIONS [PREDICTIONS ...] [--md OUT.md]

PREDICTIONS: a `predictions.jsonl` of `tunelab evaluate` (or `benchmarks/hotel_real.py`'s eval dir); each row's
"source" (file:line#turn) leads back to its dialog, which must still be where it was evaluated from. Prints one
column per file, over the replies right after a search's records, how they open (predicted and gold): "推荐您去" /
"为您推荐" / "给您推荐" / "建议您去", a hotel's name of those records, or otherwise; and over the answers to a thanks
(gold replies under 20 characters after a user turn with "谢", as `hotel_data_stats.py` counts them) the three
commonest predicted ones and how many are exactly "不客气。" in prediction and gold. Counts only; nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from hotel_data_stats import OPENINGS, answers_thanks, opening

from tunelab.data.readers import read_conversations
from tunelab.utils.errors import DataError

REPLY = "assistant: "


def _turns(source: str, cache: dict) -> tuple[list, int]:
    """The conversation turns and the index of the item's turn, from a "file:line#turn" source."""
    where, turn = source.rsplit("#", 1)
    path, line = where.rsplit(":", 1)
    if path not in cache:
        convs, _ = read_conversations(path)
        cache[path] = {c.source.rsplit(":", 1)[1]: c.turns for c in convs}
    if line not in cache[path]:
        sys.exit(f"{path}: no dialog at line {line}, where {source} was evaluated from; rebuild that file as it was "
                 "evaluated (a later `hotel_real.py --limit-dialogs N` keeps only the first N dialogs)")
    return cache[path][line], int(turn) - 1


def file_forms(path: str | Path) -> dict:
    """Counters of one predictions file: openings after records (pred, gold), thanks answers (pred, gold)."""
    cache: dict = {}
    opens_p, opens_g, thanks_p, thanks_g = Counter(), Counter(), Counter(), Counter()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if not row["label"].startswith(REPLY):
            continue
        gold = row["label"][len(REPLY):]
        pred = row["predict"][len(REPLY):] if row["predict"].startswith(REPLY) else "(not a reply)"
        turns, i = _turns(row["source"], cache)
        before = turns[i - 1]
        if before.role == "tool_result" and before.records:
            names = [r.get("name", "") for r in before.records]
            opens_p[opening(pred, names)] += 1
            opens_g[opening(gold, names)] += 1
        elif answers_thanks(before, gold):
            thanks_p[pred] += 1
            thanks_g[gold] += 1
    return {"opens_p": opens_p, "opens_g": opens_g, "thanks_p": thanks_p, "thanks_g": thanks_g}


def table(paths: list[str], stats: list[dict]) -> str:
    head = "| replies | " + " | ".join("/".join(Path(p).parts[-3:-1]) for p in paths) + " |\n"
    head += "|---|" + "---|" * len(paths) + "\n"
    rows = []
    n = [sum(s["opens_p"].values()) for s in stats]
    rows.append(("right after records", [str(x) for x in n]))
    for o in (*OPENINGS, "with a hotel's name", "other"):
        rows.append((f"open {o}: predicted / gold", [f"{s['opens_p'][o]} / {s['opens_g'][o]}" for s in stats]))
    rows.append(("answers to a thanks", [str(sum(s["thanks_p"].values())) for s in stats]))
    rows.append(("of those \"不客气。\": predicted / gold",
                 [f"{s['thanks_p']['不客气。']} / {s['thanks_g']['不客气。']}" for s in stats]))
    rows.append(("commonest predicted thanks answers",
                 ["; ".join(f"{t} {c}" for t, c in s["thanks_p"].most_common(3)) for s in stats]))
    return head + "".join(f"| {label} | " + " | ".join(cells) + " |\n" for label, cells in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", nargs="+")
    ap.add_argument("--md", help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    try:
        out = table(args.predictions, [file_forms(p) for p in args.predictions])
    except DataError as e:
        sys.exit(str(e))
    print(out)
    if args.md:
        Path(args.md).write_text(f"`python benchmarks/reply_forms.py {' '.join(args.predictions)}`\n\n{out}",
                                 encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
