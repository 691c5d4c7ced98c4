"""Causal-LM loss that runs the LM head only at supervised positions.

With a 262k vocabulary (Gemma 3) the LM head is most of a step's cost, and most positions of a
dialog are context with label -100. Projecting only the hidden states whose next token is a target
gives the same loss as the full-logits loss (tested) at a fraction of the cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunelab.data.render import IGNORE
from tunelab.models.compat import frozen_context_hidden
from tunelab.train.head_ce import head_ce

PASSED = ("input_ids", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
          "max_length_k")


def causal_lm(model):
    """The transformers *ForCausalLM under any peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_layers(model) -> list:
    """The decoder's layers (empty for a model without a `layers` list)."""
    return list(getattr(causal_lm(model).get_decoder(), "layers", []))


def is_prompt_learning(model) -> bool:
    """True for prompt/p/prefix tuning: the peft wrapper prepends virtual tokens inside its forward."""
    return getattr(getattr(model, "peft_config", {}).get("default", None), "is_prompt_learning", False)


def virtual_offset(model) -> int:
    """Where the input's positions start in a prompt-learning model's logits: prompt tuning and p-tuning put
    their virtual tokens in front of the input; prefix tuning puts them in the cache (0)."""
    config = model.peft_config["default"]
    return 0 if config.peft_type == "PREFIX_TUNING" else config.num_virtual_tokens  # PeftType is a str enum


def supports_target_only(model) -> bool:
    """True when the decoder can be run apart from its LM head (not for prompt-learning methods)."""
    lm = causal_lm(model)
    if is_prompt_learning(model):
        return False
    return hasattr(lm, "get_decoder") and lm.get_output_embeddings() is not None


def right_padded(mask: torch.Tensor) -> bool:
    """True when every row of the attention mask is ones then zeros (real tokens first, pads after)."""
    return bool((mask[:, :-1] >= mask[:, 1:]).all()) and bool(mask[:, 0].all())


def decision_starts(keep: torch.Tensor) -> torch.Tensor:
    """Where a supervised span starts (a target whose previous position is not one): the first token of each
    assistant turn, which decides between a reply and a tool call."""
    before = torch.zeros_like(keep)
    before[:, 1:] = keep[:, :-1]
    return keep & ~before


def lm_loss(model, batch: dict, num_items: int | torch.Tensor | None = None, target_only: bool = True,
            decision_weight: float = 1.0, context_grad: bool = True):
    """Summed token cross-entropy divided by `num_items` (default: this batch's target count); the first target
    of each supervised span weighs `decision_weight` (train.decision_weight), the others 1.

    `context_grad=False` (train.context_grad, target-only path, unpacked rows): the context runs forward without
    gradient and only the positions that predict a target run forward and backward
    (compat.frozen_context_hidden); same loss value, a gradient without the paths through the context.

    Returns (loss, number of target tokens in this batch).
    """
    labels = batch["labels"]
    shift_labels = labels[:, 1:]
    keep = shift_labels != IGNORE
    # per-row weights (class balancing) scale each row's tokens; absent, every token counts 1
    token_w = None
    if "weights" in batch:
        token_w = batch["weights"][:, None].expand_as(shift_labels)[keep]
    elif "token_weights" in batch:  # packed rows: each token carries its conversation's weight
        token_w = batch["token_weights"][:, 1:][keep]
    if decision_weight != 1.0:
        start_w = torch.where(decision_starts(keep)[keep], decision_weight, 1.0)
        token_w = start_w if token_w is None else token_w * start_w
    # packed rows have position ids that restart per conversation, no attention mask, and the
    # conversations' boundaries (read by tunelab's packed attention, models/attention.py)
    inputs = {k: batch[k] for k in PASSED if k in batch}
    n_targets = int(keep.sum())
    denom = num_items if num_items is not None else max(n_targets, 1)
    if target_only and is_prompt_learning(model):
        # the peft wrapper's own forward (it adds the virtual tokens), with logits only at the columns that hold
        # a target in some row (transformers' logits_to_keep): not the 262k-wide head over every position
        cols = keep.any(0).nonzero().squeeze(1)
        out = model(**inputs, logits_to_keep=cols + virtual_offset(model))
        kept = keep[:, cols]  # the same targets in the same order as keep's
        return _ce(out.logits.float()[kept], shift_labels[:, cols][kept], token_w) / denom, n_targets
    if not (target_only and supports_target_only(model)):
        # no cache: with one, transformers would not read packed position ids as sequence boundaries
        out = model(**inputs, **({"use_cache": False} if "position_ids" in inputs else {}))
        # prompt tuning and p-tuning prepend virtual tokens to the logits: keep the input's positions
        logits = out.logits[:, -labels.shape[1]:][:, :-1].float()
        return _ce(logits[keep], shift_labels[keep], token_w) / denom, n_targets
    lm = causal_lm(model)
    if not context_grad and model.training:
        if "cu_seq_lens_q" in inputs or ("attention_mask" in inputs and not right_padded(inputs["attention_mask"])):
            raise ValueError("train.context_grad=false takes unpacked, right-padded rows")
        cols = keep.any(0).nonzero().squeeze(1)  # positions that predict a target in some row
        hidden = frozen_context_hidden(lm.get_decoder(), inputs["input_ids"], cols)
        return _head_loss(lm, hidden[keep[:, cols]], shift_labels[:, cols][keep[:, cols]], token_w) / denom, n_targets
    if "attention_mask" in inputs and right_padded(inputs["attention_mask"]):
        # causal attention: a real token never sees the pads after it, so the mask changes nothing they
        # compute, and without one attention takes the fused causal kernel instead of a built mask
        del inputs["attention_mask"]
    hidden = lm.get_decoder()(**inputs, use_cache=False).last_hidden_state
    return _head_loss(lm, hidden[:, :-1][keep], shift_labels[keep], token_w) / denom, n_targets


def _head_loss(lm, hidden, targets, token_w):
    """Summed cross-entropy of the LM head over the given hidden states (one per target)."""
    head = lm.get_output_embeddings()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        return head_ce(hidden, head.weight, targets, token_w, cap, dtype)
    logits = head(hidden).float()
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return _ce(logits, targets, token_w)


def _ce(logits, targets, weights):
    if weights is None:
        return F.cross_entropy(logits, targets, reduction="sum")
    return (F.cross_entropy(logits, targets, reduction="none") * weights.to(logits.dtype)).sum()
