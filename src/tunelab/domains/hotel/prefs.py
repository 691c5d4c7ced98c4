"""Hotel preference pairs: the synthesizer's correct next turn as chosen, a realistic mistake as rejected.

Mistakes (the hotel model's known ones, README): a dropped facility, price lower/upper swapped, answering
from the old records when a new search is due; and replies that cite a hotel not in the records, or a
wrong phone number or price. Each target turn of a synthesized dialog gives at most one pair, its mistake
drawn among those that apply to it; `kind` names the mistake.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from tunelab.domains.hotel.db import connect
from tunelab.domains.hotel.synth import synthesize


def _search_mistakes(args: dict, context: list[dict]) -> dict[str, dict]:
    out = {}
    if len(args.get("facilities") or []) >= 2:
        out["dropped_facility"] = {"role": "search", "arguments": {**args, "facilities": args["facilities"][:-1]}}
    lo, hi = args.get("price_range_lower"), args.get("price_range_upper")
    if lo is not None and hi is not None and lo != hi:
        out["price_swapped"] = {"role": "search", "arguments": {**args, "price_range_lower": hi, "price_range_upper": lo}}
    elif (lo is None) != (hi is None):  # a cap read as a floor, or the other way round
        key, other = ("price_range_lower", "price_range_upper") if lo is not None else ("price_range_upper", "price_range_lower")
        swapped = {k: v for k, v in args.items() if k != key}
        out["price_swapped"] = {"role": "search", "arguments": {**swapped, other: args[key]}}
    old = next((t["records"] for t in reversed(context) if t.get("role") == "return" and t.get("records")), None)
    if old:  # a new search is due, but the model answers from the records it already has
        h = old[0]
        out["stale_records"] = {"role": "assistant", "content": f"推荐您{h['name']}，每晚{h.get('price')}元，评分{h.get('rating')}。"}
    return out


def _reply_mistakes(reply: str, records: list[dict], names: list[str], rng: random.Random) -> dict[str, dict]:
    out = {}
    cited = [h for h in records if h.get("name") and h["name"] in reply]
    if cited:
        others = [n for n in names if n not in {h["name"] for h in records}]
        if others:
            out["unknown_hotel"] = {"role": "assistant", "content": reply.replace(cited[0]["name"], rng.choice(others))}
        phone = cited[0].get("phone")
        if phone and phone in reply:
            digits = list(phone)
            i = max(j for j, c in enumerate(digits) if c.isdigit())
            digits[i] = str((int(digits[i]) + rng.randint(1, 8)) % 10)
            out["wrong_phone"] = {"role": "assistant", "content": reply.replace(phone, "".join(digits))}
        price = cited[0].get("price")
        if price is not None and re.search(rf"(?<!\d){price}(?!\d)", reply):
            wrong = str(int(price) + rng.choice([-1, 1]) * rng.randint(50, 300))
            out["wrong_price"] = {"role": "assistant", "content": re.sub(rf"(?<!\d){price}(?!\d)", wrong, reply, count=1)}
    return out


def preference_pairs(db: str, n: int, seed: int = 0) -> tuple[list[dict], dict]:
    """About `n` pairs `{"messages": hotel turns, "chosen", "rejected", "kind"}` from dialogs synthesized on
    `db` (seeded), and a report counting pairs per mistake kind."""
    rng = random.Random(seed)
    names = [r[0] for r in connect(db).execute("SELECT name FROM hotels").fetchall()]
    pairs, kinds = [], Counter()
    batch = 0
    while len(pairs) < n and batch < 20:  # the synthesizer drops duplicates: ask again with a new seed
        for dialog in synthesize(db, max(n // 2, 8), seed=seed + 1000 * batch):
            turns = dialog["dialog"] if isinstance(dialog, dict) else dialog
            for i, turn in enumerate(turns):
                context = turns[:i]
                if turn["role"] == "search":
                    options = _search_mistakes(turn["arguments"], context)
                elif turn["role"] == "assistant":
                    records = next((t["records"] for t in reversed(context) if t["role"] == "return"), None) or []
                    options = _reply_mistakes(turn["content"], records, names, rng)
                else:
                    continue
                if not options or not context:
                    continue
                kind = rng.choice(sorted(options))
                pairs.append({"messages": context, "chosen": turn, "rejected": options[kind], "kind": kind})
                kinds[kind] += 1
                if len(pairs) >= n:
                    break
            if len(pairs) >= n:
                break
        batch += 1
    return pairs, {"pairs": len(pairs), "kinds": dict(sorted(kinds.items()))}
