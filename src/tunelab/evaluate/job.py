"""`tunelab evaluate`: generate the next turn for every target turn of a data file and score it.

Every assistant or tool-call turn of every conversation becomes one item: its context and the gold
turn. Writes predictions.jsonl ({"label", "predict"} rendered turns, with "source" and the context's
last user turn and tool result records for the error analysis), metrics.json and report.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from tunelab.config.run_dir import check_db
from tunelab.data.readers import read_conversations
from tunelab.data.schema import Conversation, Turn
from tunelab.domains import domain_of_tool, get_domain
from tunelab.evaluate.analysis import analyze
from tunelab.evaluate.metrics import score_items
from tunelab.evaluate.report import write_report
from tunelab.infer.batch import generate_batch
from tunelab.infer.dialog import generate_dialogs
from tunelab.infer.engine import GenerationOptions, load_engine
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import write_json, write_jsonl
from tunelab.utils.log import log
from tunelab.utils.safety import prepare_out_dir

DECODERS = ("dialog", "batch")


def render(turn: Turn, domain: str = "") -> str:
    """A Turn in the rendered form scored by the metrics: `assistant: <reply>` or `<prefix>:\\n<json>`, the
    prefix being the domain's name for the tool (hotel: `search`, as in the reference) or the tool's name."""
    if turn.role == "tool_call":
        plugin = get_domain(domain) or domain_of_tool(turn.name)  # a run without data.domain on a domain's data
        if plugin is not None:
            return plugin.render_call(turn.name, turn.arguments, turn.content)
        body = json.dumps(turn.arguments, ensure_ascii=False) if turn.arguments is not None else turn.content
        return f"{turn.name or 'tool'}:\n{body}"
    return f"assistant: {turn.content}"


def eval_items(convs: list[Conversation]) -> list[tuple[list[Turn], Turn, str]]:
    """(context, gold turn, source) for every target turn."""
    items = []
    for conv in convs:
        for i, turn in enumerate(conv.turns):
            if turn.is_target:
                items.append((conv.turns[:i], turn, f"{conv.source}#{i + 1}"))
    return items


def context_of(context: list[Turn]) -> dict:
    """What the error analysis reads of an item's context: the last user turn ("user", "" when none) and
    the records of the last tool result ("records", None when there was none)."""
    user = next((t.content for t in reversed(context) if t.role == "user"), "")
    records = next((t.records for t in reversed(context) if t.role == "tool_result"), None)
    return {"user": user, "records": records}


def tool_runner(domain: str, resource: str | None) -> Callable | None:
    """run_tool for tool execution match: (prefix, arguments) -> the results' identities (the domain's
    record_key, e.g. hotel names), None when the call is invalid. None when there is no domain, or its
    tools need a resource (the hotel database) that is not given; an explicit one must exist (check_db)."""
    plugin = get_domain(domain)
    if plugin is None:
        return None
    try:
        tools = plugin.make_tools(resource or "")  # the same tools chat and serve run
    except ConfigError:
        return None

    def run(prefix: str, args: dict):
        name = plugin.tool_for(prefix)
        res = tools[name](args) if name in tools else {"ok": False}
        if not res.get("ok"):
            return None
        key = plugin.record_key
        return [r.get(key) if key and isinstance(r, dict) else json.dumps(r, sort_keys=True, ensure_ascii=False)
                for r in res.get("records", [])]

    return run


def score(rows: list[dict], domain: str, resource: str | None) -> dict:
    """The metrics of rendered rows, tool execution match when the domain's tools can run, the domain's
    own extra metrics, and the error analysis ("analysis", see tunelab.evaluate.analysis)."""
    return score_and_analyze(rows, domain, resource)[0]


def score_and_analyze(rows: list[dict], domain: str, resource: str | None) -> tuple[dict, list[dict]]:
    """(metrics as `score` returns them, the item_errors of every row for the report's worst items)."""
    metrics = score_items(rows, tool_runner(domain, resource))
    plugin = get_domain(domain)
    if plugin is not None and plugin.extra_metrics is not None:
        extra = plugin.extra_metrics(rows)
        metrics.update(extra, domain_metrics=sorted(extra))
    metrics["analysis"], per_item = analyze(rows, plugin.reply_facts if plugin is not None else None)
    return metrics, per_item


def score_predictions(path: str | Path, domain: str = "", db: str | None = None) -> dict:
    """`tunelab score`: the metrics of a predictions.jsonl; an explicit `db` must exist (DataError naming it),
    so a misspelt path never silently drops the tool execution metric."""
    from tunelab.evaluate.metrics import read_predictions

    db = check_db(db) or None  # before anything else: a misspelt --db is the first thing to hear about
    return score(read_predictions(path), domain, db)


def _check_writable(out: Path) -> None:
    """ConfigError before any work when `out` cannot be created or written (checked, not created)."""
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot write there ({probe} is not a writable directory)")


def evaluate(run_dir: str | Path, data_file: str | Path, limit: int = 0, out_dir: str | Path | None = None,
             batch_size: int = 8, max_new_tokens: int = 256, db: str | None = None, engine=None,
             decode: str = "dialog", trust_remote_code: bool = False, base_model: str | None = None) -> dict:
    """Score a run on a data file; returns the metrics (also written to out_dir/metrics.json).

    decode="dialog" walks each dialog with one KV cache and checks the gold turn as a draft (greedy
    outputs, fastest); "batch" generates `batch_size` left-padded items at a time. `db` overrides the
    run's database (it must exist); without it the run's own is used when it has one.
    """
    if decode not in DECODERS:
        raise ConfigError(f"decode '{decode}' is unknown; valid: {', '.join(DECODERS)}")
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / f"eval-{Path(data_file).stem}"
    _check_writable(out)
    db = check_db(db) or None
    prepare_out_dir(out, ["predictions.jsonl", "metrics.json", "report.md"], [data_file, db], "--out")
    convs, _ = read_conversations(data_file)
    items = eval_items(convs)
    if limit:
        items = items[:limit]
    engine = engine or load_engine(run_dir, merge=True, trust_remote_code=trust_remote_code, db=db,
                                   base_model=base_model)
    start = time.time()
    opts = GenerationOptions(max_new_tokens=max_new_tokens)
    if decode == "dialog":
        preds, speed = generate_dialogs(engine, [(c, gold) for c, gold, _ in items], opts, batch_size=batch_size)
    else:
        preds, speed = generate_batch(engine, [c for c, _, _ in items], opts, batch_size=batch_size)
    domain = getattr(engine, "domain", "")
    rows = [{"label": render(gold, domain), "predict": render(pred, domain), "source": src, **context_of(ctx)}
            for (ctx, gold, src), pred in zip(items, preds)]
    resource = db or getattr(engine, "db", "")
    if resource and not Path(resource).is_file():
        log.warning(f"the run's database {resource} is missing: no tool execution metric (pass --db PATH)")
    scored, per_item = score_and_analyze(rows, domain, resource)
    metrics = {**scored, **speed, "data_file": str(data_file),
               "run_dir": str(run_dir.resolve()), "eval_time_s": round(time.time() - start, 1)}
    try:
        write_jsonl(out / "predictions.jsonl", rows)
        write_json(out / "metrics.json", metrics)
        write_report(out / "report.md", metrics, rows, per_item)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write the evaluation ({e.strerror or e})") from None
    log.info(f"evaluation written to {out}")
    return metrics
