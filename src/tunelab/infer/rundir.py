"""A run directory's own files as untrusted input: run.json, the database it names, the model settings.

A run dir may come from someone else. What it says is read, checked and bounded here: its config
cannot turn on `trust_remote_code` (only the command line can), its weights are safetensors with
recorded checksums (models/weights.py), and its database path never depends on the current directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config import Config
from tunelab.config.schema import ModelConfig
from tunelab.utils.errors import ConfigError, DataError
from tunelab.utils.log import log

STRING_KEYS = ("model_dir", "template", "system_prompt", "db")  # the keys inference reads


def read_run_json(run_dir: str | Path) -> dict:
    """run.json as a dict ({} when absent); ConfigError naming the file when it is not a JSON object."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid JSON ({str(e)[:200]})") from None
    if not isinstance(run, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(run).__name__}")
    for key in STRING_KEYS:
        if key in run and not isinstance(run[key], str):
            raise ConfigError(f"{path}: '{key}' must be a string, got {type(run[key]).__name__}")
    return run


def inference_model_config(cfg: Config, base: str, run_dir: str | Path, trust_remote_code: bool) -> ModelConfig:
    """The run's model settings with `name_or_path` = base; trust_remote_code comes from the caller only."""
    if cfg.model.trust_remote_code and not trust_remote_code:
        log.warning(f"{Path(run_dir) / 'config.yaml'} sets model.trust_remote_code: ignored, a run directory "
                    "cannot turn it on; pass --trust-remote-code to run the model's own code if you trust it")
    return ModelConfig(**{**cfg.model.__dict__, "name_or_path": str(base), "trust_remote_code": trust_remote_code})


def training_dir(run_dir: str | Path, cfg: Config) -> Path | None:
    """The directory training ran in, when train.output_dir was relative and the run still lies under it."""
    out = Path(cfg.train.output_dir)
    here = Path(run_dir).resolve().parts
    if out.is_absolute() or not out.parts or ".." in out.parts or here[-len(out.parts):] != out.parts:
        return None
    return Path(*here[:-len(out.parts)])


def check_db_override(db: str | None) -> str:
    """An explicit --db: its absolute path, or DataError naming it when it is not a file."""
    if not db:
        return ""
    path = Path(db).expanduser()
    if not path.is_file():
        raise DataError(f"--db {db}: database file not found")
    return str(path.resolve())


def run_db(run_dir: str | Path, cfg: Config, run: dict, override: str | None = None) -> str:
    """The database the run's tools use, absolute ('' when it has none).

    `override` (--db) must exist. Otherwise: run.json's absolute `db`, else config.yaml's data.db, a
    relative one resolved against the directory training ran in, then the run dir; never the current
    directory. When none exists the first candidate is returned, so the tool's error names it.
    """
    if override:
        return check_db_override(override)
    candidates = [Path(run["db"])] if run.get("db") and Path(run["db"]).is_absolute() else []
    if cfg.data.db:
        db = Path(cfg.data.db).expanduser()
        bases = [training_dir(run_dir, cfg), Path(run_dir).resolve()]
        candidates += [db] if db.is_absolute() else [b / db for b in bases if b is not None]
    if not candidates:
        return ""
    return str(next((c for c in candidates if c.is_file()), candidates[0]))
