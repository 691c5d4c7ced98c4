"""`tunelab serve` (OpenAI-compatible API) and `tunelab webui` (Gradio page): parse, load, run.
Their options are the fields of `ServeConfig` (config/schema.py)."""

from __future__ import annotations

import os
import sys

from tunelab.cli.args import add_config_args, config_from_args
from tunelab.config.schema import EvalConfig, ServeConfig

LOOPBACK = ("127.0.0.1", "localhost", "::1")
BASE_MODEL_HELP = ("where the runs' base model is (a preset, a model directory or a .gguf) when not where run.json says: "
                   "a run trained on another machine (default: run.json's model_dir if present, else its base_model)")
SERVE_FIELDS = ["host", "port", "api_key", "execute_tools", "max_tokens_cap", "queue_size", "batch_max", "timeout_s",
                "max_body_bytes", "max_prompt_tokens", "stuck_margin_s"]


def cmd_serve(args, overrides: list[str]) -> int:
    from tunelab.config.load import check_ranges
    from tunelab.infer.multi import MultiEngine
    from tunelab.serve.api import create_app
    from tunelab.serve.server import run_server

    cfg = config_from_args(args, ServeConfig, api_key=args.api_key or os.environ.get("TUNELAB_API_KEY", ""))
    check_ranges(cfg, "serve")  # before loading: a bad option is one line now, not after minutes of loading
    from tunelab.infer.tools import load_tools_module

    tools = load_tools_module(args.tools) if args.tools else None  # a broken module fails before loading too
    if cfg.host not in LOOPBACK and not cfg.api_key:
        print(f"tunelab: warning: serving on {cfg.host} without an API key; anyone who can reach it may use it",
              file=sys.stderr)
    engines = MultiEngine.load(args.run_dirs, args.device, trust_remote_code=args.trust_remote_code, db=args.db,
                               base_model=args.base_model)
    warn_template_mismatch(engines)
    app = create_app(engines, cfg, tools=tools)
    print(f"models: {', '.join(engines.names)}; OpenAI base URL: http://{cfg.host}:{cfg.port}/v1", flush=True)
    run_server(app, cfg.host, cfg.port)
    return 0


def warn_template_mismatch(engines) -> None:
    """One warning line per served model whose prompts, built from OpenAI messages, are not the training ids."""
    from tunelab.infer.template_check import served_mismatch

    for name in engines.names:
        problem = served_mismatch(engines.engine_for(name).renderer)
        if problem:
            print(f"tunelab: warning: {name}: {problem}", file=sys.stderr)


def cmd_webui(args, overrides: list[str]) -> int:
    from tunelab.serve.webui import launch_webui

    print(f"web UI on http://{args.host}:{args.webui_port}", flush=True)
    launch_webui(args.run_dirs, host=args.host, port=args.webui_port, device=args.device,
                 max_new_tokens=args.max_new_tokens, train=args.train, recipes_dir=args.recipes,
                 runs_root=args.runs_dir)
    return 0


def add_serve_parser(sub) -> None:
    s = sub.add_parser("serve", help="OpenAI-compatible chat API over runs that share one base model")
    s.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="each served as a model named by its directory")
    add_config_args(s, ServeConfig, SERVE_FIELDS, rename={"timeout_s": "timeout"})
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    s.add_argument("--db", default=None, help="the domain's database for every run (default: each run's own)")
    s.add_argument("--tools", default=None, metavar="MY_TOOLS.PY",
                   help="a Python file whose TOOLS functions the server runs for clients that send no tools")
    s.add_argument("--base-model", default=None, help=BASE_MODEL_HELP)
    s.add_argument("--trust-remote-code", action="store_true",
                   help="run Python code shipped with the base model (never taken from a run's config.yaml)")
    s.set_defaults(fn=cmd_serve)


def add_webui_parser(sub) -> None:
    w = sub.add_parser("webui", help="Gradio chat page with the last tool call and the records it returned; "
                       "--train: a Train tab too")
    w.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="runs to chat with (none: the Train tab only)")
    w.add_argument("--train", action="store_true", help="add the Train tab: start, watch, stop a run, chat with it")
    w.add_argument("--recipes", default="recipes", metavar="DIR", help="the Train tab's recipe YAMLs (default: recipes)")
    w.add_argument("--runs-dir", default="runs", metavar="DIR",
                   help="where the Train tab's runs go, each as webui-<time> (default: runs)")
    add_config_args(w, ServeConfig, ["host", "webui_port"], rename={"webui_port": "port"})
    add_config_args(w, EvalConfig, ["max_new_tokens"])
    w.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    w.set_defaults(fn=cmd_webui)
