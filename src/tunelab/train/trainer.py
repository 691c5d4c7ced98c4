"""Hugging Face `Trainer` with tunelab's target-only loss and a token meter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from transformers import Trainer

from tunelab.train.loss import decoder_layers, lm_loss
from tunelab.train.precision import autocast


def compile_layers(model) -> int:
    """torch.compile every decoder layer in place (state-dict keys unchanged, so saving is as usual).

    Fuses the elementwise work around the matmuls (norms, rotary embedding, activations), which on a CPU
    is a large share of a small model's step, and keeps fewer activations (cheap ones are recomputed).
    Shapes vary with each batch, hence dynamic=True. Compiled kernels go to tunelab's cache directory
    (not torch's default under /tmp, wiped at reboot), so a later run of the same model and method
    loads them instead of compiling: 41.2 s against 21.6 s for a 12-dialog run here (benchmarks/
    results/train_throughput_n12.md, first-run and later-run compile rows). Returns the number of layers compiled.
    """
    import os

    from tunelab.utils.paths import cache_dir

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


@dataclass
class TokenMeter:
    """Counts what the trainer has processed, for tokens/s in the progress bar and the metrics."""

    tokens: int = 0  # real (non-pad) tokens
    targets: int = 0  # supervised tokens
    loss_sum: float = 0.0  # sum of the training losses, per optimizer step as HF sums them (for resumed runs)
    openings: int = 0  # data.openings trained, and the batches that held them
    opening_batches: int = 0
    start: float = field(default_factory=time.time)

    def rate(self) -> float:
        return self.tokens / max(time.time() - self.start, 1e-9)


def budget_scheduler(trainer, num_training_steps: int, optimizer=None):
    """The time-budget schedule of `SFTTrainer.create_scheduler` for any Trainer with a `time_budget_s`
    (the preference tasks' TRL trainers too), set as trainer.lr_scheduler; None where the args' own applies."""
    constant = str(trainer.args.lr_scheduler_type).split(".")[-1].lower().startswith("constant")
    if not (trainer.time_budget_s and trainer.lr_scheduler is None) or constant:
        return None
    import math

    from torch.optim.lr_scheduler import LambdaLR

    warmup, floor, start = trainer.args.warmup_steps, 0.1, []

    def factor(step: int) -> float:
        if not start and step > 0:
            start.append(time.time())  # the clock starts at the first optimizer step, not at set-up
        if step < warmup:
            return (step + 1) / (warmup + 1)
        by_time = (time.time() - start[0]) / trainer.time_budget_s if start else 0.0
        by_steps = (step - warmup) / max(num_training_steps - warmup - 1, 1)  # the last step: the floor
        frac = min(max(by_time, by_steps), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))

    trainer.lr_scheduler = LambdaLR(optimizer or trainer.optimizer, factor)
    return trainer.lr_scheduler


class SFTTrainer(Trainer):
    """Trainer whose loss projects to the vocabulary only where a label is supervised (causal rows), with a
    token meter and a time-based schedule; `causal=False` (an encoder's rows) keeps the model's own loss."""

    # compute_loss divides by the tokens of the whole accumulated batch itself.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, meter: TokenMeter | None = None, target_only: bool = True,
                 time_budget_s: float = 0.0, activation_budget=None, causal: bool = True,
                 decision_weight: float = 1.0, loraplus_lr_ratio: float = 0.0, context_grad: bool = True, **kw):
        self.loraplus_lr_ratio = loraplus_lr_ratio  # read by create_optimizer, which super().__init__ may call
        super().__init__(*args, **kw)
        self.causal = causal
        self.activation_budget = activation_budget  # train/memory.py: which layers checkpoint, per batch
        self.meter = meter or TokenMeter()
        self.time_budget_s = time_budget_s
        self.target_only = target_only
        self.decision_weight = decision_weight  # training loss only: the dev loss stays every token alike
        self.context_grad = context_grad  # training only: the dev loss has no backward to save
        if causal:
            self.model_accepts_loss_kwargs = True  # so the Trainer counts num_items_in_batch for us
        else:
            self.loss_is_scaled_for_ga = None  # the model's own loss: the Trainer scales it as usual

    def create_optimizer(self, model=None):
        """LoRA+ where method.loraplus_lr_ratio is set: peft's parameter groups, the B factors and 1-D
        parameters (DoRA's magnitudes, biases) at that many times the learning rate; otherwise the Trainer's own
        optimizer. Same optimizer class and settings either way (train.optim), and every group follows the
        schedule (it scales each group's rate)."""
        if not self.loraplus_lr_ratio or self.optimizer is not None:
            return super().create_optimizer(model)
        from peft.optimizers import create_loraplus_optimizer

        model = model if model is not None else self.model
        cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = create_loraplus_optimizer(model, cls, loraplus_lr_ratio=self.loraplus_lr_ratio,
                                                   loraplus_weight_decay=self.args.weight_decay, **kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """With a time budget, decay the learning rate over whichever ends first: the budget or the planned
        steps (progress = the larger of the two fractions), cosine to 10% of the peak.

        A step-based schedule cut off by the budget would stop at a high learning rate, and a time-based one
        whose epochs end first would too; this one lands on its floor either way, however fast the machine.
        """
        scheduler = budget_scheduler(self, num_training_steps, optimizer)
        return scheduler if scheduler is not None else super().create_scheduler(num_training_steps, optimizer)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Accelerate's autocast wraps only model.forward, which the target-only loss goes around
        # (decoder and LM head called apart): so the loss gets its own autocast here (dev loss too).
        if model.training and self.activation_budget is not None:
            self.activation_budget.fit(inputs["input_ids"].numel())
        if not self.causal:
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training:
                self.meter.tokens += int(inputs["attention_mask"].sum())
                self.meter.loss_sum += float((out[0] if return_outputs else out).detach())
            return out
        with self._autocast():
            loss, n_targets = lm_loss(model, inputs, num_items_in_batch, self.target_only,
                                      self.decision_weight if model.training else 1.0, self.context_grad)
        if model.training:
            mask = inputs.get("attention_mask")
            self.meter.tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            self.meter.targets += n_targets
            self.meter.loss_sum += float(loss.detach())
            if "openings" in inputs:
                self.meter.openings += int(inputs["openings"])
                self.meter.opening_batches += 1
            # num_items_in_batch counts the targets of every rank, and DDP averages the gradients over the
            # ranks: scaled by their number, the step equals one process's step over the same global batch
            if num_items_in_batch is not None and self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict, *args, **kw) -> None:
        """HF's log with tunelab's figures beside the training loss, so every tracker of report_to gets them."""
        if "loss" in logs:
            import resource

            logs = {**logs, "tokens_per_s": round(self.meter.rate(), 1), "target_tokens": self.meter.targets,
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        super().log(logs, *args, **kw)

    def _autocast(self):
        return autocast("bf16" if self.args.bf16 else "no", self.args.device.type)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        import torch

        if not self.causal:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        device = self.args.device
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.no_grad(), self._autocast():
            loss, _ = lm_loss(model, inputs, None, self.target_only)
        return loss.detach(), None, None
