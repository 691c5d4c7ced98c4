"""`tunelab data ...`: validate, clean, balance, split, convert and stats over any readable format."""

from __future__ import annotations

import argparse
import json

from tunelab.cli.args import COUNT, POSITIVE, number
from tunelab.domains import DOMAINS, record_view


def add_data_parser(sub) -> None:
    d = sub.add_parser("data", help="prepare data: validate, clean, balance, split, convert, stats, preview")
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
    add_preview_parser(ds)
    add_self_instruct_parser(ds)


def add_preview_parser(ds) -> None:
    p = ds.add_parser("preview", help="one training sample of CONFIG as the model sees it, supervised spans "
                      "marked [[...]] (tokenizer only; --section.key=value overrides apply)")
    p.add_argument("config", help="YAML config (see recipes/)")
    p.add_argument("--index", type=COUNT, default=0, help="which conversation of the training data (default: the first)")
    p.set_defaults(fn=cmd_preview)


def cmd_preview(args: argparse.Namespace, overrides) -> int:
    import dataclasses

    from tunelab.config import load_config
    from tunelab.data.dataset import read_data, train_source
    from tunelab.data.preview import preview_text
    from tunelab.data.render import Renderer
    from tunelab.data.template import get_template
    from tunelab.utils.errors import ConfigError, DataError

    cfg = load_config(args.config, overrides)
    if not (cfg.data.train_file or cfg.data.train_files):
        raise ConfigError("data.train_file is empty; set it in the config or with --data.train_file=PATH")
    # read only as many rows as the index needs
    convs, _ = read_data(train_source(cfg.data), dataclasses.replace(cfg.data, max_samples=args.index + 1))
    if args.index >= len(convs):
        raise DataError(f"--index {args.index}: the training data has {len(convs)} conversations")
    tok = _tokenizer(cfg.model.name_or_path)
    renderer = Renderer(get_template(cfg.data.template, tok, cfg.data.tool_results), tok, cfg.data.system_prompt,
                        view=record_view(cfg.data.domain, cfg.data.record_view))
    conv = convs[args.index]
    enc = renderer.encode(conv, cfg.data.max_length)
    if enc is None:
        raise DataError(f"{conv.source}: no target fits data.max_length={cfg.data.max_length}")
    print(f"# template {renderer.template.name}, model {cfg.model.name_or_path}")
    print(preview_text(enc, tok, conv.source))
    return 0


def add_self_instruct_parser(ds) -> None:
    f = ds.add_parser("self-instruct", help="generate instruction data with a local model (Self-Instruct); "
                      "appends to OUT, so a killed run resumes")
    f.add_argument("--model", required=True, metavar="RUN_OR_PRESET",
                   help="a tunelab run, a preset (`tunelab models`), a model dir or a .gguf")
    f.add_argument("--seeds", required=True, metavar="F", help="seed tasks: .txt (one a line), seed_tasks/Alpaca "
                   "JSONL, or dialogs (domain mode: their first request and tool call)")
    f.add_argument("--n", type=POSITIVE, default=20, help="rows OUT should hold")
    f.add_argument("--out", required=True, metavar="OUT", help="JSONL, appended; rejects go to OUT.rejected.jsonl")
    f.add_argument("--domain", default="", choices=[""] + list(DOMAINS),
                   help="write the domain's user requests; keep those whose tool call validates and returns records")
    f.add_argument("--db", default="", help="the domain's database (hotel)")
    f.add_argument("--style", default="auto", choices=["auto", "raw", "chat"],
                   help="raw: prompts as plain text (base models); chat: as a user turn; auto: chat for a run")
    f.add_argument("--prompts-per-round", type=POSITIVE, default=4, help="instruction-list prompts per round")
    f.add_argument("--max-rounds", type=POSITIVE, default=50, help="stop after this many rounds even short of --n")
    f.add_argument("--max-new-tokens", type=POSITIVE, default=128)
    f.add_argument("--temperature", type=number(float, ge=0), default=0.7)
    f.add_argument("--top-p", type=number(float, gt=0, le=1), default=0.95)
    f.add_argument("--rouge", type=number(float, ge=0, le=1), default=0.7,
                   help="reject an instruction whose ROUGE-L against the pool is at least this")
    f.add_argument("--near", type=number(float, ge=0, le=1), default=0.9, help="MinHash near-duplicate Jaccard (0: off)")
    f.add_argument("--batch-size", type=POSITIVE, default=8)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--trust-remote-code", action="store_true")
    f.set_defaults(fn=cmd_self_instruct)


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
        count = lambda conv: len(renderer.encode(conv).input_ids)
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


def cmd_self_instruct(args: argparse.Namespace, overrides) -> int:
    from tunelab.infer.self_instruct import SelfInstructOptions, self_instruct

    opts = SelfInstructOptions(n=args.n, prompts_per_round=args.prompts_per_round, max_rounds=args.max_rounds,
                               max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                               seed=args.seed, domain=args.domain, db=args.db, rouge_threshold=args.rouge,
                               near_threshold=args.near)
    stats = self_instruct(args.model, args.seeds, args.out, opts, style=args.style, batch_size=args.batch_size,
                          trust_remote_code=args.trust_remote_code)
    print(f"kept {stats['kept']} (of --n {args.n}) in {stats['rounds']} rounds: {stats['out']}")
    for reason, count in stats["rejected"].items():  # one line per filter reason
        print(f"rejected {reason}: {count}")
    print(f"rejected rows: {stats['rejected_file']}")
    return 0
