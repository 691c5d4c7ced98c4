"""`tunelab train`: config -> run directory with adapter, metrics, loss curve. Reads top to bottom."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from pathlib import Path

import tunelab.utils.offline  # noqa: F401
from transformers.trainer_callback import PrinterCallback

from tunelab.config import Config, load_config, save_config
from tunelab.data.cache import cache_key, load_or_build
from tunelab.data.collate import PackCollator, PadCollator
from tunelab.data.dataset import encode_rows, read_data
from tunelab.data.render import Renderer
from tunelab.data.template import get_template
from tunelab.methods import TrainContext, get_method, parameter_report
from tunelab.models import load_model
from tunelab.models.attention import packed_attention
from tunelab.models.weights import weight_checksums
from tunelab.evaluate.job import DECODERS
from tunelab.train.callbacks import MetricsLog, ProgressBar, TimeBudget, peak_rss_mb
from tunelab.train.loss import is_prompt_learning
from tunelab.train.memory import ActivationBudget
from tunelab.train.plot import plot_loss
from tunelab.train.precision import autocast, resolve_mixed_precision, store_frozen_linears
from tunelab.train.trainer import SFTTrainer, TokenMeter, compile_layers
from tunelab.utils.errors import ConfigError
from tunelab.utils.io import write_json
from tunelab.utils.log import log
from tunelab.utils.paths import cache_dir

RUN_FILE = "run.json"


def _training_args(cfg: Config, device: str, has_dev: bool, method_overrides: dict, precision: str):
    from transformers import TrainingArguments

    t = cfg.train
    eval_every = t.eval_steps if (has_dev and t.eval_steps) else 0
    kwargs = dict(
        output_dir=t.output_dir, max_steps=t.max_steps, num_train_epochs=t.num_train_epochs,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        gradient_checkpointing=t.gradient_checkpointing, logging_steps=t.logging_steps,
        save_strategy="steps" if t.save_steps else "no", save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit, eval_strategy="steps" if eval_every else "no",
        eval_steps=eval_every or None, seed=t.seed, optim=t.optim,
        dataloader_num_workers=t.dataloader_num_workers, report_to=[], disable_tqdm=True,
        remove_unused_columns=False, use_cpu=device == "cpu", bf16=precision == "bf16",
        dataloader_pin_memory=device == "cuda", save_only_model=False,
    )
    kwargs.update(method_overrides)  # e.g. qlora's paged optimizer on CUDA
    kwargs.update(t.extra)
    try:
        return TrainingArguments(**kwargs)
    except TypeError as e:
        raise ConfigError(f"train.extra: {e} (keys must be TrainingArguments names)") from None
    except ValueError as e:
        raise ConfigError(f"train: {e}") from None


def _tokenized(path: str, data, data_cfg, renderer: Renderer):
    """Rendered rows, from the tokenization cache when the same inputs were rendered before."""
    def build():
        return encode_rows(path, data, data_cfg, renderer)

    if not data_cfg.cache:
        return build()
    key = cache_key(path, renderer.tokenizer, renderer.template.name, data_cfg.system_prompt, data_cfg.max_length,
                    tool_results=data_cfg.tool_results, format=data_cfg.format,
                    skip_invalid=data_cfg.skip_invalid, max_samples=data_cfg.max_samples)
    rows, stats, hit, saved = load_or_build(key, build, cache_dir() / "datasets")
    if hit:
        log.info(f"{path}: tokenized rows from the cache ({saved:.1f} s of tokenization saved)")
    return rows, stats


def _prepare_run_dir(cfg: Config) -> Path:
    out = Path(cfg.train.output_dir)
    if cfg.train.resume:
        if not list(out.glob("checkpoint-*")):
            raise ConfigError(f"train.resume=true but {out} holds no checkpoint-* to resume from")
        return out
    if out.exists() and any(out.iterdir()):
        if not cfg.train.overwrite:
            raise ConfigError(
                f"train.output_dir {out} is not empty; pass --train.overwrite=true to replace it, "
                "--train.resume=true to continue it, or choose another output_dir"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def train(cfg: Config | dict | str) -> dict:
    """Fine-tune per `cfg` and return the run summary (also written to run.json)."""
    import torch

    if not isinstance(cfg, Config):
        cfg = load_config(cfg) if isinstance(cfg, str) else load_config(overrides=cfg)
    if cfg.data.task != "sft":  # classify: its own job (train/classify.py)
        from tunelab.train.classify import train_classifier
        return train_classifier(cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if not cfg.data.train_file:
        raise ConfigError("data.train_file is empty; set it in the config or with --data.train_file=PATH")
    for key, value in [("data.pad_to_multiple_of", cfg.data.pad_to_multiple_of),
                       ("train.activation_memory_mb", cfg.train.activation_memory_mb)]:
        if value < 0:
            raise ConfigError(f"{key} is {value}; it must be 0 (auto/off) or positive")
    if cfg.train.gradient_checkpointing and cfg.train.activation_memory_mb:
        raise ConfigError("train.gradient_checkpointing=true checkpoints every layer; train.activation_memory_mb "
                          "checkpoints only what a batch needs: set one of them")
    precision = resolve_mixed_precision(cfg.train.mixed_precision, device, cfg.model.dtype)
    if cfg.eval.decode not in DECODERS:
        raise ConfigError(f"eval.decode '{cfg.eval.decode}' is unknown; valid: {', '.join(DECODERS)}")
    if cfg.data.db and not Path(cfg.data.db).is_file():
        raise ConfigError(f"data.db '{cfg.data.db}': database file not found")

    # 1. data, model, template: all that can fail on bad input fails before the run dir is touched
    train_data = read_data(cfg.data.train_file, cfg.data)
    dev_data = None
    if cfg.data.dev_file:
        dev_cfg = dataclasses.replace(cfg.data, max_samples=cfg.data.dev_max_samples)
        dev_data = read_data(cfg.data.dev_file, dev_cfg)
    method = get_method(cfg.method.name)
    load_extra = method.load_kwargs(cfg.method, device) if method.load_kwargs else {}
    model, tokenizer, model_dir = load_model(cfg.model, device, **load_extra)
    template = get_template(cfg.data.template, tokenizer, cfg.data.tool_results)
    renderer = Renderer(template, tokenizer, cfg.data.system_prompt)
    train_rows, train_stats = _tokenized(cfg.data.train_file, train_data, cfg.data, renderer)
    log.info(train_stats.line(f"train data ({template.name} template)"))
    dev_rows = None
    if dev_data is not None:
        dev_rows, dev_stats = _tokenized(cfg.data.dev_file, dev_data, dev_cfg, renderer)
        log.info(dev_stats.line("dev data"))
    model = method.apply(model, cfg.method, TrainContext(device, cfg.train.max_steps))
    if cfg.data.packing and is_prompt_learning(model):
        raise ConfigError(f"data.packing=true does not work with method {cfg.method.name}: its virtual tokens "
                          "would be shared by the packed conversations; set data.packing=false")
    # bf16 autocast on a CPU: frozen linear weights stored in bf16 once, not cast every step
    stored_bf16 = store_frozen_linears(model, torch.bfloat16) if (
        precision == "bf16" and device == "cpu" and method.adapter) else 0
    budget = None
    if cfg.train.activation_memory_mb:  # measured on the model as it trains: method, dtype, autocast
        budget = ActivationBudget.for_model(model, cfg.train.activation_memory_mb,
                                            lambda: autocast(precision, device))
        log.info(f"activation budget {cfg.train.activation_memory_mb} MB: "
                 f"{budget.per_token_layer / 1024:.1f} KB kept per token per layer; batches over "
                 f"{budget.budget_bytes / budget.per_token_layer / len(budget.layers):.0f} tokens checkpoint layers")
    if cfg.train.compile:
        compile_layers(model)
    params = parameter_report(model)
    log.info(f"method {cfg.method.name}: {params['trainable_params']:,} trainable of "
             f"{params['total_params']:,} parameters ({params['trainable_percent']}%)")
    args = _training_args(cfg, device, dev_rows is not None,
                          method.train_overrides(device) if method.train_overrides else {}, precision)
    log.info(f"mixed precision: {precision} ({cfg.train.mixed_precision} on {device})"
             + (f"; {stored_bf16} frozen linear layers stored in bf16" if stored_bf16 else ""))

    # 2. run dir and trainer
    run_dir = _prepare_run_dir(cfg)
    save_config(cfg, run_dir / "config.yaml")
    meter = TokenMeter()
    clock = TimeBudget(cfg.train.time_budget_minutes * 60, meter)
    # bf16 kernels (oneDNN on a CPU) are built and cached per shape: bucketed lengths reuse them
    pad_multiple = cfg.data.pad_to_multiple_of or (64 if precision == "bf16" else 1)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=train_rows, eval_dataset=dev_rows,
        data_collator=PackCollator() if cfg.data.packing else PadCollator(tokenizer.pad_token_id, pad_multiple),
        meter=meter, time_budget_s=clock.budget_s, activation_budget=budget, target_only=cfg.train.target_only_logits,
        callbacks=[ProgressBar(meter, clock.budget_s), MetricsLog(run_dir / "metrics.jsonl", meter), clock,
                   *(method.callbacks(model) if method.callbacks else [])],
    )
    trainer.remove_callback(PrinterCallback)  # our progress bar and metrics.jsonl replace its prints
    if cfg.train.gradient_checkpointing:
        model.enable_input_require_grads()

    # 3. train, then dev loss
    start = time.time()
    # packed rows: attention per conversation from the collator's boundaries, no mask (models/attention.py)
    with packed_attention(model) if cfg.data.packing else contextlib.nullcontext():
        result = trainer.train(resume_from_checkpoint=True if cfg.train.resume else None)
        train_s = time.time() - start
        dev_loss = trainer.evaluate()["eval_loss"] if dev_rows is not None else None

    # 4. save: adapter in PEFT format (whole weights for full/freeze), tokenizer, summary, plot
    model.save_pretrained(run_dir)
    tokenizer.save_pretrained(run_dir)
    (run_dir / RUN_FILE).unlink(missing_ok=True)  # a resumed run's old summary has the old weights' checksums
    summary = {
        "base_model": cfg.model.name_or_path, "model_dir": str(model_dir), "method": cfg.method.name,
        "adapter": method.adapter, "template": template.name, "system_prompt": cfg.data.system_prompt, **params,
        "tool_results": cfg.data.tool_results, "packing": cfg.data.packing, "threads": torch.get_num_threads(),
        "mixed_precision": precision, "frozen_linears_bf16": stored_bf16,
        "steps": trainer.state.global_step, "train_loss": result.training_loss,
        "dev_loss": dev_loss, "train_time_s": round(train_s, 1),
        "tokens_per_s": round(meter.tokens / max(train_s, 1e-9), 1), "tokens": meter.tokens,
        "peak_rss_mb": round(peak_rss_mb(), 1), "stopped_by_time_budget": clock.hit,
        "pad_to_multiple_of": pad_multiple, "activation_budget": budget.summary() if budget else None,
        "train_data": train_stats.__dict__, "device": device,
        # absolute, so chat/serve/evaluate find it from any directory; sha256 of the weights, checked on load
        "db": str(Path(cfg.data.db).resolve()) if cfg.data.db else "", "checksums": weight_checksums(run_dir),
    }
    if cfg.eval.dev_items and cfg.data.dev_file:  # task metrics on a dev subset, beside the dev loss
        from tunelab.evaluate.job import evaluate
        from tunelab.infer.engine import ChatEngine, load_engine

        # the trained model in memory, unless its frozen weights are bf16 (then from disk, as evaluate will)
        engine = (load_engine(run_dir, trust_remote_code=cfg.model.trust_remote_code) if stored_bf16
                  else ChatEngine(model, tokenizer, template, cfg.data.system_prompt))
        summary["dev_metrics"] = evaluate(run_dir, cfg.data.dev_file, limit=cfg.eval.dev_items,
                                          batch_size=cfg.eval.batch_size, max_new_tokens=cfg.eval.max_new_tokens,
                                          db=cfg.data.db or None, engine=engine, decode=cfg.eval.decode)
    write_json(run_dir / RUN_FILE, summary)
    plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png")
    log.info(f"run saved to {run_dir}: train loss {result.training_loss:.4f}"
             + (f", dev loss {dev_loss:.4f}" if dev_loss is not None else "")
             + f", {summary['tokens_per_s']} tokens/s; chat with: tunelab chat {run_dir}")
    return {"run_dir": str(run_dir), **summary}


def read_run(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a tunelab run directory (no {RUN_FILE})")
    return json.loads(path.read_text())
