"""tunelab's CPU attention kernel computes what fp32 attention does (to bf16 rounding, no worse than torch's SDPA),
forward and backward, and training attention hands it only the inputs it takes."""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from tunelab.models import attention, cpu_attention

needs_kernel = pytest.mark.skipif(not cpu_attention.load(), reason="no AVX512-BF16 or no C++ compiler here")


def reference(q, k, v, window, dout):
    """fp32 attention with an explicit causal (sliding-window) mask: output and input gradients."""
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    i = torch.arange(q.shape[2])
    mask = i[None, :] <= i[:, None]
    if window:
        mask &= i[None, :] > i[:, None] - window
    out = F.scaled_dot_product_attention(q32, k32, v32, attn_mask=mask, enable_gqa=True)
    out.backward(dout.float())
    return [out, q32.grad, k32.grad, v32.grad]


def rel(a, b) -> float:
    return float((a.float() - b).abs().max() / b.abs().max())


@needs_kernel
@pytest.mark.parametrize("batch,heads,kv_heads,tokens,head_dim,window", [
    (1, 9, 3, 300, 64, 0),  # SmolLM2's heads, a length not a multiple of the 64-row blocks
    (2, 4, 1, 130, 256, 50),  # Gemma 3's head size and sliding window, two rows
    (1, 2, 2, 1, 16, 0),  # one token
    (1, 4, 2, 77, 16, 0),
    (1, 2, 1, 2100, 16, 700),  # past one chunk of key columns (CH = 2048) in the backward pass
])
def test_kernel_matches_fp32_attention(batch, heads, kv_heads, tokens, head_dim, window):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(batch, heads, tokens, head_dim, generator=g).bfloat16().requires_grad_()
    k, v = (torch.randn(batch, kv_heads, tokens, head_dim, generator=g).bfloat16().requires_grad_() for _ in "kv")
    dout = torch.randn(batch, heads, tokens, head_dim, generator=g).bfloat16()
    out = cpu_attention.attention(q, k, v, head_dim ** -0.5, window)
    out.backward(dout)
    ours = [out, q.grad, k.grad, v.grad]
    assert out.dtype == torch.bfloat16 and out.shape == q.shape
    ref = reference(q, k, v, window, dout)
    # torch's own bf16 SDPA measured 0.2-0.9% here; a wrong mask or layout is off by far more
    for name, a, b in zip(("out", "dq", "dk", "dv"), ours, ref):
        if tokens == 1 and name in ("dq", "dk"):  # one key: the softmax is constant, its gradient zero but for
            assert float(a.float().abs().max()) < 1e-2  # the bf16 rounding of the output in D = rowsum(dO * O)
            continue
        assert rel(a, b) < 0.012, name
    # and the test can fail: without the window the sliding-window rows differ
    if window:
        assert rel(cpu_attention.attention(q, k, v, head_dim ** -0.5, 0), ref[0]) > 0.05


def test_build_failure_is_one_reason(monkeypatch, tmp_path):
    """No compiler: load() is False with the reason, and attention refuses with it (never a wrong result)."""
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(cpu_attention, "_state", {})
    monkeypatch.setattr(cpu_attention, "cpu_flags", lambda: {"avx512_bf16"})
    assert cpu_attention.load() is False
    assert "could not build or load" in cpu_attention._state["lib"]
    assert not list(tmp_path.rglob("*.so")) and not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(RuntimeError, match="not available"):
        cpu_attention.attention(*(torch.zeros(1, 1, 4, 16, dtype=torch.bfloat16) for _ in "qkv"), 0.25)
    monkeypatch.setattr(cpu_attention, "_state", {})
    monkeypatch.setattr(cpu_attention, "cpu_flags", set)
    assert cpu_attention.load() is False and "no AVX512-BF16" in cpu_attention._state["lib"]


def _model_and_batch(model_dir, lengths):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = torch.randint(10, 60, (len(lengths), max(lengths)))
    mask = torch.zeros_like(ids)
    for r, n in enumerate(lengths):
        mask[r, :n] = 1
    return model, ids, mask


def _loss_and_grads(model, ids, mask, implementation, kernel):
    with attention.training_attention(model, packed=False, kernel=kernel) if implementation else \
            contextlib.nullcontext():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        keep = mask.bool()
        loss = logits[keep].logsumexp(-1).mean()
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    return loss, torch.cat([g.flatten() for g in grads])


@needs_kernel
@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gemma"])
def test_training_attention_kernel_matches_sdpa(family, request):
    """A bf16 step of a tiny model (Gemma: past its 64-token window) with the kernel gives SDPA's loss and
    gradients to bf16 tolerance, on right-padded rows without a mask; left padding goes to SDPA with its mask."""
    model, ids, mask = _model_and_batch(request.getfixturevalue(family), [150, 90])
    base, g_base = _loss_and_grads(model, ids, mask, None, False)
    sdpa, g_sdpa = _loss_and_grads(model, ids, mask, attention.CAUSAL, False)
    ours, g_ours = _loss_and_grads(model, ids, mask, attention.CAUSAL, True)
    torch.testing.assert_close(sdpa, base, rtol=1e-4, atol=1e-4)  # CAUSAL on SDPA is the model's own attention
    assert abs(float(ours - base)) < 0.01 * abs(float(base))
    assert float((g_ours - g_base).norm() / g_base.norm()) < 0.05
    assert attention.attn_implementation(model) != attention.CAUSAL  # restored after the block
    # left padding: the mask function builds SDPA's mask and the kernel is not used: the same numbers as SDPA
    left = torch.stack([torch.roll(ids[1], 60), ids[0]]), torch.stack([torch.roll(mask[1], 60), mask[0]])
    calls = []
    real = cpu_attention.attention
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpu_attention, "attention", lambda *a, **k: calls.append(1) or real(*a, **k))
        l_ours, _ = _loss_and_grads(model, *left, attention.CAUSAL, True)
        assert not calls
        _loss_and_grads(model, ids, mask, attention.CAUSAL, True)
        assert calls  # and the spy sees the right-padded rows go to the kernel
    l_base, _ = _loss_and_grads(model, *left, None, False)
    torch.testing.assert_close(l_ours, l_base, rtol=1e-4, atol=1e-4)
