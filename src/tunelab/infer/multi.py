"""One base model in memory, many runs' adapters on it: a ChatEngine per run, switched per request.

Every run must have been trained on the same base model (run.json `model_dir`) with the same kind
of adapter (PEFT cannot mix, say, LoRA and prompt tuning in one model). The adapters are loaded
once; each run's engine drives the shared model through an `AdapterView`, whose `generate` takes a
lock, activates that run's adapter (or disables all of them for the base model) and generates, so
requests from several threads never run with another run's adapter.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import tunelab.utils.offline  # noqa: F401
from tunelab.config.run_dir import RunDir
from tunelab.data.template import get_template
from tunelab.infer.engine import ChatEngine
from tunelab.models import load_model
from tunelab.models.compat import prefix_generation
from tunelab.models.weights import verify_run_weights
from tunelab.utils.errors import ConfigError


@dataclass
class RunInfo:
    """What serving needs to know of one run directory."""

    name: str  # the model id clients ask for: the run directory's name
    run_dir: Path
    base: Path  # the base model directory its adapter was trained on (itself for full weights)
    base_name: str  # the base model as named in training (a preset or a path): the served base's id
    adapter: str | None  # PEFT adapter name inside the shared model; None: the base weights as they are
    peft_type: str | None
    template: str
    tool_results: str  # how the run's tool results were rendered in training (data.tool_results)
    system_prompt: str
    domain: str
    db: str
    tools: list = field(default_factory=list)  # the tool specs the run was trained with (offered again)


def read_run_info(run_dir: str | Path, db: str | None = None, base_model: str | None = None) -> RunInfo:
    """A run directory's serving facts; ConfigError when it is not a finished tunelab run.

    Its weights are checked as load_engine checks them (safetensors, run.json checksums); `db`
    overrides the run's database."""
    run = RunDir.open(run_dir)
    verify_run_weights(run.path, run.summary().get("checksums"))
    cfg = run.config()
    return RunInfo(name=run.path.resolve().name, run_dir=run.path, base=Path(run.base_model(base_model)).resolve(),
                   base_name=base_model or (run.base_name() if run.has_adapter else run.path.resolve().name),
                   adapter=None, peft_type=run.peft_type(), template=run.template(),
                   tool_results=cfg.data.tool_results, system_prompt=run.system_prompt(),
                   domain=cfg.data.domain, db=run.db(db), tools=run.tools())


class AdapterView:
    """The shared model as one run sees it: `generate` runs under the lock with its adapter active.

    Everything else (device, config, ...) reads through to the shared model.
    """

    def __init__(self, owner: "MultiEngine", adapter: str | None):
        self._owner, self._adapter = owner, adapter

    def eval(self):
        return self

    def generate(self, *args, **kwargs):
        with self._owner.activate(self._adapter):
            return self._owner.model.generate(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._owner.model, name)


class MultiEngine:
    """Runs sharing one base model; `engine_for(name)` gives the ChatEngine for a run or the base."""

    def __init__(self, model, tokenizer, runs: list[RunInfo], base_id: str):
        prefix_generation(model)  # on the shared model, before the per-run views (models/compat.py)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.runs = {r.name: r for r in runs}
        self.base_id = base_id
        self.lock = threading.Lock()
        self._has_adapters = any(r.adapter for r in runs)
        self._engines: dict[str, ChatEngine] = {}
        for r in runs:
            self._engines[r.name] = ChatEngine(AdapterView(self, r.adapter), tokenizer,
                                               get_template(r.template, tokenizer, r.tool_results), r.system_prompt,
                                               domain=r.domain, db=r.db, tools=r.tools)
        if base_id not in self._engines:  # a full-weights run *is* its base: no separate entry
            self._engines[base_id] = ChatEngine(AdapterView(self, None), tokenizer, get_template("auto", tokenizer))

    @property
    def names(self) -> list[str]:
        """Model ids to ask for: the base first, then the runs in the order given."""
        return [self.base_id] + [n for n in self.runs if n != self.base_id]

    def engine_for(self, name: str) -> ChatEngine:
        if name not in self._engines:
            raise ConfigError(f"model '{name}' is not loaded; loaded: {', '.join(self.names)}")
        return self._engines[name]

    @contextmanager
    def activate(self, adapter: str | None):
        """Hold the lock with `adapter` active; None runs the base weights (all adapters off)."""
        with self.lock:
            if not self._has_adapters:
                yield
            elif adapter is None:
                with self.model.disable_adapter():
                    yield
            else:
                self.model.set_adapter(adapter)
                yield

    @classmethod
    def load(cls, run_dirs: list[str | Path], device: str | None = None, trust_remote_code: bool = False,
             db: str | None = None, base_model: str | None = None) -> "MultiEngine":
        """Load the shared base model once and every run's adapter onto it.

        Only `trust_remote_code` here runs model code, never a run's config; `db` (--db) overrides
        every run's database."""
        import torch
        from peft import PeftModel

        if not run_dirs:
            raise ConfigError("no run directories given")
        runs = [read_run_info(d, db, base_model) for d in run_dirs]
        _check_compatible(runs)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model_cfg = RunDir(runs[0].run_dir).model_config(trust_remote_code, base_model)
        model, tokenizer, _ = load_model(model_cfg, device, use_safetensors=True)
        for i, r in enumerate(r for r in runs if r.peft_type):
            r.adapter = f"run{i}"  # run names may hold dots or dashes; module keys may not
            if i == 0:
                model = PeftModel.from_pretrained(model, str(r.run_dir), adapter_name=r.adapter)
            else:
                model.load_adapter(str(r.run_dir), adapter_name=r.adapter)
        model = model.to(device)
        full = next((r for r in runs if not r.peft_type), None)
        return cls(model, tokenizer, runs, base_id=full.name if full else _base_id(runs[0].base_name, runs))


def _check_compatible(runs: list[RunInfo]) -> None:
    names = [r.name for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"run names must be unique (a run is asked for by its directory name): {', '.join(dup)}")
    bases = {r.base for r in runs}
    if len(bases) > 1:
        detail = "; ".join(f"{r.name}: {r.base}" for r in runs)
        raise ConfigError(f"runs served together must share one base model (run.json model_dir): {detail}")
    kinds = {r.peft_type for r in runs if r.peft_type}
    if len(kinds) > 1:
        detail = "; ".join(f"{r.name}: {r.peft_type}" for r in runs)
        raise ConfigError(f"runs served together must use one kind of adapter (PEFT cannot mix them): {detail}")


def _base_id(base_name: str, runs: list[RunInfo]) -> str:
    """The base model's id: its preset name or its directory's name (not the import cache's hash), made
    distinct from every run name."""
    taken = {r.name for r in runs}
    name = Path(base_name).name or "base"
    return name if name not in taken else f"{name}-base"
