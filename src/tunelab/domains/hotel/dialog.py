"""Turn-level building blocks for synthesized hotel dialogs.

A `DialogBuilder` appends turns and keeps the dialog state (last search arguments, its records,
the hotel on offer). Assistant texts state only facts read from the records of the last search.
"""

from __future__ import annotations

import random
import sqlite3

from tunelab.domains.hotel.phrasing import facility_phrase, fmt_rating, price_text, short_name, weighted
from tunelab.domains.hotel.tool import DEFAULT_LIMIT, HOTEL_TYPES, VALID_KEYS, search_hotels

LIMIT = DEFAULT_LIMIT
SLOTS = ("price", "phone", "address", "subway", "rating", "type", "facility", "wifi")
SLOT_WEIGHTS = (5, 4, 4, 3, 3, 1, 5, 2)
# {s}: subject (酒店名/这家/它/nothing), {r}: possessive ({s}的), {o}: object (never empty)
QUESTIONS = {
    "price": ("{s}多少钱一晚？", "{r}价格是多少？", "{s}住一晚要多少钱？", "{r}房价贵不贵？", "{s}一晚上多少钱？"),
    "phone": ("{r}电话是多少？", "能告诉我{r}联系电话吗？", "我想打电话预订，{r}号码是多少？", "{r}联系方式有吗？"),
    "address": ("{r}地址在哪儿？", "{s}具体位置在哪里？", "{r}地址是什么？", "{s}在什么地方？"),
    "subway": ("{s}附近有地铁站吗？", "坐地铁去{o}方便吗？", "{s}离哪个地铁站近？", "坐地铁怎么去{o}？"),
    "rating": ("{r}评分多少？", "{r}口碑怎么样？", "{r}评价好吗？"),
    "type": ("{s}是什么档次的酒店？", "{s}属于什么类型？"),
    "wifi": ("{s}有wifi吗？", "{s}能连wifi吗？", "{r}房间里有无线网吗？"),
}
CLOSING_USERS = ("好的，谢谢。", "好的，谢谢你了。", "谢谢，没有其他问题了。", "好的，谢谢了。", "好的，谢谢", "好的，谢谢！",
                 "行，就订这家了，谢谢。", "知道了，多谢。", "好的，没有其他问题了，谢谢。", "太好了，谢谢你！",
                 "太好啦，非常感谢，有问题再找你。", "可以，就这样吧，谢谢。")
# (weight, reply): the plain "不客气。" is what real wizards say most (44% of the real dev set's closing replies,
# docs/hotel_data.md); greedy decoding says a turn's commonest form, so it must be the commonest here too
# and no other form opens with "不客气": with "不客气，祝您…" in 2 of 10 closings that open so, a model trained 883 steps
# said "不客气，祝您入住愉快！" to 23 of 27 real thanks (benchmarks/reply_forms.py; README, hotel levers)
CLOSING_REPLIES = ((8, "不客气。"), (3, "不用客气！"), (1, "不用谢！"), (1, "祝您入住愉快！"), (1, "好的，祝您入住愉快！"),
                   (1, "很高兴为您服务，祝您入住愉快！"), (1, "不用谢，有需要随时找我。"))
ACKS = ("", "", "", "好的，", "听起来不错，", "嗯，", "行，")


def _plain(facility: str) -> bool:
    """Whether '提供X'/'有X' reads naturally (not for names like 所有房间提供wifi, 早餐服务免费)."""
    return "提供" not in facility and "免费" not in facility and facility != "接待外宾"


def canonical(args: dict) -> dict:
    """Arguments in schema key order, so the same request always serializes the same way."""
    return {k: args[k] for k in VALID_KEYS if k in args}


class DialogBuilder:
    """Accumulates the turns of one dialog; `search` runs the real tool on the database."""

    def __init__(self, rng: random.Random, conn: sqlite3.Connection, catalogue: list[str]):
        self.rng, self.conn, self.catalogue = rng, conn, catalogue
        self.turns: list[dict] = []
        self.args: dict = {}
        self.records: list[dict] = []
        self.offered: dict | None = None
        self.asked: set[tuple[str, str]] = set()

    # --- raw turns -------------------------------------------------------------------------
    def user(self, text: str) -> None:
        self.turns.append({"role": "user", "content": text})

    def assistant(self, text: str) -> None:
        self.turns.append({"role": "assistant", "content": text})

    def probe(self, args: dict) -> list[dict]:
        """Run the tool without recording a turn (used to plan the dialog)."""
        result = search_hotels(self.conn, canonical(args), limit=LIMIT)
        if not result["ok"]:
            raise AssertionError(f"synthesizer built invalid arguments: {result['error']}")
        return result["records"]

    def search(self, args: dict) -> list[dict]:
        args = canonical(args)
        records = self.probe(args)
        self.turns.append({"role": "search", "arguments": args})
        self.turns.append({"role": "return", "records": records})
        self.args, self.records = args, records
        return records

    # --- facts -----------------------------------------------------------------------------
    def facts(self, h: dict, k: int, skip: tuple[str, ...] = ()) -> str:
        """k short facts about hotel h, e.g. '每晚815元，评分4.5分'; marks them as told."""
        options = [("type", f"它是{h['type']}酒店")] if h["type"] else []
        if h["rating"] is not None:
            options.append(("rating", f"评分{fmt_rating(h['rating'])}分"))
        if h["price"] is not None:
            options += [("price", f"每晚{h['price']}元")] * 2  # price is what people ask first
        if h["address"]:
            options.append(("address", f"地址在{h['address']}"))
        picked: list[tuple[str, str]] = []
        for slot, fact in self.rng.sample(options, len(options)):
            if slot not in skip and (slot, fact) not in picked:
                picked.append((slot, fact))
        self.asked.update((h["name"], slot) for slot, _ in picked[:k])
        return "，".join(fact for _, fact in picked[:k])

    def recommend(self) -> None:
        """Offer a hotel from the last (non-empty) records with one or two facts about it."""
        recs, rng = self.records, self.rng
        self.offered = recs[0]  # always the best rated: a policy the model can learn from the records
        h = self.offered
        # the goal dialogs' leading form leads here too (goals.ONE_HOTEL: greedy decoding says the likeliest)
        opener = weighted(rng, ((8, "推荐您去{n}"), (2, "为您推荐{n}"), (1, "{n}比较符合您的要求"), (1, "可以考虑{n}"),
                                (1, "建议您去{n}"), (1, "{n}是一个不错的选择"))).format(n=h["name"])
        skip = ("type",) if "type" in self.args else ()  # the user already fixed the type
        facts = self.facts(h, rng.choice((0, 0, 1, 2)), skip)
        if not facts and opener.startswith("推荐您去"):
            opener += "住宿"
        text = f"{opener}，{facts}。" if facts else f"{opener}。"
        if len(recs) >= 3 and rng.random() < 0.3:
            others = "、".join(r["name"] for r in recs[:3] if r is not h)
            count = "好几" if len(recs) >= LIMIT else str(len(recs))  # the tool shows at most LIMIT
            text = rng.choice((f"符合条件的有好几家，比如{others}。", f"找到{count}家符合要求的酒店。")) + text
        wanted = [f for f in self.args.get("facilities", []) if f in h["facilities"]]
        if wanted and rng.random() < 0.4:
            text += f"这家的设施包括{'、'.join(wanted[:2])}。"
        self.assistant(text)

    def describe(self, h: dict) -> str:
        """A short profile of hotel h (the facts it states count as told)."""
        form = self.rng.randrange(3)  # pick the form first: facts() records what it says
        if form != 1:
            self.asked.add((h["name"], "type"))
        if form == 0:
            return f"{h['name']}是一家{h['type']}酒店，{self.facts(h, 2, skip=('type',))}。"
        if form == 1:
            return f"查到了，{h['name']}，{self.facts(h, 3)}。"
        return f"{h['name']}：{h['type']}，{self.facts(h, 2, skip=('type',))}。"

    def answer(self, h: dict, slot: str, facility: str | None = None) -> str:
        """Answer one slot about hotel h from its record (and remember it was told)."""
        rng, name = self.rng, h["name"]
        self.asked.add((name, f"facility:{facility}" if slot == "facility" else slot))
        if slot == "price":
            if h["price"] is None:
                return f"抱歉，{name}暂时没有价格信息，您可以打电话{h['phone']}问一下。"
            return rng.choice((f"每晚{h['price']}元。", f"价格是{h['price']}元一晚。", f"{name}每晚{h['price']}元。"))
        if slot == "phone":
            return rng.choice((f"电话是{h['phone']}。", f"{name}的电话是{h['phone']}。", f"您可以拨打{h['phone']}预订。"))
        if slot == "address":
            return rng.choice((f"地址是{h['address']}。", f"{name}位于{h['address']}。", f"在{h['address']}。"))
        if slot == "subway":
            if not h["subway"]:
                return "抱歉，没有查到附近的地铁站信息。"
            return rng.choice((f"离{h['subway']}很近。", f"可以坐地铁到{h['subway']}。", f"最近的地铁站是{h['subway']}。"))
        if slot == "rating":
            r = h["rating"]
            if r is None:
                return f"抱歉，{name}暂时没有评分。"
            comment = "口碑很不错。" if r >= 4.7 else "评价还可以。" if r >= 4.3 else "评价一般。"
            return rng.choice((f"评分{fmt_rating(r)}分。", f"这家评分是{fmt_rating(r)}分，{comment}"))
        if slot == "type":
            return f"{name}是{h['type']}酒店。"
        if slot == "wifi":  # the record says where wifi is, e.g. 公共区域和部分房间提供wifi
            wifi = [f for f in h["facilities"] if "wifi" in f.lower()]
            if wifi:
                return rng.choice((f"有的，这家酒店{wifi[0]}。", f"{name}{wifi[0]}。"))
            return "抱歉，这家酒店的设施里没有wifi。"
        if facility in h["facilities"]:
            if _plain(facility):
                return rng.choice((f"有的，{name}提供{facility}。", f"有，这家酒店有{facility}。"))
            return rng.choice((f"有的，{name}的设施里有“{facility}”。", f"是的，这家酒店有“{facility}”。"))
        if _plain(facility):
            return rng.choice((f"抱歉，这家酒店没有{facility}。", f"没有，{name}不提供{facility}。"))
        return rng.choice((f"抱歉，这家酒店的设施里没有“{facility}”。", f"没有，{name}没有“{facility}”这项。"))

    def question(self, h: dict, slot: str, facility: str | None, by_name: bool, ref: str | None = None) -> str:
        """A user question about one slot of hotel h (by `ref` or name, '这家', or implicit)."""
        rng = self.rng
        if ref is None:
            ref = h["name"] if by_name else rng.choice(("", "", "这家", "它"))
        by_name = by_name or bool(ref and ref not in ("这家", "它"))
        if slot == "facility":
            lead = rng.choice(("", "请问", "这家", "酒店")) if not by_name else ref
            return f"{lead}{facility_phrase(rng, facility)}吗？"
        template = rng.choice(QUESTIONS[slot])
        return template.format(s=ref, r=f"{ref}的" if ref else "", o=ref or "那儿")

    def pick_facility(self, h: dict) -> str | None:
        """A facility to ask about: half the time one the hotel has, else one it lacks; not one
        already asked or required (wifi variants go through the 'wifi' slot). None if none left."""
        askable = [f for f in self.catalogue if "wifi" not in f.lower()]
        fresh = [f for f in askable if (h["name"], f"facility:{f}") not in self.asked
                 and f not in self.args.get("facilities", [])]
        fresh = fresh or askable  # everything asked: a repeat beats no question
        has = [f for f in fresh if f in h["facilities"]]
        lacks = [f for f in fresh if f not in h["facilities"]]
        pool = has if (has and (not lacks or self.rng.random() < 0.5)) else lacks
        return self.rng.choice(pool) if pool else None

    def followups(self, n: int) -> None:
        """n user questions about the offered hotel (or another listed one), answered from records."""
        rng = self.rng
        for i in range(n):
            h, by_name = self.offered, rng.random() < 0.15
            if len(self.records) > 1 and rng.random() < 0.15:
                h, by_name = rng.choice([r for r in self.records if r is not self.offered]), True
            slots = [s for s in SLOTS if s == "facility" or (h["name"], s) not in self.asked]  # no re-asking
            if not [f for f in self.catalogue if "wifi" not in f.lower()]:
                slots.remove("facility")
            weights = [SLOT_WEIGHTS[SLOTS.index(s)] for s in slots]
            chosen = rng.choices(slots, weights=weights)[0]
            pairs = [(chosen, self.pick_facility(h) if chosen == "facility" else None)]
            if rng.random() < 0.2:
                second = rng.choice([s for s in slots if s not in ("facility", chosen)] or ["facility"])
                if second != chosen:
                    pairs.append((second, self.pick_facility(h) if second == "facility" else None))
            q = "".join(self.question(h, s, f, by_name and j == 0) for j, (s, f) in enumerate(pairs))
            self.user((rng.choice(ACKS) if i == 0 else "") + q)
            self.assistant("".join(self.answer(h, s, f) for s, f in pairs))
            self.asked.update((h["name"], s) for s, _ in pairs)
            self.offered = h

    def relax(self) -> bool:
        """After an empty result: suggest one relaxation that finds hotels, the user takes it,
        and the builder searches again. False when no single relaxation helps."""
        rng = self.rng
        options = self.relax_options(self.args)
        sorry = rng.choice(("抱歉，没有找到符合条件的酒店", "不好意思，按您的要求没有查到合适的酒店",
                            "抱歉，没有同时满足这些条件的酒店"))
        if not options:
            self.assistant(f"{sorry}，您可以换个条件再试试。")
            return False
        new, suggestion, reply = rng.choice(options)
        self.assistant(f"{sorry}，您可以{suggestion}。")
        self.user(reply)
        self.search(new)
        return True

    def relax_options(self, args: dict) -> list[tuple[dict, str, str]]:
        """Single relaxations of args that find hotels: (new args, suggestion, user reply)."""
        rng = self.rng
        options = []
        if "price_range_upper" in args:
            for cap in (300, 500, 800, 1000, 1500, 2000, 3000):
                if cap > args["price_range_upper"]:
                    new = {**args, "price_range_upper": cap}
                    if self.probe(new):
                        p = price_text(rng, cap)
                        options.append((new, f"把预算提高到{cap}元以内试试",
                                        rng.choice((f"那{p}以内的呢？", f"好吧，预算提高到{p}。", f"那就{p}以内吧。"))))
                        break
        if "rating_range_lower" in args:
            for r in (4.5, 4.0, 3.5):
                if r < args["rating_range_lower"]:
                    new = {k: v for k, v in args.items() if k != "rating_range_upper"} | {"rating_range_lower": r}
                    if self.probe(new):
                        options.append((new, f"把评分要求降到{fmt_rating(r)}分以上",
                                        rng.choice((f"那{fmt_rating(r)}分以上的也行。", f"评分{fmt_rating(r)}以上就可以。"))))
                        break
        for f in args.get("facilities", []):
            rest = [x for x in args["facilities"] if x != f]
            new = {k: v for k, v in args.items() if k != "facilities"} | ({"facilities": rest} if rest else {})
            if self.probe(new):
                options.append((new, f"去掉“{f}”这个要求", rng.choice((f"那不要{f}也行。", f"{f}没有也可以。"))))
        if "type" in args:
            for t in HOTEL_TYPES:
                new = {**args, "type": t}
                if t != args["type"] and self.probe(new):
                    options.append((new, f"换成{t}酒店看看", rng.choice((f"那{t}的呢？", f"换成{t}的也行。"))))
        return options

    def close(self) -> None:
        self.user(self.rng.choice(CLOSING_USERS))
        self.assistant(weighted(self.rng, CLOSING_REPLIES))


def mention(builder: DialogBuilder, h: dict) -> str:
    """How a user names hotel h: its short core when that finds exactly it, else the full name."""
    core = short_name(h["name"])
    if core and builder.rng.random() < 0.5 and [r["name"] for r in builder.probe({"name": core})] == [h["name"]]:
        return core
    return h["name"]
