"""train.context_grad=false: the context runs forward without gradient, the target positions forward and backward.

The loss is the full path's. The gradient is exactly the full path's with every layer's keys and values
detached at the context positions (the reference below builds that with hooks on k_proj / v_proj, which feed
the norm and rope position by position), so it drops those paths and nothing else."""

from __future__ import annotations

import json

import pytest
import torch

from tests.unit.test_loss import batch_and_model
from tunelab.config.schema import MethodConfig
from tunelab.train.job import train
from tunelab.train.loss import IGNORE, lm_loss
from tunelab.utils.errors import ConfigError


def _grads(model, loss):
    return torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])


def _context_detached(model, batch):
    """The full path's loss with every k_proj / v_proj output detached at the positions that predict no target."""
    keep = batch["labels"][:, 1:] != IGNORE
    context = torch.ones(batch["labels"].shape[1], dtype=torch.bool)
    context[keep.any(0).nonzero().squeeze(1)] = False

    def detach(module, args, out):
        return torch.where(context[None, :, None], out.detach(), out)

    hooks = [m.register_forward_hook(detach) for n, m in model.named_modules()
             if n.endswith(("k_proj", "v_proj")) and hasattr(m, "base_layer")]
    assert hooks
    try:
        return lm_loss(model, batch)[0]
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gemma"])  # gemma: 413-token rows over a 64-token window
def test_frozen_context_gives_the_loss_and_the_context_detached_gradient(family, request, sample_path):
    model, batch = batch_and_model(request.getfixturevalue(family), sample_path)  # 3 right-padded rows
    model.train()  # dropout 0: both passes see the same network
    full, n_full = lm_loss(model, batch)
    frozen, n_frozen = lm_loss(model, batch, context_grad=False)
    assert n_full == n_frozen > 0
    torch.testing.assert_close(frozen, full, rtol=1e-6, atol=1e-6)
    g_full, g_frozen, g_ref = _grads(model, full), _grads(model, frozen), _grads(model, _context_detached(model, batch))
    for a, b in zip(g_frozen, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert max(float((a - b).abs().max()) for a, b in zip(g_frozen, g_full)) > 1e-4  # the context's paths are gone


def test_frozen_context_is_exact_where_the_context_cannot_change(tiny_gemma, sample_path):
    """Adapters only on the last layer's down_proj: no context key or value depends on them."""
    model, batch = batch_and_model(tiny_gemma, sample_path, method=MethodConfig(
        r=4, alpha=8, dropout=0.0, target_modules=["down_proj"], lora_layers=1))
    model.train()
    for a, b in zip(_grads(model, lm_loss(model, batch)[0]), _grads(model, lm_loss(model, batch, context_grad=False)[0])):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-9)


def _cfg(model_dir, data, out, **train_opts):
    return {"model": {"name_or_path": str(model_dir)}, "data": {"train_file": str(data), "max_length": 512},
            "method": {"name": "lora", "r": 4}, "train": {"output_dir": str(out), "max_steps": 2,
                                                           "context_grad": False, **train_opts}}


def test_a_run_trains_with_it(tiny_llama, sample_path, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_llama, sample_path, out))
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert losses and all(loss > 0 for loss in losses)


@pytest.mark.parametrize("change, words", [
    ({"data": {"packing": True}}, "data.packing=true"),
    ({"method": {"name": "prompt_tuning"}}, "method prompt_tuning adds virtual tokens"),
    ({"train": {"gradient_checkpointing": True}}, "checkpointed layers drop the cache"),
    ({"train": {"activation_memory_mb": 100}}, "checkpointed layers drop the cache"),
    ({"train": {"target_only_logits": False}}, "train.target_only_logits=false"),
])
def test_settings_it_cannot_run_with_are_refused_before_the_run_dir(change, words, tiny_llama, sample_path, tmp_path):
    cfg = _cfg(tiny_llama, sample_path, tmp_path / "run")
    for section, values in change.items():
        cfg[section].update(values)
    with pytest.raises(ConfigError, match=f"train.context_grad=false does not work with {words}.*: leave it true"):
        train(cfg)
    assert not (tmp_path / "run").exists()
