"""Attention blocks with rotary time embeddings (POYO's encoder, processor and decoder).

``rotate_value=True`` also rotates the values by their key's time and counter-rotates the output
by the query's time, so what a query receives is expressed relative to its own time (POYO does
this in the encoder and the processor, not in the decoder).

The reference path is :func:`attend`: ``scaled_dot_product_attention`` on the whole padded batch
(on GPUs its fused kernels also do the attention dropout). On CPU, with the standard "first n
keys are real" mask, the same function is computed window by window by
:mod:`neurofm.models.layers.attention_cpu` (with the feed-forward of
:mod:`neurofm.models.layers.feedforward_cpu`, on one CPU thread a POYO 1.3M training step is
~2.1x and inference ~2.0x faster than torch_brain's, ``benchmarks/poyo_bench.py``; same
parameters, equal to float32 rounding; ``tests/models/test_poyo_attention.py`` keeps the two
paths equal).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurofm.models.layers.attention_cpu import (
    HeadGeometry,
    interleaving,
    keep_mask,
    windowed_attention,
    windowed_lengths,
)
from neurofm.models.layers.feedforward_cpu import geglu_feedforward
from neurofm.models.layers.rotary import rotate

Angles = tuple[torch.Tensor, torch.Tensor]


class Dropout(nn.Module):
    """``nn.Dropout`` drawing its mask with :func:`keep_mask` (16 random bits an element: on CPU
    ~6x faster than the Bernoulli sampler ``F.dropout`` uses). Same distribution: kept with
    probability ``1 - p`` (to 1/65536), scaled by the inverse of that probability."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        kept, scale = keep_mask(x, self.p)
        return x * kept.mul_(scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _GEGLU(torch.autograd.Function):
    """``a * gelu(gate)`` for ``a, gate = h.chunk(2, -1)``, with both halves' gradients written
    into one tensor: autograd through ``chunk`` concatenates them (a copy of the whole
    activation, ~8% of a POYO training step's feed-forward time on CPU)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor) -> torch.Tensor:
        a, gate = h.chunk(2, dim=-1)
        activated = F.gelu(gate)
        ctx.save_for_backward(h, activated)
        return a * activated

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        h, activated = ctx.saved_tensors
        a, gate = h.chunk(2, dim=-1)
        d_h = torch.empty_like(h)
        d_a, d_gate = d_h.chunk(2, dim=-1)
        torch.mul(grad, activated, out=d_a)
        torch.ops.aten.gelu_backward.grad_input(grad * a, gate, grad_input=d_gate)
        return d_h


def geglu(h: torch.Tensor) -> torch.Tensor:
    """The gated GELU of POYO's feed-forward blocks: ``a * gelu(gate)``, ``a, gate`` the two
    halves of ``h``'s last dimension."""
    return _GEGLU.apply(h)


class FeedForward(nn.Module):
    """Pre-norm GEGLU feed-forward block: ``dim -> 2 * mult * dim -> mult * dim -> dim``.

    On CPU (float32/64, no autocast) computed a block of tokens at a time by
    :func:`neurofm.models.layers.feedforward_cpu.geglu_feedforward`: same function, same
    dropout mask, faster (the elementwise steps work on data in cache)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, dim * mult * 2)
        self.down = nn.Linear(dim * mult, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if (
            x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu")
        ):
            p = self.dropout.p if self.training else 0.0
            up, down = self.up, self.down
            return geglu_feedforward(x, up.weight, up.bias, down.weight, down.bias, p)
        return self.down(self.dropout(geglu(self.up(x))))


# ------------------------------------------------------------------------------------------------
# the reference path: the whole padded batch on scaled_dot_product_attention
# ------------------------------------------------------------------------------------------------


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)  # (B, H, N, Dh)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_angles: Angles,
    k_angles: Angles,
    key_mask: torch.Tensor | None,
    rotate_value: bool,
    dropout: float,
) -> torch.Tensor:
    """Heads in, heads out: q (B, H, Nq, Dh), k and v (B, H, Nk, Dh) -> (B, H, Nq, Dh)."""
    q, k = rotate(q, q_angles), rotate(k, k_angles)
    if rotate_value:
        v = rotate(v, k_angles)
    mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Nk), True = keep
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    if rotate_value:
        out = rotate(out, q_angles, inverse=True)
    return out


class RotaryCrossAttention(nn.Module):
    """Queries attend to a context (latents <- spikes, or outputs <- latents)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        dropout: float = 0.0,
        rotate_value: bool = False,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.dropout, self.rotate_value = dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.register_buffer("_order", interleaving(heads, dim_head), persistent=False)
        self.register_buffer("_order_kv", interleaving(heads, dim_head, 2), persistent=False)

    def forward(
        self,
        x: torch.Tensor,  # (B, Nq, dim)
        context: torch.Tensor,  # (B, Nk, dim), or (U, dim) distinct tokens with context_index
        q_angles: Angles,  # rotary (cos, sin) of the query times
        k_angles: Angles,  # ... and of the context times
        context_mask: torch.Tensor | None = None,  # (B, Nk) bool, True = real token
        context_index: torch.Tensor | None = None,  # (B, Nk): which row of context each key is
    ) -> torch.Tensor:
        """``context_index`` lets a context made of few distinct tokens (POYO's spikes: a unit
        and a token type) be normalised and projected once per distinct token."""
        dropout = self.dropout if self.training else 0.0
        x, context = self.norm(x), self.context_norm(context)
        batch, n_keys = (context if context_index is None else context_index).shape[:2]
        lengths = windowed_lengths(x, q_angles, self.dim_head, context_mask, batch, n_keys)
        if lengths is None:  # the whole padded batch on scaled_dot_product_attention
            kv = self.to_kv(context)
            if context_index is not None:
                kv = kv[context_index]  # (B, Nk, 2 * H * Dh)
            q = _heads(self.to_q(x), self.heads)
            k, v = (_heads(t, self.heads) for t in kv.chunk(2, dim=-1))
            out = attend(q, k, v, q_angles, k_angles, context_mask, self.rotate_value, dropout)
            return self.to_out(_merge(out))  # (B, Nq, dim)
        q = F.linear(x, self.to_q.weight[self._order])  # (B, Nq, H * Dh), interleaved
        kv = F.linear(context, self.to_kv.weight[self._order_kv])  # keys then values
        geo = HeadGeometry(
            self.heads, self.dim_head, 0, 0, q_angles, k_angles, self.rotate_value, x.dtype
        )
        out = windowed_attention(q, kv, context_index, geo, lengths, dropout)
        return F.linear(out, self.to_out.weight[:, self._order], self.to_out.bias)


class RotarySelfAttention(nn.Module):
    """Tokens attend to each other (the latent processor)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        dropout: float = 0.0,
        rotate_value: bool = True,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.dropout, self.rotate_value = dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.register_buffer("_order", interleaving(heads, dim_head), persistent=False)
        self.register_buffer("_order_qkv", interleaving(heads, dim_head, 3), persistent=False)

    def forward(
        self,
        x: torch.Tensor,  # (B, N, dim)
        angles: Angles,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        dropout = self.dropout if self.training else 0.0
        x = self.norm(x)
        lengths = windowed_lengths(x, angles, self.dim_head, mask, x.shape[0], x.shape[1])
        if lengths is None:
            q, k, v = (_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
            out = attend(q, k, v, angles, angles, mask, self.rotate_value, dropout)
            return self.to_out(_merge(out))
        inner = self.heads * self.dim_head
        geo = HeadGeometry(
            self.heads, self.dim_head, 0, inner, angles, angles, self.rotate_value, x.dtype
        )
        # x is projected to (B, N, 3 * H * Dh) a group of windows at a time, inside
        weight = self.to_qkv.weight[self._order_qkv]
        out = windowed_attention(x, x, None, geo, lengths, dropout, weight=weight)
        return F.linear(out, self.to_out.weight[:, self._order], self.to_out.bias)
