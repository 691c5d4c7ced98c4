"""Load on the OpenAI-compatible API: 50 concurrent chat requests against a server on the loopback.

    .venv/bin/python benchmarks/serve_load.py [--requests 50] [--max-tokens 16] [--run RUN_DIR ...]

Without --run it trains two tiny runs on a tiny random model (seconds on CPU); with --run it serves
those runs. The server runs in a process of its own, started and stopped here. Two bursts: one with a queue that holds every request, one with a queue of 8, where the
rest must be refused at once with a clean 429 (Retry-After, OpenAI error shape). Every response
must be 200 or such a 429 and the server healthy afterwards, else the script exits non-zero. Only
127.0.0.1 is contacted; the request count and every timeout are bounded. Results go to
benchmarks/results/serve_load.md with the command.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.conftest's tiny model

import httpx  # noqa: E402

from tunelab.infer.multi import MultiEngine  # noqa: E402
from tunelab.serve.api import create_app  # noqa: E402
from tunelab.utils.io import write_text  # noqa: E402


def tiny_runs(root: Path) -> list[Path]:
    from tests.conftest import SAMPLE, make_tiny_model
    from tunelab.train.job import train

    model = make_tiny_model(root / "tiny")
    runs = []
    for name in ("run_a", "run_b"):
        train({"model": {"name_or_path": str(model)}, "data": {"train_file": str(SAMPLE), "max_length": 256},
               "method": {"r": 8, "alpha": 16}, "train": {"output_dir": str(root / name), "max_steps": 2}})
        runs.append(root / name)
    return runs


def one_request(c: httpx.Client, url: str, model: str, i: int, max_tokens: int) -> tuple[int, float, str]:
    """(status, seconds, problem or ''): every 5th request streams."""
    body = {"model": model, "messages": [{"role": "user", "content": f"第{i}个问题：有经济型酒店吗？"}],
            "max_tokens": max_tokens, "stream": i % 5 == 0}
    start = time.perf_counter()
    r = c.post(url + "/v1/chat/completions", json=body)
    took = time.perf_counter() - start
    problem = ""
    if r.status_code == 200:
        if body["stream"] and not r.text.rstrip().endswith("data: [DONE]"):
            problem = "stream did not end with [DONE]"
        elif not body["stream"] and "choices" not in r.json():
            problem = "no choices"
    elif r.status_code == 429:
        err = r.json().get("error", {})
        if not r.headers.get("retry-after", "").isdigit() or err.get("code") != "queue_full":
            problem = f"429 without Retry-After or error shape: {r.headers} {r.text[:200]}"
    else:
        problem = f"status {r.status_code}: {r.text[:200]}"
    return r.status_code, took, problem


def serve(run_dirs: list[str], queue_size: int, max_tokens: int, port: int, threads: int) -> None:
    """The server process: the runs behind the API on 127.0.0.1:port, until terminated."""
    import torch

    from tunelab.serve.server import run_server

    if threads:
        torch.set_num_threads(threads)
    engines = MultiEngine.load(run_dirs, device="cpu")
    run_server(create_app(engines, queue_size=queue_size, max_tokens_cap=max_tokens, timeout_s=300), "127.0.0.1", port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def burst(run_dirs: list[str], models: list[str], queue_size: int, n: int, max_tokens: int, threads: int) -> dict:
    """n concurrent requests against a fresh server process (so client threads do not share its GIL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(run_dirs, queue_size, max_tokens, port, threads))
    proc.start()
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not proc.is_alive() or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        # one client, one connection per request: made before the clock starts
        with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=n)) as c, \
                ThreadPoolExecutor(max_workers=n) as pool:
            start = time.perf_counter()
            results = list(pool.map(lambda i: one_request(c, url, models[i % len(models)], i, max_tokens), range(n)))
            wall = time.perf_counter() - start
        health = httpx.get(url + "/health", timeout=10)
        healthy = health.status_code == 200 and health.json()["status"] == "ok" and health.json()["in_flight"] == 0
    finally:
        proc.terminate()
        proc.join(15)
    ok = [t for s, t, _ in results if s == 200]
    pct = statistics.quantiles(ok, n=20) if len(ok) >= 2 else ok * 19 or [0.0] * 19
    refused = [t for s, t, _ in results if s == 429]
    return {"queue": queue_size, "requests": n, "ok": len(ok), "refused_429": len(refused),
            "problems": [p for _, _, p in results if p], "healthy_after": healthy, "wall_s": wall,
            "ok_per_s": len(ok) / wall, "p50_s": statistics.median(ok) if ok else 0.0, "p95_s": pct[18],
            "p50_429_s": statistics.median(refused) if refused else 0.0, "max_429_s": max(refused, default=0.0)}


def table(rows: list[dict]) -> str:
    lines = ["| queue | requests | 200 | 429 | completed req/s | p50 latency (s) | p95 latency (s) | 429 p50 / max (s) | healthy after |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['queue']} | {r['requests']} | {r['ok']} | {r['refused_429']} | {r['ok_per_s']:.2f} | "
                     f"{r['p50_s']:.2f} | {r['p95_s']:.2f} | {r['p50_429_s']:.2f} / {r['max_429_s']:.2f} | {'yes' if r['healthy_after'] else 'NO'} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=50, help="concurrent requests per burst (at most 200)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--run", nargs="*", default=None, help="serve these runs instead of tiny ones")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads in the server (0: torch's default; on a busy machine more threads can be far slower)")
    args = ap.parse_args()
    n = max(1, min(args.requests, 200))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        run_dirs = [str(d) for d in args.run or tiny_runs(Path(tmp))]
        models = MultiEngine.load(run_dirs, device="cpu").names  # the ids the server will list
        rows = [burst(run_dirs, models, q, n, args.max_tokens, args.threads) for q in (n, 8)]
    out = table(rows)
    print(out)
    problems = [p for r in rows for p in r["problems"]] + [f"queue {r['queue']}: unhealthy after" for r in rows
                                                           if not r["healthy_after"]]
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    write_text(REPO / "benchmarks/results/serve_load.md", f"""# serve load: {n} concurrent chat requests on the loopback

Command: `{command.strip()}`
Models: {', '.join(models)} ({'given runs' if args.run else 'tiny random model, 2-step LoRA runs'}), CPU,
{platform.processor() or platform.machine()}, {args.threads or 'default'} torch thread(s), max_tokens {args.max_tokens}, every 5th request streamed.
One generation at a time (one worker); a full queue answers 429 at once with Retry-After.
Load average before the run: {load} ({os.cpu_count()} CPUs); other work on the machine slows every number.

{out}

Latencies are of the 200 responses, from send to last byte; the 429 column shows refusals do not wait
for the queue. The server runs in its own process; the {n} client threads share this one.
{'Problems: ' + '; '.join(problems) if problems else 'Every response was 200 or a clean 429; the server was healthy after each burst.'}
""")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
