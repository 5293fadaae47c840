"""POYO's GEGLU feed-forward on CPU, a block of tokens at a time (the fast path of
:class:`neurofm.models.layers.attention.FeedForward`).

Why a hand-written kernel: run op by op, the feed-forward's elementwise steps (GELU, the gating
product, dropout, and their backward passes) each stream a whole ``tokens x 4 dim`` activation
from and to memory. POYO's decoder runs it on every output query (1,600 a batch in the demo):
those activations do not fit in cache, and on a shared 2-core machine the elementwise steps ran
3-7x slower inside a training step than on data in cache (memory-bound). Here the tokens are
taken a block at a time (a block's activations fit in a core's L2 cache), from the up-projection
to the down-projection and back, and the weight gradients are accumulated block by block. Same
function, same parameters, same dropout mask (drawn once for the whole activation, as
:class:`~neurofm.models.layers.attention.Dropout` draws it); equal to the op-by-op path to
float32 rounding (``tests/models/test_feedforward_cpu.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from neurofm.models.layers.attention_cpu import keep_mask

__all__ = ["BLOCK_FLOATS", "geglu_feedforward"]

#: Floats of the widest activation (``tokens x 2 * hidden``) in a block: 512 KB, so that a
#: block's activations and their gradients stay in a core's L2 cache.
BLOCK_FLOATS = 1 << 17


def _blocks(n: int, width: int) -> list[tuple[int, int]]:
    rows = max(16, BLOCK_FLOATS // max(1, width))
    return [(r, min(r + rows, n)) for r in range(0, n, rows)]


def _gated(a: torch.Tensor, act: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The gated product ``a * gelu(gate)``, times the (scaled) dropout mask if any."""
    gated = a * act
    return gated if mask is None else gated.mul_(mask)


def _forward(
    x: torch.Tensor,
    w_up: torch.Tensor,
    b_up: torch.Tensor,
    w_down: torch.Tensor,
    b_down: torch.Tensor,
    p: float,
    keep: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(out, h, act, mask)``; with ``keep`` ``h`` and ``act`` hold every token (for the
    backward pass), otherwise one block's scratch rows, reused: fresh memory for the whole
    activation would only be written once and page-faulted in."""
    n, hidden = x.shape[0], w_down.shape[1]
    blocks = _blocks(n, 2 * hidden)
    rows = n if keep else blocks[0][1] if blocks else 0
    h, act = x.new_empty(rows, 2 * hidden), x.new_empty(rows, hidden)
    out = x.new_empty(n, w_down.shape[0])
    mask = None
    if p > 0:
        mask, scale = keep_mask(x.new_empty(n, hidden), p)
        mask.mul_(scale)  # 0 or the unbiasing scale
    for r0, r1 in blocks:
        at = slice(r0, r1) if keep else slice(0, r1 - r0)
        a, gate = torch.addmm(b_up, x[r0:r1], w_up.t(), out=h[at]).chunk(2, dim=-1)
        torch.ops.aten.gelu.out(gate, out=act[at])
        gated = _gated(a, act[at], None if mask is None else mask[r0:r1])
        torch.addmm(b_down, gated, w_down.t(), out=out[r0:r1])
    return out, h, act, mask


class _GEGLUFeedForward(torch.autograd.Function):
    """``down(dropout(a * gelu(gate)))`` for ``a, gate = up(x).chunk(2, -1)``, over (N, dim)
    tokens ``x``. Saved for the backward pass: the up-projection ``h`` (N, 2 * hidden), the GELU
    of its gate half (computing it is dearer than reading it back) and the scaled dropout mask;
    the gated product is recomputed block by block (a product of two blocks in cache)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        w_up: torch.Tensor,
        b_up: torch.Tensor,
        w_down: torch.Tensor,
        b_down: torch.Tensor,
        p: float,
    ) -> torch.Tensor:
        out, h, act, mask = _forward(x, w_up, b_up, w_down, b_down, p, keep=True)
        ctx.save_for_backward(x, w_up, w_down, h, act, mask)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w_up, w_down, h, act, mask = ctx.saved_tensors
        need_x, need_wu, need_bu, need_wd, need_bd = ctx.needs_input_grad[:5]
        n, hidden = act.shape
        grad = grad.contiguous()
        d_x = torch.empty_like(x) if need_x else None
        d_wu = torch.zeros_like(w_up) if need_wu else None
        d_bu = w_up.new_zeros(w_up.shape[0]) if need_bu else None
        d_wd = torch.zeros_like(w_down) if need_wd else None
        for r0, r1 in _blocks(n, 2 * hidden):
            a, gate = h[r0:r1].chunk(2, dim=-1)
            g_out = grad[r0:r1]
            block_mask = None if mask is None else mask[r0:r1]
            if need_wd:  # d_down = grad^T (a * act * mask), the product recomputed
                d_wd.addmm_(g_out.t(), _gated(a, act[r0:r1], block_mask))
            d_gated = g_out @ w_down  # (rows, hidden)
            if block_mask is not None:
                d_gated.mul_(block_mask)
            d_h = torch.empty_like(h[r0:r1])
            d_a, d_gate = d_h.chunk(2, dim=-1)
            torch.mul(d_gated, act[r0:r1], out=d_a)
            torch.ops.aten.gelu_backward.grad_input(d_gated.mul_(a), gate, grad_input=d_gate)
            if need_x:
                torch.mm(d_h, w_up, out=d_x[r0:r1])
            if need_wu:
                d_wu.addmm_(d_h.t(), x[r0:r1])
            if need_bu:
                d_bu += d_h.sum(0)
        d_bd = grad.sum(0) if need_bd else None
        return d_x, d_wu, d_bu, d_wd, d_bd, None


def geglu_feedforward(
    x: torch.Tensor,
    w_up: torch.Tensor,
    b_up: torch.Tensor,
    w_down: torch.Tensor,
    b_down: torch.Tensor,
    dropout: float,
) -> torch.Tensor:
    """``F.linear(dropout(a * gelu(gate)), w_down, b_down)`` for ``a, gate`` the halves of
    ``F.linear(x, w_up, b_up)``, computed a block of tokens at a time; ``x`` is (..., dim) and
    ``dropout`` the probability (0 when not training)."""
    shape = x.shape
    tokens, weights = x.reshape(-1, shape[-1]), (w_up, b_up, w_down, b_down)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (tokens, *weights)):
        out = _GEGLUFeedForward.apply(tokens, *weights, dropout)
    else:  # nothing to differentiate (inference): nothing kept, one block's scratch reused
        out = _forward(tokens, *weights, dropout, keep=False)[0]
    return out.view(*shape[:-1], w_down.shape[0])
