"""Which facts a hotel reply states, and whether the search results in its context support them.

The `reply_facts` hook of the hotel domain (tunelab.evaluate.analysis uses it). Four kinds of fact are
found in the reply's text by their shape:
- name: a record's full name anywhere (stated, supported); else a span shaped like the database's names:
  "北京<words>酒店" (宾馆, 饭店, ... too) or "<brand>(北京<branch>店)". The first is supported when a
  record's name contains it; the second when a record's name holds the branch and the brand's last (up to
  three) characters before it. A span the user's turn also holds is an echo ("没有查到X"), not a stated fact; a
  generic phrase ("北京的酒店", "北京经济型酒店") is no name. A name without 北京 or a branch is missed.
- price: a number followed by 元, unless a budget follows (以内/以下/以上/之间/左右); supported when it
  equals a record's price.
- phone: 0 + area code + number or an 11-digit mobile; supported when a record's phone holds its digits.
- address: the street and number after a district (…区<street>N号); supported when a record's address
  contains it.
"""

from __future__ import annotations

import re

_SUFFIX = r"(?:大酒店|酒店|宾馆|饭店|旅馆|旅店|客栈|公寓|招待所)"
_PLAIN = re.compile(rf"北京([\w·&\-]{{1,12}}?){_SUFFIX}(?![(（])")
_BRANCH = re.compile(r"([\w·&\-]{2,3})[(（](北京[^()（）]{1,15}?店)[)）]")
_NOT_A_NAME = re.compile(r"[的有哪些这那几家区]|^(?:\w{0,2}型|\w{0,2}星级|快捷|商务|连锁|精品)$")
_PRICE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*元(?!以内|以下|以上|之间|左右)")
_PHONE = re.compile(r"(?<!\d)(?:0\d{2,3}-?\d{7,8}|1[3-9]\d{9})(?!\d)")
_ADDRESS = re.compile(r"区([^\s，。、；：！？,.;:!?()（）]{1,30}?\d+号)")


def _spans(text: str) -> list[re.Pattern]:
    """For every name-shaped span of text, a pattern that finds the same hotel's name in another text."""
    out = [re.compile(re.escape(m.group(1)) + r"[(（]" + re.escape(m.group(2)) + r"[)）]")
           for m in _BRANCH.finditer(text)]
    text = _BRANCH.sub("，", text)  # a branch's own 北京 is no plain name
    out += [re.compile(re.escape(m.group(0))) for m in _PLAIN.finditer(text) if not _NOT_A_NAME.search(m.group(1))]
    return out


def _names(reply: str, records: list[dict], user: str) -> tuple[int, int]:
    names = [r["name"] for r in records if isinstance(r.get("name"), str) and r["name"]]
    stated = unsupported = 0
    text = reply
    for name in sorted(names, key=len, reverse=True):  # a record's full name: stated and supported
        if name in text:
            stated += 1
            text = text.replace(name, "，")
    for span in _spans(text):
        if span.search(user):
            continue  # the user's own words repeated ("没有查到X"): no fact stated
        stated += 1
        unsupported += not any(span.search(n) for n in names)
    return stated, unsupported


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def reply_facts(reply: str, records: list, user: str = "") -> dict[str, tuple[int, int]]:
    """`{kind: (n_stated, n_unsupported)}` for kinds name, price, phone, address of a reply against the
    records of the last search in its context ([] when there were none) and the last user turn."""
    records = [r for r in records if isinstance(r, dict)]
    prices = {float(r["price"]) for r in records if isinstance(r.get("price"), (int, float))}
    phones = [_digits(str(r.get("phone") or "")) for r in records]
    addresses = [str(r.get("address") or "") for r in records]
    found_prices = [float(p) for p in _PRICE.findall(reply)]
    found_phones = [_digits(p) for p in _PHONE.findall(reply)]
    found_streets = _ADDRESS.findall(reply)
    return {
        "name": _names(reply, records, user),
        "price": (len(found_prices), sum(p not in prices for p in found_prices)),
        "phone": (len(found_phones), sum(not any(p in ph for ph in phones) for p in found_phones)),
        "address": (len(found_streets), sum(not any(s in a for a in addresses) for s in found_streets)),
    }
