"""Mixed precision for training: which autocast dtype a run uses on this device.

bf16 autocast keeps fp32 weights, optimizer state and residual stream, and runs the matmuls and
attention in bf16. On a CPU it pays only where the matmuls have bf16 hardware, and CPUs differ: with Intel
AMX tiles a bf16 matmul ran at 2521 GFLOP/s against 372 for fp32 (2 cores; benchmarks/results/
train_throughput_n12.md); an AMD EPYC with AVX512-BF16 and no AMX ran one 2.8x fp32; on an AVX2-only CPU
bf16 is far slower than fp32. So `auto` decides by measuring, once per machine and model: it times one training
step of the model (forward and backward of the target-only loss) in fp32 and under bf16 autocast, caches the
verdict in tunelab's cache directory, and picks bf16 when it is faster by BF16_MARGIN. A matmul timed first
screens out CPUs without bf16 hardware, where the bf16 step alone would take minutes.
"""

from __future__ import annotations

import json
import time

from tunelab.utils.errors import ConfigError
from tunelab.utils.log import log
from tunelab.utils.paths import cache_dir, cached_measurement

CHOICES = ("auto", "bf16", "no")
VERDICTS = "bf16_verdicts.json"  # in tunelab's cache directory
BF16_MARGIN = 1.15  # bf16 must beat fp32 by this factor for `auto` to pick it (the step probe varies ~±20% run
# to run on a busy 2-core machine: benchmarks/results/bf16_verdict.md)
SCREEN_FLOOR = 0.8  # a bf16 matmul below this fraction of fp32's speed rules bf16 out before the step probe
# (bf16 matmul ceilings: 3.9x fp32 on an AVX512-BF16 EPYC, 6.8x on AMX, benchmarks/results/train_throughput_
# {epyc,n12}.md; the screen measured 0.003x on an AVX2-only EPYC: benchmarks/results/bf16_screen_avx2.md)


def model_shapes(model) -> dict:
    """The shapes that dominate a step: hidden size, MLP width, attention heads and head size."""
    from tunelab.train.loss import causal_lm

    conf = causal_lm(model).config
    conf = conf.get_text_config() if hasattr(conf, "get_text_config") else conf
    hidden = int(getattr(conf, "hidden_size", 768))
    heads = int(getattr(conf, "num_attention_heads", 12))
    return {"hidden": hidden, "intermediate": int(getattr(conf, "intermediate_size", None) or 4 * hidden),
            "heads": heads, "head_dim": int(getattr(conf, "head_dim", None) or hidden // heads)}


def time_bf16(shapes: dict, tokens: int = 256, reps: int = 3) -> dict:
    """fp32 / bf16 time of a matmul and a causal attention block of `shapes` on this CPU (best of `reps`)."""
    import torch
    import torch.nn.functional as F

    def best(fn) -> float:
        fn()  # oneDNN builds its kernel for the shape on the first call
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, shapes["hidden"], generator=g)
    w = torch.randn(shapes["hidden"], shapes["intermediate"], generator=g)
    q = torch.randn(1, shapes["heads"], tokens, shapes["head_dim"], generator=g)
    out = {}
    with torch.no_grad():
        for name, args, fn in (("matmul", (x, w), lambda a, b: a @ b),
                               ("attention", (q, q, q), lambda a, b, c: F.scaled_dot_product_attention(
                                   a, b, c, is_causal=True))):
            fp32 = best(lambda: fn(*args))
            low = [t.bfloat16() for t in args]
            bf16 = best(lambda: fn(*low))
            out[name] = round(fp32 / max(bf16, 1e-9), 3)
    out["ratio"] = out["matmul"]
    return out


def machine() -> str:
    """This machine in one line (CPU model, torch's CPU capability, torch version, threads, cpus): the key of the
    cached bf16 verdicts, and the machine line of the benchmarks' results."""
    import os
    import platform

    import torch

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__} | " \
           f"{torch.get_num_threads()} threads | {os.cpu_count()} cpus"


# a dialog row of the hotel recipe (~515 tokens, 17% of them targets), the bf16 step with its frozen weights
# stored in bf16 as training stores them
PROBE = {"tokens": 512, "supervised": 1 / 6, "weights": "bf16-stored"}


def time_bf16_step(model, tokens: int = PROBE["tokens"], reps: int = 3, store: bool = True) -> dict:
    """fp32 / bf16-autocast time of one training step of `model` itself (forward and backward through the
    target-only loss, `tokens` random tokens, the last sixth supervised as in a dialog row) on this CPU; best
    of `reps`, the two precisions interleaved. (A probe with half the tokens supervised times mostly the
    262k-wide LM head and under-states what bf16 gains on a dialog: on one 2-core AMX machine it measured
    gemma3-270m at 0.97x, this probe 1.39x, the `bf16 vs fp32 on this CPU` line of `tunelab train`.) With
    `store` (an adapter run) the bf16 step has the frozen linears and head in bf16, as training stores them:
    timed with autocast casting them every step, the probe measured gemma3-270m at 1.18x on an AMX machine
    where the stored step runs 1.8x faster than fp32 (benchmarks/results/head_ce.md)."""
    import torch

    from tunelab.train.loss import causal_lm, lm_loss

    vocab = causal_lm(model).get_input_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, tokens), generator=g)
    labels = ids.clone()
    labels[:, : tokens - int(tokens * PROBE["supervised"])] = -100
    params = [p for p in model.parameters() if p.requires_grad]
    # the bf16 step runs as training runs it: frozen linears and head stored in bf16 (store_frozen_linears);
    # the fp32 weights are put back after
    swaps = [(m, {k: getattr(m, k) for k in ("weight", "bias") if getattr(m, k) is not None})
             for m in (frozen_linears(model) if store else [])]
    low = [{k: torch.nn.Parameter(p.detach().bfloat16(), requires_grad=False) for k, p in full.items()}
           for _, full in swaps]

    def use(bf16: bool) -> None:
        for (m, full), small in zip(swaps, low):
            for k in full:
                setattr(m, k, small[k] if bf16 else full[k])

    def step(precision: str) -> float:
        use(precision == "bf16")
        start = time.perf_counter()
        with autocast(precision, "cpu"):
            loss, _ = lm_loss(model, {"input_ids": ids, "labels": labels}, None, True)
        loss.backward()
        elapsed = time.perf_counter() - start
        for p in params:
            p.grad = None
        return elapsed

    try:
        for precision in ("no", "bf16"):
            step(precision)  # kernels are built for the shapes on the first call
        out = {"no": [], "bf16": []}
        for _ in range(reps):  # interleaved, so a slow moment of the machine hits both
            for precision in out:
                out[precision].append(step(precision))
    finally:
        use(False)
    out = {k: min(v) for k, v in out.items()}
    return {"step": round(out["no"] / max(out["bf16"], 1e-9), 3), "fp32_s": round(out["no"], 3),
            "bf16_s": round(out["bf16"], 3)}


def measured_bf16(model, store: bool = True) -> dict:
    """This machine's bf16-autocast speed-up of a training step of `model` ({"ratio", "step", "fp32_s",
    "bf16_s", "machine", "cached"}), timed once and then read from tunelab's cache directory. `store`: the
    run stores its frozen linears in bf16 (an adapter method)."""
    shapes = {**model_shapes(model), "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "probe": PROBE, "stored": store}
    return _cached(shapes, lambda: _screened_step(model, shapes, store), "step")


def _screened_step(model, shapes: dict, store: bool) -> dict:
    """The step probe, unless a matmul of the model's shapes already shows bf16 slower than fp32 by far (no
    bf16 hardware: AVX2 only): there the bf16 step would take minutes (on a 2-core AVX2 EPYC the head's
    backward, 85 x 262k by 262k x 640, took 79.0 s in bf16 against 0.27 s in fp32: benchmarks/results/
    bf16_screen_avx2.md), so the screen's ratio stands for the step's."""
    screen = time_bf16(shapes)
    if screen["matmul"] < SCREEN_FLOOR:
        return {"step": screen["matmul"], "screen": screen, "step_probe": "skipped: bf16 matmul slower than fp32"}
    return {**time_bf16_step(model, store=store), "screen": screen}


def measured_bf16_shapes(shapes: dict) -> dict:
    """The bf16 speed-up of a matmul and an attention block of `shapes` (no model needed), cached."""
    return _cached(shapes, lambda: time_bf16(shapes), "ratio")


def _cached(shapes: dict, measure, ratio_key: str) -> dict:
    def timed() -> dict:
        out = measure()
        out["ratio"] = out[ratio_key]
        log.info(f"bf16 vs fp32 on this CPU ({shapes}): {out} (cached in {cache_dir() / VERDICTS})")
        return {**out, "machine": machine()}

    entry, cached = cached_measurement(VERDICTS, f"{machine()} | {json.dumps(shapes, sort_keys=True)}", timed)
    return {**entry, "cached": cached}


def resolve_mixed_precision(name: str, device: str, weight_dtype: str, model=None,
                            store: bool = True) -> tuple[str, dict | None]:
    """('bf16' or 'no', the measurement behind it or None) for `train.mixed_precision=name` on `device` with
    `model.dtype=weight_dtype`; on a CPU `auto` measures the causal LM `model` (measured_bf16; None: fp32)."""
    if name not in CHOICES:
        raise ConfigError(f"train.mixed_precision '{name}' is unknown; valid: {', '.join(CHOICES)}")
    if name == "no" or weight_dtype == "float16":
        return "no", None
    if name == "bf16":
        return "bf16", None
    if device == "cuda":
        import torch

        return ("bf16" if torch.cuda.is_bf16_supported() else "no"), None
    if model is None:  # not a causal LM (an encoder's rows): no step probe, fp32
        return "no", None
    measured = measured_bf16(model, store)
    return ("bf16" if measured["ratio"] >= BF16_MARGIN else "no"), measured


def cpu_has_bf16_matmul() -> bool:
    """True when this CPU's bf16 matmul beats fp32 by BF16_MARGIN (a 2048-wide probe, measured once)."""
    return measured_bf16_shapes({"hidden": 2048, "intermediate": 2048, "heads": 16, "head_dim": 128})["matmul"] \
        >= BF16_MARGIN


def autocast(precision: str, device: str):
    """The autocast context a run with `precision` ('bf16' or 'no') computes in on `device`."""
    import contextlib

    import torch

    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.bfloat16)


def store_frozen_linears(model, dtype) -> int:
    """Keep the decoder's frozen linear weights and a frozen LM head in `dtype` (bf16) for a bf16-autocast run
    on the CPU.

    Autocast would cast each of them to bf16 in every forward pass anyway (frozen weights are not in its
    cache; the LM head twice, forward and backward) and keep the copy for the backward pass: storing them in
    bf16 once gives the matmuls the very same operands, skips those copies each step and halves their
    memory. A head tied to the input embeddings gets its own bf16 copy (the embedding lookup stays fp32:
    its output feeds the fp32 residual stream); on gemma3-270m the head's two casts were a third of a bf16
    step (benchmarks/results/head_ce.md). Trainable weights (LoRA factors, norms) stay fp32. The model then
    needs autocast to run (fp32 inputs meet bf16 weights), so only the trainer uses it; evaluation reloads
    the run from disk. Returns the number of linear layers stored in `dtype`, the head included.
    """
    import torch

    stored = frozen_linears(model)
    for m in stored:  # a new parameter: unties a tied head from the embeddings, which keep theirs
        m.weight = torch.nn.Parameter(m.weight.detach().to(dtype), requires_grad=False)
        if m.bias is not None:
            m.bias = torch.nn.Parameter(m.bias.detach().to(dtype), requires_grad=False)
    return len(stored)


def frozen_linears(model) -> list:
    """The fp32 linear layers store_frozen_linears stores in bf16: the decoder's frozen ones and a frozen LM head."""
    import torch

    from tunelab.train.loss import causal_lm

    def frozen(m) -> bool:
        return (type(m) is torch.nn.Linear and m.weight.dtype == torch.float32
                and not any(p.requires_grad for p in m.parameters(recurse=False)))

    found = [m for m in causal_lm(model).get_decoder().modules() if frozen(m)]
    head = causal_lm(model).get_output_embeddings()
    return found + ([head] if frozen(head) and head.bias is None else [])
