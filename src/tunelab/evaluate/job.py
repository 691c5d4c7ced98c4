"""`tunelab evaluate`: generate the next turn for every target turn of a data file and score it.

Every assistant or tool-call turn of every conversation becomes one item: its context and the gold
turn. Writes predictions.jsonl ({"label", "predict"} rendered turns), metrics.json and report.md.
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
from tunelab.evaluate.metrics import score_items
from tunelab.evaluate.report import write_report
from tunelab.infer.batch import generate_batch
from tunelab.infer.dialog import generate_dialogs
from tunelab.infer.engine import GenerationOptions, load_engine
from tunelab.infer.tools import domain_tools
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import write_json, write_jsonl
from tunelab.utils.log import log
from tunelab.utils.safety import prepare_out_dir

DECODERS = ("dialog", "batch")


def render(turn: Turn) -> str:
    """A Turn in the reference's rendered form: `assistant: <reply>` or `search:\\n<json>`."""
    if turn.role == "tool_call":
        body = json.dumps(turn.arguments, ensure_ascii=False) if turn.arguments is not None else turn.content
        return "search:\n" + body
    return f"assistant: {turn.content}"


def eval_items(convs: list[Conversation]) -> list[tuple[list[Turn], Turn, str]]:
    """(context, gold turn, source) for every target turn."""
    items = []
    for conv in convs:
        for i, turn in enumerate(conv.turns):
            if turn.is_target:
                items.append((conv.turns[:i], turn, f"{conv.source}#{i + 1}"))
    return items


def hotel_runner(db_path: str | None) -> Callable | None:
    """run_search for tool execution match: argument dict -> hotel names, None when invalid.

    No db_path: None (no tool execution metric). A db_path that is not a file: DataError naming it,
    so a misspelt --db never silently drops the metric."""
    if not db_path:
        return None
    check_db(db_path)
    search = domain_tools("hotel", db_path)["search_hotels"]  # the same tool chat and serve run

    def run(args):
        res = search(args)
        return [r["name"] for r in res["records"]] if res.get("ok") else None

    return run


def _check_writable(out: Path) -> None:
    """ConfigError before any work when `out` cannot be created or written (checked, not created)."""
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot write there ({probe} is not a writable directory)")


def _run_db(engine) -> str | None:
    """The run's own database for tool execution match; a missing one is a warning, not an error."""
    if getattr(engine, "domain", "") != "hotel" or not getattr(engine, "db", ""):
        return None
    if not Path(engine.db).is_file():
        log.warning(f"the run's database {engine.db} is missing: no tool execution metric (pass --db PATH)")
        return None
    return engine.db


def evaluate(run_dir: str | Path, data_file: str | Path, limit: int = 0, out_dir: str | Path | None = None,
             batch_size: int = 8, max_new_tokens: int = 256, db: str | None = None, engine=None,
             decode: str = "dialog", trust_remote_code: bool = False) -> dict:
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
    engine = engine or load_engine(run_dir, merge=True, trust_remote_code=trust_remote_code, db=db)
    start = time.time()
    opts = GenerationOptions(max_new_tokens=max_new_tokens)
    if decode == "dialog":
        preds, speed = generate_dialogs(engine, [(c, gold) for c, gold, _ in items], opts, batch_size=batch_size)
    else:
        preds, speed = generate_batch(engine, [c for c, _, _ in items], opts, batch_size=batch_size)
    rows = [{"label": render(gold), "predict": render(pred), "source": src}
            for (_, gold, src), pred in zip(items, preds)]
    metrics = {**score_items(rows, hotel_runner(db or _run_db(engine))), **speed, "data_file": str(data_file),
               "run_dir": str(run_dir), "eval_time_s": round(time.time() - start, 1)}
    try:
        write_jsonl(out / "predictions.jsonl", rows)
        write_json(out / "metrics.json", metrics)
        write_report(out / "report.md", metrics, rows)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write the evaluation ({e.strerror or e})") from None
    log.info(f"evaluation written to {out}")
    return metrics
