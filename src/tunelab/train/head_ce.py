"""The LM head and its cross-entropy in one pass over row chunks, for a frozen head.

At the supervised positions of a step the plain path builds the (targets x vocab) logits in fp32, their
log-softmax, a zero-filled gradient of the same size and its bf16 copy: with Gemma 3's 262k vocabulary
that is four 90 MB tensors for 85 targets. On a CPU each is a fresh mmap whose pages fault in again every
step (glibc serves allocations over 32 MB by mmap), which cost more than the head's matmuls
(benchmarks/results/head_ce.md). Here the rows go through in chunks of a few MB: each chunk's logits give
its loss and, since the loss is the step's last operation, at once the gradient for the hidden states
(softmax minus one-hot, times the row weight, through the head); backward only scales that gradient.
The logits of a chunk are computed in the head's dtype as the plain path does (bf16 under autocast, so
the same bf16-rounded logits), softmax in fp32.

Only for a head that takes no gradient (adapters); a trainable head keeps the plain path.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 128  # rows per chunk: each chunk streams the whole head once, so chunks must not be small
# fp32 logits on a CPU are computed VOCAB_BLOCK head rows at a time (0: one matmul). On a 2-core AVX2 EPYC the
# head's forward and backward for 85 targets took 0.622 s in blocks of 2,048 against 0.649 s in one matmul, a
# 1.03x faster gemma3-270m step, with the same loss and gradient to the bit (benchmarks/results/head_ce_fp32.md).
# Other dtypes and devices keep one matmul: unmeasured there.
VOCAB_BLOCK = 2048
_workspace: dict = {}  # (device, dtype) -> flat buffer, grown to the largest chunk seen and kept


def _buffer(n: int, vocab: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An (n, vocab) view of this process's reused buffer for `dtype`: no fresh pages per step."""
    buf = _workspace.get((device, dtype))
    if buf is None or buf.numel() < n * vocab:
        buf = _workspace[(device, dtype)] = torch.empty(n * vocab, dtype=dtype, device=device)
    return buf[: n * vocab].view(n, vocab)


def _logits(h: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> None:
    """out = h @ weight.T; for fp32 on a CPU in blocks of the head's rows."""
    if not (VOCAB_BLOCK and weight.dtype == torch.float32 and weight.device.type == "cpu"):
        torch.matmul(h, weight.T, out=out)
        return
    for v in range(0, weight.shape[0], VOCAB_BLOCK):
        out[:, v:v + VOCAB_BLOCK] = h @ weight[v:v + VOCAB_BLOCK].T


class _HeadCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, row_w, cap):
        vocab, want_grad = weight.shape[0], ctx.needs_input_grad[0]
        grad = torch.empty_like(hidden) if want_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        h_all = hidden.to(weight.dtype)
        for s in range(0, hidden.shape[0], CHUNK_ROWS):
            e = min(s + CHUNK_ROWS, hidden.shape[0])
            raw = _buffer(e - s, vocab, weight.dtype, hidden.device)
            _logits(h_all[s:e], weight, raw)
            logits = raw if raw.dtype == torch.float32 else _buffer(e - s, vocab, torch.float32, hidden.device)
            if logits is not raw:
                logits.copy_(raw)  # the logits in the head's dtype, read in fp32 (as `.float()` does)
            squashed = None
            if cap:
                squashed = logits.div_(cap).tanh_().clone()
                logits.mul_(cap)
            t = targets[s:e, None]
            picked = logits.gather(1, t).squeeze(1)
            top = logits.amax(-1, keepdim=True)
            p = logits.sub_(top).exp_()  # in place: no second (rows x vocab) tensor
            norm = p.sum(-1, keepdim=True)
            loss = top.squeeze(1) + norm.squeeze(1).log() - picked
            if row_w is not None:
                loss = loss * row_w[s:e]
            total += loss.sum()
            if want_grad:
                p.div_(norm)  # softmax
                p.scatter_add_(1, t, torch.full_like(t, -1, dtype=p.dtype))
                if row_w is not None:
                    p.mul_(row_w[s:e, None])
                if squashed is not None:
                    p.mul_(1 - squashed * squashed)
                if raw is not p:
                    raw.copy_(p)
                grad[s:e] = (raw @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return grad * g.to(grad.dtype), None, None, None, None


def head_ce(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, row_w: torch.Tensor | None = None,
            cap: float | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` (optionally softcapped: tanh(x / cap) * cap) against `targets`,
    each row weighted by `row_w`; the logits computed in `dtype` (default: the weight's). `weight` must not
    require grad. Autocast is off inside: the dtypes are the ones given."""
    if weight.requires_grad:
        raise ValueError("head_ce takes a frozen head; a trainable one needs the plain logits path")
    device = hidden.device.type
    if dtype is not None and weight.dtype != dtype:
        weight = weight.to(dtype)  # once per call (the plain path casts it twice: forward and backward)
    with torch.autocast(device, enabled=False):
        return _HeadCE.apply(hidden, weight, targets, None if row_w is None else row_w.float(), cap)
