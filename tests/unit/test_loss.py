"""The target-only loss equals the full-logits loss (value and gradients) to float tolerance."""

import contextlib

import pytest
import torch

from tunelab.config.schema import MethodConfig
from tunelab.data.collate import PackCollator, PadCollator
from tunelab.data.readers import read_conversations
from tunelab.data.render import Renderer
from tunelab.data.template import get_template
from tunelab.methods import apply_method
from tunelab.models.attention import PACKED, packed_attention
from tunelab.train.loss import causal_lm, lm_loss


def batch_and_model(model_dir, sample_path, rows_out=None, method=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = apply_method(model, method or MethodConfig(r=4, alpha=8, dropout=0.0))
    # make the LoRA update non-zero so gradients flow through both factors
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02)
    convs, _ = read_conversations(sample_path)
    r = Renderer(get_template("auto", tok), tok)
    rows = [vars(r.encode(c)) for c in convs[:3]]
    if rows_out is not None:
        rows_out.extend(rows)
    return model, PadCollator(tok.pad_token_id)(rows)


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gemma"])
def test_target_only_equals_full_logits(family, request, sample_path):
    model, batch = batch_and_model(request.getfixturevalue(family), sample_path)
    model.eval()
    full, n_full = lm_loss(model, batch, target_only=False)
    grads_full = torch.autograd.grad(full, [p for p in model.parameters() if p.requires_grad])
    fast, n_fast = lm_loss(model, batch, target_only=True)
    grads_fast = torch.autograd.grad(fast, [p for p in model.parameters() if p.requires_grad])
    assert n_full == n_fast > 0
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_fast, grads_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    # and both equal the model's own loss (mean over target tokens)
    with torch.no_grad():
        ref = model(**batch).loss
    torch.testing.assert_close(fast.detach(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family,name", [("tiny_llama", "prompt_tuning"), ("tiny_gemma", "p_tuning"),
                                         ("tiny_llama", "prefix_tuning"), ("tiny_gemma", "prefix_tuning")])
def test_prompt_learning_takes_logits_only_at_target_columns(family, name, request, sample_path, monkeypatch):
    """Virtual tokens in front of the input (prompt / p-tuning) or in the cache (prefix): logits_to_keep at the
    columns with a target gives the full-logits loss and gradients, and no position without one is projected."""
    method = MethodConfig(name=name, num_virtual_tokens=4)
    model, batch = batch_and_model(request.getfixturevalue(family), sample_path, method=method)
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    full, n_full = lm_loss(model, batch, target_only=False)
    grads_full = torch.autograd.grad(full, params)
    head = causal_lm(model).get_output_embeddings()
    rows = []
    monkeypatch.setattr(head, "forward", lambda x, f=head.forward: rows.append(x.shape[1]) or f(x))
    fast, n_fast = lm_loss(model, batch, target_only=True)
    grads_fast = torch.autograd.grad(fast, params)
    assert n_full == n_fast > 0
    targets = batch["labels"][:, 1:] != -100
    assert rows == [int(targets.any(0).sum())] < [batch["labels"].shape[1]]
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_fast, grads_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_num_items_scales_the_sum(tiny_llama, sample_path):
    model, batch = batch_and_model(tiny_llama, sample_path)
    mean, n = lm_loss(model, batch)
    summed, _ = lm_loss(model, batch, num_items=1)
    torch.testing.assert_close(summed / n, mean)


@contextlib.contextmanager
def _implementation(model, name):
    before = causal_lm(model).config._attn_implementation
    causal_lm(model).set_attn_implementation(name)
    yield
    causal_lm(model).set_attn_implementation(before)


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gemma"])
def test_packed_row_equals_padded_batch(family, request, sample_path):
    """Three conversations packed in one row give the padded batch's loss and gradients: they do not
    attend to each other (the Gemma model's sliding window is shorter than a conversation, too)."""
    rows = []
    model, padded = batch_and_model(request.getfixturevalue(family), sample_path, rows)
    model.eval()
    for r, w in zip(rows, (1.0, 2.0, 0.5)):
        r.pop("dropped_turns", None)
        r["weight"] = w
    padded["weights"] = torch.tensor([1.0, 2.0, 0.5])
    packed = PackCollator()(rows)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert "attention_mask" not in packed and packed["position_ids"][0, len(rows[0]["input_ids"])] == 0
    params = [p for p in model.parameters() if p.requires_grad]
    for target_only in (True, False):
        a, na = lm_loss(model, padded, target_only=target_only)
        b, nb = lm_loss(model, packed, target_only=target_only)
        assert na == nb > 0
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        for ga, gb in zip(torch.autograd.grad(a, params), torch.autograd.grad(b, params)):
            torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-7)
    # tunelab's packed attention (per-conversation SDPA from the boundaries, no mask) gives the same
    with packed_attention(model):
        assert causal_lm(model).config._attn_implementation == PACKED
        with pytest.raises(ValueError, match="batch of 3 rows without boundaries"):
            lm_loss(model, padded)  # transformers builds no padding mask for it: refused, not wrong
        for target_only in (True, False):
            with packed_attention(model):  # nested: restores the packed implementation on exit
                pass
            b, _ = lm_loss(model, packed, target_only=target_only)
            with _implementation(model, "sdpa"):
                a, _ = lm_loss(model, padded, target_only=target_only)
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
            for ga, gb in zip(torch.autograd.grad(a, params), torch.autograd.grad(b, params)):
                torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-7)
        # and it does split: one boundary fewer lets the last two conversations see each other
        merged = {**packed, "cu_seq_lens_q": packed["cu_seq_lens_q"][[0, 1, 3]]}
        merged["cu_seq_lens_k"] = merged["cu_seq_lens_q"]
        m, _ = lm_loss(model, merged)
        assert abs(float(m) - float(lm_loss(model, packed)[0])) > 1e-5  # Gemma: only its 64-token window leaks
    assert causal_lm(model).config._attn_implementation != PACKED
    # and the test can fail: without position ids the conversations see each other
    c, _ = lm_loss(model, {k: v for k, v in packed.items() if k != "position_ids"})
    assert abs(float(c) - float(a)) > 1e-4


def test_decision_starts_marks_the_first_target_of_each_span():
    from tunelab.train.loss import decision_starts

    keep = torch.tensor([[False, True, True, False, False, True, True, True], [True, True, False, True, False,
                                                                              False, False, False]])
    assert decision_starts(keep).nonzero().tolist() == [[0, 1], [0, 5], [1, 0], [1, 3]]


@pytest.mark.parametrize("target_only", [True, False])
def test_decision_weight_weighs_each_turns_first_target(tiny_llama, sample_path, target_only):
    import torch.nn.functional as F

    from tunelab.train.loss import decision_starts

    model, batch = batch_and_model(tiny_llama, sample_path)
    model.eval()
    with torch.no_grad():
        plain, n = lm_loss(model, batch, num_items=1, target_only=target_only)
        weighted, n_w = lm_loss(model, batch, num_items=1, target_only=target_only, decision_weight=4.0)
        logits = model(**batch).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        keep = labels != -100
        per_token = F.cross_entropy(logits[keep], labels[keep], reduction="none")
        starts = decision_starts(keep)[keep]
    assert n == n_w and 0 < int(starts.sum()) < n  # several turns, each with more than one target
    torch.testing.assert_close(plain, per_token.sum(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weighted, per_token.sum() + 3.0 * per_token[starts].sum(), rtol=1e-5, atol=1e-5)
