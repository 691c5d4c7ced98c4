"""Task metrics for a tool-calling assistant (the hotel reference table's definitions).

An item is a prediction `{"label": str, "predict": str}`; both strings are rendered turns (see
`tunelab.evaluate.parse`). Items are grouped by the role of their *gold* turn:

- tool-call items (gold is `<prefix>:` + JSON object, `search:` for hotel) score slot P/R/F1, slot exact
  match and tool execution match; a predicted call counts only with the gold's prefix (the same tool);
- assistant items (gold is `assistant: ...`) score BLEU-4 and ROUGE-1/2/L;
- every item scores role accuracy.

All scores are percentages (x100). A metric over zero items is 0.0. No function here raises on a
malformed prediction.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tunelab.evaluate.parse import ASSISTANT, is_call, parse_rendered, read_predictions, render_turn

__all__ = [
    "render_turn",
    "parse_rendered",
    "read_predictions",
    "slot_counts",
    "slot_prf",
    "bleu4",
    "rouge",
    "role_accuracy",
    "slot_exact_match",
    "tool_execution_match",
    "classification_metrics",
    "score_items",
    "score_file",
]

RunTool = Callable[[str, dict], "list | None"]  # (prefix, arguments) -> result identities, None if invalid


def _parsed(items: Iterable[dict]) -> list[tuple[str | None, Any, str | None, Any]]:
    """(gold_role, gold_payload, pred_role, pred_payload) per item."""
    out = []
    for it in items:
        g_role, g = parse_rendered(it.get("label"))
        p_role, p = parse_rendered(it.get("predict"))
        out.append((g_role, g, p_role, p))
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


# ----------------------------------------------------------------------------------------- slots


def _n_slots(args: Any) -> int:
    if not isinstance(args, dict):
        return 0
    return sum(len(v) if isinstance(v, list) else 1 for v in args.values())


def _element_correct(value: Any, gold_value: Any) -> bool:
    """One predicted list element against the gold value of its key: `in` a gold list, `==` a gold scalar
    (not `in`: on a str that would be a substring test); a null is never correct."""
    if value is None:
        return False
    return value in gold_value if isinstance(gold_value, list) else value == gold_value


def slot_counts(pred_args: Any, gold_args: Any) -> tuple[int, int, int]:
    """`(correct, n_pred, n_gold)` slot counts of one predicted arguments dict against the gold one,
    as the reference defines them (DESIGN.md, "Evaluation").

    - A scalar value is one slot; a list is one slot per element (an empty list is no slot); every key
      counts, a null value too. n_pred and n_gold count the predicted and gold dicts this way.
    - A predicted scalar is correct only when it `==` the gold value of the same key, so a scalar
      against a gold list is wrong.
    - A predicted list element is correct when it is `in` the gold list of the same key; against a
      gold scalar, only when it `==` that scalar (`in` on a str would be a substring test).
    - A null (None) predicted value, scalar or element, is never correct, but counts as predicted.
    - A key missing from gold makes all its predicted slots wrong.
    - Duplicates in a predicted list each count (reference definition), so with duplicates
      `correct` may exceed `n_gold`.
    - Arguments that are not a dict (None from an unparseable prediction) count as no slots.
    - Python `==` applies, so `1 == 1.0 == True`.
    """
    n_pred, n_gold = _n_slots(pred_args), _n_slots(gold_args)
    if not isinstance(pred_args, dict) or not isinstance(gold_args, dict):
        return 0, n_pred, n_gold
    correct = 0
    for key, value in pred_args.items():
        if key not in gold_args:
            continue
        gold_value = gold_args[key]
        if isinstance(value, list):
            correct += sum(1 for v in value if _element_correct(v, gold_value))
        elif value is not None and value == gold_value:
            correct += 1
    return correct, n_pred, n_gold


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def slot_prf(items: Iterable[dict]) -> dict[str, float]:
    """Micro slot precision/recall/F1 (x100) over the items whose gold is a tool call.

    P = correct / predicted slots, R = correct / gold slots, F1 = 2PR/(P+R) (0 when P+R == 0).
    A prediction that is not the gold's tool call, or whose arguments don't parse to a dict, predicts 0 slots.
    Searches predicted where gold is an assistant reply are NOT counted (as in the reference),
    so spurious tool calls lower role accuracy, not slot precision.
    """
    correct = n_pred = n_gold = 0
    for g_role, g, p_role, p in _parsed(items):
        if not is_call(g_role):
            continue
        c, np_, ng = slot_counts(p if p_role == g_role else None, g)
        correct, n_pred, n_gold = correct + c, n_pred + np_, n_gold + ng
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_gold if n_gold else 0.0
    return {"slot_p": 100 * p, "slot_r": 100 * r, "slot_f1": 100 * _f1(p, r)}


def _canonical(value: Any) -> Any:
    """A hashable form in which lists compare as sets (recursively) and dicts by their items."""
    if isinstance(value, list):
        return ("list", frozenset(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((k, _canonical(v)) for k, v in value.items()))
    return value


def slot_exact_match(items: Iterable[dict]) -> float:
    """Percent of tool-call items whose predicted arguments equal the gold ones.

    Lists compare as sets (order and duplicates ignored); a list never equals a scalar; keys
    must match exactly (an extra key, even with a null value, is a miss). A non-call or
    unparseable prediction is a miss.
    """
    hits = []
    for g_role, g, p_role, p in _parsed(items):
        if not is_call(g_role):
            continue
        ok = p_role == g_role and isinstance(p, dict) and isinstance(g, dict)
        try:
            ok = ok and _canonical(p) == _canonical(g)
        except RecursionError:  # absurdly nested arguments
            ok = False
        hits.append(1.0 if ok else 0.0)
    return 100 * _mean(hits)


def tool_execution_match(items: Iterable[dict], run_tool: RunTool) -> float:
    """Percent of tool-call items whose predicted call returns the same set of results as the gold's.

    `run_tool(prefix, args)` runs the tool and returns the results' identities (hotel names), or None
    for invalid arguments. A prediction that is not the gold's tool, whose arguments don't parse, for
    which run_tool returns None or raises, is a miss; so is an item whose gold call itself is invalid.
    """
    hits = []
    for g_role, g, p_role, p in _parsed(items):
        if not is_call(g_role):
            continue
        hit = False
        if p_role == g_role and isinstance(p, dict) and isinstance(g, dict):
            gold_names = run_tool(g_role, g)
            try:
                pred_names = run_tool(p_role, p)
            except Exception:  # a model's arguments must not crash the evaluation
                pred_names = None
            hit = gold_names is not None and pred_names is not None and set(pred_names) == set(gold_names)
        hits.append(1.0 if hit else 0.0)
    return 100 * _mean(hits)


# ----------------------------------------------------------------------------------------- text


def _bleu_one(gold: str, pred: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    if not gold or not pred:  # NLTK returns 0 (and may warn) on empty input: make it explicit
        return 0.0
    return float(sentence_bleu([list(gold)], list(pred), smoothing_function=SmoothingFunction().method3))


def bleu4(items: Iterable[dict]) -> float:
    """Mean character-level sentence BLEU-4 (x100) over the items whose gold is an assistant reply.

    Reference = the gold reply's characters, hypothesis = the predicted reply's characters, NLTK
    `sentence_bleu` with uniform weights and `SmoothingFunction().method3`. An item scores 0 when
    the prediction is not an assistant reply, or when either reply text is empty.
    """
    scores = [
        _bleu_one(g, p if p_role == ASSISTANT else "")
        for g_role, g, p_role, p in _parsed(items)
        if g_role == ASSISTANT
    ]
    return 100 * _mean(scores)


_ROUGE_KEYS = ("rouge-1", "rouge-2", "rouge-l")


def _segment(text: str) -> str:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return " ".join(jieba.cut(text))


def _rouge_one(gold: str, pred: str) -> dict[str, float]:
    from rouge_chinese import Rouge

    hyp, ref = _segment(pred), _segment(gold)
    if not hyp.split() or not ref.split():
        return dict.fromkeys(_ROUGE_KEYS, 0.0)
    try:
        scores = Rouge().get_scores(hyp, ref)[0]
    except ValueError:  # rouge_chinese refuses a side that has no words after its own splitting
        return dict.fromkeys(_ROUGE_KEYS, 0.0)
    return {k: float(scores[k]["f"]) for k in _ROUGE_KEYS}


def rouge(items: Iterable[dict]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F (x100) over the items whose gold is an assistant reply.

    Both texts are segmented with jieba (tokens joined by spaces) and scored with
    `rouge_chinese.Rouge`. An item scores 0 when the prediction is not an assistant reply, or when
    either text has no tokens.
    """
    per_item = [
        _rouge_one(g, p if p_role == ASSISTANT else "")
        for g_role, g, p_role, p in _parsed(items)
        if g_role == ASSISTANT
    ]
    return {k: 100 * _mean([s[k] for s in per_item]) for k in _ROUGE_KEYS}


# ----------------------------------------------------------------------------------------- roles


def role_accuracy(items: Iterable[dict]) -> float:
    """Percent of all items whose predicted role equals the gold role.

    A turn that is neither a reply nor a tool call has role None, which never matches.
    """
    hits = [1.0 if g_role is not None and g_role == p_role else 0.0 for g_role, _, p_role, _ in _parsed(items)]
    return 100 * _mean(hits)


def classification_metrics(golds: Sequence[Any], preds: Sequence[Any]) -> dict[str, float]:
    """Accuracy and macro F1 (x100). Macro is over the labels present in golds or preds; a label's
    precision/recall/F1 is 0 when its denominator is 0.
    """
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold labels but {len(preds)} predictions")
    if not golds:
        return {"accuracy": 0.0, "macro_f1": 0.0}
    accuracy = sum(g == p for g, p in zip(golds, preds)) / len(golds)
    f1s = []
    for label in set(golds) | set(preds):
        tp = sum(g == label and p == label for g, p in zip(golds, preds))
        n_pred = sum(p == label for p in preds)
        n_gold = sum(g == label for g in golds)
        f1s.append(_f1(tp / n_pred if n_pred else 0.0, tp / n_gold if n_gold else 0.0))
    return {"accuracy": 100 * accuracy, "macro_f1": 100 * _mean(f1s)}


# ----------------------------------------------------------------------------------------- all


def score_items(items: Iterable[dict], run_tool: RunTool | None = None) -> dict[str, Any]:
    """All metrics, rounded to 4 decimals, plus n_items, n_search (tool-call items) and n_assistant
    (by gold role).

    Keys: n_items, n_search, n_assistant, role_accuracy, slot_p, slot_r, slot_f1, slot_exact_match,
    bleu-4, rouge-1, rouge-2, rouge-l, and tool_execution_match when run_tool is given.
    """
    items = list(items)
    roles = [parse_rendered(it.get("label"))[0] for it in items]
    out: dict[str, Any] = {
        "n_items": len(items),
        "n_search": sum(map(is_call, roles)),
        "n_assistant": roles.count(ASSISTANT),
        "role_accuracy": role_accuracy(items),
        **slot_prf(items),
        "slot_exact_match": slot_exact_match(items),
        "bleu-4": bleu4(items),
        **rouge(items),
    }
    if run_tool is not None:
        out["tool_execution_match"] = tool_execution_match(items, run_tool)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def score_file(path: str | Path, run_tool: RunTool | None = None) -> dict[str, Any]:
    """`score_items` over a predictions JSONL read by `read_predictions`."""
    return score_items(read_predictions(path), run_tool)
