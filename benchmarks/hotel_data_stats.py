"""Shape of the search turns in hotel dialog files: what a model trained on them learns to copy.

    .venv/bin/python benchmarks/hotel_data_stats.py FILE [FILE ...] [--md OUT.md]

FILE: any dialog format tunelab reads (the hotel format of `tunelab hotel synth` / `import-crosswoz`, or
OpenAI `messages` with tool calls). Prints one column per file (markdown) with, over all search calls:
- slots per call as slot F1 counts them (a scalar 1, a list one per element): 0, 1, 2, 3, 4+;
- constraint kinds per call (name, type, facilities, price, rating: a range counts once);
- the share of calls that hold each argument name;
- follow-up calls (not the first of their dialog): a name search; or, against the call before, one that
  repeats all of its constraints and adds one ("carries all"); a correction (keeps every kind of constraint
  of the call before but changes a value, "5分" to "4.5分以上" too); a new request (drops some: "carries some", or all:
  "carries none"); and how many follow the call before finding nothing;
- the share of calls that find nothing, and of target turns that are calls (vs replies);
- replies: right after records, how many of those hotels they name and how they open; answers to a thanks
  ("不客气。" exactly or otherwise); address answers opening "地址是" or "地址在";
- ratings as guests say them, in the turns before calls with a rating that say "评分": the form (digits
  written N), whether the rating runs into the next part with no separator, and whether it comes after the
  turn's last "酒店";
- dialogs whose first user turn a search by name answers;
- later user turns (every user turn after a dialog's first): how many a search answers (a model learns from
  this share how readily a later question searches), and how many a search answers with a rating the turn
  does not say (one carried from an earlier search).
Counts only; nothing is timed.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from tunelab.data.readers import read_conversations

KEYS = ("name", "type", "facilities", "price_range_lower", "price_range_upper", "rating_range_lower",
        "rating_range_upper")
KINDS = ("name", "type", "facilities", "price", "rating")


def slot_count(args: dict) -> int:
    """Slots as slot P/R/F1 counts them: a list one per element, anything else one."""
    return sum(len(v) if isinstance(v, list) else 1 for v in args.values())


def kinds(args: dict) -> set[str]:
    """Constraint kinds the arguments hold: a price or rating range counts once."""
    return {k if k in ("name", "type", "facilities") else k.split("_")[0] for k in args}


def _pairs(args: dict) -> set[tuple]:
    """(key, value) pairs of the arguments, one per facility."""
    return {(k, f) for k, v in args.items() for f in (v if isinstance(v, list) else [v])}


def follow_up(before: dict, after: dict) -> str:
    """How a call relates to the call before it in the same dialog."""
    if "name" in after:
        return "name search"
    old = {k: v for k, v in before.items() if k != "name"}
    if not old:
        return "after a name search"
    shared = _pairs(old) & _pairs(after)
    if kinds(old) <= kinds(after) and any(k != "facilities" and after.get(k) != v for k, v in old.items()):
        return "correction"
    if shared == _pairs(old):
        return "carries all" if _pairs(after) != _pairs(old) else "same search"
    return "carries some" if shared else "carries none"


OPENINGS = ("推荐您去", "为您推荐", "给您推荐", "建议您去")


def opening(text: str, names: list[str]) -> str:
    """How a reply right after records opens: one of OPENINGS, "with a hotel's name" (of `names`), or "other"."""
    return next((o for o in OPENINGS if text.startswith(o)), None) or (
        "with a hotel's name" if any(n and text.startswith(n) for n in names) else "other")


def answers_thanks(before, text: str) -> bool:
    """Whether reply `text` answers a thanks: a short reply after a user turn with "谢"."""
    return before.role == "user" and "谢" in (before.content or "") and len(text) < 20


def reply_stats(turns: list, replies: Counter) -> None:
    """Add one dialog's reply shapes (see the module docstring) to `replies`."""
    for i, t in enumerate(turns):
        if t.role != "assistant" or i == 0:
            continue
        before, text = turns[i - 1], t.content or ""
        if before.role == "tool_result" and before.records:
            names = [r.get("name", "") for r in before.records]
            named = sum(bool(n) and n in text for n in names)
            replies[f"named {min(named, 3)}{'+' if named >= 3 else ''}"] += 1
            replies[f"opens {opening(text, names)}"] += 1
        elif answers_thanks(before, text):
            replies["thanks: 不客气。" if text == "不客气。" else "thanks: other"] += 1
        for form in ("地址是", "地址在"):
            replies[f"address {form}"] += text.startswith(form)


RATING = re.compile(r"评分[^\d四五，。、]{0,4}(?:\d(?:\.\d)?|[四五](?:点五)?)分?(?:以上)?")
RATING_FORMS = ("评分是N分以上", "评分N分以上", "评分在N分以上", "评分是N分")
# any way a turn says a rating ("评分", "4.5分以上", "五分", "四星半"); a bare "分" is not one ("部分房间提供wifi")
RATING_SAID = re.compile(r"评分|(?:\d(?:\.\d)?|[三四五](?:点五)?)分|星")


def rating_stats(turns: list, ratings: Counter) -> None:
    """Add how one dialog's guests say a rating (see the module docstring) to `ratings`."""
    for i, t in enumerate(turns[1:], 1):
        before = turns[i - 1]
        if t.role != "tool_call" or "rating_range_lower" not in (t.arguments or {}) or before.role != "user":
            continue
        text = before.content or ""
        m = RATING.search(text)
        if not m:
            continue
        form = re.sub(r"\d(\.\d)?|[四五](点五)?", "N", m.group(0))
        ratings["said"] += 1
        ratings[f"form {form if form in RATING_FORMS else 'other'}"] += 1
        ratings["runs on"] += m.end() < len(text) and text[m.end()] not in "的，、。！？ ,"
        ratings["after 酒店"] += "酒店" in text[:m.start()] and "酒店" not in text[m.end():]


def _call_after(turns: list, i: int) -> dict | None:
    """The arguments of the search right after turn i, or None when none follows."""
    nxt = turns[i + 1] if i + 1 < len(turns) else None
    return (nxt.arguments or {}) if nxt is not None and nxt.role == "tool_call" else None


def later_stats(turns: list, later: Counter) -> None:
    """Add one dialog's later user turns (see the module docstring) to `later`."""
    users = [i for i, t in enumerate(turns) if t.role == "user"]
    later["first by name"] += "name" in ((_call_after(turns, users[0]) if users else None) or {})
    for i in users[1:]:
        later["turns"] += 1
        args = _call_after(turns, i)
        if args is None:
            continue
        later["searched"] += 1
        text = turns[i].content or ""
        later["rating unsaid"] += "rating_range_lower" in args and not RATING_SAID.search(text)


def file_stats(path: str | Path) -> dict:
    """Counts of one dialog file (see the module docstring): {"label": Counter} per table."""
    convs, _ = read_conversations(path)
    slots, kind_n, names, follow, kinds_seen, reply = Counter(), Counter(), Counter(), Counter(), Counter(), Counter()
    ratings, later = Counter(), Counter()
    after_empty = 0
    calls = replies = empty = 0
    for conv in convs:
        last, last_empty = None, False
        turns = conv.turns
        reply_stats(turns, reply)
        rating_stats(turns, ratings)
        later_stats(turns, later)
        for i, t in enumerate(turns):
            if t.role == "assistant":
                replies += 1
            if t.role != "tool_call":
                continue
            args = t.arguments or {}
            calls += 1
            n = slot_count(args)
            slots[str(n) if n < 4 else "4+"] += 1
            kind_n[str(min(len(kinds(args)), 4)) if len(kinds(args)) < 4 else "4+"] += 1
            names.update(k for k in args)
            kinds_seen[" + ".join(k for k in KINDS if k in kinds(args)) or "(none)"] += 1
            if last is not None:
                follow[follow_up(last, args)] += 1
                after_empty += last_empty
            last = args
            last_empty = i + 1 < len(turns) and turns[i + 1].role == "tool_result" and not turns[i + 1].records
            empty += last_empty
    return {"dialogs": len(convs), "calls": calls, "replies": replies, "empty": empty, "slots": slots,
            "kinds": kind_n, "names": names, "follow": follow, "combos": kinds_seen,
            "after_empty": after_empty, "reply": reply, "ratings": ratings, "later": later}


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}" if total else "-"


def table(stats: dict[str, dict]) -> str:
    """Markdown: one row per measure, one column per file (percentages of the row's base)."""
    files = list(stats)
    head = "| measure | " + " | ".join(files) + " |\n|---|" + "---|" * len(files) + "\n"
    rows = [("dialogs", [str(s["dialogs"]) for s in stats.values()]),
            ("search calls", [str(s["calls"]) for s in stats.values()]),
            ("calls per dialog", [f"{s['calls'] / max(s['dialogs'], 1):.2f}" for s in stats.values()]),
            ("% targets that are calls", [_pct(s["calls"], s["calls"] + s["replies"]) for s in stats.values()]),
            ("% calls finding nothing", [_pct(s["empty"], s["calls"]) for s in stats.values()])]
    for label in ("0", "1", "2", "3", "4+"):
        rows.append((f"% calls with {label} slots", [_pct(s["slots"][label], s["calls"]) for s in stats.values()]))
    for label in ("1", "2", "3", "4+"):
        rows.append((f"% calls with {label} constraint kinds",
                     [_pct(s["kinds"][label], s["calls"]) for s in stats.values()]))
    for key in KEYS:
        rows.append((f"% calls with {key}", [_pct(s["names"][key], s["calls"]) for s in stats.values()]))
    labels = ("name search", "after a name search", "carries all", "carries some", "carries none", "correction",
              "same search")
    for label in labels:
        rows.append((f"% follow-up calls: {label}",
                     [_pct(s["follow"][label], sum(s["follow"].values())) for s in stats.values()]))
    rows.append(("% follow-up calls after one that found nothing",
                 [_pct(s["after_empty"], sum(s["follow"].values())) for s in stats.values()]))
    rows.append(("follow-up calls", [str(sum(s["follow"].values())) for s in stats.values()]))
    combos = Counter()
    for s in stats.values():
        combos.update({c: n / max(s["calls"], 1) for c, n in s["combos"].items()})
    for combo, _ in combos.most_common(12):
        rows.append((f"% calls of kinds {combo}", [_pct(s["combos"][combo], s["calls"]) for s in stats.values()]))
    after = [sum(s["reply"][f"named {k}"] for k in ("0", "1", "2", "3+")) for s in stats.values()]
    rows.append(("replies right after records", [str(n) for n in after]))
    for label in ("named 0", "named 1", "named 2", "named 3+", *(f"opens {o}" for o in OPENINGS),
                  "opens with a hotel's name", "opens other"):
        rows.append((f"% of those: {label}", [_pct(s["reply"][label], n) for s, n in zip(stats.values(), after)]))
    thanks = [s["reply"]["thanks: 不客气。"] + s["reply"]["thanks: other"] for s in stats.values()]
    rows.append(("% answers to a thanks that are 不客气。",
                 [_pct(s["reply"]["thanks: 不客气。"], n) for s, n in zip(stats.values(), thanks)]))
    address = [s["reply"]["address 地址是"] + s["reply"]["address 地址在"] for s in stats.values()]
    rows.append(("% address answers opening 地址是 (against 地址在)",
                 [_pct(s["reply"]["address 地址是"], n) for s, n in zip(stats.values(), address)]))
    said = [s["ratings"]["said"] for s in stats.values()]
    rows.append(("calls with a rating whose turn says 评分", [str(n) for n in said]))
    for label in (*(f"form {f}" for f in RATING_FORMS), "form other", "runs on", "after 酒店"):
        rows.append((f"% of those: rating {label}",
                     [_pct(s["ratings"][label], n) for s, n in zip(stats.values(), said)]))
    rows.append(("% dialogs whose first turn searches by name",
                 [_pct(s["later"]["first by name"], s["dialogs"]) for s in stats.values()]))
    turns = [s["later"]["turns"] for s in stats.values()]
    rows.append(("later user turns", [str(n) for n in turns]))
    for label in ("searched", "rating unsaid"):
        name = "answered by a search" if label == "searched" else "a search with a rating the turn does not say"
        rows.append((f"% of those: {name}",
                     [_pct(s["later"][label], n) for s, n in zip(stats.values(), turns)]))
    return head + "".join(f"| {label} | " + " | ".join(cells) + " |\n" for label, cells in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--label", action="append", default=[], help="column name per file (default: the path)")
    ap.add_argument("--md", help="also write the table here")
    args = ap.parse_args()
    labels = args.label + args.files[len(args.label):]
    text = table({label: file_stats(f) for label, f in zip(labels, args.files)})
    text = f"Command: `python benchmarks/hotel_data_stats.py {' '.join(sys.argv[1:])}`\n\n{text}"
    print(text)
    if args.md:
        Path(args.md).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
