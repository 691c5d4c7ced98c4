"""`tunelab data ...`: validate, clean, balance, split, convert and stats over any readable format."""

from __future__ import annotations

import argparse
import json

from tunelab.cli.args import COUNT, POSITIVE, number
from tunelab.domains import DOMAINS


def add_data_parser(sub) -> None:
    d = sub.add_parser("data", help="prepare data: validate, clean, balance, split, convert, stats")
    ds = d.add_subparsers(dest="data_command", required=True)

    v = ds.add_parser("validate", help="check every row; list each bad row (file:line, reason); exit 1 if any")
    v.add_argument("file")
    v.add_argument("--format", default="auto", help="auto, hotel, turns, messages, alpaca or prompt_completion")
    v.add_argument("--max-chars", type=POSITIVE, default=20000, help="rows with more characters of text are oversize")
    v.add_argument("--max-tokens", type=COUNT, default=0, help="rows with more tokens are oversize (needs --model)")
    v.add_argument("--model", default=None, help="preset or model dir whose tokenizer counts tokens")
    v.add_argument("--template", default="auto")
    v.set_defaults(fn=cmd_validate)

    c = ds.add_parser("clean", help="normalise text; drop short turns, duplicates, near duplicates, filtered rows")
    c.add_argument("inp", metavar="IN")
    c.add_argument("out", metavar="OUT", help="same row format; dropped rows go to OUT.dropped.jsonl")
    c.add_argument("--format", default="auto")
    c.add_argument("--min-chars", type=COUNT, default=2, help="turns shorter than this are dropped")
    c.add_argument("--near", type=number(float, ge=0, le=1), default=0.9, help="near-duplicate Jaccard threshold (0: off)")
    c.add_argument("--drop-regex", action="append", default=[], metavar="R", help="drop rows matching R (repeatable)")
    c.add_argument("--drop-keywords-file", default=None, metavar="F", help="drop rows containing any line of F")
    c.add_argument("--unicode", default="NFKC", choices=["NFKC", "NFC", "none"], help="unicode normal form")
    c.add_argument("--to-datasets", action="store_true", help="write OUT as a `datasets` directory")
    c.set_defaults(fn=cmd_clean)

    b = ds.add_parser("balance", help="even out classes of a top-level field: down, up or weight")
    b.add_argument("inp", metavar="IN")
    b.add_argument("out", metavar="OUT")
    b.add_argument("--by", required=True, metavar="FIELD")
    b.add_argument("--mode", default="down", choices=["down", "up", "weight"])
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(fn=cmd_balance)

    s = ds.add_parser("split", help="reproducible stratified/grouped train/dev/test or k-fold splits")
    s.add_argument("inp", metavar="IN")
    s.add_argument("outdir", metavar="OUTDIR")
    s.add_argument("--ratios", default="8,1,1", help="train,dev[,test]")
    s.add_argument("--stratify", default=None, metavar="FIELD")
    s.add_argument("--group", default=None, metavar="FIELD", help="rows sharing it stay in one split")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--kfold", type=COUNT, default=0, metavar="K", help="write fold_0..K-1/{train,dev}.jsonl")
    s.set_defaults(fn=cmd_split)

    v2 = ds.add_parser("convert", help="to messages, hotel, alpaca or text-label (from JSONL/JSON/CSV/datasets)")
    v2.add_argument("inp", metavar="IN")
    v2.add_argument("out", metavar="OUT", help="no suffix: a `datasets` save_to_disk directory")
    v2.add_argument("--to", required=True, choices=["messages", "hotel", "alpaca", "text-label"])
    v2.add_argument("--format", default="auto", help="the input's row format (after --columns)")
    v2.add_argument("--columns", default=None, help="rename columns: question=instruction,answer=output")
    v2.add_argument("--prompt-template", default=None, help="format string over the columns, e.g. '问题：{question}'")
    v2.add_argument("--to-datasets", action="store_true")
    v2.set_defaults(fn=cmd_convert)

    y = ds.add_parser("synth", help="synthesize a domain's dialogs from its generator: OUT/{train,dev,test}.jsonl")
    y.add_argument("--domain", required=True, choices=list(DOMAINS))
    y.add_argument("--n", type=POSITIVE, default=500, help="dialogs to generate (before duplicates are dropped)")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--db", default="", help="the domain's database, when its tools need one (hotel)")
    y.add_argument("--out", required=True, metavar="OUTDIR")
    y.set_defaults(fn=cmd_synth)

    pe = ds.add_parser("prefs-from-eval", help="preference pairs from an evaluation: wrong predictions rejected, "
                       "gold chosen (for data.task dpo/orpo/simpo)")
    pe.add_argument("predictions", help="RUN/eval-*/predictions.jsonl written by `tunelab evaluate`")
    pe.add_argument("--out", required=True, metavar="OUT.jsonl")
    pe.add_argument("--data", default=None, help="the evaluated data file, when it moved since the evaluation")
    pe.set_defaults(fn=cmd_prefs_from_eval)

    t = ds.add_parser("stats", help="token lengths, turns per dialog, labels, truncation at --max-length")
    t.add_argument("file")
    t.add_argument("--model", default=None, help="preset or model dir (default: count characters)")
    t.add_argument("--template", default="auto")
    t.add_argument("--system-prompt", default="")
    t.add_argument("--max-length", type=COUNT, default=0)
    t.add_argument("--format", default="auto")
    t.add_argument("--png", default=None, metavar="OUT.png", help="write a length histogram")
    t.set_defaults(fn=cmd_stats)


def _tokenizer(model: str | None):
    if not model:
        return None
    from tunelab.models import load_tokenizer, resolve_model_dir

    return load_tokenizer(resolve_model_dir(model))


def _print(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=1, default=str))


def cmd_validate(args: argparse.Namespace, overrides) -> int:
    from tunelab.data.prep.validate import validate_file
    from tunelab.utils.errors import ConfigError

    count = None
    if args.max_tokens:
        if not args.model:
            raise ConfigError("--max-tokens needs --model (whose tokenizer counts the tokens)")
        from tunelab.data.render import Renderer
        from tunelab.data.template import get_template

        tok = _tokenizer(args.model)
        renderer = Renderer(get_template(args.template, tok), tok)
        count = lambda conv: len(renderer.encode(conv).input_ids)  # noqa: E731
    report = validate_file(args.file, args.format, args.max_chars, count, args.max_tokens)
    print(report.text())
    return 0 if report.ok else 1


def cmd_clean(args: argparse.Namespace, overrides) -> int:
    from tunelab.data.prep.clean import clean_file

    report = clean_file(args.inp, args.out, args.format, args.min_chars, args.near, args.drop_regex,
                        args.drop_keywords_file, "" if args.unicode == "none" else args.unicode, args.to_datasets)
    _print(report.as_dict())
    return 0


def cmd_balance(args: argparse.Namespace, overrides) -> int:
    from tunelab.data.prep.balance import balance_file

    _print(balance_file(args.inp, args.out, args.by, args.mode, args.seed).as_dict())
    return 0


def cmd_split(args: argparse.Namespace, overrides) -> int:
    from tunelab.data.prep.split import split_file

    _print(split_file(args.inp, args.outdir, args.ratios, args.stratify, args.group, args.seed, args.kfold))
    return 0


def cmd_convert(args: argparse.Namespace, overrides) -> int:
    from tunelab.data.prep.convert import convert_file

    _print(convert_file(args.inp, args.out, args.to, args.columns, args.prompt_template, args.format,
                        args.to_datasets))
    return 0


def cmd_synth(args: argparse.Namespace, overrides) -> int:
    from tunelab.config.run_dir import check_db
    from tunelab.domains import get_domain
    from tunelab.domains.data import synthesize_splits

    _print(synthesize_splits(get_domain(args.domain), args.n, args.seed, check_db(args.db), args.out))
    return 0


def cmd_prefs_from_eval(args: argparse.Namespace, overrides) -> int:
    from tunelab.evaluate.prefs_from_eval import prefs_from_predictions
    from tunelab.utils.io import write_jsonl
    from tunelab.utils.safety import check_output

    check_output(args.out, [args.predictions, *([args.data] if args.data else [])], "--out")
    pairs, report = prefs_from_predictions(args.predictions, args.data)
    write_jsonl(args.out, pairs)
    _print({**report, "out": args.out})
    return 0


def cmd_stats(args: argparse.Namespace, overrides) -> int:
    from tunelab.data.prep.stats import dataset_stats, plot_lengths
    from tunelab.utils.safety import check_output

    if args.png:
        check_output(args.png, [args.file], "--png")
    stats = dataset_stats(args.file, _tokenizer(args.model), args.template, args.system_prompt,
                          args.max_length, args.format)
    out = stats.as_dict()
    if args.png:
        out["png"] = str(plot_lengths(stats, args.png))
    _print(out)
    return 0
