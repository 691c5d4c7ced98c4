"""The chunked LM-head cross-entropy equals the plain logits path: value and gradient."""

import pytest
import torch
import torch.nn.functional as F

import tunelab.train.head_ce as hc
from tunelab.train.head_ce import head_ce


def plain(h, w, t, row_w, cap, autocast):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = F.linear(h, w).float()
    if cap:
        logits = torch.tanh(logits / cap) * cap
    losses = F.cross_entropy(logits, t, reduction="none")
    return (losses * row_w).sum() if row_w is not None else losses.sum()


def inputs(n=37, d=16, vocab=301, weighted=False):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = torch.randn(vocab, d, generator=g) * 0.5
    t = torch.randint(0, vocab, (n,), generator=g)
    return h, w, t, torch.rand(n, generator=g) if weighted else None


@pytest.mark.parametrize("weighted,cap", [(False, None), (True, None), (True, 5.0)])
@pytest.mark.parametrize("vocab_block", [0, 64])  # one matmul; 301 head rows in five blocks, the last one short
def test_fp32_equals_plain_path_over_several_chunks(monkeypatch, weighted, cap, vocab_block):
    monkeypatch.setattr(hc, "CHUNK_ROWS", 8)  # 37 rows: five chunks, the last one short
    monkeypatch.setattr(hc, "VOCAB_BLOCK", vocab_block)
    h, w, t, rw = inputs(weighted=weighted)
    ours = head_ce(h, w, t, rw, cap) / 3
    (g_ours,) = torch.autograd.grad(ours, h)
    ref = plain(h, w, t, rw, cap, autocast=False) / 3
    (g_ref,) = torch.autograd.grad(ref, h)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-7)


def test_bf16_matches_autocast_and_a_bf16_weight_gives_the_same():
    """Logits in bf16 as autocast computes them; a weight cast beforehand gives the very same result."""
    h, w, t, _ = inputs()
    ours = head_ce(h, w, t, dtype=torch.bfloat16)
    (g_ours,) = torch.autograd.grad(ours, h)
    stored = head_ce(h, w.bfloat16(), t)
    (g_stored,) = torch.autograd.grad(stored, h)
    ref = plain(h, w, t, None, None, autocast=True)
    (g_ref,) = torch.autograd.grad(ref, h)
    assert torch.equal(ours, stored) and torch.equal(g_ours, g_stored)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g_ours, g_ref, rtol=2e-2, atol=1e-3)  # bf16 rounding of the logits' gradient
    assert g_ours.dtype == torch.float32


def test_without_grad_only_the_loss_and_the_buffer_is_reused():
    h, w, t, _ = inputs()
    with torch.no_grad():
        a = head_ce(h, w, t)
    ptr = hc._workspace[(h.device, torch.float32)].data_ptr()
    b = head_ce(h[:20], w, t[:20])
    assert hc._workspace[(h.device, torch.float32)].data_ptr() == ptr  # no fresh pages for a smaller chunk
    assert not a.requires_grad and b.requires_grad
    torch.testing.assert_close(a, plain(h, w, t, None, None, False).detach(), rtol=1e-6, atol=1e-5)


def test_a_trainable_head_is_refused():
    h, w, t, _ = inputs()
    with pytest.raises(ValueError, match="frozen head"):
        head_ce(h, w.requires_grad_(), t)
