"""Activation budget and length bucketing: same loss and gradients, less kept, the right layers checkpointed."""

import pytest
import torch

from tunelab.data.collate import PadCollator
from tunelab.train.loss import lm_loss, right_padded
from tunelab.train.memory import ActivationBudget, saved_bytes_per_token

from tests.unit.test_loss import batch_and_model


def test_right_padded():
    assert right_padded(torch.tensor([[1, 1, 1], [1, 1, 0]]))
    assert not right_padded(torch.tensor([[1, 1, 1], [0, 1, 1]]))  # left padding needs its mask
    assert not right_padded(torch.tensor([[1, 0, 1]]))
    assert not right_padded(torch.tensor([[0, 0, 0]]))


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gemma"])
def test_padding_to_a_multiple_changes_nothing(family, request, sample_path):
    """Pads after the real tokens, unsupervised and (causal attention) unseen: loss and grads unchanged,
    with the attention mask dropped for them."""
    rows = []
    model, batch = batch_and_model(request.getfixturevalue(family), sample_path, rows)
    padded = PadCollator(0, pad_to_multiple_of=64)(rows)
    assert padded["input_ids"].shape[1] % 64 == 0 and padded["input_ids"].shape[1] > batch["input_ids"].shape[1]
    trainable = [p for p in model.parameters() if p.requires_grad]
    a, n_a = lm_loss(model, batch)
    ga = torch.autograd.grad(a, trainable)
    b, n_b = lm_loss(model, padded)
    gb = torch.autograd.grad(b, trainable)
    assert n_a == n_b
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for x, y in zip(gb, ga):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-7)


def test_saved_bytes_per_token_counts_activations_not_weights(tiny_llama, sample_path):
    model, _ = batch_and_model(tiny_llama, sample_path)
    per_token = saved_bytes_per_token(model)
    hidden, inter = 64, 128
    # at least the fp32 layer input, the MLP's wide activations; far less than the layer's weights per token
    assert 4 * (hidden + 2 * inter) < per_token < 4 * 64 * (hidden + 3 * inter)
    half = saved_bytes_per_token(model, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert half < per_token  # bf16 copies instead of fp32 activations


def test_budget_checkpoints_only_what_exceeds_it(tiny_llama, sample_path):
    model, batch = batch_and_model(tiny_llama, sample_path)
    budget = ActivationBudget.for_model(model, budget_mb=1)
    layers = budget.layers
    assert len(layers) == 2 and not any(l.gradient_checkpointing for l in layers)
    fits = int(budget.budget_bytes / budget.per_token_layer / 2)  # tokens whose activations fit whole
    assert budget.layers_for(fits) == 0
    assert budget.layers_for(fits + 64) == 1  # a little over: one layer recomputes
    assert budget.layers_for(50 * fits) == 2  # far over: all of them
    assert budget.fit(fits + 64) == 1 and [l.gradient_checkpointing for l in layers] == [True, False]
    assert budget.fit(10) == 0 and not any(l.gradient_checkpointing for l in layers)
    assert budget.summary()["batches_checkpointed"] == 1 and budget.summary()["batches"] == 2


def test_checkpointed_layers_give_the_same_loss_and_grads(tiny_llama, sample_path):
    """The layers the budget checkpoints recompute their forward pass in the backward pass: same numbers,
    fewer tensors kept."""
    def step(budget_mb):
        model, batch = batch_and_model(tiny_llama, sample_path)
        model.train()
        kept = []
        budget = ActivationBudget.for_model(model, budget_mb) if budget_mb is not None else None
        k = budget.fit(batch["input_ids"].numel()) if budget else 0
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            loss, _ = lm_loss(model, batch)
        loss.backward()
        grads = [p.grad for n, p in sorted(model.named_parameters()) if p.requires_grad]
        return loss.detach(), grads, k, sum(kept)

    ref, ref_grads, _, ref_kept = step(None)
    loss, grads, k, kept = step(1e-6)  # a budget nothing fits in: every layer checkpoints
    assert k == 2 and kept < ref_kept / 2
    torch.testing.assert_close(loss, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
