"""A training step on records as the relevant view shows them (data.record_view=relevant) against whole records.

    .venv/bin/python benchmarks/record_view.py [--config recipes/hotel_lora.yaml] [--rows 24] [--lora-layers 0]
        [--crosswoz ../shared/data/crosswoz/val.json.zip]

First, what the view costs a reply: of the replies after a search that state a facility the search did not ask
for (the facility in a record and in the reply's text), how many the view still shows (a guest named it before
the reply), in the recipe's training file and, where the CrossWOZ file is there, in its imported hotel dialogs.
Renders the first --rows training conversations of the recipe (those that fit its max_length either way) twice,
as `tunelab train` does: with data.record_view full and relevant. Times one optimizer-free training step
(forward + backward of the target-only loss, one conversation per step, as the recipe trains) on the preset in
fp32, LoRA r16 on every linear layer of the last N layers for each N of --lora-layers (0: all), the two
renderings interleaved row by row. Reports tokens and targets per row, the median step time of each, and the
ratio. The targets are the same tokens either way; only the context shrinks. Writes
benchmarks/results/record_view.md (--out to name it otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import torch
from step_timing import lora_on_last, timed_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="recipes/hotel_lora.yaml")
    ap.add_argument("--rows", type=int, default=24)
    ap.add_argument("--lora-layers", default="0")
    ap.add_argument("--out", default="record_view")
    ap.add_argument("--crosswoz", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/crosswoz/val.json.zip"))
    args = ap.parse_args()
    from tunelab.config import load_config
    from tunelab.data.dataset import read_data, train_source
    from tunelab.data.render import Renderer
    from tunelab.data.template import get_template
    from tunelab.domains import record_view
    from tunelab.models import load_tokenizer, resolve_model_dir
    from tunelab.train.precision import machine
    from tunelab.utils.io import write_text

    cfg = load_config(args.config, [])
    convs, _ = read_data(train_source(cfg.data), dataclasses.replace(cfg.data, max_samples=4 * args.rows))
    model_dir = resolve_model_dir(cfg.model.name_or_path)
    tok = load_tokenizer(model_dir)
    template = get_template(cfg.data.template, tok, cfg.data.tool_results)
    views = {"full": None, "relevant": record_view(cfg.data.domain or "hotel", "relevant")}
    renderers = {k: Renderer(template, tok, cfg.data.system_prompt, view=v) for k, v in views.items()}
    pairs = [{k: r.encode(c) for k, r in renderers.items()} for c in convs]
    pairs = [p for p in pairs if all(len(e.input_ids) <= cfg.data.max_length for e in p.values())][: args.rows]
    batches = [{k: {"input_ids": torch.tensor([e.input_ids]), "labels": torch.tensor([e.labels])} for k, e in p.items()}
               for p in pairs]
    lines = [f"# A training step on relevant records against whole ones ({cfg.model.name_or_path}, fp32)", "",
             f"Command: `{' '.join(['python benchmarks/record_view.py', *sys.argv[1:]])}`", "",
             f"Machine: {machine()}", "",
             "Replies that state a facility their search did not ask for, and how many of them the view still "
             "shows it to:", "", *coverage(cfg.data.train_file, args.crosswoz), "",
             f"{len(pairs)} conversations of {args.config}'s training data, one per step, each timed with both "
             "renderings (order alternating), the first two rows as warm-up.", ""]
    for k in views:
        tokens = sum(len(p[k].input_ids) for p in pairs) / len(pairs)
        targets = sum(sum(1 for x in p[k].labels if x != -100) for p in pairs) / len(pairs)
        lines.append(f"- record_view {k}: {tokens:.1f} tokens and {targets:.1f} targets per row")
    lines += ["", "| LoRA layers | step, full | step, relevant | speed-up |", "|---|---|---|---|"]
    for n in (int(x) for x in args.lora_layers.split(",")):
        model, params, label = lora_on_last(model_dir, n)
        times = {k: [] for k in views}
        for i, batch in enumerate(batches):
            for k in (list(views) if i % 2 else list(views)[::-1]):
                elapsed, _ = timed_step(model, params, batch[k])
                if i >= 2:
                    times[k].append(elapsed)
        full, relevant = statistics.median(times["full"]), statistics.median(times["relevant"])
        lines.append(f"| {label} | {full:.3f} s | {relevant:.3f} s | {full / relevant:.2f}x |")
        print(lines[-1], flush=True)
        del model
    path = Path(__file__).parent / "results" / f"{args.out}.md"
    write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


def shown(path: Path) -> tuple[int, int, int]:
    """(replies after a search, those stating a facility of the records the search did not ask for, those of
    them whose every such facility the view shows) over a hotel dialog file."""
    import json

    from tunelab.domains.hotel.view import named_facilities

    after = stated = kept = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        call, records, users = None, None, []
        for t in json.loads(line)["dialog"]:
            if t["role"] == "user":
                users.append(t["content"])
            elif t["role"] == "search":
                call = t["arguments"]
            elif t["role"] == "return":
                records = t.get("records")
            elif t["role"] == "assistant" and records:
                after += 1
                asked = set((call or {}).get("facilities") or [])
                said = {f for r in records for f in r.get("facilities") or []} - asked
                said = {f for f in said if f in t["content"]}
                if said:
                    stated += 1
                    kept += said <= named_facilities(call, "\n".join(users))
    return after, stated, kept


def coverage(train_file: str, crosswoz: str) -> list[str]:
    files = [("training file " + train_file, Path(train_file))]
    if Path(crosswoz).is_file():
        import tempfile

        sys.path.insert(0, str(Path(__file__).parent))
        from hotel_real import prepare

        data, _, _ = prepare(Path(crosswoz), Path(tempfile.mkdtemp()))
        files.append((f"CrossWOZ {Path(crosswoz).name}, hotel part (all dialogs)", data))
    return [f"- {name}: {after} replies after a search, {stated} state an unasked facility, the view shows it to {kept}"
            for name, (after, stated, kept) in ((n, shown(p)) for n, p in files)]


if __name__ == "__main__":
    main()
