"""The training-throughput benchmark on a CUDA GPU in bf16: tunelab vs LLaMA-Factory vs the per-turn recipe.

    python benchmarks/train_throughput/gpu.py --train FILE --model-config DIR --out DIR \
        [--lf-python PY --lf-path DIR] [--per-turn-dialogs 64] [--skip lf,per_turn]

Written for the lent GPU machine, where nothing can be downloaded (benchmarks/gpu_run.sh prepares and
runs it there). The model is SmolLM2-135M-Instruct's architecture (config and tokenizer from
--model-config) with random weights made here and saved once; every system loads that directory. The
weights do not travel (538 MB), and a training step costs the same whatever their values, so dialogs/s,
tokens/s and memory are the real model's; losses are not comparable with the CPU run's.

The same dialogs, LoRA r8 on q_proj,v_proj, lr 1e-4, one epoch, seed 0, as run.py, in bf16 on the GPU:
LLaMA-Factory 0.9.5 (its defaults; an interpreter that has it, --lf-python/--lf-path), the per-turn
recipe (per_turn.py; on the first --per-turn-dialogs dialogs, it is the slowest), and tunelab's levers
one at a time (each row adds one lever to the fastest configuration so far; `kept` says whether it
stayed). Each system runs in its own process; its peak GPU memory is the device's used memory (NVML,
polled every 20 ms) above what was in use before it started. MFU: run.py's necessary FLOPs over the bf16
matmul rate measured in this run. Writes OUT/train_throughput_gpu.md and .json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as R  # noqa: E402  (the CPU harness: same data rendering, FLOPs formula, tunelab configs)

BASE = {"data.tool_results": "table", "train.target_only_logits": True, "train.gradient_checkpointing": False}
LADDER = [
    ("one sequence per dialog, batch 1 (JSON tool results, full logits, gradient checkpointing)",
     {"data.tool_results": "json", "train.target_only_logits": False, "train.gradient_checkpointing": True}),
    ("+ compact tool results (table)", {"data.tool_results": "table"}),
    ("+ logits only at supervised positions", {"train.target_only_logits": True}),
    ("+ no gradient checkpointing", {"train.gradient_checkpointing": False}),
    ("+ 8 dialogs packed per row (varlen flash attention, no padding, no mask)",
     {"data.packing": True, "train.per_device_train_batch_size": 8}),
    ("+ 16 dialogs packed per row", {"data.packing": True, "train.per_device_train_batch_size": 16}),
]  # torch.compile is left out here: its minutes of compiling cost more lent device time than the run
ASIDE = [
    ("(kept configuration, padded batches instead of packing)", {"data.packing": False}),
    ("(kept configuration + gradient checkpointing: less memory)", {"train.gradient_checkpointing": True}),
]


class GpuPeak:
    """Peak device memory in use (MB) above the level when entered, polled from NVML in a thread."""

    def __enter__(self):
        self.mb = float("nan")
        try:  # nvidia-ml-py; absent (a CPU machine trying the script): no figure
            import pynvml

            pynvml.nvmlInit()
        except Exception:
            self._t = None
            return self
        self._h = pynvml.nvmlDeviceGetHandleByIndex(0)
        self._used = lambda: pynvml.nvmlDeviceGetMemoryInfo(self._h).used
        self.base = self.peak = self._used()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used())
            time.sleep(0.02)

    def __exit__(self, *exc):
        if self._t is None:
            return
        self._stop.set()
        self._t.join()
        self.mb = (self.peak - self.base) / 2**20


def make_model(config_dir: Path, dst: Path) -> Path:
    """SmolLM2's architecture with seeded random weights (fp32 on disk, as the preset), and its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if (dst / "config.json").is_file():
        return dst
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir), dtype=torch.float32)
    model.save_pretrained(dst)
    for f in config_dir.iterdir():
        if f.name != "config.json" and f.is_file():
            shutil.copy(f, dst / f.name)
    return dst


def bf16_ceiling() -> float:
    """Median bf16 GFLOP/s of an 8192^3 product on random data, timed with CUDA events."""
    import torch

    n = 8192
    a, b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16), torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(20):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return 2 * n**3 / sorted(times)[len(times) // 2] / 1e9


def timed(fn):
    with GpuPeak() as g:
        r = fn()
    return {**r, "gpu_peak_mb": round(g.mb, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--model-config", type=Path, required=True, help="config.json and tokenizer files")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lf-python", default=None)
    ap.add_argument("--lf-path", default=None, help="PYTHONPATH for LF's interpreter")
    ap.add_argument("--per-turn-dialogs", type=int, default=64)
    ap.add_argument("--skip", default="", help="comma-separated: lf, per_turn, aside")
    ap.add_argument("--n", type=int, default=0, help="use only the first N dialogs of --train (0: all)")
    ap.add_argument("--only", default="",
                    help="comma-separated ladder rows to run on their own, each with all levers up to it "
                         "(a short run: no ladder, no asides); the references run after the first")
    ap.add_argument("--results", type=Path, default=None,
                    help="where the .md/.json go, rewritten after every system (default: --out)")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    cmd = "python benchmarks/train_throughput/gpu.py " + " ".join(sys.argv[1:])
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = (args.results or out).resolve()
    results.mkdir(parents=True, exist_ok=True)

    import torch
    import transformers

    model_dir = make_model(args.model_config.resolve(), out / "model")
    if args.n:
        lines = args.train.read_text(encoding="utf-8").splitlines()[:args.n]
        args.train = out / f"train{args.n}.jsonl"
        args.train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {"torch": torch.__version__, "transformers": transformers.__version__,
           "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (dry run)"}
    ceiling = bf16_ceiling() if torch.cuda.is_available() else R.matmul_ceiling()  # CPU: a dry run of the script
    flops, tokens, targets = R.necessary_flops(args.train, model_dir)
    n = len(flops)
    print(f"{env}; {n} dialogs, {tokens} tokens ({targets} targets); necessary {sum(flops) / 1e12:.2f} TFLOP; "
          f"bf16 matmul {ceiling / 1e3:.0f} TFLOP/s", flush=True)

    rows, runs, errors = [], {}, {}

    def attempt(key: str, name: str, fn, **extra) -> dict | None:
        t = time.time()
        try:
            r = timed(fn)
        except Exception as e:  # one system failing must not lose the others' figures
            errors[key] = f"{type(e).__name__}: {e}"[-3000:]
            print(f"FAILED {key} after {time.time() - t:.0f}s: {errors[key]}", flush=True)
            traceback.print_exc()
            return None
        runs[key] = r
        if "run_dir" in r:  # where the step time goes: the run's own per-step log
            log = Path(r["run_dir"]).with_suffix(".log")
            print(f"  {key}: device {r.get('device')}, {r.get('steps')} steps; log tail:", *(
                ln[:200] for ln in log.read_text(errors="replace").splitlines()[-3:]), sep="\n    ")
        rows.append({**R.row(name, r, flops, ceiling), "gpu_peak_mb": r["gpu_peak_mb"], **extra})
        print(f"{key} ({time.time() - t:.0f}s wall): {rows[-1]}", flush=True)
        save(cmd, env, ceiling, n, tokens, targets, rows, runs, errors, {}, results)
        return rows[-1]

    only = [int(x) for x in args.only.split(",") if x]
    settings, best = {}, None
    for i, (name, lever) in enumerate(LADDER):
        if only and i not in only:
            continue
        trial = {k: v for _, lv in LADDER[:i + 1] for k, v in lv.items()} if only else {**settings, **lever}
        r = attempt(f"ladder{i}", "tunelab " + name,
                    lambda trial=trial, i=i: R.run_tunelab(f"ladder{i}", args.train, trial, str(model_dir), out))
        if r is None:
            continue
        r["kept"] = best is None or r["dialogs_per_s"] > best["dialogs_per_s"]
        if r["kept"]:
            settings, best = trial, r
        refs = (i == only[0]) if only else (i == 3)  # the references, once tunelab's core rows are in
        if refs and "lf" not in skip:
            from llamafactory import run_llamafactory

            attempt("lf", "LLaMA-Factory 0.9.5 (its defaults: gradient checkpointing on)",
                    lambda: run_llamafactory(args.train, model_dir, out / "lf", system_prompt=R.SYSTEM_PROMPT,
                                             lora_rank=8, lora_target="q_proj,v_proj", epochs=1, seed=0,
                                             python=args.lf_python, python_path=args.lf_path, bf16=True,
                                             log=lambda *a: None))
        if refs and "per_turn" not in skip:
            attempt("per_turn", "per-turn recipe (sample per answer, padded to 2048+1024, full logits)",
                    lambda: R.run_per_turn(args.train, model_dir, args.per_turn_dialogs, out))
        save(cmd, env, ceiling, n, tokens, targets, rows, runs, errors, settings, results)
    if "aside" not in skip and best is not None and not only:
        for i, (name, change) in enumerate(ASIDE):
            attempt(f"aside{i}", "tunelab " + name,
                    lambda i=i, change=change: R.run_tunelab(f"aside{i}", args.train, {**settings, **change},
                                                             str(model_dir), out), aside=True)
    text = save(cmd, env, ceiling, n, tokens, targets, rows, runs, errors, settings, results)
    print(text)


def save(cmd, env, ceiling, n, tokens, targets, rows, runs, errors, settings, out: Path) -> str:
    lines = [
        "# Training throughput on a GPU: tunelab vs LLaMA-Factory vs the per-turn recipe",
        "",
        f"Command: `{cmd}` (prepared and run by `benchmarks/gpu_run.sh`).",
        "",
        f"{env['device']}, torch {env['torch']}, transformers {env['transformers']} (tunelab's). Same {n} synthesized "
        f"hotel dialogs ({tokens} tokens, {targets} targets in tunelab's table rendering); SmolLM2-135M-Instruct's "
        "architecture with random weights (same step cost as the real weights); LoRA r8 on q_proj,v_proj, lr 1e-4, "
        f"one epoch, bf16. bf16 matmul rate measured in this run: **{ceiling / 1e3:.0f} TFLOP/s** (MFU's denominator). "
        "Ladder rows add one lever each to the fastest configuration so far (✓: kept). GPU MB: peak device memory "
        "above the level before the system started.",
        "",
        "| system | dialogs | train s | dialogs/s | real tokens/s | GPU MB | peak RSS MB | MFU | kept |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kept = "✓" if r.get("kept") else ("" if "kept" in r else "–")
        lines.append(f"| {r['system']} | {r['dialogs']} | {r['train_s']} | {r['dialogs_per_s']:.3f} | "
                     f"{r['tokens_per_s']:.0f} | {r['gpu_peak_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{100 * r['mfu']:.2f}% | {kept} |")
    best = max((r for r in rows if r.get("kept")), key=lambda r: r["dialogs_per_s"], default=None)
    if best:
        lines += ["", f"tunelab's kept configuration: `{json.dumps(settings)}`.", ""]
        for prefix, label in [("LLaMA-Factory", "LLaMA-Factory"), ("per-turn", "the per-turn recipe")]:
            other = next((r for r in rows if r["system"].startswith(prefix)), None)
            if other:
                lines.append(f"- tunelab vs {label}: **{best['dialogs_per_s'] / other['dialogs_per_s']:.1f}x** "
                             f"dialogs/s, peak GPU memory {best['gpu_peak_mb']:.0f} vs {other['gpu_peak_mb']:.0f} MB.")
    for k, e in errors.items():
        lines.append(f"- {k} failed: `{e.splitlines()[0][:300]}`")
    text = "\n".join(lines) + "\n"
    tmp = out / "train_throughput_gpu.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out / "train_throughput_gpu.md")
    (out / "train_throughput_gpu.json").write_text(json.dumps(
        {"command": cmd, "env": env, "ceiling_gflops": ceiling, "rows": rows, "errors": errors,
         "kept_settings": settings, "raw": runs}, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
