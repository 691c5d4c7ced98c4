"""A run directory: prepared by a training job, written atomically, read back by every other command.

Layout: `config.yaml` (resolved config), the adapter or weights, the tokenizer, `metrics.jsonl`, plots,
`checkpoint-N/` while training, and `run.json` (the summary) written last: a directory without it is
not a finished run. A run directory carries tunelab's marker file; only a marked one is replaced.

Replacing a finished run (`train.overwrite`) trains in a staging directory beside it,
`.<name>.next`, and swaps it in only when the new run has finished: a run that fails or is killed
leaves the old one as it was, and `train.resume` continues the staged run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tunelab.config.load import load_config, save_config
from tunelab.config.schema import Config, ModelConfig
from tunelab.utils.errors import ConfigError, DataError
from tunelab.utils.io import write_json
from tunelab.utils.log import log
from tunelab.utils.safety import check_output, check_replaceable, is_empty_dir, mark, remove_dir, replace_dir

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
STRING_KEYS = ("model_dir", "base_model", "template", "system_prompt", "db")  # run.json keys inference reads
KIND = "run"


def _has_checkpoint(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() for p in path.glob("checkpoint-*"))


class RunDir:
    """`path`: where the run lives once finished; `work`: where the job writes now (the same, or staging)."""

    def __init__(self, path: str | Path, work: str | Path | None = None):
        self.path = Path(path)
        self.work = Path(work) if work is not None else self.path
        self._config: Config | None = None
        self._summary: dict | None = None

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

    @staticmethod
    def check_free(out: str | Path, overwrite: bool = False, resume: bool = False) -> None:
        """ConfigError (with the hint `--train.overwrite=true`) when `out` holds something and neither overwrite
        nor resume is set: checked before any model loads, so an existing run is never replaced by accident."""
        path = Path(out).expanduser()
        if overwrite or resume or not path.exists() or (path.is_dir() and is_empty_dir(path)):
            return
        raise ConfigError(f"train.output_dir {path} is not empty; pass --train.overwrite=true to replace it, "
                          "--train.resume=true to continue it, or choose another output_dir "
                          "(e.g. --train.output_dir=runs/NEW_NAME)")

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
    # A run dir may come from someone else: what it says is read, checked and bounded here. Its config
    # cannot turn on trust_remote_code (only the caller can), and its database path never depends on the
    # current directory. Its weights are checked by models/weights.py.

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """A finished run: config.yaml, run.json, and an adapter (safetensors) or whole weights."""
        run = cls(path)
        p = run.path
        if not p.is_dir():
            raise ConfigError(f"{p}: no such run directory")
        if not (p / CONFIG_FILE).is_file() or not (run.has_adapter or (p / "config.json").is_file()):
            raise ConfigError(f"{p}: not a tunelab run directory (needs {CONFIG_FILE} and an adapter or weights)")
        if not (p / RUN_FILE).is_file():
            raise ConfigError(f"{p}: not a finished run (no {RUN_FILE}: training was interrupted before its end; "
                              "resume it with --train.resume=true)")
        if run.has_adapter and not (p / ADAPTER_WEIGHTS).is_file():
            raise ConfigError(f"{p / ADAPTER_WEIGHTS}: missing; the adapter needs its safetensors weights")
        return run

    @property
    def has_adapter(self) -> bool:
        return (self.path / "adapter_config.json").is_file()

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.path / CONFIG_FILE)
        return self._config

    def summary(self) -> dict:
        """run.json, checked: a JSON object whose keys inference reads are strings."""
        if self._summary is None:
            self._summary = _read_summary(self.path / RUN_FILE)
        return self._summary

    def peft_type(self) -> str | None:
        if not self.has_adapter:
            return None
        path = self.path / "adapter_config.json"
        try:
            conf = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ConfigError(f"{path}: not valid JSON ({str(e)[:200]})") from None
        if not isinstance(conf, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return conf.get("peft_type")

    def base_model(self, override: str | None = None) -> str:
        """The model the adapter applies to (the run itself when it holds whole weights): `override`
        (--base-model) when given, else this machine's copy it trained on (run.json `model_dir`, e.g. the
        import cache) when it is here, else the base's name (a preset, resolved on any machine that has it, or
        a path)."""
        if not self.has_adapter:
            return str(self.path)
        if override:
            return override
        model_dir = self.summary().get("model_dir")
        if model_dir and Path(model_dir).is_dir():
            return model_dir
        return self.base_name() or model_dir or ""

    def base_name(self) -> str:
        """The base model as the user named it: a preset name, or a path (a relative one resolved against the
        directory training ran in, as the run's database is)."""
        name = self.summary().get("base_model") or self.config().model.name_or_path
        path = Path(name).expanduser()
        if name and not path.is_absolute() and (base := self._training_dir()) is not None and (base / path).exists():
            return str(base / path)
        return name

    def template(self) -> str:
        return self.summary().get("template") or self.config().data.template

    def system_prompt(self) -> str:
        return self.summary().get("system_prompt", self.config().data.system_prompt)

    def tools(self) -> list[dict]:
        """The tool specs the run was trained with (run.json `tools`; [] when none or not a list of specs)."""
        tools = self.summary().get("tools")
        ok = isinstance(tools, list) and all(isinstance(t, dict) and isinstance(t.get("function"), dict)
                                             and isinstance(t["function"].get("name"), str) for t in tools)
        if tools and not ok:
            log.warning(f"{self.path / RUN_FILE}: 'tools' is not a list of tool specs; ignored")
        return tools if tools and ok else []

    def model_config(self, trust_remote_code: bool = False, base_model: str | None = None) -> ModelConfig:
        """The run's model settings for inference; trust_remote_code comes from the caller only, and
        `base_model` (--base-model) overrides where the base model is."""
        cfg = self.config()
        if cfg.model.trust_remote_code and not trust_remote_code:
            log.warning(f"{self.path / CONFIG_FILE} sets model.trust_remote_code: ignored, a run directory cannot "
                        "turn it on; pass --trust-remote-code to run the model's own code if you trust it")
        return dataclasses.replace(cfg.model, name_or_path=self.base_model(base_model),
                                   trust_remote_code=trust_remote_code)

    def db(self, override: str | None = None) -> str:
        """The database the run's tools use, absolute ('' when it has none).

        `override` (--db) must exist. Otherwise: run.json's absolute `db`, else config.yaml's data.db, a
        relative one resolved against the directory training ran in, then the run dir; never the current
        directory. When none exists the first candidate is returned, so the tool's error names it.
        """
        if override:
            return check_db(override)
        run, cfg = self.summary(), self.config()
        candidates = [Path(run["db"])] if run.get("db") and Path(run["db"]).is_absolute() else []
        if cfg.data.db:
            db = Path(cfg.data.db).expanduser()
            bases = [self._training_dir(), self.path.resolve()]
            candidates += [db] if db.is_absolute() else [b / db for b in bases if b is not None]
        if not candidates:
            return ""
        return str(next((c for c in candidates if c.is_file()), candidates[0]))

    def _training_dir(self) -> Path | None:
        """The directory training ran in, when train.output_dir was relative and the run still lies under it."""
        out = Path(self.config().train.output_dir)
        here = self.path.resolve().parts
        if out.is_absolute() or not out.parts or ".." in out.parts or here[-len(out.parts):] != out.parts:
            return None
        return Path(*here[:-len(out.parts)])


def check_db(db: str | None) -> str:
    """An explicit --db: its absolute path ('' for none), or DataError naming it when it is not a file."""
    if not db:
        return ""
    path = Path(db).expanduser()
    if not path.is_file():
        raise DataError(f"--db {db}: database file not found")
    return str(path.resolve())


def _read_summary(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path.parent}: not a tunelab run directory (no {RUN_FILE})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid JSON ({str(e)[:200]}); the run directory is damaged") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in STRING_KEYS:
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}: '{key}' must be a string, got {type(data[key]).__name__}")
    return data
