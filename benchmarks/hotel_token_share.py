"""Where a hotel training dialog's tokens go: user, assistant, search call, tool results, and the facility lists
inside the results, in the table rendering `make run` trains on (gemma3's tokenizer by default).

    .venv/bin/python benchmarks/hotel_token_share.py data/hotel/train.jsonl [--n 300] [--model gemma3-270m]
"""

from __future__ import annotations

import argparse
import json

from tunelab.data.template import compact_records
from tunelab.models import load_tokenizer, resolve_model_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--n", type=int, default=300, help="first N dialogs")
    ap.add_argument("--model", default="gemma3-270m")
    args = ap.parse_args()
    tok = load_tokenizer(resolve_model_dir(args.model))
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    totals = {"user": 0, "assistant": 0, "search": 0, "return": 0, "facilities in returns": 0}
    with open(args.file, encoding="utf-8") as f:
        for _, line in zip(range(args.n), f):
            for turn in json.loads(line)["dialog"]:
                role = turn["role"]
                if role == "return":
                    totals[role] += count(compact_records(turn["records"]))
                    totals["facilities in returns"] += sum(count(",".join(r["facilities"])) for r in turn["records"])
                elif role == "search":
                    totals[role] += count(json.dumps(turn["arguments"], ensure_ascii=False))
                else:
                    totals[role] += count(turn["content"])
    whole = sum(v for k, v in totals.items() if k != "facilities in returns")
    print(f"{args.n} dialogs of {args.file}, {whole} tokens of turn text (template tokens not counted)")
    for k, v in totals.items():
        print(f"{k}: {v} ({100 * v / whole:.1f}%)")


if __name__ == "__main__":
    main()
