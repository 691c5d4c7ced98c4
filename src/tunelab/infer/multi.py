"""One base model in memory, many runs' adapters on it: a ChatEngine per run, switched per request.

Every run must have been trained on the same base model (run.json `model_dir`) with the same kind
of adapter (PEFT cannot mix, say, LoRA and prompt tuning in one model). The adapters are loaded
once; each run's engine drives the shared model through an `AdapterView`, whose `generate` takes a
lock, activates that run's adapter (or disables all of them for the base model) and generates, so
requests from several threads never run with another run's adapter.

With `enable_batching(batch_max)` (the server), a one-prompt `generate` call joins a `BatchDecoder`
instead: the requests of one adapter decode together, one forward pass per step (infer/continuous.py).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import tunelab.utils.offline  # noqa: F401
from tunelab.config.run_dir import RunDir
from tunelab.data.template import get_template
from tunelab.domains import record_view
from tunelab.infer.continuous import BatchDecoder, sampler_for
from tunelab.infer.engine import ChatEngine
from tunelab.models import load_model
from tunelab.models.compat import prompt_learning_generation
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
    record_view: str = "full"  # how the run read tool records in training (data.record_view)


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
                   domain=cfg.data.domain, db=run.db(db), tools=run.tools(), record_view=cfg.data.record_view)


class AdapterView:
    """The shared model as one run sees it: `generate` runs under the lock with its adapter active.

    Everything else (device, config, ...) reads through to the shared model.
    """

    def __init__(self, owner: "MultiEngine", adapter: str | None):
        self._owner, self._adapter = owner, adapter

    def eval(self):
        return self

    def generate(self, *args, **kwargs):
        decoder = self._owner.decoder
        if decoder is not None and not args and set(kwargs) <= BATCHABLE and kwargs["input_ids"].shape[0] == 1:
            return batched_generate(decoder, self._adapter, self._owner.model, **kwargs)
        with self._owner.activate(self._adapter):
            return self._owner.model.generate(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._owner.model, name)


# the `generate` keywords ChatEngine.reply / stream pass; a call with any other goes to `generate` itself
BATCHABLE = {"input_ids", "attention_mask", "streamer", "stopping_criteria", "max_new_tokens", "do_sample",
             "eos_token_id", "pad_token_id", "temperature", "top_p", "top_k"}


def batched_generate(decoder: BatchDecoder, adapter: str | None, model, input_ids, attention_mask=None,
                     streamer=None, stopping_criteria=None, max_new_tokens: int = 20, do_sample: bool = False,
                     eos_token_id=None, pad_token_id=None, temperature=None, top_p=None, top_k=None):
    """`generate` for one unpadded prompt, decoded by `decoder` among the other requests: the same
    output tensor (prompt + new tokens, through the stop token), streamer calls and stopping criteria."""
    import torch

    if attention_mask is not None and not bool(attention_mask.all()):
        raise ValueError("batched generate takes one unpadded prompt")
    stop = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    sampler = None
    if do_sample:
        top_k = top_k if top_k is not None else getattr(model.generation_config, "top_k", None)
        sampler = sampler_for(temperature or 1.0, 1.0 if top_p is None else top_p, top_k)
    row = decoder.submit(adapter, input_ids[0].tolist(), max_new_tokens, stop, sampler)
    if streamer is not None:
        streamer.put(input_ids.cpu())
    new: list[int] = []

    def stopped() -> bool:
        if not stopping_criteria:
            return False
        seq = torch.tensor([input_ids[0].tolist() + new])
        return bool(stopping_criteria(seq, None).any())

    try:
        for token in row.tokens(decoder.alive):
            if token is None:  # no token yet: a cancelled request leaves without waiting for its turn
                if stopped():
                    break
                continue
            new.append(token)
            if streamer is not None:
                streamer.put(torch.tensor([token]))
            if stopped():
                break
    finally:
        row.abort.set()  # ended, cancelled or failed: its place in the batch is free at the next step
    if streamer is not None:
        streamer.end()
    return torch.cat([input_ids, torch.tensor([new], dtype=input_ids.dtype, device=input_ids.device)], dim=1)


class MultiEngine:
    """Runs sharing one base model; `engine_for(name)` gives the ChatEngine for a run or the base."""

    def __init__(self, model, tokenizer, runs: list[RunInfo], base_id: str):
        prompt_learning_generation(model)  # on the shared model, before the per-run views (models/compat.py)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.runs = {r.name: r for r in runs}
        self.base_id = base_id
        self.lock = threading.Lock()
        self.decoder: BatchDecoder | None = None  # enable_batching
        self._has_adapters = any(r.adapter for r in runs)
        self._engines: dict[str, ChatEngine] = {}
        for r in runs:
            self._engines[r.name] = ChatEngine(AdapterView(self, r.adapter), tokenizer,
                                               get_template(r.template, tokenizer, r.tool_results), r.system_prompt,
                                               domain=r.domain, db=r.db, tools=r.tools,
                                               record_view=record_view(r.domain, r.record_view))
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

    def enable_batching(self, batch_max: int) -> bool:
        """Decode up to `batch_max` requests of one adapter together (1: one generate call at a time).

        False (and one at a time) where the model cannot: prompt-learning adapters prepend virtual
        tokens inside their own generate, and caches of other layer types do not stack."""
        from transformers import DynamicCache

        from tunelab.models.compat import stackable

        peft_cfg = getattr(self.model, "peft_config", {}) or {}
        prompt_learning = any(getattr(c, "is_prompt_learning", False) for c in peft_cfg.values())
        ok = batch_max > 1 and not prompt_learning and stackable(DynamicCache(config=self.model.config))
        if not ok:
            self.decoder = None
        elif self.decoder is None or self.decoder.batch_max != batch_max:
            self.decoder = BatchDecoder(self.model, self.activate, batch_max)
        return ok

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
