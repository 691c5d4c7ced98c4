"""Training throughput on the same hotel dialogs and model: tunelab, LLaMA-Factory, the per-turn recipe.

    .venv/bin/python benchmarks/train_throughput/run.py [--n 12] [--per-turn-dialogs 0] [--activation-mb 500]
        [--out train_throughput] [--skip NAME,...]

One run, one machine, one model (SmolLM2-135M-Instruct preset, fp32, LoRA r8 on q_proj,v_proj, lr 1e-4,
one epoch, seed 0), the same N synthesized dialogs:

1. builds the hotel DB and the dialogs (seeded) under benchmarks/out/train_throughput/;
2. measures this machine's fp32 matmul ceiling (GFLOP/s), in this run;
3. runs each system in its own process (so each peak RSS is its own): LLaMA-Factory 0.9.5 in a throwaway
   venv (llamafactory.py), the classic per-turn recipe (per_turn.py), and tunelab's levers one at a time
   (`tunelab train` with settings): a lever stays on for the next row only if it made training faster;
4. dev loss of the trained adapters on held-out dialogs (same loss: mean over target tokens, each
   adapter under the rendering it was trained with), against the untrained model's;
5. generation speed of the kept run on the dev dialogs' items (`tunelab evaluate`, both decoders);
6. prints the table and writes benchmarks/results/NAME.md and .json (--out NAME, default train_throughput).

dialogs/s = dialogs / Trainer train seconds (model loading and tokenization excluded for every system).
MFU = the necessary FLOPs of these dialogs (below) / (train seconds x measured ceiling); the numerator is
the same for every system, so MFU ratios are speed ratios. Necessary FLOPs, per dialog of T tokens
(compact rendering) with G target tokens, for LoRA (frozen base weights: no weight gradients):
4 x (decoder linear params) x T + 6 x layers x heads x head_dim x T^2 (causal attention, forward and
backward) + 4 x vocab x hidden x G (LM head at targets, forward and backward).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "benchmarks" / "out" / "train_throughput"
RESULTS = REPO / "benchmarks" / "results"
PRESET = "smollm2-135m-instruct"
SYSTEM_PROMPT = "你是酒店预订助手。需要查酒店时调用search_hotels工具，再根据查询结果回答客人。"
LR = 1e-4

# tunelab's levers, in order; each row adds one lever to the best configuration so far.
LADDER = [
    ("one sequence per dialog (fp32, JSON tool results, full logits, gradient checkpointing)",
     {"data.tool_results": "json", "train.target_only_logits": False, "train.gradient_checkpointing": True,
      "train.mixed_precision": "no", "data.pad_to_multiple_of": 1}),
    ("+ compact tool results (table)", {"data.tool_results": "table"}),
    ("+ logits only at supervised positions", {"train.target_only_logits": True}),
    ("+ no gradient checkpointing", {"train.gradient_checkpointing": False}),
    ("+ bf16 autocast (fp32 weights and optimizer; auto picks it where a step measures >= 1.15x faster)",
     {"train.mixed_precision": "auto"}),
    ("+ lengths padded to a multiple of 64 (bf16 kernels are built and cached per shape; buckets reuse them)",
     {"data.pad_to_multiple_of": 64}),
    ("+ 4 dialogs packed per row (position ids restart, no padding)",
     {"data.packing": True, "train.per_device_train_batch_size": 4}),
    ("+ one torch thread instead of one per core", {"train.threads": 1}),
    # compiled kernels are cached on disk: the first run of a model and method compiles, later runs load
    ("+ torch.compile of the decoder layers, first run (empty kernel cache: compiling included; never kept)",
     {"train.compile": True}, "cold"),
    ("+ torch.compile of the decoder layers, a later run (kernels from the cache the first run filled)",
     {"train.compile": True}, "warm"),
]
# what the ladder kept on both AMX machines measured (benchmarks/results/train_throughput*.md; on the non-AMX EPYC,
# train_throughput_epyc.md, it kept neither the length buckets nor compile: run the whole ladder on a new kind of
# CPU): with `--skip ladder` only this is timed (compile cold, then warm), for the comparisons in less than half the time
KEPT = {"data.tool_results": "table", "train.target_only_logits": True, "train.gradient_checkpointing": False,
        "train.mixed_precision": "auto", "data.pad_to_multiple_of": 64, "train.compile": True}
# measured beside the ladder, on the kept configuration: what the alternatives would cost
ASIDE = [
    ("(kept configuration, padded batches of 4 instead of packing)",
     {"data.packing": False, "train.per_device_train_batch_size": 4}),
    ("(kept configuration + gradient checkpointing of every layer: least memory)",
     {"train.gradient_checkpointing": True}),
]


def sh(cmd: list[str], log: Path, env: dict | None = None) -> None:
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO)
    if proc.returncode:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}); {log}:\n" + "\n".join(tail))


def tunelab_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def make_data(n: int, dev: int) -> tuple[Path, Path]:
    """N training and `dev` held-out dialogs, synthesized with a fixed seed."""
    OUT.mkdir(parents=True, exist_ok=True)
    db = OUT / "hotels.db"
    if not db.is_file():
        sh([tunelab_bin("tunelab"), "hotel", "build-db", "--out", str(db), "--seed", "0"], OUT / "build-db.log")
    synth = OUT / "synth"
    if not (synth / "train.jsonl").is_file():
        sh([tunelab_bin("tunelab"), "hotel", "synth", "--db", str(db), "--n", "400", "--seed", "7", "--out", str(synth)],
           OUT / "synth.log")
    train_lines = (synth / "train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    dev_lines = (synth / "dev.jsonl").read_text(encoding="utf-8").splitlines()[:dev]
    train, held = OUT / f"train{n}.jsonl", OUT / f"dev{dev}.jsonl"
    train.write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    held.write_text("\n".join(dev_lines) + "\n", encoding="utf-8")
    return train, held


def matmul_ceiling(dtype: str = "float32") -> float:
    """Best GFLOP/s of torch.mm in `dtype` over square and model-shaped products, one thread and all."""
    import torch

    dtype = getattr(torch, dtype)
    best, default = 0.0, torch.get_num_threads()
    for threads, (m, k, n) in [(t, s) for t in sorted({1, default}) for s in
                               [(2048, 2048, 2048), (1536, 576, 1536), (1536, 1536, 576), (1024, 4096, 1024)]]:
        torch.set_num_threads(threads)
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(2):
            a @ b
        reps, t = 0, time.perf_counter()
        while time.perf_counter() - t < 1.5:
            a @ b
            reps += 1
        best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t) / 1e9)
    torch.set_num_threads(default)
    return best


def necessary_flops(data: Path, model_dir: Path) -> tuple[list[float], int, int]:
    """FLOPs each dialog needs (see the module doc); all dialogs' tokens and target tokens (table rendering)."""
    from transformers import AutoConfig, AutoTokenizer

    from tunelab.data.readers import read_conversations
    from tunelab.data.render import IGNORE, Renderer
    from tunelab.data.template import get_template

    c = AutoConfig.from_pretrained(model_dir)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    attn = c.hidden_size * head_dim * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)
    linear = c.num_hidden_layers * (attn + 3 * c.hidden_size * c.intermediate_size)
    tok = AutoTokenizer.from_pretrained(model_dir)
    renderer = Renderer(get_template("chatml", tok), tok, SYSTEM_PROMPT)
    flops, tokens, targets = [], 0, 0
    for conv in read_conversations(str(data))[0]:
        enc = renderer.encode(conv)
        t, g = len(enc.input_ids), sum(x != IGNORE for x in enc.labels)
        flops.append(4 * linear * t + 6 * c.num_hidden_layers * c.num_attention_heads * head_dim * t * t
                     + 4 * c.vocab_size * c.hidden_size * g)
        tokens, targets = tokens + t, targets + g
    return flops, tokens, targets


def tunelab_config(data: Path, out: Path, settings: dict, model: str = PRESET) -> dict:
    cfg = {"model": {"name_or_path": model},
           "data": {"train_file": str(data), "template": "chatml", "system_prompt": SYSTEM_PROMPT,
                    "max_length": 8192, "cache": False},
           "method": {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
           "train": {"output_dir": str(out), "overwrite": True, "learning_rate": LR, "num_train_epochs": 1,
                     "logging_steps": 1, "seed": 0}}
    for key, value in settings.items():
        section, name = key.split(".")
        cfg[section][name] = value
    return cfg


def run_tunelab(name: str, data: Path, settings: dict, model: str = PRESET, root: Path | None = None,
                cache: str = "", env: dict | None = None) -> dict:
    """`tunelab train` in its own process. cache: "cold" empties the benchmark's own compiled-kernel cache
    first, "warm" reuses it; either way it is OUT/inductor, never the user's."""
    out = (root or OUT) / "tunelab" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg_path = out.with_suffix(".yaml")
    cfg_path.write_text(yaml.safe_dump(tunelab_config(data, out, settings, model), allow_unicode=True),
                        encoding="utf-8")
    kernels = (root or OUT) / "inductor"
    if cache == "cold" and kernels.exists():
        shutil.rmtree(kernels)
    sh([sys.executable, "-m", "tunelab.cli.main", "train", str(cfg_path)], out.with_suffix(".log"),
       env={"TORCHINDUCTOR_CACHE_DIR": str(kernels), **(env or {})})
    run = json.loads((out / "run.json").read_text())
    return {"train_s": run["train_time_s"], "tokens": run["tokens"], "peak_rss_mb": run["peak_rss_mb"],
            "train_loss": run["train_loss"], "dialogs": run["train_data"]["conversations"], "run_dir": str(out),
            "tool_results": run["tool_results"], "device": run.get("device"), "steps": run.get("steps"),
            "mixed_precision": run.get("mixed_precision", "no"), "activation_budget": run.get("activation_budget"),
            "allocator": run.get("allocator", "glibc")}


def run_per_turn(data: Path, model_dir: Path, dialogs: int, root: Path | None = None) -> dict:
    out = (root or OUT) / "per_turn"
    sh([sys.executable, str(HERE / "per_turn.py"), str(data), "--model-dir", str(model_dir), "--out", str(out),
        "--system-prompt", SYSTEM_PROMPT, "--dialogs", str(dialogs), "--lr", str(LR)], (root or OUT) / "per_turn.log")
    res = json.loads((out / "result.json").read_text())
    return {**res, "run_dir": str(out), "tool_results": "json"}


def run_lf(data: Path, model_dir: Path, bf16: bool = False) -> dict:
    sys.path.insert(0, str(HERE))
    from llamafactory import run_llamafactory

    return run_llamafactory(data, model_dir, OUT / "lf", system_prompt=SYSTEM_PROMPT, lora_rank=8,
                            lora_target="q_proj,v_proj", epochs=1, seed=0, log=lambda *a: None, bf16=bf16, cpu=True)


def run_generation(run_dir: str, dev: Path, decode: str) -> dict:
    """`tunelab evaluate` on the dev dialogs' items with the trained adapter: items/s, new tokens/s."""
    out = OUT / f"eval-{decode}"
    sh([tunelab_bin("tunelab"), "evaluate", run_dir, "--data", str(dev), "--max-new-tokens", "128",
        "--decode", decode, "--out", str(out), "--db", str(OUT / "hotels.db")], OUT / f"eval-{decode}.log")
    m = json.loads((out / "metrics.json").read_text())
    return {"decode": decode, "items": m["items"], "seconds": m["seconds"], "items_per_s": m["items_per_s"],
            "new_tokens_per_s": m["new_tokens_per_s"]}


def dev_loss(model_dir: Path, adapter: str | None, dev: Path, tool_results: str) -> float:
    """Mean token cross-entropy over the dev dialogs' targets, rendered as in training."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.data.collate import PadCollator
    from tunelab.data.readers import read_conversations
    from tunelab.data.render import Renderer
    from tunelab.data.template import get_template
    from tunelab.train.loss import lm_loss

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    renderer = Renderer(get_template("chatml", tok, tool_results), tok, SYSTEM_PROMPT)
    total, n = 0.0, 0
    with torch.no_grad():
        for conv in read_conversations(str(dev))[0]:
            enc = renderer.encode(conv)
            loss, k = lm_loss(model, PadCollator(tok.pad_token_id)([{"input_ids": enc.input_ids, "labels": enc.labels}]),
                              num_items=1)
            total, n = total + float(loss), n + k
    return total / n


def row(name: str, r: dict, flops: list[float], ceiling: float) -> dict:
    dps = r["dialogs"] / r["train_s"]
    return {"system": name, "dialogs": r["dialogs"], "train_s": round(r["train_s"], 1), "dialogs_per_s": dps,
            "tokens_per_s": r["tokens"] / r["train_s"], "peak_rss_mb": r["peak_rss_mb"],
            "allocator": r.get("allocator", "glibc"),
            # the necessary work of the dialogs this system trained on (per-turn may time the first K only)
            "mfu": sum(flops[:r["dialogs"]]) / r["train_s"] / (ceiling * 1e9)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="training dialogs")
    ap.add_argument("--dev", type=int, default=12, help="held-out dialogs for the dev loss")
    ap.add_argument("--per-turn-dialogs", type=int, default=0,
                    help="time the per-turn recipe on the first K dialogs only (0: all N); it is the slowest")
    ap.add_argument("--activation-mb", type=int, nargs="+", default=[500],
                    help="also time the kept configuration with train.activation_memory_mb=N, for each N (0: don't)")
    ap.add_argument("--out", default="train_throughput", help="results file name (benchmarks/results/NAME.md, .json)")
    ap.add_argument("--skip", default="", help="comma-separated: lf, lf_bf16, per_turn, ladder (time only the defaults and KEPT), "
                    "compile (no compiled row), aside, infer")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    cmd = "python benchmarks/train_throughput/run.py " + " ".join(sys.argv[1:])

    from tunelab.models import resolve_model_dir

    model_dir = resolve_model_dir(PRESET)
    train, dev = make_data(args.n, args.dev)
    import torch

    ceiling = matmul_ceiling()
    from tunelab.train.precision import cpu_has_bf16_matmul

    # where bf16 matmul is no faster (an AVX2-only CPU) it crawls: minutes for these shapes, so not measured
    ceiling_bf16 = matmul_ceiling("bfloat16") if cpu_has_bf16_matmul() else float("nan")
    flops, tokens, targets = necessary_flops(train, model_dir)
    print(f"{args.n} dialogs, {tokens} tokens ({targets} targets) in tunelab's rendering; "
          f"necessary {sum(flops) / 1e12:.2f} TFLOP; fp32 matmul ceiling {ceiling:.1f} GFLOP/s, bf16 {ceiling_bf16:.1f} (nan: bf16 no faster here, not measured), "
          f"{torch.get_num_threads()} threads",
          flush=True)

    rows, runs = [], {}
    if "lf" not in skip:
        runs["lf"] = run_lf(train, model_dir)
        rows.append(row("LLaMA-Factory 0.9.5 (its defaults: fp32, gradient checkpointing on)", runs["lf"], flops,
                        ceiling))
        print(rows[-1], flush=True)
    if "lf" not in skip and "lf_bf16" not in skip:
        # LF's own bf16 mode too, so tunelab's bf16 lever is not counted as a design win over it
        runs["lf_bf16"] = run_lf(train, model_dir, bf16=True)
        rows.append(row("LLaMA-Factory 0.9.5 with bf16: true (its bf16 mode, on the CPU)",
                        runs["lf_bf16"], flops, ceiling))
        print(rows[-1], flush=True)
    if "per_turn" not in skip:
        runs["per_turn"] = run_per_turn(train, model_dir, args.per_turn_dialogs)
        rows.append(row("per-turn recipe (sample per answer, padded to 2048+1024, full logits)",
                        runs["per_turn"], flops, ceiling))
        print(rows[-1], flush=True)

    settings, best, fp32_best = {}, None, None
    ladder = LADDER if "ladder" not in skip else [
        ("defaults (no lever set: what `tunelab train` does on this CPU, its malloc included)", {}),
        # after the defaults row, so that it takes the defaults, not its own levers, as its base
        ("defaults without tunelab's CPU kernels (train.cpu_attention=sdpa, train.lean_layers=false)",
         {"train.cpu_attention": "sdpa", "train.lean_layers": False}),
        ("kept configuration of the ladder, first run (compiling included; never kept)", KEPT, "cold"),
        ("kept configuration of the ladder, a later run (compiled kernels from the cache)", KEPT, "warm")]
    if "compile" in skip:
        ladder = [rung for rung in ladder if not rung[1].get("train.compile")]
    for i, (name, lever, *extra) in enumerate(ladder):  # extra: the kernel cache ("cold"/"warm"), an environment
        cache, env = (*extra, None, None)[:2]
        cache = cache or ""
        trial = {**settings, **lever}
        r = run_tunelab(f"ladder{i}", train, trial, cache=cache, env=env)
        if r["mixed_precision"] == "no" and (fp32_best is None or r["train_s"] < fp32_best["train_s"]):
            fp32_best = r
        rows.append(row("tunelab " + name, r, flops, ceiling))
        kept = cache != "cold" and (best is None or rows[-1]["dialogs_per_s"] > best[1]["dialogs_per_s"])
        rows[-1]["kept"] = kept
        if kept:
            settings, best = trial, (r, rows[-1])
        print(rows[-1], flush=True)
    runs["tunelab"] = best[0]
    if "aside" not in skip:
        for i, (name, change) in enumerate(ASIDE):
            r = run_tunelab(f"aside{i}", train, {**settings, **change})
            rows.append({**row("tunelab " + name, r, flops, ceiling), "aside": True})
            print(rows[-1], flush=True)
    for mb in filter(None, args.activation_mb):  # memory-capped: the kept levers + an activation budget
        budget = {"train.activation_memory_mb": mb, "train.gradient_checkpointing": False}
        variants = [("", {})] + ([] if settings.get("train.compile") or "compile" in skip else
                                 [(" + compile, later run", {"train.compile": True})])
        for i, (extra, change) in enumerate(variants):
            r = run_tunelab(f"capped{mb}_{i}", train, {**settings, **change, **budget})
            rows.append({**row(f"tunelab (kept configuration{extra} + activation_memory_mb={mb}: a "
                               "dialog over it checkpoints just enough layers)", r, flops, ceiling), "capped": True})
            print(rows[-1], flush=True)
            if "capped" not in runs or r["train_s"] < runs["capped"]["train_s"]:
                runs["capped"] = r

    losses = {"untrained (table)": dev_loss(model_dir, None, dev, "table"),
              "untrained (json)": dev_loss(model_dir, None, dev, "json"),
              "tunelab": dev_loss(model_dir, runs["tunelab"]["run_dir"], dev, runs["tunelab"]["tool_results"])}
    if "capped" in runs:
        losses["tunelab, capped (the faster capped row)"] = dev_loss(model_dir, runs["capped"]["run_dir"], dev, runs["capped"]["tool_results"])
    if fp32_best is not None and fp32_best is not runs["tunelab"]:  # the kept run is bf16: did mixed precision change what was learned?
        losses["tunelab, fastest fp32 row"] = dev_loss(model_dir, fp32_best["run_dir"], dev, fp32_best["tool_results"])
    if "per_turn" in runs:
        losses["per-turn recipe"] = dev_loss(model_dir, runs["per_turn"]["run_dir"], dev, "json")
        # one tunelab step holds a whole dialog, one per-turn step a single answer: the same number of
        # updates per dialog seen needs the learning rate scaled by the answers per dialog
        per_dialog = runs["per_turn"]["samples"] / runs["per_turn"]["dialogs"]
        scaled = run_tunelab("lr_scaled", train, {**settings, "train.learning_rate": LR * round(per_dialog, 1)})
        losses[f"tunelab, lr x {per_dialog:.2f} answers per dialog ({scaled['train_s']} s)"] = dev_loss(
            model_dir, scaled["run_dir"], dev, scaled["tool_results"])
    gen = [] if "infer" in skip else [run_generation(runs["tunelab"]["run_dir"], dev, d) for d in ("batch", "dialog")]
    write(cmd, args, rows, best, settings, losses, (ceiling, ceiling_bf16), flops, tokens, targets, runs, gen)


def write(cmd, args, rows, best, settings, losses, ceilings, flops, tokens, targets, runs, gen) -> None:
    import torch

    tl = best[1]
    ceiling, ceiling_bf16 = ceilings
    lines = [
        "# Training throughput: tunelab vs LLaMA-Factory vs the per-turn recipe",
        "",
        f"Command: `{cmd}`",
        "",
        f"Same {args.n} synthesized hotel dialogs ({tokens} tokens, {targets} targets in tunelab's table rendering), "
        f"SmolLM2-135M-Instruct (fp32 weights), LoRA r8 on q_proj,v_proj, lr {LR}, one epoch, batch 1 unless said, "
        f"{torch.get_num_threads()} CPU threads. fp32 matmul ceiling measured in this run: **{ceiling:.1f} GFLOP/s** "
        f"(bf16: {ceiling_bf16:.1f}, nan where bf16 matmul is no faster; MFU is over the fp32 ceiling for every row, so bf16 rows can pass 100%); "
        f"necessary work {sum(flops) / 1e12:.3f} TFLOP (formula in run.py). Ladder rows add one lever each; a lever is "
        "kept (✓) only if it made training faster. Compiled kernels are cached on disk (per model and method): the "
        "first-run compile row pays compiling, the later-run row loads what it compiled, as every later run of "
        "the same model does; only the latter can be kept. Rows in parentheses are measured aside on the kept "
        "configuration; the capped row adds an activation budget to it (train/memory.py).",
        "",
        "| system | dialogs | train s | dialogs/s | real tokens/s | peak RSS MB | malloc | MFU | kept |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kept = "✓" if r.get("kept") else ("" if "kept" in r else "–")
        lines.append(f"| {r['system']} | {r['dialogs']} | {r['train_s']} | {r['dialogs_per_s']:.4f} | "
                     f"{r['tokens_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['allocator']} | {100 * r['mfu']:.1f}% | {kept} |")
    lines += ["", f"tunelab's kept configuration: `{json.dumps(settings)}`.", ""]
    for ours in [tl] + [r for r in rows if r.get("capped")]:
        which = "kept (fastest)" if ours is tl else ours["system"].removeprefix("tunelab ")
        for prefix, label in [("LLaMA-Factory 0.9.5 (its defaults", "LLaMA-Factory (fp32, as the issue measured it)"),
                              ("LLaMA-Factory 0.9.5 with bf16", "LLaMA-Factory with bf16: true"),
                              ("per-turn", "the per-turn recipe (fp32)")]:
            other = next((r for r in rows if r["system"].startswith(prefix)), None)
            if other:
                lines.append(f"- tunelab {which} vs {label}: **{ours['dialogs_per_s'] / other['dialogs_per_s']:.2f}x** "
                             f"dialogs/s, peak RSS {ours['peak_rss_mb']:.0f} vs {other['peak_rss_mb']:.0f} MB.")
    lines += ["", "Dev loss after one epoch on these dialogs (mean over target tokens of the "
              f"{args.dev} held-out dialogs; each adapter under the rendering it was trained with):", ""]
    lines += [f"- {k}: {v:.4f}" for k, v in losses.items()]
    if gen:
        lines += ["", "Generation with the kept run's adapter (`tunelab evaluate`, every target turn of the "
                  f"{args.dev} dev dialogs, greedy, at most 128 new tokens):", "",
                  "| decoding | items | seconds | items/s | new tokens/s |", "|---|---|---|---|---|"]
        lines += [f"| {g['decode']} | {g['items']} | {g['seconds']} | {g['items_per_s']} | {g['new_tokens_per_s']} |"
                  for g in gen]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / f"{args.out}.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(RESULTS / f"{args.out}.md")
    (RESULTS / f"{args.out}.json").write_text(json.dumps(
        {"command": cmd, "ceiling_gflops": ceiling, "ceiling_bf16_gflops": ceiling_bf16, "necessary_flops": flops, "rows": rows, "dev_loss": losses,
         "generation": gen,
         "kept_settings": settings, "raw": runs}, indent=1, ensure_ascii=False, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
