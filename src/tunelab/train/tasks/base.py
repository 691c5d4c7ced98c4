"""A training task: what the one `train()` job asks of `sft`, `classify` (and the preference tasks to come).

A task reads its data, loads the model with the method applied and encodes the rows (all before the run
directory is touched), and scores the trained model at the end. The job owns everything else: levers,
run directory, trainer, checkpoints, summary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunelab.config import Config
from tunelab.data.cache import cache_key, load_or_build
from tunelab.data.dataset import batch_openings, data_files, data_name, encode_rows, mix_weights
from tunelab.data.render import Renderer
from tunelab.data.template import ChatTemplate, get_template
from tunelab.domains import record_view
from tunelab.methods import Method, TrainContext, check_options, get_method
from tunelab.models import load_model
from tunelab.utils.log import log
from tunelab.utils.paths import cache_dir


@dataclass
class Prepared:
    """A model ready to train and the rows it trains on."""

    model: Any
    tokenizer: Any
    model_dir: Path
    method: Method
    train_rows: list[dict]
    dev_rows: list[dict] | None = None
    causal: bool = True  # rows are causal-LM rows (input_ids + per-token labels): every SFT lever applies
    causal_model: bool = False  # rows of another kind, but the model is a causal LM: its bf16 verdict is measured
    template: ChatTemplate | None = None
    renderer: Renderer | None = None
    collator: Callable | None = None  # None: the job's pad / pack collator for causal rows
    summary: dict = field(default_factory=dict)  # the task's facts for run.json
    state: dict = field(default_factory=dict)  # what the task's evaluate() needs again (labels, dev texts)
    precision: str = "no"  # set by the job: the autocast the model trains under
    frozen_bf16: int = 0  # set by the job: frozen linear layers stored in bf16 (the model needs autocast)
    # a task on another Trainer (the preference tasks on TRL's): called with SFTTrainer's keyword arguments
    trainer_factory: Callable | None = None
    args_cls: Any = None  # the TrainingArguments subclass the trainer takes (TRL's DPOConfig ...); None: TrainingArguments
    task_args: dict = field(default_factory=dict)  # the task's own fields of args_cls (beta, loss_type ...)
    before_save: Callable | None = None  # (model) -> None, e.g. drop a frozen reference adapter before saving


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    prepare: Callable[[Config, str], Prepared]  # (cfg, device)
    evaluate: Callable[[Config, Prepared, Path], dict | None]  # (cfg, prepared, run_dir): task metrics or None


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    return TASKS[name]  # the config loader has checked the name against data.task's choices


# ----------------------------------------------------------------------------- parts causal tasks share


def load_causal(cfg: Config, device: str):
    """(method, model, tokenizer, model_dir, template, renderer) for a causal LM, the method not applied yet."""
    method = get_method(cfg.method.name)
    load_extra = method.load_kwargs(cfg.method, device) if method.load_kwargs else {}
    model, tokenizer, model_dir = load_model(cfg.model, device, **load_extra)
    template = get_template(cfg.data.template, tokenizer, cfg.data.tool_results)
    view = record_view(cfg.data.domain, cfg.data.record_view)
    return method, model, tokenizer, model_dir, template, Renderer(template, tokenizer, cfg.data.system_prompt,
                                                                   view=view)


def apply_method(cfg: Config, method: Method, model, device: str):
    """The method on the model, its new weights initialised from train.seed."""
    from transformers import set_seed

    check_options(method, cfg.method)
    set_seed(cfg.train.seed)  # the adapter's initial weights too, not only what the Trainer draws later
    return method.apply(model, cfg.method, TrainContext(device, cfg.train.max_steps))


def tokenized(path: str | list[str], data, data_cfg, renderer: Renderer):
    """Rendered rows, from the tokenization cache when the same inputs were rendered before."""
    def build():
        return encode_rows(path, data, data_cfg, renderer)

    if not data_cfg.cache:
        rows, stats = build()
        return batch_openings(rows, stats, data_cfg.openings_per_step), stats
    mix = mix_weights(path)  # data.train_files: the weights shape the rows too
    key = cache_key(data_files(path), renderer.tokenizer, renderer.template.name, data_cfg.system_prompt,
                    data_cfg.max_length, tool_results=data_cfg.tool_results, format=data_cfg.format,
                    skip_invalid=data_cfg.skip_invalid, max_samples=data_cfg.max_samples, **({"mix": mix} if mix else {}),
                    **({"openings": data_cfg.openings} if data_cfg.openings else {}),
                    **({"record_view": repr(renderer.view)} if renderer.view else {}))
    rows, stats, hit, saved = load_or_build(key, build, cache_dir() / "datasets")
    if hit:
        log.info(f"{data_name(path)}: tokenized rows from the cache ({saved:.1f} s of tokenization saved)")
    return batch_openings(rows, stats, data_cfg.openings_per_step), stats


def dev_config(cfg: Config):
    return dataclasses.replace(cfg.data, max_samples=cfg.data.dev_max_samples, openings=0.0)  # dev: whole dialogs
