"""Attention blocks with rotary time embeddings, on ``scaled_dot_product_attention``.

``rotate_value=True`` also rotates the values by their key's time and counter-rotates the output
by the query's time, so what a query receives is expressed relative to its own time (POYO does
this in the encoder and the processor, not in the decoder).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neurofm.models.layers.rotary import rotate


class FeedForward(nn.Module):
    """Pre-norm GEGLU feed-forward block: ``dim -> 2 * mult * dim -> mult * dim -> dim``."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, dim * mult * 2)
        self.down = nn.Linear(dim * mult, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.up(self.norm(x)).chunk(2, dim=-1)
        return self.down(self.dropout(a * F.gelu(gate)))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)  # (B, H, N, Dh)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_angles: tuple[torch.Tensor, torch.Tensor],
    k_angles: tuple[torch.Tensor, torch.Tensor],
    key_mask: torch.Tensor | None,
    rotate_value: bool,
    dropout: float,
) -> torch.Tensor:
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
        self.heads, self.dropout, self.rotate_value = heads, dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.context_norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(
        self,
        x: torch.Tensor,  # (B, Nq, dim)
        context: torch.Tensor,  # (B, Nk, dim)
        q_angles: tuple[torch.Tensor, torch.Tensor],  # rotary (cos, sin) of the query times
        k_angles: tuple[torch.Tensor, torch.Tensor],  # ... and of the context times
        context_mask: torch.Tensor | None = None,  # (B, Nk) bool, True = real token
    ) -> torch.Tensor:
        q = _heads(self.to_q(self.norm(x)), self.heads)
        k, v = self.to_kv(self.context_norm(context)).chunk(2, dim=-1)
        k, v = _heads(k, self.heads), _heads(v, self.heads)
        dropout = self.dropout if self.training else 0.0
        out = _attend(q, k, v, q_angles, k_angles, context_mask, self.rotate_value, dropout)
        return self.to_out(_merge(out))  # (B, Nq, dim)


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
        self.heads, self.dropout, self.rotate_value = heads, dropout, rotate_value
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(
        self,
        x: torch.Tensor,
        angles: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q, k, v = (_heads(t, self.heads) for t in self.to_qkv(self.norm(x)).chunk(3, dim=-1))
        dropout = self.dropout if self.training else 0.0
        out = _attend(q, k, v, angles, angles, mask, self.rotate_value, dropout)
        return self.to_out(_merge(out))
