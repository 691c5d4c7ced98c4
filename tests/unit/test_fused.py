"""The lean norm and MLP forwards (models/fused.py) compute what the model's own do, forward and backward, keep
less for the backward pass, and are undone on exit."""

import pytest
import torch

from tunelab.config.schema import MethodConfig
from tunelab.methods import apply_method
from tunelab.models.fused import lean_layers
from tunelab.train.loss import causal_lm, decoder_layers


def _saved_bytes(fn) -> int:
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gemma"])
@pytest.mark.parametrize("bf16", [False, True])
def test_lean_layers_match_the_model(family, bf16, request):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(family), dtype=torch.float32)
    model = apply_method(model, MethodConfig(r=4, alpha=8, dropout=0.0))
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02)
        if "norm" in n:  # norms train too here, so their weight gradient is checked
            p.requires_grad_(True)
            torch.nn.init.normal_(p, mean=0.1, std=0.1)
    params = [p for p in model.parameters() if p.requires_grad]
    ids = torch.randint(10, 60, (2, 90))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids).logits.float().logsumexp(-1).mean()
        return loss, torch.autograd.grad(loss, params)

    (loss, grads), kept = _saved_bytes(step)
    with lean_layers(model, decoder_layers(model), lora=True) as counts:
        assert counts["norms"] >= 4 and counts["mlps"] == 2  # two layers
        (lean_loss, lean_grads), lean_kept = _saved_bytes(step)
    tol = dict(rtol=2e-2, atol=2e-3) if bf16 else dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(lean_loss, loss, **tol)
    for a, b in zip(lean_grads, grads):
        torch.testing.assert_close(a, b, **tol)
    assert lean_kept < 0.9 * kept  # the logits, the same either way, are much of it on a tiny model
    # restored: the model's own forwards, and peft casts adapter inputs again
    assert all("forward" not in vars(m) for m in causal_lm(model).modules())
    assert all(m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))
    (again, _), again_kept = _saved_bytes(step)
    torch.testing.assert_close(again, loss, rtol=0, atol=0)
    assert again_kept == kept
