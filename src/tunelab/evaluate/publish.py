"""`tunelab publish RUN OUT_DIR [--merged] [--push REPO_ID]`: a model-hub folder for a run.

The folder holds the adapter (or merged weights), the tokenizer with the run's chat template, the
figures and a README.md model card (evaluate/model_card.py) checked offline by huggingface_hub. It is
written under a temporary name and renamed, so OUT_DIR is whole or absent. `--push` uploads it in a
child process (tunelab itself never leaves offline mode) when a token exists; otherwise, or when the
upload fails, one line says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tunelab.config.run_dir import RunDir
from tunelab.evaluate.model_card import card_text, validate_card
from tunelab.infer.engine import load_engine
from tunelab.infer.export import export_merged, shipped_template
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import write_text
from tunelab.utils.log import log
from tunelab.utils.safety import check_output

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
PUSH_TIMEOUT_S = 900


def _adapter(run: RunDir, out: Path, trust_remote_code: bool) -> None:
    for name in ADAPTER_FILES:
        shutil.copy2(run.path / name, out / name)
    engine = load_engine(run.path, device="cpu", trust_remote_code=trust_remote_code)
    engine.tokenizer.chat_template = shipped_template(engine)
    engine.tokenizer.save_pretrained(out)


def publish(run_dir: str | Path, out_dir: str | Path, merged: bool = False, push: str | None = None,
            trust_remote_code: bool = False) -> str:
    """Write the hub folder; returns what to print (the folder, and the push's outcome in one line)."""
    run = RunDir.open(run_dir)
    if merged and not run.has_adapter:
        merged = False  # whole weights: the run is its own merged model
    if not run.has_adapter and not merged:
        raise ConfigError(f"{run.path}: holds whole weights, no adapter; publish it with --merged")
    out = check_output(out_dir, [run_dir], "OUT_DIR")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not empty; choose a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if merged:
            export_merged(run.path, tmp / "model", trust_remote_code=trust_remote_code)
            for f in (tmp / "model").iterdir():
                f.rename(tmp / f.name)
            (tmp / "model").rmdir()
        else:
            _adapter(run, tmp, trust_remote_code)
        figures = []
        for png in sorted(run.path.glob("*.png")):
            (tmp / "figures").mkdir(exist_ok=True)
            shutil.copy2(png, tmp / "figures" / png.name)
            figures.append(f"figures/{png.name}")
        text = card_text(run.path, merged, figures)
        validate_card(text)
        write_text(tmp / "README.md", text)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(f"model-hub folder written to {out}")
    return f"{out}\n{push_folder(out, push)}" if push else str(out)


def push_folder(folder: Path, repo_id: str) -> str:
    """One line: the upload's outcome. Without a token nothing is attempted; a network failure or a
    stalled upload (PUSH_TIMEOUT_S) ends in a line, never a hang or a traceback."""
    from huggingface_hub import get_token

    if not get_token():
        return (f"not pushed to {repo_id}: no Hugging Face token (set HF_TOKEN or run `hf auth login`); "
                f"the folder {folder} is ready to upload")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = ("import sys; from huggingface_hub import HfApi; api = HfApi(); "
            "api.create_repo(sys.argv[1], exist_ok=True); "
            "print(api.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2]))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, repo_id, str(folder)], env=env, capture_output=True,
                              text=True, timeout=PUSH_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"not pushed to {repo_id}: no answer from the hub within {PUSH_TIMEOUT_S} s; the folder {folder} is ready"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1][:300]
        return f"not pushed to {repo_id}: {last}"
    return f"pushed to https://huggingface.co/{repo_id}"
