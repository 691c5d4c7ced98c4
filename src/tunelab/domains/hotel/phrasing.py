"""Surface Chinese text for hotel dialogs: numbers, slot phrases, colloquial facility names.

Every phrase function returns text whose meaning maps exactly onto the search argument it is
paired with, so a synthesized dialog never asks for something its search turn does not encode.
"""

from __future__ import annotations

import random

from tunelab.domains.hotel.tool import HOTEL_TYPES

DIGITS = "零一二三四五六七八九"
UNITS = ((1000, "千"), (100, "百"), (10, "十"), (1, ""))

# Canonical DB facility -> colloquial phrases (verb phrases usable before 的 and before 吗).
FACILITY_PHRASES = {
    "24小时热水": ("24小时有热水", "全天都有热水", "有24小时热水"),
    "吹风机": ("有吹风机", "房间里有吹风机", "提供吹风机"),
    "暖气": ("有暖气", "冬天有暖气"),
    "宽带上网": ("能上宽带", "有宽带上网", "房间能插网线上网"),
    "酒店各处提供wifi": ("wifi全覆盖", "酒店各处都有wifi", "到处都能连wifi"),
    "公共区域和部分房间提供wifi": ("公共区域和部分房间有wifi",),
    "所有房间提供wifi": ("每个房间都有wifi", "所有房间都能连wifi"),
    "部分房间提供wifi": ("部分房间有wifi",),
    "公共区域提供wifi": ("公共区域能连wifi", "大堂这些公共区域有wifi"),
    "国际长途电话": ("能打国际长途", "可以打国际长途电话", "有国际长途电话"),
    "免费市内电话": ("市内电话免费", "能免费打市话"),
    "免费国内长途电话": ("国内长途免费", "能免费打国内长途"),
    "中式餐厅": ("有中餐厅", "能吃中餐", "有中式餐厅"),
    "西式餐厅": ("有西餐厅", "能吃西餐", "有西式餐厅"),
    "会议室": ("有会议室", "能开会"),
    "健身房": ("有健身房", "能健身"),
    "室内游泳池": ("有室内泳池", "有室内游泳池", "能在室内游泳"),
    "室外游泳池": ("有室外泳池", "有露天游泳池"),
    "无烟房": ("有无烟房", "有无烟房间"),
    "商务中心": ("有商务中心", "有商务中心能打印"),
    "接站服务": ("能接站", "提供接站服务", "能到火车站接人"),
    "接机服务": ("能接机", "提供接机服务", "能去机场接人"),
    "接待外宾": ("能接待外宾", "接待外国客人"),
    "洗衣服务": ("能洗衣服", "有洗衣服务", "可以帮忙洗衣服"),
    "行李寄存": ("能寄存行李", "可以存行李", "有行李寄存"),
    "叫醒服务": ("有叫醒服务", "能提供叫早", "早上能叫醒"),
    "残疾人设施": ("有无障碍设施", "有残疾人设施", "方便轮椅出入"),
    "棋牌室": ("有棋牌室", "能打牌"),
    "酒吧": ("有酒吧", "能喝一杯"),
    "早餐服务": ("有早餐", "提供早餐", "能吃早饭"),
    "早餐服务免费": ("含免费早餐", "早餐免费", "免费提供早餐"),
    "收费停车位": ("有收费停车位", "有付费停车场"),
    "免费停车位": ("能免费停车", "停车免费", "有免费停车位"),
    "租车": ("能租车", "提供租车服务"),
    "SPA": ("能做SPA", "有SPA"),
    "桑拿": ("能洗桑拿", "有桑拿"),
    "温泉": ("能泡温泉", "有温泉"),
    "看护小孩服务": ("能帮忙看小孩", "有看护小孩服务", "提供儿童看护"),
    "开放式厨房": ("有开放式厨房", "能自己做饭"),
}
TYPE_WORDS = {t: (t,) for t in HOTEL_TYPES}  # type is always said verbatim
NAME_SUFFIXES = ("国际大酒店", "国际酒店", "大酒店", "大饭店", "商务酒店", "精品酒店", "快捷酒店",
                 "连锁酒店", "酒店", "饭店", "宾馆", "招待所")


def weighted(rng: random.Random, forms: tuple[tuple[int, str], ...]) -> str:
    """One of (weight, text) pairs, drawn by weight."""
    return rng.choices([text for _, text in forms], weights=[w for w, _ in forms])[0]


def cn_number(n: int, colloquial: bool = False, two: str = "两") -> str:
    """1..9999 in Chinese numerals; colloquial drops a trailing unit (一千五, 三百五)."""
    out, started, gap = "", False, False
    for unit, name in UNITS:
        d = n // unit % 10
        if d == 0:
            gap = started  # a zero inside the number is read out as 零 before the next digit
            continue
        if gap:
            out += "零"
            gap = False
        digit = two if d == 2 and unit >= 100 and not started else DIGITS[d]
        out += digit + name
        started = True
    # 三百五十 -> 三百五 only when the last two units are adjacent (no 零)
    if colloquial and "零" not in out and len(out) >= 4 and out[-1] in "百十" and out[-3] in "千百":
        if UNITS[[u[1] for u in UNITS].index(out[-3]) + 1][1] == out[-1]:
            out = out[:-1]
    return out


def fmt_rating(r: float) -> str:
    """4.0 -> '4', 4.5 -> '4.5' (how people write ratings)."""
    return str(int(r)) if float(r).is_integer() else f"{r:.1f}"


def cn_rating(r: float) -> str:
    whole, tenth = int(r), int(round(r * 10)) % 10
    return DIGITS[whole] + (f"点{DIGITS[tenth]}" if tenth else "")


def price_text(rng: random.Random, p: int) -> str:
    """A price as digits or (for round numbers) Chinese numerals."""
    if p % 50 == 0 and rng.random() < 0.35:
        return cn_number(p, colloquial=rng.random() < 0.5, two=rng.choice("两二"))
    return str(p)


def price_phrase(rng: random.Random, lower: int | None, upper: int | None, clause: bool) -> str:
    """Phrase a price constraint; attributive (before 的) unless `clause`."""
    if lower is not None and upper is not None:
        a, b = price_text(rng, lower), price_text(rng, upper)
        if clause:
            return rng.choice((f"预算{a}到{b}", f"价格在{a}到{b}之间", f"每晚{a}-{b}元"))
        return rng.choice((f"{a}到{b}元之间", f"价格在{a}-{b}元", f"{a}到{b}块钱之间"))
    if upper is not None:
        p = price_text(rng, upper)
        if clause:
            return rng.choice((f"预算{p}", f"预算{p}以内", f"一晚不超过{p}", f"价格别超过{p}",
                               f"最多{p}一晚", f"每晚{p}块以内"))
        return rng.choice((f"{p}块以内", f"{p}元以下", f"价格不超过{p}元", f"每晚{p}以内",
                           f"价格在{p}以内", f"不超过{p}"))
    p = price_text(rng, lower)
    if clause:
        return rng.choice((f"价格{p}以上", f"每晚不低于{p}", f"{p}块以上的就行"))
    return rng.choice((f"{p}元以上", f"价格不低于{p}", f"每晚{p}以上"))


def rating_phrase(rng: random.Random, lower: float | None, upper: float | None, clause: bool) -> str:
    """Phrase a rating constraint; attributive (before 的) unless `clause`."""
    if lower is not None and upper is not None:
        return f"评分在{fmt_rating(lower)}到{fmt_rating(upper)}之间"
    r, c = fmt_rating(lower), cn_rating(lower)
    # the real commonest forms lead ("评分是N分以上", "评分N分以上", "评分在N分以上": goals.RATING_FLOORS)
    options = [f"评分是{r}分以上", f"评分是{r}分以上", f"评分{r}分以上", f"评分在{r}分以上", f"评分{r}以上", f"{r}分以上",
               f"评分不低于{r}", f"评分{c}分以上"]
    if lower == 4.5:
        options.append("评分四星半以上")
    if lower == 5.0:
        options = ["评分满分5分", "评分是5分", "评分是5分"]
    if clause and lower >= 5:
        return "评分要5分满分的"
    if clause:
        return rng.choice((f"评分最好在{r}分以上", f"评分要不低于{r}分", f"口碑要好，{r}分以上",
                           f"评分要{c}分以上", f"评分别低于{r}"))
    return rng.choice(options)


def facility_phrase(rng: random.Random, facility: str) -> str:
    return rng.choice(FACILITY_PHRASES.get(facility, (f"有{facility}", f"提供{facility}")))


def type_word(rng: random.Random, htype: str) -> str:
    return rng.choice(TYPE_WORDS.get(htype, (htype,)))


def short_name(name: str) -> str | None:
    """The distinctive core of a stand-alone hotel name (北京天伦王朝酒店 -> 天伦王朝), else None."""
    if "(" in name or "（" in name:
        return None
    core = name[2:] if name.startswith("北京") else name
    for suffix in NAME_SUFFIXES:
        if core.endswith(suffix):
            core = core[: -len(suffix)]
            break
    return core if len(core) >= 2 and core != name else None


def brand_name(name: str) -> str | None:
    """The chain brand of a branch name (如家快捷酒店(北京王府井店) -> 如家), else None."""
    for paren in ("(", "（"):
        if paren in name:
            brand = name.split(paren, 1)[0]
            for suffix in NAME_SUFFIXES:
                if brand.endswith(suffix) and len(brand) > len(suffix) + 1:
                    return brand[: -len(suffix)]
            return brand if len(brand) >= 2 else None
    return None


def request_sentence(rng: random.Random, htype: str | None, attrs: list[str], clauses: list[str]) -> str:
    """Compose a first request from attributive phrases and/or clauses around an optional type."""
    greet = rng.choice(("", "", "你好，", "您好，", "你好，我来北京出差，", "我下周去北京，", "麻烦问一下，", "嗨，"))
    tword = type_word(rng, htype) if htype else ""
    if clauses and (not attrs or rng.random() < 0.5):
        body = "，".join(attrs + clauses) if attrs else "，".join(clauses)
        if rng.random() < 0.5:
            want = rng.choice(("我想订一家", "我想找个", "想住一家", "帮我找个"))
            tail = rng.choice(("，有推荐吗？", "，帮我看看。", "，谢谢。", "。"))
            return f"{greet}{want}{tword}酒店，{body}{tail}"
        ask = rng.choice(("帮我找个{t}酒店吧。", "有合适的{t}酒店吗？", "请推荐一家{t}酒店。"))
        return f"{greet}{body}，{ask.format(t=tword)}"
    attr = "、".join(attrs)
    head = f"{attr}的{tword}" if attr else tword
    ask, tail = rng.choice((("帮我找一家", "。"), ("帮我推荐一家", "，谢谢。"), ("有没有", "？"),
                            ("我想找", "，有推荐吗？"), ("请推荐几家", "。"), ("给我推荐个", "吧。"),
                            ("能帮我查查", "吗？"), ("我要订一家", "。")))
    return f"{greet}{ask}{head}酒店{tail}"
