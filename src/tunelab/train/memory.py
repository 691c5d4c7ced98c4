"""An activation memory budget: checkpoint only as many decoder layers as each batch needs to fit.

Gradient checkpointing is all or nothing in the usual recipe: every layer recomputes its forward pass in
the backward pass (about a fifth slower here) for every batch, though only the longest batches needed it.
With a budget, a batch whose activations fit keeps them all (no recomputation); a longer one checkpoints
just enough layers, from the bottom, to bring what it keeps under the budget. The cost then follows the
length distribution of the data, and peak memory no longer grows with the longest dialog.

Bytes kept per token per layer are measured once on the model as it will train (method, dtype,
autocast) by counting the tensors the autograd graph saves in a short forward pass.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from tunelab.models.compat import has_layer_checkpointing, set_layer_checkpointing
from tunelab.train.loss import causal_lm, decoder_layers

PROBE_TOKENS = 64


def saved_bytes_per_token(model, autocast=contextlib.nullcontext) -> float:
    """Bytes the autograd graph keeps per token per decoder layer, for `model` in its training set-up.

    Counts each storage saved for the backward pass once, not counting the model's own weights (kept
    by reference). Measured by a forward pass of PROBE_TOKENS tokens through the decoder.
    """
    import torch

    layers = decoder_layers(model)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    device = next(model.parameters()).device
    ids = torch.zeros((1, PROBE_TOKENS), dtype=torch.long, device=device)
    was_training = model.training
    model.train()
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast():
        causal_lm(model).get_decoder()(input_ids=ids, use_cache=False)
    model.train(was_training)
    return sum(seen.values()) / PROBE_TOKENS / max(len(layers), 1)


@dataclass
class ActivationBudget:
    """Sets, before each training batch, which decoder layers checkpoint their activations."""

    budget_bytes: float
    per_token_layer: float  # bytes kept per token per layer without checkpointing
    per_token_checkpointed: float  # bytes a checkpointed layer keeps per token (its input)
    layers: list
    steps: int = 0
    steps_checkpointed: int = 0
    layers_checkpointed: int = 0  # summed over steps

    @classmethod
    def for_model(cls, model, budget_mb: float, autocast=contextlib.nullcontext) -> "ActivationBudget":
        """Measure `model`, enable transformers' per-layer checkpointing, start with none of it on."""
        layers = decoder_layers(model)
        if not layers or not has_layer_checkpointing(layers[0]):
            from tunelab.utils.errors import ConfigError

            raise ConfigError(f"train.activation_memory_mb: {type(causal_lm(model)).__name__} has no decoder "
                              "layers with per-layer checkpointing; set train.activation_memory_mb=0")
        per_token = saved_bytes_per_token(model, autocast)
        lm = causal_lm(model)
        hidden = lm.config.get_text_config().hidden_size
        kept = hidden * lm.get_input_embeddings().weight.element_size()  # a checkpointed layer keeps its input
        enable = getattr(lm, "activation_checkpointing_enable", None)  # transformers >= 5.2x; older name below
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        for layer in layers:  # enabled on all; fit() turns it on per batch
            set_layer_checkpointing(layer, False)
        return cls(budget_mb * 2**20, per_token, kept, layers)

    def layers_for(self, tokens: int) -> int:
        """How many layers a batch of `tokens` (padding included) must checkpoint to fit the budget."""
        excess = tokens * self.per_token_layer * len(self.layers) - self.budget_bytes
        if excess <= 0:
            return 0
        saved_per_layer = tokens * max(self.per_token_layer - self.per_token_checkpointed, 1.0)
        return min(len(self.layers), math.ceil(excess / saved_per_layer))

    def fit(self, tokens: int) -> int:
        """Checkpoint the bottom layers_for(tokens) layers for the next batch; returns that number."""
        k = self.layers_for(tokens)
        for i, layer in enumerate(self.layers):
            set_layer_checkpointing(layer, i < k)
        self.steps += 1
        self.steps_checkpointed += k > 0
        self.layers_checkpointed += k
        return k

    def summary(self) -> dict:
        return {"budget_mb": round(self.budget_bytes / 2**20), "kb_per_token_layer": round(self.per_token_layer / 1024, 2),
                "batches": self.steps, "batches_checkpointed": self.steps_checkpointed,
                "mean_layers_checkpointed": round(self.layers_checkpointed / max(self.steps, 1), 2),
                "layers": len(self.layers)}
