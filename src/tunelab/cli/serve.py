"""`tunelab serve` (OpenAI-compatible API) and `tunelab webui` (Gradio page): parse, load, run."""

from __future__ import annotations

import os
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cmd_serve(args, overrides: list[str]) -> int:
    from tunelab.infer.multi import MultiEngine
    from tunelab.serve.api import create_app
    from tunelab.serve.limits import check_limits
    from tunelab.serve.server import run_server

    # before loading: a bad option is one line now, not a traceback after minutes of loading
    check_limits(max_body_bytes=args.max_body_bytes, max_tokens_cap=args.max_tokens_cap, queue_size=args.queue_size,
                 timeout=args.timeout, max_prompt_tokens=args.max_prompt_tokens, port=args.port)
    api_key = args.api_key or os.environ.get("TUNELAB_API_KEY") or None
    if args.host not in LOOPBACK and not api_key:
        print(f"tunelab: warning: serving on {args.host} without an API key; anyone who can reach it may use it",
              file=sys.stderr)
    engines = MultiEngine.load(args.run_dirs, args.device, trust_remote_code=args.trust_remote_code, db=args.db)
    app = create_app(engines, api_key=api_key, max_body_bytes=args.max_body_bytes,
                     max_tokens_cap=args.max_tokens_cap, queue_size=args.queue_size, timeout_s=args.timeout,
                     execute_tools=args.execute_tools, max_prompt_tokens=args.max_prompt_tokens)
    print(f"models: {', '.join(engines.names)}; OpenAI base URL: http://{args.host}:{args.port}/v1", flush=True)
    run_server(app, args.host, args.port)
    return 0


def cmd_webui(args, overrides: list[str]) -> int:
    from tunelab.serve.limits import check_limits
    from tunelab.serve.webui import launch_webui

    check_limits(port=args.port)  # max_new_tokens is checked by launch_webui before it loads
    print(f"web UI on http://{args.host}:{args.port}", flush=True)
    launch_webui(args.run_dirs, host=args.host, port=args.port, device=args.device,
                 max_new_tokens=args.max_new_tokens)
    return 0


def add_serve_parser(sub) -> None:
    s = sub.add_parser("serve", help="OpenAI-compatible chat API over runs that share one base model")
    s.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="each served as a model named by its directory")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: env TUNELAB_API_KEY)")
    s.add_argument("--execute-tools", action="store_true",
                   help="run the runs' domain tools server-side for clients that send no tools")
    s.add_argument("--max-tokens-cap", type=int, default=512, help="max_tokens above this is lowered to it")
    s.add_argument("--queue-size", type=int, default=8, help="requests admitted at once; more get 429")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds per request before 504")
    s.add_argument("--max-body-bytes", type=int, default=1_000_000, help="larger request bodies get 413")
    s.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="longer prompts get 400 context_length_exceeded (default: the model's context length)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    s.add_argument("--db", default=None, help="the domain's database for every run (default: each run's own)")
    s.add_argument("--trust-remote-code", action="store_true",
                   help="run Python code shipped with the base model (never taken from a run's config.yaml)")
    s.set_defaults(fn=cmd_serve)


def add_webui_parser(sub) -> None:
    w = sub.add_parser("webui", help="Gradio chat page with the last tool call and the records it returned")
    w.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    w.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    w.add_argument("--port", type=int, default=7860)
    w.add_argument("--max-new-tokens", type=int, default=256)
    w.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    w.set_defaults(fn=cmd_webui)
