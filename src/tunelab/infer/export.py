"""`tunelab export RUN_DIR --merge OUT | --gguf OUT.gguf`: fold the adapter into the base weights and save a
standalone model (a transformers directory, or a GGUF checked by reading it back), with the run's chat
template and end-of-turn stop."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tunelab.data.hf_template import hf_chat_template
from tunelab.infer.engine import ChatEngine, load_engine
from tunelab.infer.template_check import jinja_mismatch
from tunelab.utils.errors import ConfigError
from tunelab.utils.log import log
from tunelab.utils.safety import check_output

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _merged_engine(run_dir, trust_remote_code: bool) -> ChatEngine:
    engine = load_engine(run_dir, device="cpu", merge=True, trust_remote_code=trust_remote_code)
    if hasattr(engine.model, "peft_config"):
        raise ConfigError(f"{run_dir}: a prompt-learning adapter has no weights to merge; serve it with its base model")
    return engine


def shipped_template(engine: ChatEngine) -> str:
    """The Jinja chat template an export ships; warns (once, one line) where it renders a training
    dialog to other token ids than training did."""
    jinja = hf_chat_template(engine.template, engine.renderer.system_prompt)
    problem = jinja_mismatch(engine.tokenizer, engine.template, engine.renderer.system_prompt, jinja)
    if problem:
        log.warning(f"warning: {problem}")
    return jinja


def export_merged(run_dir: str | Path, out: str | Path, trust_remote_code: bool = False, dtype: str = "fp32") -> Path:
    """A model directory plain `transformers` loads, generating what base + adapter generates.

    It ships the run's chat template (`apply_chat_template` renders prompts as training did) and a
    generation config whose eos ids include the end-of-turn marker, so `generate` stops at the turn's end.
    Weights are saved in `dtype` (fp32, bf16 or fp16). Model code shipped with the base runs only with
    `trust_remote_code` (never from the run's config)."""
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype '{dtype}' is unknown; valid: {', '.join(DTYPES)}")
    out = check_output(out, [run_dir], "--merge")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not empty; choose a new directory")
    engine = _merged_engine(run_dir, trust_remote_code)
    import torch

    model = engine.model.to(getattr(torch, DTYPES[dtype]))
    tokenizer = engine.tokenizer
    tokenizer.chat_template = shipped_template(engine)
    gen = model.generation_config
    gen.eos_token_id = engine.stop_ids if len(engine.stop_ids) > 1 else engine.stop_ids[0]
    gen.pad_token_id = tokenizer.pad_token_id
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(f"merged model written to {out}")
    return out


def export_gguf(run_dir: str | Path, out: str | Path, quant: str = "f16", check_prompts: int = 4,
                trust_remote_code: bool = False, prompts_file: str | Path | None = None,
                max_new_tokens: int = 16) -> dict:
    """Write OUT.gguf (architecture metadata, tokenizer, chat template, end-of-turn id) in `quant`, then
    read it back through tunelab's GGUF import and compare greedy generations (`max_new_tokens` each)
    with the merged model on the first `check_prompts` prompts (built-in ones, or `prompts_file`'s).
    Returns {"path", "quant", "round_trip": RoundTrip}; OUT appears whole or not at all."""
    from tunelab.infer.gguf_roundtrip import PROMPTS, prompts_from_file, round_trip
    from tunelab.infer.gguf_vocab import tokenizer_metadata
    from tunelab.infer.gguf_write import arch_for, check_quant, write_gguf

    check_quant(quant)
    prompts = prompts_from_file(prompts_file) if prompts_file else PROMPTS
    if not 0 <= check_prompts <= len(prompts):
        source = f"the {len(prompts)} prompts of {prompts_file}" if prompts_file else f"{len(prompts)}"
        raise ConfigError(f"--check-prompts {check_prompts}: must be between 0 and {source}")
    if max_new_tokens < 1:
        raise ConfigError(f"--check-new-tokens {max_new_tokens}: must be at least 1")
    out = check_output(out, [run_dir], "--gguf")
    if out.exists():
        raise ConfigError(f"{out} exists; choose a new file name")
    engine = _merged_engine(run_dir, trust_remote_code)
    arch_for(engine.model.config)  # an uncovered architecture fails before anything is written
    metadata = tokenizer_metadata(engine, run_dir, shipped_template(engine))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        write_gguf(engine.model, tmp, quant, metadata)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info(f"GGUF written to {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    result = {"path": out, "quant": quant, "round_trip": None}
    if check_prompts:
        result["round_trip"] = round_trip(engine, out, prompts[:check_prompts], max_new_tokens)
    return result
