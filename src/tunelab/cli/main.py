"""`tunelab` command line: a thin map from command to library function."""

from __future__ import annotations

import argparse
import sys

from tunelab.cli.args import OneLineParser, add_config_args
from tunelab.cli.data import add_data_parser
from tunelab.cli.hotel import add_hotel_parser
from tunelab.cli.launch import add_launch_args, launch_train
from tunelab.cli.serve import BASE_MODEL_HELP, add_serve_parser, add_webui_parser
from tunelab.config.schema import EvalConfig
from tunelab.domains import DOMAINS
from tunelab.utils.alloc import restart_on_allocator
from tunelab.utils.dist import release_groups
from tunelab.utils.errors import TunelabError

TRUST_HELP = "run Python code shipped with the base model (never taken from a run's config.yaml)"


def cmd_train(args, overrides: list[str]) -> int:
    from tunelab.config import load_config
    from tunelab.train.job import train

    if args.nproc:  # torchrun starts N processes, each running this command without --nproc
        return launch_train(args, overrides)
    if args.no_cache:
        overrides = overrides + ["--data.cache=false"]
    cfg = load_config(args.config, overrides)
    if args.kfold:
        from tunelab.train.kfold import train_kfold

        train_kfold(cfg, args.kfold)
    else:
        train(cfg)
    release_groups()  # a torchrun worker's process group, left by train(), is destroyed here (utils/dist.py)
    return 0


def cmd_chat(args, overrides: list[str]) -> int:
    from tunelab.cli.chat import chat_loop

    chat_loop(args.run_dir, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
              trust_remote_code=args.trust_remote_code, db=args.db, tools=args.tools,
              base_model=args.base_model)
    return 0


def cmd_models(args, overrides: list[str]) -> int:
    from tunelab.models import PRESETS, preset_status

    print(f"{'preset':24} {'installed':9} {'cached':6} {'size':>9}  licence / package")
    for preset in PRESETS.values():
        s = preset_status(preset)
        size = f"{s['size_mb']} MB" if s["size_mb"] else "-"
        print(f"{s['name']:24} {'yes' if s['installed'] else 'no':9} {'yes' if s['cached'] else 'no':6} "
              f"{size:>9}  {s['license']} / {s['package']}")
        print(f"{'':24} {s['description']}")
    return 0


def cmd_evaluate(args, overrides: list[str]) -> int:
    from tunelab.evaluate.job import evaluate
    from tunelab.evaluate.report import metrics_table

    m = evaluate(args.run_dir, args.data, limit=args.limit, out_dir=args.out, batch_size=args.batch_size,
                 max_new_tokens=args.max_new_tokens, db=args.db, decode=args.decode,
                 trust_remote_code=args.trust_remote_code, base_model=args.base_model)
    print(metrics_table(m))
    return 0


def cmd_score(args, overrides: list[str]) -> int:
    import json

    from tunelab.evaluate.job import score_predictions

    print(json.dumps(score_predictions(args.predictions, args.domain, args.db), ensure_ascii=False, indent=2))
    return 0


def cmd_export(args, overrides: list[str]) -> int:
    from tunelab.infer.export import export_gguf, export_merged

    if args.gguf:
        result = export_gguf(args.run_dir, args.gguf, quant=args.quant, check_prompts=args.check_prompts,
                             trust_remote_code=args.trust_remote_code, prompts_file=args.check_prompts_file,
                             max_new_tokens=args.check_new_tokens)
        print(result["path"])
        if result["round_trip"] is not None:
            print(result["round_trip"].line(args.quant))
        return 0
    print(export_merged(args.run_dir, args.merge, trust_remote_code=args.trust_remote_code, dtype=args.dtype))
    return 0


def cmd_publish(args, overrides: list[str]) -> int:
    from tunelab.evaluate.publish import publish

    print(publish(args.run_dir, args.out_dir, merged=args.merged, push=args.push,
                  trust_remote_code=args.trust_remote_code))
    return 0


def cmd_compare(args, overrides: list[str]) -> int:
    from tunelab.evaluate.compare import compare

    print(compare(args.run_dirs, out=args.out, eval_name=args.eval))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="tunelab", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="show library logs and tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fine-tune per a YAML config; override keys with --section.key=value",
                       add_help=False)
    t.add_argument("-h", "--help", action=TrainHelp, help="this help, then every config key: type, default, "
                   "the value CONFIG gives it (when named before --help), help")
    t.add_argument("config", help="YAML config (see recipes/; every key: `tunelab config show CONFIG`); any key "
                   "overridden with --section.key=value or --section.key value")
    t.add_argument("--no-cache", action="store_true", help="tokenize again even when a cached copy exists")
    t.add_argument("--kfold", metavar="FOLDS_DIR", help="train on each fold of `tunelab data split --kfold`")
    add_launch_args(t)
    t.set_defaults(fn=cmd_train)
    c = sub.add_parser("chat", help="chat with a trained run in the terminal (streaming, multi-turn)")
    c.add_argument("run_dir")
    add_config_args(c, EvalConfig, ["max_new_tokens", "temperature", "top_p"])
    c.add_argument("--db", default=None, help="the domain's database (default: the run's own, from run.json)")
    c.add_argument("--base-model", default=None, help=BASE_MODEL_HELP)
    c.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    c.add_argument("--tools", default=None, metavar="MY_TOOLS.PY",
                   help="a Python file whose TOOLS functions the chat runs (besides the run's domain tools)")
    c.set_defaults(fn=cmd_chat)
    e = sub.add_parser("evaluate", help="generate and score every target turn of a data file")
    e.add_argument("run_dir")
    e.add_argument("--data", required=True, help="dialogs in any readable format (hotel, turns, messages, ...)")
    e.add_argument("--out", default=None, help="output dir (default RUN_DIR/eval-<data name>)")
    add_config_args(e, EvalConfig, ["limit", "batch_size", "decode", "max_new_tokens"])
    e.add_argument("--db", default=None,
                   help="the domain's database for tool execution match (default: the run's own, from run.json)")
    e.add_argument("--base-model", default=None, help=BASE_MODEL_HELP)
    e.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    e.set_defaults(fn=cmd_evaluate)
    s = sub.add_parser("score", help="metrics of a predictions.jsonl file, no model")
    s.add_argument("predictions")
    s.add_argument("--domain", default="hotel", choices=list(DOMAINS),
                   help="the domain whose tools run the predicted calls (tool execution match) and extra metrics")
    s.add_argument("--db", default=None, help="the domain's database, for tool execution match (must exist)")
    s.set_defaults(fn=cmd_score)
    k = sub.add_parser("compare", help="one table across runs (BLEU-4, slot P/R/F1, params, time, memory)")
    k.add_argument("run_dirs", nargs="+")
    k.add_argument("--out", default=None, help="write OUT.md and OUT.png")
    k.add_argument("--eval", default=None, help="which eval-* dir of each run (default: the newest)")
    k.set_defaults(fn=cmd_compare)
    x = sub.add_parser("export", help="merge a run's adapter into the base weights: a standalone model dir or GGUF")
    x.add_argument("run_dir")
    where = x.add_mutually_exclusive_group(required=True)
    where.add_argument("--merge", metavar="OUT", help="output model directory (transformers, with chat template)")
    where.add_argument("--gguf", metavar="OUT.gguf", help="output GGUF file (llama.cpp / Ollama), checked by a round trip")
    x.add_argument("--dtype", default="fp32", help="--merge weights: fp32, bf16 or fp16")
    x.add_argument("--quant", default="f16", help="--gguf weights: f16 or q8_0")
    x.add_argument("--check-prompts", type=int, default=4, metavar="N",
                   help="--gguf: compare greedy generations of the GGUF read back with the merged model on N prompts "
                        "(0: skip)")
    x.add_argument("--check-prompts-file", default=None, metavar="FILE",
                   help="--gguf: take the round trip's prompts from FILE: .txt one a line, or a data file (hotel, "
                        "messages, ...) whose dialogs' first user turns are the prompts (default: 8 built-in ones)")
    x.add_argument("--check-new-tokens", type=int, default=16, metavar="T",
                   help="--gguf: greedy tokens generated per round-trip prompt")
    x.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    x.set_defaults(fn=cmd_export)
    pb = sub.add_parser("publish", help="a model-hub folder: adapter or merged weights, tokenizer, chat template, "
                        "model card")
    pb.add_argument("run_dir")
    pb.add_argument("out_dir", help="new (or empty) output directory")
    pb.add_argument("--merged", action="store_true", help="merged weights instead of the adapter")
    pb.add_argument("--push", metavar="REPO_ID", default=None,
                    help="upload to the hub with huggingface_hub (needs a token and a network)")
    pb.add_argument("--trust-remote-code", action="store_true", help=TRUST_HELP)
    pb.set_defaults(fn=cmd_publish)
    add_hotel_parser(sub)
    add_data_parser(sub)
    add_serve_parser(sub)
    add_webui_parser(sub)
    g = sub.add_parser("config", help="every config key: type, default, this config's value (* = changed), help")
    gs = g.add_subparsers(dest="config_command", required=True)
    show = gs.add_parser("show", help="list every key of CONFIG (with --section.key=value overrides applied)")
    show.add_argument("config", help="YAML config (see recipes/)")
    show.set_defaults(fn=cmd_config_show)
    m = sub.add_parser("models", help="list the embedded model presets")
    m.set_defaults(fn=cmd_models)
    return p


def config_overrides(rest: list[str]) -> tuple[list[str], list[str]]:
    """(`--section.key=value` overrides, the other arguments): `--section.key value` is read as
    `--section.key=value`."""
    overrides, unknown, i = [], [], 0
    while i < len(rest):
        arg = rest[i]
        dotted = arg.startswith("--") and "." in arg.split("=", 1)[0]
        if dotted and "=" not in arg and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            overrides.append(f"{arg}={rest[i + 1]}")
            i += 2
            continue
        (overrides if dotted and "=" in arg else unknown).append(arg)
        i += 1
    return overrides, unknown


def cmd_config_show(args, overrides: list[str]) -> int:
    import dataclasses
    import typing

    from tunelab.config import Config, load_config

    cfg = load_config(args.config, overrides)
    print(f"{'key':42} {'type':14} {'default':>14} {'value':>22}  help")
    for section in dataclasses.fields(Config):
        cls, current = section.type if isinstance(section.type, type) else type(getattr(cfg, section.name)), \
            getattr(cfg, section.name)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            tp = hints[f.name]
            kind = "choice" if typing.get_origin(tp) is typing.Literal else getattr(tp, "__name__", str(tp))
            value = getattr(current, f.name)
            mark = "" if value == default else " *"
            print(f"{section.name + '.' + f.name:42} {kind:14} {str(default)[:14]:>14} {str(value)[:20] + mark:>22}  "
                  f"{f.metadata.get('help', '')}")
    return 0


class TrainHelp(argparse.Action):
    """`tunelab train [CONFIG] --help`: the usual help, then the key table of `config show` (CONFIG's values
    when it comes before --help, the defaults otherwise)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        print("\nconfig keys (set in the YAML or with --section.key=value / --section.key value):\n")
        config = getattr(namespace, "config", None)
        try:
            cmd_config_show(argparse.Namespace(config=config), [])
        except TunelabError as e:
            print(f"tunelab: error: {e}", file=sys.stderr)
            parser.exit(2)
        parser.exit(0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:  # a bad option: one line and exit status 2 (returned, so callers in Python get it too)
        args, rest = parser.parse_known_args(argv)
        overrides, unknown = config_overrides(rest)
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if overrides and args.command not in ("train", "config") and getattr(args, "data_command", "") != "preview":
            parser.error("--section.key=value overrides apply to `train`, `config` and `data preview` only")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    from tunelab.utils.log import setup_logging

    setup_logging(args.verbose)
    try:
        return args.fn(args, overrides)
    except TunelabError as e:
        if args.verbose:
            raise
        print(f"tunelab: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the output went to a pager or `head` that closed: nothing more to say
        return 0
    except OSError as e:  # an unwritable or missing path, a full disk: one line naming the path
        if args.verbose:
            raise
        where = f" at {e.filename}" if e.filename else ""
        print(f"tunelab: error: cannot read or write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def start() -> int:
    """The `tunelab` command and `python -m tunelab.cli.main`: main() on jemalloc or mimalloc
    where one is installed (utils/alloc.py)."""
    try:
        restart_on_allocator()
    except TunelabError as e:
        print(f"tunelab: error: {e}", file=sys.stderr)
        return 2
    return main()


if __name__ == "__main__":
    sys.exit(start())
