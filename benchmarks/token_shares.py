"""Where a recipe's training tokens go: per turn role, and per field of the tool results' records.

    .venv/bin/python benchmarks/token_shares.py [--config recipes/hotel_lora.yaml] [--samples 600] [--out NAME]
        [--data.KEY=VALUE ...]

Renders the first --samples training conversations as `tunelab train` does (template, system prompt, tool
results and records as the config renders them, config overrides such as `--data.record_view=relevant` applied;
no max_length cut) and counts tokens by turn role; BOS and the system
prompt are what the whole row holds beyond its turns. For tool results whose records are lists of dicts it
also counts each field's tokens (its value alone; lists joined with ",", as the table rendering does). Every
token of a row costs about the same in a training step, so the shares say what a step is spent on. Writes
benchmarks/results/NAME.md (default token_shares).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
from pathlib import Path

from tunelab.config import load_config
from tunelab.data.dataset import read_data, train_source
from tunelab.data.render import Renderer
from tunelab.data.template import get_template
from tunelab.domains import record_view
from tunelab.models import load_tokenizer, resolve_model_dir
from tunelab.utils.io import write_text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="recipes/hotel_lora.yaml")
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--out", default="token_shares")
    args, overrides = ap.parse_known_args()
    cfg = load_config(args.config, overrides)
    convs, _ = read_data(train_source(cfg.data), dataclasses.replace(cfg.data, max_samples=args.samples))
    tok = load_tokenizer(resolve_model_dir(cfg.model.name_or_path))
    renderer = Renderer(get_template(cfg.data.template, tok, cfg.data.tool_results), tok, cfg.data.system_prompt,
                        view=record_view(cfg.data.domain, cfg.data.record_view))
    by_role, turns, targets = collections.Counter(), collections.Counter(), collections.Counter()
    fields, records, results = collections.Counter(), 0, 0
    for conv in convs:
        total = len(renderer.encode(conv).input_ids)
        for turn in renderer.viewed(conv.turns):
            ids, labels = renderer.turn_pieces(turn)
            by_role[turn.role] += len(ids)
            turns[turn.role] += 1
            targets[turn.role] += sum(1 for x in labels if x != -100)
            total -= len(ids)
            if turn.role == "tool_result" and isinstance(turn.records, list):
                results += 1
                for rec in (r for r in turn.records if isinstance(r, dict)):
                    records += 1
                    for key, value in rec.items():
                        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
                        fields[key] += len(tok(text, add_special_tokens=False).input_ids)
        by_role["BOS and system prompt"] += total
    n, all_tokens = len(convs), sum(by_role.values())
    cmd = "python benchmarks/token_shares.py " + " ".join(sys.argv[1:])
    lines = [f"# Where the training tokens go ({args.config}, first {n} conversations, {cfg.model.name_or_path})",
             "", f"Command: `{cmd.strip()}`", "", f"{all_tokens / n:.1f} tokens per conversation before any cut.",
             "", "| part | tokens per conversation | share | turns per conversation | supervised per conversation |",
             "|---|---|---|---|---|"]
    for role, count in by_role.most_common():
        lines.append(f"| {role} | {count / n:.1f} | {100 * count / all_tokens:.1f}% | {turns[role] / n:.2f} | "
                     f"{targets[role] / n:.1f} |")
    if records:
        lines += ["", f"Tool results: {results} with records, {records / results:.2f} records each.", "",
                  "| record field | tokens per record | share of all tokens |", "|---|---|---|"]
        lines += [f"| {key} | {count / records:.1f} | {100 * count / all_tokens:.1f}% |"
                  for key, count in fields.most_common()]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(Path(__file__).parent / "results" / f"{args.out}.md", text)


if __name__ == "__main__":
    main()
