"""Goal-driven hotel dialogs: how guests in crowd-sourced booking dialogs talk, written from scratch.

A guest arrives with a goal: one to three constraints about one hotel (type, one or two facilities said by
their database names or colloquially, a price band such as 300-400元 or "1000元以上", a rating floor such as
4.5分以上 or exactly 5分), says them in one turn, gets one or two hotels named back, asks a slot or two about
the one they pick (answered tersely from the records), and may add a constraint (a new search that carries
the goal's), correct one (a new search), or start a second goal for a friend, whose search carries only its
own constraints. A few dialogs open, and some second goals come, as questions about a hotel by its name
("我要去名叫…的酒店住宿，它家的电话和地址你知道吗？"): a search by that name, every part answered from its record.
Questions about a hotel just offered are answered from the records, never searched, in the many colloquial
forms real guests use ("电话多少？", "评分高吗？"), sometimes a slot and a facility at once. The shares follow
the real dev set (docs/hotel_data.md: benchmarks/hotel_data_stats.py on CrossWOZ val): 2 constraint kinds in
most first requests, never 4; follow-up searches mostly carry all the earlier constraints; corrections and
second goals are rare. Conventions follow the annotated real dialogs: a band "300-400元" is price_range_lower
300 and price_range_upper 400; "N元以上" is a lower bound only; "4.5分以上" is rating_range_lower 4.5; "5分" is
rating_range_lower = rating_range_upper = 5.0.
"""

from __future__ import annotations

import random

from tunelab.domains.hotel.dialog import DialogBuilder
from tunelab.domains.hotel.phrasing import cn_number, cn_rating, facility_phrase, fmt_rating, weighted

PRICE_BANDS = ((100, 200), (200, 300), (300, 400), (400, 500), (500, 600), (600, 700), (700, 800),
               (800, 900), (900, 1000), (1000, None))  # the real dev set's bands: 100 wide, then 1000+
# how many constraint kinds a goal states, and how often a dialog takes each later turn (real dev shares)
GOAL_SIZES, GOAL_SIZE_WEIGHTS = (1, 2, 3), (12, 66, 22)
FACILITY_COUNTS = (1, 1, 2)  # real requests name one or two facilities, never more
# ADD_CONSTRAINT was 0.3: a fifth of the training's later user turns were searches (real dev: 8%), and models
# searched on real questions about the hotel just offered (r4: 61 of 794 real replies); 0.15 brings it to 16%
SECOND_GOAL, CORRECTION, ADD_CONSTRAINT = 0.12, 0.03, 0.15
FIRST_NAME = 0.05  # a dialog that opens asking about a hotel by name (real dev: 6% of first turns)
RELAX = 0.4  # after nothing was found, how often the guest takes the suggested relaxation (a new search)
NOTHING_FOUND = ("抱歉，没有找到符合您要求的酒店，您可以换个条件再试试。", "不好意思，按这些条件没有查到酒店，要不要放宽一点要求？",
                 "抱歉，没有同时满足这些条件的酒店。", "没有查到符合条件的酒店，您可以调整一下价格或者评分的要求。")


# --- constraints of one goal: (arguments, phrases) ------------------------------------------
def _price_goal(rng: random.Random, price: int | None) -> tuple[dict, str] | None:
    if price is None:
        return None
    lo, hi = next(((a, b) for a, b in PRICE_BANDS if price >= a and (b is None or price <= b)), (None, None))
    if lo is None:
        return None
    if hi is None:
        args = {"price_range_lower": lo}
        n = rng.choice((str(lo), str(lo), cn_number(lo)))
        text = rng.choice((f"最低价格{n}元以上", f"价格在{n}元以上", f"每晚{n}元以上", f"价格不低于{n}元",
                           f"起码{n}元一晚", f"{n}块以上"))
        return args, text
    args = {"price_range_lower": lo, "price_range_upper": hi}
    a, b = (str(lo), str(hi)) if rng.random() < 0.85 else (cn_number(lo), cn_number(hi))
    text = rng.choice((f"最低价格{a}-{b}元", f"最低价格在{a}-{b}元", f"价格在{a}-{b}元", f"价格是{a}-{b}元",
                       f"价位在{a}到{b}元之间", f"每晚{a}到{b}块", f"{a}-{b}元", f"预算{a}到{b}元",
                       f"价格{a}元到{b}元"))
    return args, text


# How real guests say a rating (docs/hotel_data.md, "Ratings": of the real dev set's rating turns, "评分是N分以上"
# 31%, "评分N分以上" 29%, "评分在N分以上" 15%, "评分是5分" 15%, the rest a long tail). Like the reply forms, the
# commonest lead by a wide margin.
RATING_FLOORS = ((6, "评分是{s}分以上"), (5, "评分{s}分以上"), (3, "评分在{s}分以上"), (1, "{s}分以上"), (1, "评分不低于{s}分"),
                 (1, "评分{c}分以上"), (1, "评分最好在{s}分以上"), (1, "评分要在{s}分以上"), (1, "评分在{s}以上"))
RATING_EXACT = ((6, "评分是5分"), (2, "评分5分"), (1, "评分为5分"), (1, "评分在5分"), (1, "满分5分"))


def _rating_goal(rng: random.Random, rating: float | None) -> tuple[dict, str] | None:
    if rating is None or rating < 4.0:
        return None
    if rating >= 5.0 and rng.random() < 0.6 or rng.random() < 0.12:  # guests ask for 5分 even when none has it
        return {"rating_range_lower": 5.0, "rating_range_upper": 5.0}, weighted(rng, RATING_EXACT)
    r = 4.5 if rating >= 4.5 and rng.random() < 0.9 else 4.0  # real floors: 4.5 three times as often as 4
    return {"rating_range_lower": r}, weighted(rng, RATING_FLOORS).format(s=fmt_rating(r), c=cn_rating(r))


def _facility_text(rng: random.Random, facilities: list[str]) -> str:
    if rng.random() < 0.6:  # said by the database's own names, as most guests do
        names = [f + ("服务" if rng.random() < 0.15 and not f.endswith("服务") else "") for f in facilities]
        joined = names[0] if len(names) == 1 else "、".join(names[:-1]) + rng.choice(("和", "、")) + names[-1]
        return rng.choice(("提供", "有", "能提供", "可以提供")) + joined
    return "、".join(facility_phrase(rng, f) for f in facilities)


def make_goal(rng: random.Random, hotels: list[dict]) -> tuple[dict, dict]:
    """(arguments, parts) of a goal that the hotel it was drawn from satisfies (but for an exact 5分 rating,
    which often finds nothing); parts maps each stated constraint kind (type, facilities, price, rating) to
    its phrase."""
    h = rng.choice(hotels)
    # the four kinds are about equally common in real requests (45-48% of searches each)
    kinds = rng.sample(("type", "facilities", "price", "rating"), rng.choices(GOAL_SIZES, GOAL_SIZE_WEIGHTS)[0])
    if "rating" in kinds and (h["rating"] or 0) < 4.5 and rng.random() < 0.7:  # real guests ask 4.5分以上 most
        h = rng.choice([x for x in hotels if (x["rating"] or 0) >= 4.5] or [h])
    args: dict = {}
    parts: dict = {}
    for kind in kinds:
        if kind == "type" and h["type"]:
            args["type"] = h["type"]
            parts["type"] = h["type"]
        elif kind == "facilities" and h["facilities"]:
            fs = rng.sample(h["facilities"], min(len(h["facilities"]), rng.choice(FACILITY_COUNTS)))
            args["facilities"] = fs
            parts["facilities"] = _facility_text(rng, fs)
        elif kind == "price" and (p := _price_goal(rng, h["price"])):
            args.update(p[0])
            parts["price"] = p[1]
        elif kind == "rating" and (r := _rating_goal(rng, h["rating"])):
            args.update(r[0])
            parts["rating"] = r[1]
    if not args:
        args, parts = {"type": h["type"]}, {"type": h["type"]}
    return args, parts


# --- the request sentence -----------------------------------------------------------------------
OPENERS = ("", "", "", "你好，", "您好，", "你好，", "我有个朋友要来北京，", "我下周要去北京出差，", "吃完饭",
           "游玩结束后", "晚上", "麻烦你，")
ASKS_ATTR = ("我想找一家{x}酒店住宿，给我推荐一家吧。", "帮我推荐一个{x}酒店，谢谢。", "可以帮我推荐一个{x}酒店吗？",
             "请给我推荐一个{x}酒店。", "你能给我找一个{x}酒店吗？", "我想找一个{x}酒店，有什么推荐吗？",
             "有没有{x}酒店？", "帮我找一家{x}酒店。", "我想住一家{x}酒店，你帮我看看。", "给我推荐个{x}酒店吧。",
             # "休息" / "歇脚" are why the guest wants a hotel, not a facility (a model read "休息室" into them)
             "累了，想找一家{x}酒店休息一下。", "我想找个{x}酒店歇歇脚，推荐一家吧。", "想找一家{x}酒店好好休息，有吗？")


TAILS = ("我想找一个{x}酒店，最好{y}的，帮我推荐下。", "帮我找一家{x}酒店，要{y}的。", "我想找一家{x}酒店，{y}的就行。",
         "帮我找一家{x}酒店，{y}的。", "请给我推荐一个{x}酒店，最好{y}。", "我想找一家{x}酒店，我希望{y}的，帮我推荐下吧。")


def _attributes(rng: random.Random, attrs: list[str], rating: str, type_word: str) -> str:
    """The stated parts as one attributive phrase before 酒店; as real guests do, a rating may run straight into
    the next part with no separator ("评分4.5分以上最低价格300-400元的", "评分是4.5分以上豪华型的")."""
    sep = rng.choice(("，", "、", "的，"))
    x = ""
    for i, a in enumerate(attrs):
        x += a if i == 0 else ("" if attrs[i - 1] == rating and rng.random() < 0.3 else sep) + a
    if attrs and attrs[-1] == rating and type_word and rng.random() < 0.3:
        return x + type_word + "的"
    return x + "的" + type_word if attrs else rng.choice((type_word, f"{type_word}的"))


def request_text(rng: random.Random, parts: dict) -> str:
    """A first request stating every part: mostly one attributive phrase before 酒店, sometimes the last part
    as a clause after it ("帮我找一家经济型的酒店，评分是4.5分以上的。": a quarter of real ratings come there)."""
    order = list(parts)
    rng.shuffle(order)
    type_word = parts.get("type", "")
    rating = parts.get("rating", "")
    attrs = [parts[k] for k in order if k != "type"]
    opener = rng.choice(OPENERS)
    if attrs and (len(attrs) >= 2 or type_word) and rng.random() < 0.3:  # the last part as an afterthought
        head = _attributes(rng, attrs[:-1], rating, type_word)
        tails = [t for t in TAILS if "最好" not in t] if "最好" in attrs[-1] else TAILS  # never "最好…最好"
        return opener + rng.choice(tails).format(x=head, y=attrs[-1])
    return opener + rng.choice(ASKS_ATTR).format(x=_attributes(rng, attrs, rating, type_word))


def second_request_text(rng: random.Random, parts: dict) -> str:
    """A new goal later in the dialog: said as 'another one', its constraints only."""
    lead = rng.choice(("再帮我找一个", "我还想帮朋友找一家", "另外，帮我再找一家", "好的，再给我推荐一个", "我还需要一家"))
    type_word = parts.get("type", "")
    attrs = [parts[k] for k in parts if k != "type"]
    x = ("，".join(attrs) + "的" if attrs else "") + type_word
    return f"{lead}{x}酒店{rng.choice(('。', '吧。', '，谢谢。', '，有吗？'))}"


# --- terse replies, from the records --------------------------------------------------------
# Shares measured on the real dev set's replies after a search that name a hotel: the first record alone in 74%,
# the first two in 21%, three or more in 5% (docs/hotel_data.md, "Replies"); "推荐您去…" the commonest opening, then
# "为您推荐…". Greedy decoding says the likeliest form token by token, and a model trained for a few hundred steps
# learns these shares only roughly, so the real data's commonest form must lead by a wide margin at each token
# where the forms part: the first words ("推荐您去" in about 60% of offers, a hotel's name first in about 15%) and the
# words after the name ("住宿。"). With the name first in 25% of offers and "推荐您去" in 42%, a model trained 883 steps
# opened 80 of 147 real replies after records with a hotel's name (gold: 33; benchmarks/reply_forms.py).
ONE_HOTEL = ((12, "推荐您去{a}住宿。"), (2, "推荐您去{a}。"), (3, "为您推荐{a}。"), (2, "给您推荐{a}。"), (1, "建议您去{a}。"),
             (1, "{a}是一个不错的选择。"), (1, "没问题，{a}就符合您的要求。"), (1, "{a}挺不错的，推荐您去。"))
TWO_HOTELS = ((6, "推荐您去{a}和{b}。"), (1, "{a}和{b}都符合您的要求。"), (1, "{a}、{b}都是不错的选择。"),
              (1, "为您推荐{a}和{b}。"), (1, "{a}和{b}都挺好的，您看看哪家合适？"))
THREE_HOTELS = ((2, "推荐您去{a}、{b}和{c}。"), (1, "{a}、{b}和{c}都符合您的要求。"), (1, "为您推荐{a}、{b}和{c}。"))


def offer_text(rng: random.Random, records: list[dict]) -> tuple[str, list[dict]]:
    """Name the first hotel of the records (sometimes the first two or three); returns the text and the hotels
    named."""
    n = len(records)
    k = rng.choices((1, 2, 3), weights=(72, 24 if n >= 2 else 0, 4 if n >= 3 else 0))[0]
    forms = {1: ONE_HOTEL, 2: TWO_HOTELS, 3: THREE_HOTELS}[k]
    names = dict(zip("abc", (r["name"] for r in records[:k])))
    return weighted(rng, forms).format(**names), records[:k]


# the first four forms of each slot, then colloquial ones real guests also use ("电话多少？", "评分高吗？", "价位怎么样？"):
# a model that saw only the first four searched on real questions said the other ways (a slot question is a reply)
SLOT_QUESTIONS = {
    "phone": ("电话是多少？", "的电话是多少？", "电话告诉我一下。", "联系电话是多少啊？", "电话多少？", "的电话号码是多少呢？",
              "有电话吗？"),
    "address": ("地址在哪？", "的地址是在哪啊？", "地址发给我一下。", "在什么位置？", "在哪儿？", "的具体位置在哪里？",
                "的地址你知道吗？"),
    "price": ("价格是多少呢？", "的价格贵吗？", "多少钱一晚？", "价格多少？", "一晚多少钱啊？", "的价格高不高？", "价位怎么样？"),
    "rating": ("评分是多少？", "的评分是多少啊？", "评分怎么样？", "评分高吗？", "的评分怎么样啊？", "评分是几分？", "的口碑怎么样？"),
    "type": ("是什么类型的酒店？", "是什么类型啊？", "属于什么档次？", "是哪种类型的？", "是什么档次的啊？"),
    "subway": ("附近有地铁站吗？", "离哪个地铁站近？", "附近有地铁吗？"),
}


# the same questions as a request ("帮我查一下它家的评分"): answered from the records, never a new search;
# real guests ask this way often, and a model that learnt "查一下" only from searches searches on them
SLOT_NOUNS = {"phone": ("电话", "联系电话", "联系方式"), "address": ("地址", "具体地址", "位置"),
              "price": ("价格", "最低价格", "房价"), "rating": ("评分", "口碑评分"),
              "type": ("类型", "酒店类型", "档次"), "subway": ("附近的地铁站",)}
SLOT_FRAMES = ("帮我查一下{s}的{a}好吗？", "能告诉我一下{s}的{a}吗？", "麻烦你看看{s}的{a}。", "你知道{s}的{a}吗？",
               "顺便把{s}的{a}告诉我一下。", "{s}的{a}呢？", "能帮我看一下{s}的{a}不？", "{s}的{a}你知道吗？",
               "把{s}的{a}发给我吧。", "你有{s}的{a}吗？", "{s}的{a}给我说一下呗。")
ACKS = ("", "", "好的，", "行，", "记下了，", "谢谢，", "太好了，", "太好啦，", "那好吧，", "可以，", "也可以，", "是吗，",
        "哦，", "嗯，", "收到，", "好，", "不错，那", "听着还行，那")
SUBJECTS = ("这家酒店", "这家酒店", "酒店", "它", "它家", "这个酒店", "该酒店")


def slot_answer(rng: random.Random, h: dict, slot: str) -> str:
    # weighted like the real dev set's answers (docs/hotel_data.md, "Replies"): "地址是…" 36 against "地址在…" 10,
    # "评分是N分" 19 against "评分N分" 2, "价格是N元" 19
    if slot == "phone":
        return weighted(rng, ((4, "电话是{v}"), (1, "您记一下，电话是{v}"), (1, "它的电话是{v}"))).format(v=h["phone"])
    if slot == "address":
        return weighted(rng, ((4, "地址是{v}"), (1, "地址在{v}"), (1, "地址是在{v}"))).format(v=h["address"])
    if slot == "price":
        if h["price"] is None:
            return "暂时没有它的价格信息"
        return weighted(rng, ((4, "价格是{v}元"), (1, "每晚{v}元"), (1, "价格是每晚{v}元"))).format(v=h["price"])
    if slot == "rating":
        return weighted(rng, ((4, "评分是{v}分"), (1, "评分{v}分"))).format(v=fmt_rating(h["rating"]))
    if slot == "type":
        return rng.choice((f"是{h['type']}", f"是{h['type']}酒店", f"这是一家{h['type']}酒店"))
    if not h.get("subway"):
        return "没有查到附近的地铁站"
    return rng.choice((f"最近的地铁站是{h['subway']}", f"离{h['subway']}很近"))


def facility_question(rng: random.Random, fs: list[str]) -> str:
    joined = "和".join(fs)
    return rng.choice((f"有{joined}吗？", f"提供{joined}吗？", f"这家酒店有没有{joined}？", f"该酒店是否有{joined}？",
                       f"酒店提不提供{joined}？", f"有没有{joined}啊？"))


def slot_questions(rng: random.Random, subject: str, slots: list[str]) -> str:
    """One turn asking each slot, the first about `subject` ("这家酒店的电话是多少？评分怎么样？"; no subject: "电话是多少？")."""
    text = ""
    for i, s in enumerate(slots):
        q = rng.choice(SLOT_QUESTIONS[s])
        text += subject + q if i == 0 and subject else q.removeprefix("的")
    return text


def facility_answer(rng: random.Random, h: dict, fs: list[str]) -> str:
    has = [f for f in fs if f in h["facilities"]]
    lacks = [f for f in fs if f not in h["facilities"]]
    if has and lacks:
        return f"酒店不提供{'和'.join(lacks)}，但提供{'和'.join(has)}"
    if has:
        return rng.choice((f"有的，酒店提供{'和'.join(has)}", f"提供{'和'.join(has)}", f"是的，有{'和'.join(has)}"))
    if len(lacks) > 1:
        return rng.choice(("抱歉，这两项都没有", f"抱歉，该酒店没有{'和'.join(lacks)}"))
    return rng.choice((f"抱歉，该酒店没有{lacks[0]}", f"酒店不提供{lacks[0]}"))


def _facility_clause(rng: random.Random, h: dict, fs: list[str]) -> str:
    """The facility answer as the second clause of a reply (no leading "有的，")."""
    return facility_answer(rng, h, fs).removeprefix("有的，").removeprefix("是的，")


def ask_about(b: DialogBuilder, h: dict, named: list[dict], first: bool) -> None:
    """One user question (one or two slots, or facilities) about hotel h, answered from its record."""
    rng = b.rng
    if len(named) > 1 and first:
        ref = rng.choice((f"我觉得{h['name']}比较适合我，", f"就去{h['name']}吧，", f"{h['name']}不错，",
                          f"那就去{h['name']}好了，"))
        subject = rng.choice(("它家", "这家酒店", ""))
    else:
        ref = rng.choice(ACKS)
        subject = rng.choice(SUBJECTS + (h["name"], h["name"]))
    pool = [f for f in (h["facilities"] if rng.random() < 0.5 else b.catalogue) if f not in b.args.get("facilities", [])]
    fs = rng.sample(pool, min(len(pool), rng.choice((1, 1, 2))))
    if fs and rng.random() < 0.25:
        b.user(ref + facility_question(rng, fs))
        b.assistant(facility_answer(rng, h, fs) + "。")
        return
    slots = [s for s in SLOT_QUESTIONS if (h["name"], s) not in b.asked and not (s == "type" and "type" in b.args)]
    if fs and slots and rng.random() < 0.1:  # a slot and facilities in one turn ("电话多少？有健身房吗？")
        s = rng.choice(slots)
        b.user(ref + slot_questions(rng, subject, [s]) + facility_question(rng, fs))
        said = _facility_clause(rng, h, fs)
        b.assistant(slot_answer(rng, h, s) + "，" + said + "。")
        b.asked.add((h["name"], s))
        return
    chosen = rng.sample(slots, min(len(slots), rng.choice((1, 1, 1, 2)))) or ["phone"]
    if rng.random() < 0.4:  # one request for the slots ("帮我查一下它家的类型和评分好吗？")
        nouns = "和".join(rng.choice(SLOT_NOUNS[s]) for s in chosen)
        b.user(ref + rng.choice(SLOT_FRAMES).format(s=subject or "这家酒店", a=nouns))
    else:
        b.user(ref + slot_questions(rng, subject, chosen))
    b.assistant("，".join(slot_answer(rng, h, s) for s in chosen) + "。")
    b.asked.update((h["name"], s) for s in chosen)


def correct(b: DialogBuilder, args: dict, hotels: list[dict]) -> list[dict] | None:
    """The guest corrects one constraint of the goal just searched ("不对，要……"); the new search keeps the
    others. Returns its records, or None (nothing said) when no correction finds hotels."""
    rng = b.rng
    stated = [k for k in ("price", "rating", "type") if any(key.startswith(k) for key in args)]
    for _ in range(4 if stated else 0):
        h = rng.choice(hotels)
        kind = rng.choice(stated)
        made = (_price_goal(rng, h["price"]) if kind == "price" else _rating_goal(rng, h["rating"])
                if kind == "rating" else ({"type": h["type"]}, h["type"]))
        if not made:
            continue
        new = {k: v for k, v in args.items() if not k.startswith(f"{kind}_range_") and k != kind} | made[0]
        if new == args or not b.probe(new):
            continue
        b.assistant(offer_text(rng, b.records)[0] if b.records else "抱歉，没有找到符合条件的酒店。")
        b.user(rng.choice(("不对，我要的是{x}的。", "不好意思说错了，要{x}的。", "我改一下，{x}的酒店。",
                           "不对，要{x}的，麻烦重新找一下。", "等等，我刚才说错了，应该是{x}的。",
                           "换一下条件，{x}的，帮我重新查查。")).format(x=made[1]))
        return b.search(new)
    return None


def add_constraint(b: DialogBuilder, args: dict, named: list[dict]) -> list[dict] | None:
    """After hotels were named, the guest adds a constraint ("哪一家有室内游泳池呢？"): a new search that
    carries the goal's constraints plus the new one. Returns its records (None: nothing said)."""
    rng = b.rng
    h = rng.choice(named)
    if "rating_range_lower" not in args and h["rating"] is not None and h["rating"] >= 4.0 and rng.random() < 0.4:
        made = _rating_goal(rng, h["rating"])
        extra, said = made if made else ({}, "")
        which = "这两家酒店哪个符合这个要求？" if len(named) > 1 else "有符合的吗？"
        asks = ((f"这两家酒店有{said}的吗？", f"哪家酒店{said}？", f"这几家里有没有{said}的？") if len(named) > 1
                else (f"这家酒店的{said}吗？" if said.startswith(("评分是", "评分在")) else f"有没有{said}的？",
                      f"有没有{said}的？"))
        text = rng.choice((f"我希望{said}的，{which}", f"最好{said}的，{which}") + asks)
    else:
        pool = [f for f in h["facilities"] if f not in args.get("facilities", [])]
        if not pool or len(args.get("facilities", [])) >= 2:  # real searches hold at most two facilities
            return None
        f = rng.choice(pool)
        extra = {"facilities": args.get("facilities", []) + [f]}
        if rng.random() < 0.6:  # the database's name
            text = rng.choice((f"哪一家有{f}呢？", f"还要{f}的，有吗？", f"要是能有{f}就更好了，有吗？")
                              if len(named) > 1 else (f"还要{f}的，有吗？", f"最好还有{f}的。"))
        else:  # a verb phrase ("能吃中餐", "有中式餐厅")
            said = facility_phrase(rng, f)
            text = rng.choice((f"哪一家{said}呢？", f"还要{said}的，有吗？", f"要是{said}就更好了，有吗？")
                              if len(named) > 1 else (f"还要{said}的，有吗？", f"最好还{said}的。"))
    if not extra:
        return None
    b.user(text)
    return b.search({**args, **extra})


NAME_LEADS = ("我听说{n}不错，", "我想到{n}去住，", "另外，帮我查一下{n}，", "我要去名叫{n}的酒店住宿，",
              "我打算去名字是{n}的酒店住，", "一会儿我要去{n}住宿，", "听朋友说{n}口碑挺好，", "我已经订了{n}的房间，")


def name_goal(b: DialogBuilder, hotels: list[dict], opener: str = "") -> None:
    """A goal about a hotel the guest heard of, by its full name, with a question or two (slots, sometimes a
    facility): search by name, answer every part from its record."""
    rng = b.rng
    h = rng.choice(hotels)
    slots = rng.sample(("price", "phone", "address", "rating", "type"), rng.choice((1, 1, 1, 2)))
    if rng.random() < 0.4:  # "{name}的电话是多少？", "{name}评分高吗？"
        text = slot_questions(rng, h["name"], slots)
    else:  # "我要去名叫{name}的酒店住宿，能告诉我一下这家酒店的电话吗？"
        nouns = "和".join(rng.choice(SLOT_NOUNS[s]) for s in slots)
        text = rng.choice(NAME_LEADS).format(n=h["name"]) + rng.choice(SLOT_FRAMES).format(
            s=rng.choice(("这家酒店", "它家", "酒店", "这个酒店")), a=nouns)
    pool = h["facilities"] if rng.random() < 0.5 else b.catalogue
    fs = rng.sample(pool, 1) if pool and rng.random() < 0.2 else []
    b.user(opener + text + (facility_question(rng, fs) if fs else ""))
    records = b.search({"name": h["name"]})
    target = next((r for r in records if r["name"] == h["name"]), records[0])
    said = [slot_answer(rng, target, s) for s in slots]
    if fs:
        said.append(_facility_clause(rng, target, fs))
    b.assistant("，".join(said) + "。")
    b.offered = target
    b.asked.update((target["name"], s) for s in slots)


def goal_dialog(b: DialogBuilder, hotels: list[dict]) -> None:
    """One or two goals, each: request -> search -> one or two hotels named -> questions about one; a later goal
    may be a hotel asked for by name, and a guest may add a constraint after hotels were named."""
    rng = b.rng
    for g in range(2 if rng.random() < SECOND_GOAL else 1):
        if g == 1 and rng.random() < 0.5:
            name_goal(b, hotels)
            continue
        if g == 0 and rng.random() < FIRST_NAME:
            name_goal(b, hotels, rng.choice(("", "", "你好，", "您好，", "麻烦你，", "请问")))
            continue
        args, parts = make_goal(rng, hotels)
        b.user(request_text(rng, parts) if g == 0 else second_request_text(rng, parts))
        records = b.search(args)
        if not records:  # no hotel is named after an empty result: none would be in the records
            if rng.random() >= RELAX:
                b.assistant(rng.choice(NOTHING_FOUND))
                return
            if not b.relax():
                return
            records = b.records
        if rng.random() < CORRECTION and (fixed := correct(b, args, hotels)):
            records = fixed
        text, named = offer_text(rng, records)
        b.assistant(text)
        if rng.random() < ADD_CONSTRAINT and (more := add_constraint(b, b.args, named)) is not None:
            if not more:
                b.assistant(rng.choice(("抱歉，没有找到同时满足这些条件的酒店。", "抱歉，都不符合这个要求。")))
                return
            text, named = offer_text(rng, more)
            b.assistant(text)
        b.offered = rng.choice(named)
        for i in range(rng.choice((0, 1, 1, 2, 2))):
            ask_about(b, b.offered, named, i == 0)
