"""`tunelab export RUN_DIR --merge OUT`: fold the adapter into the base weights, save a standalone model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tunelab.infer.engine import load_engine
from tunelab.utils.errors import ConfigError
from tunelab.utils.log import log
from tunelab.utils.safety import check_output


def export_merged(run_dir: str | Path, out: str | Path, trust_remote_code: bool = False) -> Path:
    """A model directory plain `transformers` loads, generating what base + adapter generates.

    Model code shipped with the base runs only with `trust_remote_code` (never from the run's config)."""
    out = check_output(out, [run_dir], "--merge")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not empty; choose a new directory")
    engine = load_engine(run_dir, device="cpu", merge=True, trust_remote_code=trust_remote_code)
    model = engine.model
    if hasattr(model, "peft_config"):
        raise ConfigError(f"{run_dir}: a prompt-learning adapter has no weights to merge; serve it with its base model")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        engine.tokenizer.save_pretrained(tmp)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(f"merged model written to {out}")
    return out
