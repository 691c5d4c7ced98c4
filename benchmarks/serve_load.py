"""Load on the OpenAI-compatible API: concurrent chat clients against a server on the loopback.

    .venv/bin/python benchmarks/serve_load.py [--requests 16] [--rounds 2] [--max-tokens 16]
        [--batch-max 1 16] [--preset gemma3-270m | --run RUN_DIR ...] [--threads 2] [--out FILE]

Without --run or --preset it trains two tiny runs on a tiny random model (seconds on CPU); --preset
trains one 1-step LoRA run on that preset (the served model is the preset's weights, nearly untouched);
--run serves the given runs (requests go to the runs, not to the base they share). The server runs in a process of its own, started and stopped here.
One burst per --batch-max value (1: one request at a time; more: the requests of one run decode
together), with a queue that holds every request: --requests clients, each sending --rounds requests
one after another; requests/s and p95 latency, and whether the replies equal the first burst's (greedy
decoding: they should). Then one burst with a queue of 8 at the last batch-max, where the rest must be
refused at once with a clean 429 (Retry-After, OpenAI error shape). Every response must be 200 or such
a 429 and the server healthy afterwards, else the script exits non-zero. Only 127.0.0.1 is contacted;
the request count and every timeout are bounded. Results go to --out (benchmarks/results/serve_load.md)
with the command.
"""

from __future__ import annotations

import argparse
import json
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


def preset_run(root: Path, preset: str) -> list[Path]:
    """One LoRA run of a single step on `preset` (the hotel sample): a run dir to serve the preset through."""
    from tests.conftest import SAMPLE
    from tunelab.train.job import train

    train({"model": {"name_or_path": preset}, "data": {"train_file": str(SAMPLE), "max_length": 256},
           "method": {"r": 16, "alpha": 32}, "train": {"output_dir": str(root / "preset_run"), "max_steps": 1}})
    return [root / "preset_run"]


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


def one_request(c: httpx.Client, url: str, model: str, i: int, max_tokens: int) -> tuple[int, float, str, str]:
    """(status, seconds, problem or '', reply text): every 5th request streams."""
    body = {"model": model, "messages": [{"role": "user", "content": f"第{i}个问题：有经济型酒店吗？"}],
            "max_tokens": max_tokens, "stream": i % 5 == 0}
    start = time.perf_counter()
    r = c.post(url + "/v1/chat/completions", json=body)
    took = time.perf_counter() - start
    problem, text = "", ""
    if r.status_code == 200:
        if body["stream"] and not r.text.rstrip().endswith("data: [DONE]"):
            problem = "stream did not end with [DONE]"
        elif not body["stream"] and "choices" not in r.json():
            problem = "no choices"
        elif body["stream"]:
            events = [json.loads(e[6:]) for e in r.text.split("\n\n") if e.startswith("data: {")]
            text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
        else:  # the content, or the calls without their ids (fresh per response)
            msg = r.json()["choices"][0]["message"]
            text = msg.get("content") or json.dumps([c["function"] for c in msg.get("tool_calls") or []],
                                                    ensure_ascii=False)
    elif r.status_code == 429:
        err = r.json().get("error", {})
        if not r.headers.get("retry-after", "").isdigit() or err.get("code") != "queue_full":
            problem = f"429 without Retry-After or error shape: {r.headers} {r.text[:200]}"
    else:
        problem = f"status {r.status_code}: {r.text[:200]}"
    return r.status_code, took, problem, text


def serve(run_dirs: list[str], queue_size: int, max_tokens: int, port: int, threads: int, batch_max: int) -> None:
    """The server process: the runs behind the API on 127.0.0.1:port, until terminated."""
    import torch

    from tunelab.serve.server import run_server

    if threads:
        torch.set_num_threads(threads)
    engines = MultiEngine.load(run_dirs, device="cpu")
    run_server(create_app(engines, queue_size=queue_size, max_tokens_cap=max_tokens, timeout_s=600, batch_max=batch_max),
               "127.0.0.1", port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def burst(run_dirs: list[str], models: list[str], queue_size: int, n: int, max_tokens: int, threads: int,
          batch_max: int, rounds: int = 1) -> dict:
    """n concurrent clients, `rounds` requests each, against a fresh server process (so client threads do not
    share its GIL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = multiprocessing.get_context("spawn").Process(target=serve, args=(run_dirs, queue_size, max_tokens, port,
                                                                            threads, batch_max))
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
        def client(k: int) -> list:  # request i = round * n + k, so every burst asks the same things
            return [one_request(c, url, models[(r * n + k) % len(models)], r * n + k, max_tokens) for r in range(rounds)]

        with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=n)) as c, \
                ThreadPoolExecutor(max_workers=n) as pool:
            start = time.perf_counter()
            per_client = list(pool.map(client, range(n)))
            wall = time.perf_counter() - start
        results = sorted(((k + r * n, res) for k, rs in enumerate(per_client) for r, res in enumerate(rs)))
        results = [res for _, res in results]
        health = httpx.get(url + "/health", timeout=10)
        healthy = health.status_code == 200 and health.json()["status"] == "ok" and health.json()["in_flight"] == 0
    finally:
        proc.terminate()
        proc.join(15)
    ok = [t for s, t, _, _ in results if s == 200]
    pct = statistics.quantiles(ok, n=20) if len(ok) >= 2 else ok * 19 or [0.0] * 19
    refused = [t for s, t, _, _ in results if s == 429]
    return {"queue": queue_size, "batch_max": batch_max, "clients": n, "requests": len(results), "ok": len(ok),
            "refused_429": len(refused), "texts": [x for _, _, _, x in results],
            "problems": [p for _, _, p, _ in results if p], "healthy_after": healthy, "wall_s": wall,
            "ok_per_s": len(ok) / wall, "p50_s": statistics.median(ok) if ok else 0.0, "p95_s": pct[18],
            "p50_429_s": statistics.median(refused) if refused else 0.0, "max_429_s": max(refused, default=0.0)}


def table(rows: list[dict]) -> str:
    lines = ["| batch_max | queue | clients | requests | 200 | 429 | completed req/s | p50 latency (s) | p95 latency (s) "
             "| 429 p50 / max (s) | replies as the first burst | healthy after |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch_max']} | {r['queue']} | {r['clients']} | {r['requests']} | {r['ok']} | "
                     f"{r['refused_429']} | {r['ok_per_s']:.2f} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | "
                     f"{r['p50_429_s']:.2f} / {r['max_429_s']:.2f} | {r.get('same', '-')} | "
                     f"{'yes' if r['healthy_after'] else 'NO'} |")
    return "\n".join(lines)


def speedup(rows: list[dict]) -> str:
    """The last full-queue burst against the first (batch_max 1 first, by default)."""
    full = [r for r in rows if r.get("full")]
    if len(full) < 2 or not full[0]["ok_per_s"]:
        return ""
    a, b = full[0], full[-1]
    return (f"batch_max {b['batch_max']} vs {a['batch_max']}: {b['ok_per_s'] / a['ok_per_s']:.2f}x requests/s, "
            f"p95 latency {a['p95_s']:.2f} s -> {b['p95_s']:.2f} s ({a['p95_s'] / max(b['p95_s'], 1e-9):.2f}x lower).")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=16, help="concurrent clients per burst (at most 200)")
    ap.add_argument("--rounds", type=int, default=2, help="requests each client sends, one after another (at most 20)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--batch-max", type=int, nargs="+", default=[1, 16],
                    help="one full-queue burst per value (serve.batch_max; 1: one request at a time)")
    ap.add_argument("--run", nargs="*", default=None, help="serve these runs instead of tiny ones")
    ap.add_argument("--preset", default=None, help="serve a 1-step LoRA run on this preset (e.g. gemma3-270m)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads in the server (0: torch's default; on a busy machine more threads can be far slower)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/serve_load.md"), help="the results file")
    args = ap.parse_args()
    n, rounds = max(1, min(args.requests, 200)), max(1, min(args.rounds, 20))
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        run_dirs = [str(d) for d in args.run or (preset_run(Path(tmp), args.preset) if args.preset
                                                 else tiny_runs(Path(tmp)))]
        models = MultiEngine.load(run_dirs, device="cpu").names  # the ids the server will list
        if args.run or args.preset:  # the given runs only: one model under load, as the measure asks
            models = models[1:]
        rows = [{**burst(run_dirs, models, n * rounds, n, args.max_tokens, args.threads, b, rounds), "full": True}
                for b in args.batch_max]
        rows.append(burst(run_dirs, models, 8, n, args.max_tokens, args.threads, args.batch_max[-1]))
    differ = []
    for r in rows[1:-1]:
        r["same"] = f"{sum(a == b for a, b in zip(r['texts'], rows[0]['texts']))} of {r['requests']}"
        differ += [(i, a, b) for i, (a, b) in enumerate(zip(rows[0]["texts"], r["texts"])) if a != b][:3]
    examples = "\n".join(f"- request {i}: `{a[:160]}` vs `{b[:160]}`" for i, a, b in differ)
    out = table(rows)
    gain = speedup(rows)
    print(out)
    print(gain)
    problems = [p for r in rows for p in r["problems"]] + [f"queue {r['queue']}: unhealthy after" for r in rows
                                                           if not r["healthy_after"]]
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    served = "given runs" if args.run else f"{args.preset}, a 1-step LoRA run" if args.preset else \
        "tiny random model, 2-step LoRA runs"
    write_text(Path(args.out), f"""# serve load: {n} concurrent chat clients on the loopback

Command: `{command.strip()}`
Models: {', '.join(models)} ({served}), CPU,
{platform.processor() or platform.machine()}, {args.threads or 'default'} torch thread(s), max_tokens {args.max_tokens}, every 5th request streamed.
Each client sends {rounds} request(s) one after another. batch_max 1: one generation at a time; more:
up to that many requests generate at once, those of one run decoding together (one forward pass per step).
A full queue answers 429 at once with Retry-After.
Load average before the run: {load} ({os.cpu_count()} CPUs); other work on the machine slows every number.

{out}

{gain}

Latencies are of the 200 responses, from send to last byte; the 429 column shows refusals do not wait
for the queue. "Replies as the first burst": greedy replies equal to the first burst's, request by request.
The server runs in its own process; the {n} client threads share this one.
{('First replies that differ from the first burst (first burst vs later):' + chr(10) + examples) if differ else ''}
{'Problems: ' + '; '.join(problems) if problems else 'Every response was 200 or a clean 429; the server was healthy after each burst.'}
""")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
