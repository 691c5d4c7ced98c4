"""Error analysis of scored rows: where the slot errors come from, role confusions, reply facts the
context does not support, and the worst items.

A row is a predictions.jsonl row: `{"label", "predict"}` rendered turns, and when `tunelab evaluate`
wrote it also `"source"`, `"user"` (the context's last user turn) and `"records"` (the parsed JSON of the
context's last tool result, null when there was none). Every function is pure and never raises on a
malformed prediction.

Definitions (documented choices):
- Slot errors count only items whose prediction is the gold's tool call with arguments that parse to an
  object; the other predictions of a call item are counted under role confusions. Per slot name:
  missed (gold key absent from the prediction, one per gold element of a list), extra (predicted key
  absent from gold, one per element), wrong (a different value), near_miss (a different value that is
  a paraphrase: one string contains the other, e.g. "wifi" / "酒店各处提供wifi"), correct. Lists compare
  as sets: a gold element the prediction lacks is missed, a predicted element gold lacks is extra, except
  that a near-miss pair of the two counts once as near_miss. A value of the wrong shape (scalar against
  list) or a null is wrong. Nothing here changes slot P/R/F1 (metrics.slot_counts).
- A range is two keys `<stem>_lower` and `<stem>_upper` (any domain). When the predicted lower and upper
  are the gold's upper and lower (an absent key standing for itself) and differ from the gold's own, the
  pair counts as one swap of `<stem>`, not as wrong/missed/extra values of its keys.
- Role confusions: call_as_reply, reply_as_call, call_as_other_call (another tool's prefix),
  call_unparseable (the right prefix, arguments not a JSON object), call_as_none and reply_as_none (the
  prediction is neither a reply nor a call).
- Reply facts (only with a domain hook and rows that carry "records"): the hook lists the facts a reply
  states and how many the records do not support; "invented" counts replies that state a fact when the
  records were empty (no tool result, or one without records). Gold replies are checked the same way,
  so the extractor's own false alarms show beside the model's.
- Worst items: role confusions first, then the most errors (slot errors of a call, unsupported facts of a
  reply), then the lowest BLEU-4 (a call item counts as 100); exact matches are never listed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable

from tunelab.evaluate.metrics import _bleu_one  # the per-item BLEU-4 that bleu4 averages (same package)
from tunelab.evaluate.parse import ASSISTANT, is_call, parse_rendered

ReplyFacts = Callable[[str, list, str], "dict[str, tuple[int, int]]"]  # Domain.reply_facts
SLOT_COLUMNS = ("missed", "extra", "wrong", "near_miss", "correct")
CONFUSIONS = ("call_as_reply", "reply_as_call", "call_as_other_call", "call_unparseable", "call_as_none",
              "reply_as_none")
LOWER, UPPER = "_lower", "_upper"


# ----------------------------------------------------------------------------------------- slots


def range_pairs(keys: Iterable[str]) -> dict[str, tuple[str, str]]:
    """`{stem: (stem_lower, stem_upper)}` for every stem of which both keys are among `keys`."""
    keys = set(keys)
    return {k[: -len(LOWER)]: (k, k[: -len(LOWER)] + UPPER) for k in keys
            if k.endswith(LOWER) and k[: -len(LOWER)] + UPPER in keys}


def near_miss(pred: Any, gold: Any) -> bool:
    """Whether a wrong value paraphrases the gold one: two different non-empty strings, one containing the
    other once spaces and case are ignored ("北京天伦王朝" / "北京天伦王朝酒店")."""
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    p, g = "".join(pred.split()).casefold(), "".join(gold.split()).casefold()
    return bool(p and g) and p != g and (p in g or g in p)


def _unique(values: list) -> list:
    out: list = []
    for v in values:
        if v not in out:  # `==`, so unhashable elements (objects) work too
            out.append(v)
    return out


def _list_errors(pred: list, gold: list) -> Counter:
    pred, gold = _unique(pred), _unique(gold)
    c = Counter(correct=sum(1 for v in pred if v is not None and v in gold))
    missed = [g for g in gold if g not in pred or g is None]
    extra = [p for p in pred if p not in gold or p is None]
    for p in list(extra):
        g = next((g for g in missed if near_miss(p, g)), None)
        if g is not None:
            missed.remove(g)
            extra.remove(p)
            c["near_miss"] += 1
    c["missed"] += len(missed)
    c["extra"] += len(extra)
    return c


def _size(value: Any) -> int:
    return len(_unique(value)) if isinstance(value, list) else 1


def slot_errors(pred_args: dict, gold_args: dict) -> tuple[dict[str, Counter], list[str]]:
    """Per slot name, a Counter of SLOT_COLUMNS for one predicted arguments dict against the gold one, and
    the stems of the swapped ranges (see the module docstring)."""
    swaps = []
    for stem, (lo, up) in range_pairs(set(pred_args) | set(gold_args)).items():
        if (pred_args.get(lo) == gold_args.get(up) and pred_args.get(up) == gold_args.get(lo)
                and (pred_args.get(lo), pred_args.get(up)) != (gold_args.get(lo), gold_args.get(up))):
            swaps.append(stem)
    skip = {k for stem in swaps for k in (stem + LOWER, stem + UPPER)}
    out: dict[str, Counter] = {}
    for key in (set(pred_args) | set(gold_args)) - skip:
        if key not in pred_args:
            c = Counter(missed=_size(gold_args[key]))
        elif key not in gold_args:
            c = Counter(extra=_size(pred_args[key]))
        else:
            p, g = pred_args[key], gold_args[key]
            if isinstance(p, list) and isinstance(g, list):
                c = _list_errors(p, g)
            elif p is not None and not isinstance(p, list) and not isinstance(g, list) and p == g:
                c = Counter(correct=1)
            else:
                c = Counter(near_miss=1) if near_miss(p, g) else Counter(wrong=1)
        out[str(key)] = c
    return out, swaps


# ----------------------------------------------------------------------------------------- per item


def _confusion(g_role: str | None, p_role: str | None, p: Any) -> str | None:
    if is_call(g_role):
        if p_role == ASSISTANT:
            return "call_as_reply"
        if p_role is None:
            return "call_as_none"
        if p_role != g_role:
            return "call_as_other_call"
        return "call_unparseable" if not isinstance(p, dict) else None
    if g_role == ASSISTANT:
        if is_call(p_role):
            return "reply_as_call"
        return "reply_as_none" if p_role is None else None
    return None


def item_errors(row: dict, reply_facts: ReplyFacts | None = None) -> dict:
    """What went wrong in one row: `{"kind": "call"|"reply"|"other", "confusion": str|None, "slots":
    {slot: Counter}, "swaps": [stem], "n_errors": int, "bleu": float|None, "facts": {kind: (stated,
    unsupported)}|None, "gold_facts": ...|None, "empty_records": bool}`."""
    g_role, g = parse_rendered(row.get("label"))
    p_role, p = parse_rendered(row.get("predict"))
    out: dict = {"kind": "call" if is_call(g_role) else "reply" if g_role == ASSISTANT else "other",
                 "confusion": _confusion(g_role, p_role, p), "slots": {}, "swaps": [], "n_errors": 0,
                 "bleu": None, "facts": None, "gold_facts": None, "empty_records": False}
    if out["kind"] == "call" and out["confusion"] is None and isinstance(g, dict):
        out["slots"], out["swaps"] = slot_errors(p, g)
        out["n_errors"] = len(out["swaps"]) + sum(c[k] for c in out["slots"].values() for k in SLOT_COLUMNS[:4])
    if out["kind"] == "reply":
        pred_reply = p if p_role == ASSISTANT else ""
        out["bleu"] = 100 * _bleu_one(g, pred_reply)
        if reply_facts is not None and "records" in row:
            records = row.get("records")
            user = row.get("user") if isinstance(row.get("user"), str) else ""
            out["empty_records"] = not _record_list(records)
            out["gold_facts"] = _safe_facts(reply_facts, g, records, user)
            if p_role == ASSISTANT:
                out["facts"] = _safe_facts(reply_facts, p, records, user)
                out["n_errors"] = sum(u for _, u in out["facts"].values())
    return out


def _record_list(records: Any) -> list:
    """The records of a tool result: a list, or the "records" list of an object ({"ok", "records"})."""
    if isinstance(records, dict):
        records = records.get("records")
    return records if isinstance(records, list) else []


def _safe_facts(reply_facts: ReplyFacts, reply: str, records: Any, user: str) -> dict[str, tuple[int, int]]:
    try:
        return {str(k): (int(s), int(u)) for k, (s, u) in reply_facts(reply, _record_list(records), user).items()}
    except Exception:  # a domain hook must not crash the evaluation of a model's odd reply
        return {}


# ----------------------------------------------------------------------------------------- summary


def _facts_summary(per_item: list[dict], key: str) -> dict:
    facts: dict[str, Counter] = {}
    with_unsupported = invented = checked = 0
    for it in per_item:
        f = it[key]
        if f is None:
            continue
        checked += 1
        for kind, (stated, unsupported) in f.items():
            c = facts.setdefault(kind, Counter())
            c.update(stated=stated, unsupported=unsupported, replies_with_unsupported=int(unsupported > 0))
        with_unsupported += any(u for _, u in f.values())
        invented += it["empty_records"] and any(s for s, _ in f.values())
    return {"n_replies": checked, "replies_with_unsupported": with_unsupported, "invented": invented,
            "facts": {k: dict(v) for k, v in sorted(facts.items())}}


def summarize(per_item: list[dict]) -> dict:
    """The "analysis" object of metrics.json from the item_errors of every row: role confusions, slot
    errors per slot name (SLOT_COLUMNS), range swaps per stem, reply facts of predictions and of gold."""
    slots: dict[str, Counter] = {}
    swaps: Counter = Counter()
    for it in per_item:
        for name, c in it["slots"].items():
            slots.setdefault(name, Counter()).update(c)
        swaps.update(it["swaps"])
    confusions = Counter(it["confusion"] for it in per_item if it["confusion"])
    return {
        "roles": {k: confusions[k] for k in CONFUSIONS},
        "n_search_scored": sum(1 for it in per_item if it["kind"] == "call" and it["confusion"] is None),
        "slots": {name: {k: c[k] for k in SLOT_COLUMNS} for name, c in sorted(slots.items())},
        "swaps": dict(sorted(swaps.items())),
        "replies": {"predicted": _facts_summary(per_item, "facts"), "gold": _facts_summary(per_item, "gold_facts")},
    }


def analyze(rows: list[dict], reply_facts: ReplyFacts | None = None) -> tuple[dict, list[dict]]:
    """(summary, per-item errors) of the rows; the summary is metrics.json's "analysis"."""
    per_item = [item_errors(r, reply_facts) for r in rows]
    return summarize(per_item), per_item


# ----------------------------------------------------------------------------------------- worst


def why(err: dict) -> str:
    """One line saying what is wrong with an item."""
    if err["confusion"]:
        return err["confusion"].replace("_", " ")
    parts = [f"{stem} lower/upper swapped" for stem in err["swaps"]]
    for name, c in sorted(err["slots"].items()):
        bad = [f"{k.replace('_', ' ')} {c[k]}" for k in SLOT_COLUMNS[:4] if c[k]]
        if bad:
            parts.append(f"{name}: {', '.join(bad)}")
    for kind, (stated, unsupported) in sorted((err["facts"] or {}).items()):
        if unsupported:
            parts.append(f"{unsupported} of {stated} {kind} not in the records")
    if err["empty_records"] and any(s for s, _ in (err["facts"] or {}).values()):
        parts.append("invented: states facts after empty records")
    if err["bleu"] is not None:
        parts.append(f"BLEU-4 {err['bleu']:.1f}")
    return "; ".join(parts) or "differs from gold"


def worst(rows: list[dict], per_item: list[dict], n: int = 20) -> list[tuple[dict, dict]]:
    """The n worst (row, item_errors) pairs: role confusion first, then most errors, then lowest BLEU-4;
    rows whose prediction equals the gold are left out; ties keep file order."""
    bad = [(r, e) for r, e in zip(rows, per_item) if r.get("label") != r.get("predict")]
    bad.sort(key=lambda re: (re[1]["confusion"] is None, -re[1]["n_errors"],
                             100.0 if re[1]["bleu"] is None else re[1]["bleu"]))
    return bad[:n]
