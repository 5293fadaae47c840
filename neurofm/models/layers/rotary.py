"""Rotary embedding of continuous time (RoPE with seconds instead of positions).

Each head's first ``rotate_dim`` features are rotated in pairs by angles ``t * omega_k``, with
periods ``2 pi / omega_k`` log-spaced between ``t_min`` and ``t_max`` seconds (POYO: 1e-4 s to
2.0627 s, half of a 64-dim head rotated). The dot product of a rotated query and key then depends
only on the time difference, so attention is relative in time; the unrotated rest of the head
carries content that is invariant to time.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def frequencies(n: int, t_min: float, t_max: float) -> torch.Tensor:
    """The ``n`` angular frequencies ``2 pi / period`` (rad/s), float32, periods log-spaced from
    ``t_min`` to ``t_max`` (both included).

    Computed op for op as torch_brain 0.2.1 does (``generate_logspace_timeperiods``: float32
    ``exp(lerp(log t_min, log t_max, linspace(0, 1)))``), so a model imported from torch_brain has
    bit for bit the frequencies it was trained with, and keeps them through a neurofm save/load
    that recomputes them (``torch.logspace`` rounds differently: one float32 ulp at omega ~ 6e4
    rad/s is a visible phase error after a second).
    """
    exponents = torch.linspace(0, 1.0, n, dtype=torch.float32)
    lo = torch.tensor(t_min, dtype=torch.float32).log()
    hi = torch.tensor(t_max, dtype=torch.float32).log()
    periods = torch.exp(torch.lerp(lo, hi, exponents))
    return 2 * math.pi / periods


class RotaryTimeEmbedding(nn.Module):
    """Angles for rotating attention heads by time.

    Parameters
    ----------
    head_dim : int
        Features per attention head.
    rotate_dim : int
        How many of them are rotated (even; the rest pass unchanged).
    t_min, t_max : float
        Shortest and longest period, in seconds.
    """

    def __init__(
        self, head_dim: int, rotate_dim: int, t_min: float = 1e-4, t_max: float = 2.0627
    ) -> None:
        super().__init__()
        if rotate_dim % 2 or rotate_dim > head_dim:
            raise ValueError(f"rotate_dim must be even and <= head_dim, got {rotate_dim}")
        self.register_buffer("omega", frequencies(rotate_dim // 2, t_min, t_max), persistent=False)
        self.rotate_dim = rotate_dim

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` of the angles, each ``(B, 1, N, rotate_dim // 2)``.

        Computed once per token set and shared by every head, layer, query, key and value
        that uses those times.
        """
        # float64 angles: the shortest period is 1e-4 s, so a float32 time of ~1 s would put
        # the phase off by ~4e-3 rad. Reduced to [0, 2 pi) in float64, an angle is exact in
        # float32 to 2.4e-7 rad, and cos/sin run in float32: 1.4-3x faster than all-float64
        # (a 1.3M batch's tokens / a tiny step's), within 4e-7 of float64's values.
        angles = t.to(torch.float64).unsqueeze(-1) * self.omega.to(torch.float64)  # (B, N, R/2)
        angles = angles.remainder_(2 * math.pi).to(torch.float32)
        return torch.cos(angles).unsqueeze(1), torch.sin(angles).unsqueeze(1)


class _Rotate(torch.autograd.Function):
    """Rotation of the leading feature pairs, written straight into one output tensor (used by
    the ``scaled_dot_product_attention`` path; the CPU windowed path rotates complex pairs).

    A rotation is orthogonal, so the gradient is the inverse rotation of the incoming gradient:
    nothing is saved but the angles, and neither pass slices, concatenates or zero-fills a copy
    of ``x`` (what autograd through ``cat`` of slices does).
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, inverse: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(cos, sin)
        ctx.inverse = inverse
        return _rotate_into(torch.empty_like(x), x, cos, sin, inverse)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        cos, sin = ctx.saved_tensors
        dx = _rotate_into(torch.empty_like(grad), grad, cos, sin, not ctx.inverse)
        return dx, None, None, None


def _rotate_into(
    out: torch.Tensor, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, inverse: bool
) -> torch.Tensor:
    """``out = R(+-angles) x`` on pairs ``(i, i + half)``: ``(x1 cos - x2 sin, x2 cos + x1 sin)``,
    or the inverse with the signs of the ``sin`` terms flipped. Separate multiplies and adds (no
    fused multiply-add), so the result is bitwise that of the formula."""
    half = cos.shape[-1]
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    o1, o2 = out[..., :half], out[..., half : 2 * half]
    tmp = torch.mul(x2, sin)
    torch.mul(x1, cos, out=o1)
    if inverse:
        o1.add_(tmp)
    else:
        o1.sub_(tmp)
    torch.mul(x1, sin, out=tmp)
    torch.mul(x2, cos, out=o2)
    if inverse:
        o2.sub_(tmp)
    else:
        o2.add_(tmp)
    out[..., 2 * half :] = x[..., 2 * half :]
    return out


def rotate(
    x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor], inverse: bool = False
) -> torch.Tensor:
    """Rotate the leading feature pairs of ``x`` (B, H, N, Dh) by precomputed ``(cos, sin)``.

    Feature ``i`` is paired with ``i + rotate_dim // 2``; with ``inverse`` the rotation is by the
    opposite angles (counter-rotation).
    """
    cos, sin = cos_sin
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if torch.is_grad_enabled() and x.requires_grad:
        return _Rotate.apply(x, cos, sin, inverse)
    return _rotate_into(torch.empty_like(x), x, cos, sin, inverse)
