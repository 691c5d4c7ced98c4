"""tunelab's own causal attention for bf16 training on x86 CPUs with AVX512-BF16 (cpu_attention.cpp).

torch's CPU flash attention ran a SmolLM2-135M layer (9 heads of 64, 1,200 tokens, forward and backward) at
about 100 GFLOP/s on a 2-core EPYC whose bf16 matmul reaches ~400 (benchmarks/results/cpu_attention.md): nearly
half of a bf16 training step. The
kernel here does the same math (fp32 accumulation and softmax, bf16 operands, the logsumexp saved for the
backward pass) on one AVX512-BF16 micro-kernel, with the operands laid out once per head.

It is built on first use with the system's C++ compiler into tunelab's cache directory (one library per
source, torch version and CPU), and used only where `verdict()` timed it faster than SDPA at the model's
shapes on this machine (cached too). Any failure (no compiler, no AVX512-BF16, a build error) leaves SDPA in
place, with one log line saying why.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from tunelab.utils.log import log
from tunelab.utils.paths import cache_dir, cached_measurement

SOURCE = Path(__file__).with_name("cpu_attention.cpp")
MARGIN = 1.10  # the kernel must beat SDPA by this factor (forward + backward of one layer) to be used
_state: dict = {}  # "lib": True once loaded, or the reason it is not; verdicts by shape key


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return set()


def _build_key() -> str:
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))
    text = SOURCE.read_bytes() + torch.__version__.encode() + sys.version.encode() + " ".join(flags).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def _compile(out: Path) -> None:
    from torch.utils import cpp_extension

    includes = [f"-I{p}" for p in cpp_extension.include_paths()]
    libdir = Path(torch.__file__).parent / "lib"
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    cmd = [os.environ.get("CXX", "g++"), "-O3", "-std=c++17", "-shared", "-fPIC", "-mavx512f", "-mavx512bw",
           "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-fno-math-errno", "-fopenmp",
           f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}", *includes, str(SOURCE),
           f"-L{libdir}", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{libdir}", "-o", str(tmp)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "compiler failed")
    os.replace(tmp, out)


def load() -> bool:
    """True when the kernel is loaded (building it first if needed); False, logged once, when it cannot be."""
    if "lib" in _state:
        return _state["lib"] is True
    reason = None
    if sys.platform != "linux" or "avx512_bf16" not in cpu_flags():
        reason = "this CPU has no AVX512-BF16"
    else:
        lib = cache_dir() / "kernels" / f"cpu_attention_{_build_key()}.so"
        try:
            if not lib.exists():
                lib.parent.mkdir(parents=True, exist_ok=True)
                start = time.perf_counter()
                _compile(lib)
                log.info(f"built tunelab's CPU attention kernel in {time.perf_counter() - start:.0f} s ({lib})")
            torch.ops.load_library(str(lib))
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            reason = f"could not build or load it ({e})"
    _state["lib"] = True if reason is None else reason
    if reason:
        log.info(f"CPU attention: torch's SDPA ({reason})")
    return reason is None


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale: float, window: int):
        out, lse = torch.ops.tunelab_attn.fwd(q, k, v, scale, window)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.window = scale, window
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = torch.ops.tunelab_attn.bwd(q, k, v, out, lse, dout.contiguous(), ctx.scale, ctx.window)
        return dq, dk, dv, None, None


def attention(q, k, v, scale: float, window: int = 0):
    """Causal attention of q (batch, heads, T, d) over k, v (batch, kv_heads, T, d), all bf16; a query attends to
    itself and the keys before it (the last `window` of them when window > 0). Returns (batch, heads, T, d)."""
    if not load():
        raise RuntimeError(f"tunelab's CPU attention kernel is not available: {_state['lib']}")
    return _Attention.apply(q.contiguous(), k.contiguous(), v.contiguous(), float(scale), int(window))


def _time(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure(heads: int, kv_heads: int, head_dim: int, tokens: int = 1024, reps: int = 3) -> dict:
    """Forward + backward time of one causal layer at these shapes: SDPA (flash) and this kernel, bf16."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, heads, tokens, head_dim, generator=g).bfloat16().requires_grad_()
    k, v = (torch.randn(1, kv_heads, tokens, head_dim, generator=g).bfloat16().requires_grad_() for _ in range(2))
    dout = torch.randn(1, heads, tokens, head_dim, generator=g).bfloat16()

    def sdpa():
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kv_heads != heads).backward(dout)

    def ours():
        attention(q, k, v, head_dim ** -0.5).backward(dout)

    t_sdpa, t_ours = _time(sdpa, reps), _time(ours, reps)
    return {"sdpa_s": round(t_sdpa, 4), "tunelab_s": round(t_ours, 4), "speedup": round(t_sdpa / t_ours, 3),
            "tokens": tokens}


def verdict(heads: int, kv_heads: int, head_dim: int) -> dict | None:
    """{"kernel": True when it beats SDPA by MARGIN, "speedup", "sdpa_s", "tunelab_s", "tokens"} at these shapes
    on this machine, timed once and cached in tunelab's cache directory under the build key; None where the
    kernel cannot run here (shapes it does not take, no AVX512-BF16, no compiler)."""
    key = f"{_build_key()} | {torch.get_num_threads()} threads | {heads}/{kv_heads}x{head_dim}"
    if key in _state:
        return _state[key]
    if head_dim % 16 or heads % kv_heads or not load():
        _state[key] = None
        return None
    entry, cached = cached_measurement("cpu_attention_verdicts.json", key,
                                       lambda: measure(heads, kv_heads, head_dim))
    timed = {**entry, "kernel": entry["speedup"] >= MARGIN, "cached": cached}
    _state[key] = timed
    log.info(f"CPU attention ({heads} heads, {kv_heads} kv heads x {head_dim}): tunelab's kernel "
             f"{timed['speedup']}x SDPA at {timed['tokens']} tokens, forward + backward: "
             f"{'tunelab' if timed['kernel'] else 'SDPA'}")
    return timed
