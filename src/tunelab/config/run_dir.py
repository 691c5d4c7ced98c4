"""A run directory: prepared by a training job, written atomically, read back by every other command.

Layout: `config.yaml` (resolved config), the adapter or weights, the tokenizer, `metrics.jsonl`, plots,
`checkpoint-N/` while training, and `run.json` (the summary) written last: a directory without it is
not a finished run. A run directory carries tunelab's marker file; only a marked one is replaced.

Replacing a finished run (`train.overwrite`) trains in a staging directory beside it,
`.<name>.next`, and swaps it in only when the new run has finished: a run that fails or is killed
leaves the old one as it was, and `train.resume` continues the staged run.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.load import load_config, save_config
from tunelab.config.schema import Config
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import write_json
from tunelab.utils.safety import check_output, check_replaceable, is_empty_dir, mark, remove_dir, replace_dir

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
KIND = "run"


def _has_checkpoint(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() for p in path.glob("checkpoint-*"))


class RunDir:
    """`path`: where the run lives once finished; `work`: where the job writes now (the same, or staging)."""

    def __init__(self, path: str | Path, work: str | Path | None = None):
        self.path = Path(path)
        self.work = Path(work) if work is not None else self.path

    # ---------------------------------------------------------------- writing (the training job)

    @staticmethod
    def staging_path(path: Path) -> Path:
        return path.parent / f".{path.name}.next"

    @classmethod
    def prepare(cls, out: str | Path, overwrite: bool = False, resume: bool = False,
                inputs: tuple | list = ()) -> "RunDir":
        """Check `out` and pick where the job writes; nothing is deleted but a stale staging dir."""
        path = check_output(out, inputs, "train.output_dir")
        staged = cls.staging_path(path)
        if resume:
            for candidate in (staged, path):
                if _has_checkpoint(candidate):
                    return cls(path, candidate)
            raise ConfigError(f"train.resume=true but {path} holds no checkpoint-* to resume from "
                              "(set train.save_steps to write checkpoints)")
        if staged.exists():
            remove_dir(staged)  # an earlier replacement that never finished
        if not path.exists() or is_empty_dir(path):
            path.mkdir(parents=True, exist_ok=True)
            mark(path, KIND)
            return cls(path)
        if not overwrite:
            raise ConfigError(f"train.output_dir {path} is not empty; pass --train.overwrite=true to replace it, "
                              "--train.resume=true to continue it, or choose another output_dir")
        check_replaceable(path, "train.output_dir")
        staged.mkdir()
        mark(staged, KIND)
        return cls(path, staged)

    def write_config(self, cfg: Config) -> None:
        save_config(cfg, self.work / CONFIG_FILE)

    def write_summary(self, summary: dict) -> None:
        """run.json: the last file a finished run gets."""
        write_json(self.work / RUN_FILE, summary)

    def unfinish(self) -> None:
        """Drop run.json before a resumed run rewrites its weights: a kill meanwhile leaves it unfinished."""
        (self.work / RUN_FILE).unlink(missing_ok=True)

    def commit(self) -> Path:
        """Put a staged run in place of the old one (a no-op for a run written in place)."""
        if self.work != self.path:
            replace_dir(self.work, self.path, "train.output_dir")
            self.work = self.path
        return self.path

    # ---------------------------------------------------------------- reading (chat, evaluate, serve, ...)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """A finished run: config.yaml, run.json, and an adapter or whole weights."""
        run = cls(path)
        p = run.path
        if not p.is_dir():
            raise ConfigError(f"{p}: no such run directory")
        if not (p / CONFIG_FILE).is_file() or not (run.has_adapter or (p / "config.json").is_file()):
            raise ConfigError(f"{p}: not a tunelab run directory (needs {CONFIG_FILE} and an adapter or weights)")
        if not (p / RUN_FILE).is_file():
            raise ConfigError(f"{p}: not a finished run (no {RUN_FILE}: training was interrupted before its end; "
                              "resume it with --train.resume=true)")
        return run

    @property
    def has_adapter(self) -> bool:
        return (self.path / "adapter_config.json").is_file()

    def config(self) -> Config:
        return load_config(self.path / CONFIG_FILE)

    def summary(self) -> dict:
        path = self.path / RUN_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: not a tunelab run directory (no {RUN_FILE})") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e}); the run directory is damaged") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return data
