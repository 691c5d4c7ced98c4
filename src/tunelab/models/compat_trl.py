"""The TRL fence: every use of TRL trainer internals lives here, one function each, with a contract test in
tests/reliability/test_pref_speed.py that fails loudly when an upgrade of TRL (pinned 1.16) changes them.

Why: TRL 1.16 scores preference log-probabilities with a "fused LM head" that projects every position of every
sequence through the whole vocabulary on a device without Triton (a CPU), prompt tokens included; ORPO and
CPO/SimPO materialise the full (batch, length, vocabulary) logits in fp32. With Gemma 3's 262k vocabulary that
is most of a step (and ORPO's memory). Here the LM head runs only where a completion token is scored.
"""

from __future__ import annotations

import contextlib

import torch

# configs with a logit multiplier TRL's fused head reads: left to TRL (tunelab's presets have none)
_SCALED = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
_CHUNK = 32768  # vocabulary columns per tile, as TRL's own fused head


def _lm(model):
    """The transformers *ForCausalLM under a peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _text_config(lm):
    """The config holding the text model's settings (a multimodal config keeps them in a sub-config)."""
    return lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config


def scorable(model) -> bool:
    """True when completion-only scoring applies to `model`: a decoder and an LM head called apart, no logit
    multiplier, no MoE router loss, no prompt-learning virtual tokens."""
    lm = _lm(model)
    conf = _text_config(lm)
    active = getattr(model, "active_peft_config", None)
    return (hasattr(lm, "get_decoder") and lm.get_output_embeddings() is not None
            and not any(getattr(conf, k, None) is not None for k in _SCALED)
            and not getattr(conf, "output_router_logits", False)
            and not getattr(active, "is_prompt_learning", False))


def completion_scores(lm, labels: torch.Tensor, outputs: tuple[str, ...] = (), **inputs):
    """Per-token (log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1) of `labels[:, 1:]` (None for an
    output not asked for), zero where the label is -100: the decoder runs on every token, the LM head (with
    the config's final logit soft-capping) only where a label is scored. Same numbers as TRL's fused head."""
    from trl.kernels import ChunkedLogProbFunction

    inputs["use_cache"] = False
    hidden = lm.get_decoder()(**inputs).last_hidden_state[:, :-1]
    targets = labels[:, 1:]
    mask = targets != -100
    head = lm.get_output_embeddings()
    conf = _text_config(lm)
    per_token = ChunkedLogProbFunction.apply(hidden[mask], head.weight, head.bias, targets[mask], 1.0, _CHUNK,
                                             getattr(conf, "final_logit_softcapping", None), 1.0,
                                             ("log_probs", *outputs))
    # masked_scatter keeps an all-masked batch connected to the graph (a zero with a gradient)
    return tuple(None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in per_token), mask


def compact_fused_head(model, outputs: tuple[str, ...] = (), precision_ctx=contextlib.nullcontext) -> bool:
    """Make `model(..., labels=, fused_lm_head=True)` (DPOTrainer's and KTOTrainer's call, after they patched
    the model with trl.trainer.utils.add_fused_lm_head) score only the labelled positions, with the optional
    `outputs` TRL asked for there; other calls go to TRL's forward unchanged. `precision_ctx()` is entered
    around the scoring (the run's autocast).
    Returns False (nothing changed) when the model is not scorable or TRL did not patch it."""
    lm = _lm(model)
    trl_forward = lm.__dict__.get("forward")  # add_fused_lm_head sets an instance attribute
    if trl_forward is None or getattr(trl_forward, "_tl_compact", False) or not scorable(model):
        return False

    def forward(*args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or shift_labels is not None or args or kwargs.get("output_router_logits"):
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        from trl.trainer.utils import FusedCausalLMOutput

        with precision_ctx():
            (log_probs, entropy, log_sum_sq, mean_logits, is_top1), mask = completion_scores(
                lm, labels, outputs, **kwargs)
        n = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / n, log_probs=log_probs, entropy=entropy,
                                   log_sum_sq_probs=log_sum_sq, mean_logits=mean_logits, is_top1=is_top1,
                                   label_mask=mask)

    forward._tl_compact = True
    lm.forward = forward
    return True


def pair_forward(trainer, model, batch: dict, orpo: bool):
    """ORPOTrainer / CPOTrainer.concatenated_forward, scoring only completion tokens: (chosen_logps,
    rejected_logps, chosen mean logits, rejected mean logits, nll_loss), the log-probs averaged per
    completion (ORPO; CPO with ipo/simpo) or summed (CPO otherwise). The logits entries are the mean logit
    of each completion token (TRL's: of every position), for the logits/* metrics only. ORPO's NLL is over
    the chosen completion, the paper's SFT term (TRL 1.16's also counts the prompt tokens). `orpo`: the
    trainer is ORPO (averaged log-probs, an NLL term, log-probs kept below 0 for its log(1 - p))."""
    pad = trainer.padding_value if hasattr(trainer, "padding_value") else trainer.pad_token_id
    cat = trainer.concatenated_inputs(batch, is_encoder_decoder=False, padding_value=pad,
                                      device=trainer.accelerator.device)
    n_chosen = batch["chosen_labels"].shape[0]
    labels = cat["concatenated_labels"]
    (log_probs, _, _, mean_logits, _), mask = completion_scores(
        _lm(model), labels, ("mean_logits",), input_ids=cat["concatenated_input_ids"],
        attention_mask=cat["concatenated_attention_mask"])
    count = mask.sum(-1).clamp(min=1)  # an empty completion scores 0, not 0/0
    average = orpo or getattr(trainer, "loss_type", "") in ("ipo", "simpo")
    logps = log_probs.sum(-1) / count if average else log_probs.sum(-1)
    if orpo:  # log(1 - p) in ORPO's odds is -inf at p == 1: keep a completion's log-prob below 0
        logps = logps.clamp(max=-1e-6)
    chosen_tokens = mask[:n_chosen].sum()
    if orpo or getattr(trainer, "cpo_alpha", 0):
        nll = -log_probs[:n_chosen].sum() / chosen_tokens.clamp(min=1)
    else:
        nll = torch.tensor(0.0, device=logps.device)
    means = mean_logits.detach()
    return logps[:n_chosen], logps[n_chosen:], means[:n_chosen][mask[:n_chosen]], means[n_chosen:][mask[n_chosen:]], nll
