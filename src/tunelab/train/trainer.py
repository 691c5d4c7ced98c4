"""Hugging Face `Trainer` with tunelab's target-only loss and a token meter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from transformers import Trainer

from tunelab.train.loss import lm_loss


@dataclass
class TokenMeter:
    """Counts what the trainer has processed, for tokens/s in the progress bar and the metrics."""

    tokens: int = 0  # real (non-pad) tokens
    targets: int = 0  # supervised tokens
    start: float = field(default_factory=time.time)

    def rate(self) -> float:
        return self.tokens / max(time.time() - self.start, 1e-9)


class SFTTrainer(Trainer):
    """Trainer whose loss projects to the vocabulary only where a label is supervised."""

    # compute_loss divides by the tokens of the whole accumulated batch itself.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, meter: TokenMeter | None = None, target_only: bool = True, **kw):
        super().__init__(*args, **kw)
        self.meter = meter or TokenMeter()
        self.target_only = target_only
        self.model_accepts_loss_kwargs = True  # so the Trainer counts num_items_in_batch for us

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, n_targets = lm_loss(model, inputs, num_items_in_batch, self.target_only)
        if model.training:
            self.meter.tokens += int(inputs["attention_mask"].sum())
            self.meter.targets += n_targets
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        import torch

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, _ = lm_loss(model, inputs, None, self.target_only)
        return loss.detach(), None, None
