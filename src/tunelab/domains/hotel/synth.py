"""Synthesize hotel-booking dialogs grounded in the hotel database, and split them 8:1:1.

`synthesize(db_path, n, seed)` promises: the same (database, n, seed) gives the same dialogs; every
search turn's arguments validate and its return turn holds exactly what `search_hotels` returns
for them (limit 5); every dialog ends with an assistant turn; no two dialogs have the same turns.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tunelab.domains.hotel.db import connect
from tunelab.domains.hotel.dialog import LIMIT, DialogBuilder, mention
from tunelab.domains.hotel.goals import goal_dialog
from tunelab.domains.hotel.phrasing import (
    brand_name,
    facility_phrase,
    price_phrase,
    rating_phrase,
    request_sentence,
    short_name,
)
from tunelab.domains.hotel.tool import HOTEL_TYPES
from tunelab.utils.errors import DataError

KINDS = ("by_type", "by_price", "by_type_price", "by_facility", "by_rating", "by_name", "multi_search", "no_result",
         "goal")
# goal dialogs (goals.py) are shaped like real guests' dialogs and are most of the mix; real dialogs hold 1.08
# searches each (docs/hotel_data.md), so dialogs of several searches are few; goal dialogs open by a hotel's name
# too (goals.FIRST_NAME), so by_name (its short names, brands and missing names) is 5 of 100: 9% of first turns
# search by name (real: 6%)
KIND_WEIGHTS = (3, 3, 5, 5, 3, 5, 4, 4, 68)
CLOSING_SHARE = 0.35
N_RARE = 8  # the least common facilities of the database drive "nothing found" requests


def _load_hotels(conn) -> list[dict]:
    facilities = defaultdict(list)
    for hid, f in conn.execute("SELECT hotel_id, facility FROM facilities ORDER BY hotel_id, pos"):
        facilities[hid].append(f)
    return [{"name": n, "type": t, "price": p, "rating": r, "facilities": facilities[i]}
            for i, n, t, p, r in conn.execute("SELECT id, name, type, price, rating FROM hotels ORDER BY id")]


# --- constraint parts: (args, attributive text, clause text) ---------------------------------
def _price_part(rng: random.Random, price: int) -> tuple[dict, str, str]:
    # real searches hold a 100-wide band (88%) or a floor (12%), never a bare cap; but guests of a booking
    # assistant say "800元以下", and at 1 in 10 of these phrases (93 caps in 1,431 priced train searches) two runs
    # read both test caps as floors: 3 in 10 here, none in the goal dialogs
    mode = rng.choices(("cap", "range", "floor"), weights=(3, 6, 1))[0]
    lower = upper = None
    if mode == "cap":
        upper = max(100, -(-price // 50) * 50 + rng.choice((0, 0, 50, 100)))  # round up to a 50
    else:
        lower = max(100, price // 100 * 100) if price >= 100 else 50
        upper = lower + 100 if mode == "range" else None
    args = {k: v for k, v in (("price_range_lower", lower), ("price_range_upper", upper)) if v is not None}
    return args, price_phrase(rng, lower, upper, False), price_phrase(rng, lower, upper, True)


def _rating_part(rng: random.Random, rating: float) -> tuple[dict, str, str]:
    # real searches ask 4.5分以上 (60%), 4分以上 (17%) or exactly 5分 (23%): no other floor, no band
    if rating >= 5.0 and rng.random() < 0.5:
        return ({"rating_range_lower": 5.0, "rating_range_upper": 5.0}, rng.choice(("评分5分", "评分是5分")),
                rng.choice(("评分要5分的", "评分要满分5分")))
    r = 4.5 if rating >= 4.5 and rng.random() < 0.75 else 4.0 if rating >= 4.0 else 3.5
    return {"rating_range_lower": r}, rating_phrase(rng, r, None, False), rating_phrase(rng, r, None, True)


def _facility_parts(rng: random.Random, facilities: list[str], k: int) -> list[tuple[dict, str, str]]:
    chosen = rng.sample(facilities, min(k, len(facilities)))
    parts = []
    for i, f in enumerate(chosen):
        lead = rng.choice(("最好", "要", "需要", "希望")) if i == 0 else rng.choice(("还要", "另外要", "而且"))
        phrase = facility_phrase(rng, f)
        parts.append(({"facilities": [f]}, phrase, lead + phrase))
    return parts


def _merge(htype: str | None, parts: list) -> dict:
    """The search arguments a request made of `parts` states (facility lists concatenate)."""
    args: dict[str, Any] = {"type": htype} if htype else {}
    for part_args, _attr, _clause in parts:
        for k, v in part_args.items():
            args[k] = args.get(k, []) + v if k == "facilities" else v
    return args


def _request(b: DialogBuilder, htype: str | None, parts: list) -> None:
    """Say the request built from parts (all attributive or all clauses) and search it."""
    as_clauses = b.rng.random() < 0.5
    texts = [clause if as_clauses else attr for _args, attr, clause in parts]
    b.user(request_sentence(b.rng, htype, [] if as_clauses else texts, texts if as_clauses else []))
    b.search(_merge(htype, parts))


def _constraint_request(b: DialogBuilder, kind: str, hotels: list[dict]) -> None:
    rng = b.rng
    priced = [h for h in hotels if h["price"] is not None] or hotels
    target = rng.choice(priced if kind in ("by_price", "by_type_price") else hotels)
    htype, parts = None, []
    if kind in ("by_type", "by_type_price") or (kind in ("by_facility", "by_rating") and rng.random() < 0.4):
        htype = target["type"]
    if kind in ("by_price", "by_type_price") or (kind == "by_rating" and rng.random() < 0.3):
        if target["price"] is not None:
            parts.append(_price_part(rng, target["price"]))
    if kind == "by_rating":
        parts.append(_rating_part(rng, target["rating"]))
    if kind == "by_facility":
        parts += _facility_parts(rng, target["facilities"], rng.choice((1, 1, 2)))  # real: at most two
    if not parts and htype is None:
        htype = target["type"]
    _request(b, htype, parts)


def _offer_and_ask(b: DialogBuilder, followups: tuple[int, ...]) -> None:
    if not b.records and not b.relax():
        return
    if b.records:
        b.recommend()
        b.followups(b.rng.choice(followups))


def _modify(b: DialogBuilder, hotels: list[dict]) -> None:
    """A later search that adds to the running request (type, facility, rating) and carries the rest, or asks
    for a hotel by name. Real follow-up searches do just these two (docs/hotel_data.md); a changed value is a
    correction, which goals.py says in words."""
    rng, args = b.rng, dict(b.args)
    if "name" in args:
        args = {}
    moves = ["facility", "facility", "name"] if len(args.get("facilities", [])) < 2 else ["name"]
    moves += ["type"] * ("type" not in args) + ["rating"] * ("rating_range_lower" not in args)
    move = rng.choice(moves)
    if move == "type":
        t = rng.choice(HOTEL_TYPES)
        args["type"] = t
        b.user(rng.choice((f"有没有{t}的？", f"换成{t}的看看呢？", f"那{t}酒店有推荐的吗？")))
    elif move == "facility":
        pool = [f for r in b.records for f in r["facilities"] if f not in args.get("facilities", [])]
        f = rng.choice(pool or b.catalogue)
        args["facilities"] = args.get("facilities", []) + [f]
        p = facility_phrase(rng, f)
        b.user(rng.choice((f"最好还要{p}。", f"我还需要{p}的。", f"要是{p}就更好了，有吗？")))
    elif move == "rating":
        r = rng.choice((4.0, 4.5, 4.5))
        args["rating_range_lower"] = r
        b.user(rng.choice(("评分高一点的有吗？", "我想要口碑好点的，", "还有，要")) + rating_phrase(rng, r, None, False) + "的。")
    else:
        listed = {r["name"] for r in b.records}
        # a hotel already listed is answered from the records, so ask about an unlisted one
        target = rng.choice([x for x in hotels if x["name"] not in listed] or hotels)
        m = mention(b, target)
        args = {"name": m}
        b.user(rng.choice((f"那{m}呢？", f"{m}怎么样？", f"{m}也帮我看看。")))
        recs = b.search(args)
        if recs:
            b.offered = next((r for r in recs if r["name"] == target["name"]), recs[0])
            b.assistant(b.describe(b.offered))
            b.followups(rng.choice((0, 1, 1)))
            return
        b.assistant(f"抱歉，没有查到{m}。")
        return
    b.search(args)
    _offer_and_ask(b, (0, 1, 1))


def _flow_by_name(b: DialogBuilder, hotels: list[dict]) -> str:
    rng = b.rng
    variant = rng.choices(("full", "short", "brand", "missing"), weights=(35, 30, 20, 15))[0]
    target = rng.choice(hotels)
    if variant == "brand":
        brands = sorted({br for h in hotels if (br := brand_name(h["name"]))})
        if brands:
            brand = rng.choice(brands)
            b.user(rng.choice((f"我比较喜欢住{brand}，有推荐的吗？", f"{brand}的酒店有哪些？", f"帮我找找{brand}的店。")))
            recs = b.search({"name": brand})
            listing = "、".join(f"{r['name']}（评分{r['rating']}分）" for r in recs[:3])
            b.assistant(f"为您找到这几家：{listing}。您想了解哪一家？")
            b.offered = rng.choice(recs[:3])
            b.user(rng.choice(("那就{n}吧，", "{n}，")).format(n=b.offered["name"]) + b.question(b.offered, "price", None, False))
            b.assistant(b.answer(b.offered, "price"))
            b.followups(rng.choice((0, 1, 2)))
            return "by_name"
        variant = "full"
    if variant == "missing":
        fake = None
        for _ in range(20):  # an invented name the database does not contain
            candidate = f"北京{rng.choice('华京鑫瑞泰宏锦')}{rng.choice(('苑宾馆', '悦大酒店', '庭酒店', '都饭店'))}"
            if not b.probe({"name": candidate}):
                fake = candidate
                break
        if fake:
            b.user(rng.choice((f"{fake}怎么样？", f"帮我查一下{fake}。", f"{fake}的电话是多少？")))
            b.search({"name": fake})
            b.assistant(f"抱歉，没有查到{fake}，请确认一下酒店名称，或者告诉我您对酒店的要求，我帮您推荐。")
            _constraint_request(b, rng.choice(("by_type", "by_type_price", "by_facility")), hotels)
            _offer_and_ask(b, (0, 1, 2))
            return "by_name"
    m = target["name"]
    if variant == "short" and (core := short_name(target["name"])):
        if target["name"] in [r["name"] for r in b.probe({"name": core})]:
            m = core
    slot = rng.choice((None, None, "phone", "price", "address", "facility"))
    facility = b.pick_facility(target) if slot == "facility" else None
    if slot == "facility" and facility is None:
        slot = None
    if slot is None:
        b.user(rng.choice((f"{m}怎么样？", f"帮我查一下{m}。", f"我想了解一下{m}。", f"{m}这家酒店怎么样？")))
    elif slot == "facility":
        b.user(f"{m}{facility_phrase(rng, facility)}吗？")
    else:
        b.user(b.question(target, slot, None, True, ref=m))
    recs = b.search({"name": m})
    if len(recs) > 1 and m != target["name"]:
        names = "、".join(r["name"] for r in recs)
        count = "好几" if len(recs) >= LIMIT else str(len(recs))  # the tool shows at most LIMIT
        b.assistant(f"找到{count}家名字里带“{m}”的酒店：{names}。请问您问的是哪一家？")
        b.user(rng.choice(("{n}。", "是{n}。", "{n}那家。")).format(n=target["name"]))
    b.offered = next((r for r in recs if r["name"] == target["name"]), recs[0])
    b.assistant(b.describe(b.offered) if slot is None else b.answer(b.offered, slot, facility))
    b.followups(rng.choice((0, 1, 1, 2)))
    return "by_name"


def _flow_no_result(b: DialogBuilder, hotels: list[dict], rare_pool: list[str]) -> str:
    rng = b.rng
    for _ in range(20 if len(rare_pool) >= 2 else 0):
        t = rng.choice(HOTEL_TYPES)
        rare = rng.sample(rare_pool, 2)
        parts = rng.choice((
            [({"price_range_upper": 200}, *(price_phrase(rng, None, 200, c) for c in (False, True)))],
            [({"facilities": [f]}, facility_phrase(rng, f), "要" + facility_phrase(rng, f)) for f in rare],
            [({"rating_range_lower": 5.0, "rating_range_upper": 5.0},  # "5分" is exact, as the annotation has it
              rating_phrase(rng, 5.0, None, False), rating_phrase(rng, 5.0, None, True)),
             ({"facilities": [rare[0]]}, facility_phrase(rng, rare[0]), "要" + facility_phrase(rng, rare[0]))],
        ))
        args = _merge(t, parts)
        if not b.probe(args) and b.relax_options(args):  # empty, yet one relaxation finds hotels
            _request(b, t, parts)
            _offer_and_ask(b, (0, 1, 2))
            return "no_result"
    _constraint_request(b, "by_facility", hotels)
    _offer_and_ask(b, (0, 1, 2))
    return "by_facility"


def _one_dialog(rng: random.Random, conn, hotels: list[dict], catalogue: list[str],
                rare: list[str]) -> tuple[str, list[dict]]:
    b = DialogBuilder(rng, conn, catalogue)
    kind = rng.choices(KINDS, weights=KIND_WEIGHTS)[0]
    if kind == "goal":
        goal_dialog(b, hotels)
    elif kind == "by_name":
        kind = _flow_by_name(b, hotels)
    elif kind == "no_result":
        kind = _flow_no_result(b, hotels, rare)
    else:
        first = rng.choice(KINDS[:5]) if kind == "multi_search" else kind
        _constraint_request(b, first, hotels)
        _offer_and_ask(b, (0, 1, 1, 2) if kind == "multi_search" else (0, 1, 1, 2, 2))
        if kind == "multi_search":
            for _ in range(rng.choice((1, 1, 2))):
                _modify(b, hotels)
    if rng.random() < CLOSING_SHARE:
        b.close()
    return kind, b.turns


def synthesize(db_path: str | Path, n: int, seed: int = 0) -> list[dict]:
    """Return n dialogs {"id", "kind", "dialog": [turns]} grounded in the database at db_path."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise DataError(f"dialog count n must be a non-negative integer, got {n!r}")
    conn = connect(db_path)
    try:
        hotels = _load_hotels(conn)
        if not hotels:
            raise DataError(f"{db_path}: hotel database is empty")
        freq = Counter(f for h in hotels for f in h["facilities"])
        catalogue = sorted(freq)
        rare = sorted(catalogue, key=lambda f: (freq[f], f))[:N_RARE]
        rng, seen, dialogs = random.Random(seed), set(), []
        for _attempt in range(n * 20 + 10):
            if len(dialogs) == n:
                break
            kind, turns = _one_dialog(rng, conn, hotels, catalogue, rare)
            key = json.dumps(turns, ensure_ascii=False, sort_keys=True)
            if key in seen:
                continue  # identical dialogs would leak across splits
            seen.add(key)
            dialogs.append({"id": f"hotel-s{seed}-{len(dialogs):05d}", "kind": kind, "dialog": turns})
        if len(dialogs) < n:
            raise DataError(f"{db_path}: could not synthesize {n} distinct dialogs (got {len(dialogs)}); "
                            "use a larger database or fewer dialogs")
    finally:
        conn.close()
    return dialogs
