"""`tunelab train`: config -> run directory with adapter, metrics, loss curve. Reads top to bottom."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from transformers.trainer_callback import PrinterCallback

import tunelab.utils.offline  # noqa: F401
from tunelab.config import Config, load_config
from tunelab.config.run_dir import RunDir
from tunelab.data.collate import PackCollator, PadCollator
from tunelab.data.dataset import data_files
from tunelab.domains import record_view
from tunelab.methods import parameter_report
from tunelab.models.attention import kernel_verdict, training_attention
from tunelab.models.compat import frozen_context_supported
from tunelab.models.fused import lean_layers
from tunelab.models.load import portable_name
from tunelab.models.rope import rope_record
from tunelab.models.weights import weight_checksums
from tunelab.train.callbacks import DevLossBar, MetricsLog, ProgressBar, StopFile, TimeBudget, peak_rss_mb
from tunelab.train.distributed import (
    check_scale_out,
    init_process_group,
    rank_figures,
    scale_out_args,
)
from tunelab.train.checkpoints import (
    CheckpointMarker,
    Progress,
    finished_run,
    resume_point,
    trim_metrics,
    whole_run_loss,
)
from tunelab.train.loss import causal_lm, decoder_layers, is_prompt_learning
from tunelab.train.memory import ActivationBudget
from tunelab.train.plot import plot_loss
from tunelab.train.precision import autocast, resolve_mixed_precision, store_frozen_linears
from tunelab.train.tasks import get_task
from tunelab.train.tracking import record_final, set_tracking_env, tracking_args
from tunelab.train.trainer import SFTTrainer, TokenMeter, compile_layers
from tunelab.utils.alloc import active_allocator
from tunelab.utils.dist import is_main, leave_group, on_main, world_size
from tunelab.utils.errors import ConfigError
from tunelab.utils.log import log
from tunelab.utils.safety import check_output


def _training_args(cfg: Config, device: str, has_dev: bool, method_overrides: dict, precision: str,
                   output_dir: Path, scale_out: dict | None = None, args_cls=None, task_args: dict | None = None):
    from transformers import TrainingArguments

    args_cls = args_cls or TrainingArguments

    t = cfg.train
    eval_every = t.eval_steps if (has_dev and t.eval_steps) else 0
    kwargs = dict(
        output_dir=str(output_dir), max_steps=t.max_steps, num_train_epochs=t.num_train_epochs,
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
        dataloader_pin_memory=device == "cuda", save_only_model=False, ddp_timeout=t.ddp_timeout,
    )
    kwargs.update(tracking_args(cfg, output_dir))  # report_to and where each tracker writes
    kwargs.update(scale_out or {})  # FSDP or DeepSpeed
    kwargs.update(method_overrides)  # e.g. qlora's paged optimizer on CUDA
    kwargs.update(task_args or {})  # a task's own trainer fields (a preference task's beta ...)
    kwargs.update(t.extra)
    try:
        return args_cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"train.extra: {e} (keys must be TrainingArguments names)") from None
    except ValueError as e:
        raise ConfigError(f"train: {e}") from None


def run_inputs(cfg: Config) -> list[str]:
    """The files a training job reads: its output may be none of them, nor hold them."""
    return [*data_files(cfg.data.train_file), *data_files(cfg.data.train_files), *data_files(cfg.data.dev_file),
            *([cfg.data.db] if cfg.data.db else []),
            *([cfg.model.adapter] if cfg.model.adapter else [])]  # the run a preference task starts from


def train(cfg: Config | dict | str) -> dict:
    """Fine-tune per `cfg` and return the run summary (also written to run.json)."""
    import torch

    if not isinstance(cfg, Config):
        cfg = load_config(cfg) if isinstance(cfg, str) else load_config(overrides=cfg)
    check_scale_out(cfg)  # before any model loads: trackers and DeepSpeed installed, combinations valid
    init_process_group(cfg.train.ddp_timeout)  # under torchrun: every rank joins before the model loads
    task = get_task(cfg.data.task)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if not cfg.data.train_file and not cfg.data.train_files:
        raise ConfigError("data.train_file is empty; set it in the config or with --data.train_file=PATH")
    if cfg.data.train_files and task.name != "sft":
        raise ConfigError(f"data.train_files (a weighted mix) is read by the sft task only; {task.name} reads "
                          "data.train_file")
    if cfg.data.openings and task.name != "sft":
        raise ConfigError(f"data.openings adds the openings of SFT conversations; task {task.name} has none: "
                          "set data.openings=0")
    check_output(cfg.train.output_dir, run_inputs(cfg), "train.output_dir")
    RunDir.check_free(cfg.train.output_dir, cfg.train.overwrite, cfg.train.resume)  # before minutes of loading
    if cfg.train.gradient_checkpointing and cfg.train.activation_memory_mb:
        raise ConfigError("train.gradient_checkpointing=true checkpoints every layer; train.activation_memory_mb "
                          "checkpoints only what a batch needs: set one of them")
    if cfg.data.db and not Path(cfg.data.db).is_file():
        raise ConfigError(f"data.db '{cfg.data.db}': database file not found")
    record_view(cfg.data.domain, cfg.data.record_view)  # a domain without the view asked for: one line, now
    if cfg.train.resume:  # rank 0 checks (and may swap in a finished replacement); its error stops every rank
        on_main(lambda: _check_resumable(cfg))

    # 1. the task's data and model (method applied), then the levers: all that can fail on bad input fails
    # before the run dir is touched
    prepared = task.prepare(cfg, device)
    model, tokenizer, method = prepared.model, prepared.tokenizer, prepared.method
    # auto on a CPU: bf16 where this machine runs the model's shapes faster in it (measured once, cached)
    precision, bf16_measured = resolve_mixed_precision(cfg.train.mixed_precision, device, cfg.model.dtype,
                                                       model if prepared.causal or prepared.causal_model else None,
                                                       store=bool(method.adapter))
    prepared.precision = precision
    if cfg.data.packing and not prepared.causal:
        raise ConfigError(f"data.packing=true packs causal-LM rows; the {task.name} task's rows here are not "
                          "(an encoder's): set data.packing=false")
    if cfg.train.decision_weight != 1.0 and (prepared.trainer_factory or not prepared.causal):
        raise ConfigError(f"train.decision_weight={cfg.train.decision_weight} weighs the first token of a causal "
                          f"SFT turn; data.task '{cfg.data.task}' has none: leave it at 1")
    if not cfg.train.context_grad:
        _check_frozen_context(cfg, prepared, model)
    if cfg.method.loraplus_lr_ratio and prepared.trainer_factory:
        raise ConfigError(f"method.loraplus_lr_ratio sets the optimizer of tunelab's SFT trainer; data.task "
                          f"'{cfg.data.task}' trains with its own: leave it at 0")
    if cfg.data.packing and is_prompt_learning(model):
        raise ConfigError(f"data.packing=true does not work with method {cfg.method.name}: its virtual tokens "
                          "would be shared by the packed conversations; set data.packing=false")
    params = parameter_report(model)  # before a tied head gets its own bf16 copy, which is no parameter of the model
    # bf16 autocast on a CPU: frozen linear weights stored in bf16 once, not cast every step
    stored_bf16 = store_frozen_linears(model, torch.bfloat16) if (
        precision == "bf16" and device == "cpu" and method.adapter) else 0
    prepared.frozen_bf16 = stored_bf16
    # a bf16 run on a CPU: tunelab's causal attention kernel where it timed faster here (measured once, cached),
    # and lean norm / MLP layers for an adapter run
    cpu_bf16 = precision == "bf16" and device == "cpu" and prepared.causal
    attention = kernel_verdict(model) if (cpu_bf16 and cfg.train.cpu_attention == "auto"
                                          and cfg.train.context_grad) else None
    kernel = bool(attention and attention["kernel"])
    lean = cpu_bf16 and cfg.train.lean_layers and bool(method.adapter) and not cfg.train.compile
    layers = decoder_layers(model) if prepared.causal else []

    def layer_forwards():  # the training loop's attention and layer forwards (models/attention.py, fused.py)
        stack = contextlib.ExitStack()
        if cfg.data.packing or kernel:
            stack.enter_context(training_attention(model, packed=cfg.data.packing, kernel=kernel))
        if lean:
            stack.enter_context(lean_layers(model, layers, lora=cfg.method.name == "lora"))
        return stack

    budget = None
    if cfg.train.activation_memory_mb:  # measured on the model as it trains: method, dtype, autocast, layers
        def measuring():
            stack = layer_forwards()
            stack.enter_context(autocast(precision, device))
            return stack
        budget = ActivationBudget.for_model(model, cfg.train.activation_memory_mb, measuring)
        log.info(f"activation budget {cfg.train.activation_memory_mb} MB: "
                 f"{budget.per_token_layer / 1024:.1f} KB kept per token per layer; batches over "
                 f"{budget.budget_bytes / budget.per_token_layer / len(budget.layers):.0f} tokens checkpoint layers")
    if cfg.train.compile:
        compile_layers(model)
    log.info(f"method {cfg.method.name}: {params['trainable_params']:,} trainable of "
             f"{params['total_params']:,} parameters ({params['trainable_percent']}%)")
    overrides = method.train_overrides(device) if method.train_overrides else {}
    dev_rows = prepared.dev_rows
    task_args = dict(args_cls=prepared.args_cls, task_args=prepared.task_args)
    scale_out = scale_out_args(cfg, type(layers[0]).__name__ if layers else None)
    _training_args(cfg, device, dev_rows is not None, overrides, precision, Path(cfg.train.output_dir),
                   scale_out, **task_args)  # checked
    allocator = active_allocator()
    log.info(f"mixed precision: {precision} ({cfg.train.mixed_precision} on {device}"
             + (f", bf16 measured {bf16_measured['ratio']}x fp32" if bf16_measured else "") + ")"
             + (f"; {stored_bf16} frozen linear layers stored in bf16" if stored_bf16 else "")
             + (f"; attention: {'tunelab' if attention['kernel'] else 'SDPA'} ({attention['speedup']}x)"
                if attention else "") + ("; lean norms and MLPs" if lean else "") + f"; malloc: {allocator}")

    # 2. run dir (a replaced run is staged beside the old one) and trainer
    # under torchrun rank 0 prepares it and writes every file of it; the other ranks get its paths
    run, checkpoint, base = on_main(lambda: _prepare_run(cfg))
    run_dir = run.work
    set_tracking_env(cfg, run_dir)
    args = _training_args(cfg, device, dev_rows is not None, overrides, precision, run_dir, scale_out, **task_args)
    main = is_main()
    if main:
        run.write_config(cfg)
    # checkpoints are rotated by CheckpointMarker once marked complete, not by HF before that
    keep_checkpoints, args.save_total_limit = args.save_total_limit, None
    meter = TokenMeter()
    # the budget covers the final dev loss too: training stops early enough to leave it its time
    dev_tokens = sum(len(r["input_ids"]) for r in dev_rows) if dev_rows is not None else 0
    clock = TimeBudget(cfg.train.time_budget_minutes * 60, meter, dev_tokens)
    stop_file = StopFile(cfg.train.stop_file)
    # bf16 kernels (oneDNN on a CPU) are built and cached per shape: bucketed lengths reuse them
    pad_multiple = cfg.data.pad_to_multiple_of or (64 if precision == "bf16" else 1)
    collator = prepared.collator or (
        PackCollator() if cfg.data.packing else PadCollator(tokenizer.pad_token_id, pad_multiple))
    own = {}  # SFTTrainer's own options, passed only where set (a task's trainer_factory takes neither)
    if cfg.train.decision_weight != 1.0:
        own["decision_weight"] = cfg.train.decision_weight
    if cfg.method.loraplus_lr_ratio:
        own["loraplus_lr_ratio"] = cfg.method.loraplus_lr_ratio
    if not cfg.train.context_grad:
        own["context_grad"] = False
    trainer = (prepared.trainer_factory or SFTTrainer)(
        model=model, args=args, train_dataset=prepared.train_rows, eval_dataset=dev_rows, data_collator=collator,
        meter=meter, time_budget_s=clock.budget_s, activation_budget=budget, causal=prepared.causal,
        target_only=cfg.train.target_only_logits, **own,
        callbacks=[*([ProgressBar(meter, clock.budget_s, clock), MetricsLog(run_dir / "metrics.jsonl", meter, base)]
                     if main else []), clock, stop_file,
                   *([CheckpointMarker(meter, base, keep_checkpoints or 0)] if main else []),
                   *(method.callbacks(model) if method.callbacks else []),
                   *([DevLossBar(-(-len(dev_rows) // cfg.train.per_device_eval_batch_size))]
                     if main and dev_rows is not None else [])],
    )
    trainer.remove_callback(PrinterCallback)  # our progress bar and metrics.jsonl replace its prints
    if cfg.train.gradient_checkpointing:
        model.enable_input_require_grads()

    # 3. train, then dev loss
    start = time.time()
    # packed rows: attention per conversation from the collator's boundaries, no mask; causal attention on
    # tunelab's CPU kernel where it was measured faster (models/attention.py)
    with layer_forwards():
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        train_s = base.train_s + time.time() - start  # the whole run's, across resumes
        dev_loss = trainer.evaluate()["eval_loss"] if dev_rows is not None else None

    # 4. save: adapter in PEFT format (whole weights for full/freeze), tokenizer, plot, and run.json last:
    # a run dir without run.json is not finished (a resumed run's old run.json goes before its adapter changes)
    if main:
        run.unfinish()
    if prepared.before_save is not None:
        prepared.before_save(model)
    if scale_out:  # sharded weights: every rank takes part in gathering them, rank 0 writes
        trainer.save_model(str(run_dir))
        if main:
            (run_dir / "training_args.bin").unlink(missing_ok=True)  # the run's config.yaml says it all
    elif main:
        model.save_pretrained(run_dir)
    if main:
        tokenizer.save_pretrained(run_dir)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else peak_rss_mb()
    scale = rank_figures(meter.tokens, meter.targets, train_s - base.train_s, peak_mb)
    train_loss = whole_run_loss(base, result.training_loss, trainer.state.global_step)
    tokens = base.tokens + meter.tokens
    summary = {
        # base_model: a preset name or an absolute path, found on any machine that has it; model_dir: this one's copy
        "task": task.name, "base_model": portable_name(cfg.model.name_or_path), "model_dir": str(prepared.model_dir),
        "method": cfg.method.name, "adapter": method.adapter, **prepared.summary, **params,
        "threads": torch.get_num_threads(), "mixed_precision": precision, "bf16_measured": bf16_measured, "frozen_linears_bf16": stored_bf16,
        "allocator": allocator, "cpu_attention": attention, "lean_layers": lean,
        "steps": trainer.state.global_step, "train_loss": train_loss,
        "dev_loss": dev_loss, "train_time_s": round(train_s, 1), "resumed_from_step": base.step or None,
        "tokens_per_s": round(tokens / max(train_s, 1e-9), 1), "tokens": tokens,
        "peak_rss_mb": round(peak_rss_mb(), 1), "stopped_by_time_budget": clock.hit,
        "stopped_by_request": stop_file.hit,
        # data.openings: how many were trained on (by this process: a resumed run counts from its resume)
        **({"openings_trained": meter.openings, "opening_batches_trained": meter.opening_batches}
           if cfg.data.openings else {}),
        "pad_to_multiple_of": pad_multiple, "activation_budget": budget.summary() if budget else None,
        "device": device, "rope_scaling": rope_record(cfg.model.rope_scaling, model.config),
        "world_size": world_size(), "ranks": scale["ranks"],
        "total_tokens_per_s": scale["total_tokens_per_s"], "total_peak_mb": scale["total_peak_mb"],
        # absolute, so chat/serve/evaluate find it from any directory; sha256 of the weights, checked on load
        "db": str(Path(cfg.data.db).resolve()) if cfg.data.db else "", "checksums": weight_checksums(run_dir),
    }
    leave_group()  # the last collective is behind us: rank 0's writing and scoring below is its own
    if not main:  # rank 0 writes the run dir, scores the dev items and reports to the trackers
        return {"run_dir": str(run.path), **summary}
    plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png")
    run.write_summary(summary)  # last, atomically: the mark of a finished run (dev metrics are added below)
    if (metrics := task.evaluate(cfg, prepared, run_dir)) is not None:  # task metrics beside the dev loss
        summary["dev_metrics"] = metrics
        run.write_summary(summary)
    record_final(cfg, summary, run_dir)  # tunelab's figures and the resolved config, beside the trackers' losses
    run_dir = run.commit()
    log.info(f"run saved to {run_dir}: train loss {train_loss:.4f}"
             + (f", dev loss {dev_loss:.4f}" if dev_loss is not None else "")
             + f", {summary['tokens_per_s']} tokens/s; chat with: tunelab chat {run_dir}")
    return {"run_dir": str(run_dir), **summary}


def _check_frozen_context(cfg: Config, prepared, model) -> None:
    """train.context_grad=false: refused in one line where its two passes cannot run as written."""
    why = ""
    if prepared.trainer_factory or not prepared.causal:
        why = f"data.task '{cfg.data.task}' has no causal SFT rows"
    elif is_prompt_learning(model):
        why = f"method {cfg.method.name} adds virtual tokens inside its own forward"
    elif cfg.data.packing:
        why = "data.packing=true (its rows hold several conversations)"
    elif not cfg.train.target_only_logits:
        why = "train.target_only_logits=false (it is a target-only path)"
    elif cfg.train.gradient_checkpointing or cfg.train.activation_memory_mb:
        why = "checkpointed layers drop the cache that carries the context (gradient_checkpointing, activation_memory_mb)"
    elif cfg.train.compile:
        why = "train.compile=true (the compiled layers are not measured with it)"
    else:
        reason = frozen_context_supported(causal_lm(model).get_decoder())
        why = f"model {cfg.model.name_or_path}: {reason}" if reason else ""
    if why:
        raise ConfigError(f"train.context_grad=false does not work with {why}: leave it true")


def _check_resumable(cfg: Config) -> None:
    """ConfigError when train.resume has nothing to resume; resume continues the staged replacement if there
    is one, and the check moves nothing but a finished replacement into place."""
    resumed = RunDir.prepare(cfg.train.output_dir, resume=True, inputs=run_inputs(cfg))
    if (done := finished_run(resumed.work, cfg.train.max_steps)) is not None:
        staged = resumed.work != resumed.path
        resumed.commit()  # a staged replacement killed between its last write and its swap: swap it now
        raise ConfigError(f"train.output_dir {cfg.train.output_dir}: already finished at step {done}; nothing "
                          "to resume" + (" (its finished replacement is now in place)" if staged else "")
                          + " (raise train.max_steps to train further)")


def _prepare_run(cfg: Config) -> tuple[RunDir, Path | None, Progress]:
    """(run dir, checkpoint to resume from or None, progress so far): a replaced run is staged beside the old one."""
    run = RunDir.prepare(cfg.train.output_dir, cfg.train.overwrite, cfg.train.resume, run_inputs(cfg))
    checkpoint, base = resume_point(run.work) if cfg.train.resume else (None, Progress())
    if checkpoint is not None:
        trim_metrics(run.work / "metrics.jsonl", base.step)  # the resumed run logs the later steps again
    return run, checkpoint, base
