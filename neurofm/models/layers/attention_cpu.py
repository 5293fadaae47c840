"""POYO attention on CPU, a few windows at a time (the fast path of :mod:`.attention`).

Why a hand-written kernel: with dropout, SDPA's fused CPU kernels do not apply and its math
fallback works on the whole padded batch: the encoder's attention weights are B x H x 128 x ~2300
floats (~75 MB a tensor), each elementwise pass (mask, softmax, Bernoulli mask, rescale) streams
from memory, and each temporary is a fresh mmap (page faults); the rotations likewise run over
whole padded tensors, through slices and concatenations. Window by window, everything from the
rotation to the weighted sum stays in cache and padded keys are skipped instead of masked. The
projections are computed with their features reordered so that rotated pairs sit side by side
(:func:`interleaving`; the output projection's columns reordered alike), which makes a rotation
one complex multiplication, and gradients are written straight into the projections' gradients
(hence a custom ``autograd.Function`` with its own backward).

Same softmax, same dropout distribution (each weight kept with probability ``1 - p``, to 1/65536,
and scaled by the inverse of that probability: :func:`keep_mask`), same rotations as
:func:`neurofm.models.layers.attention.attend`: the two agree to float32 rounding (the summation
order differs) and differ only in their random streams.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["HeadGeometry", "interleaving", "keep_mask", "windowed_attention", "windowed_lengths"]

Angles = tuple[torch.Tensor, torch.Tensor]

#: Attention weights (H x queries x keys, summed over the windows of a group) computed at once on
#: CPU: small enough to stay in cache, big enough that per-call overhead does not matter.
GROUP_WEIGHTS = 1 << 18


def keep_mask(like: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """A dropout mask for ``like``: ``(kept, scale)``, ``kept`` 0/1 in ``like``'s dtype, each
    element kept with probability ``1 - p`` (to 1/65536), and ``scale = 1 / P(kept)`` exactly, so
    that ``x * kept * scale`` is unbiased.

    Why not ``uniform_() < 1 - p``: a float uniform costs one 32-bit draw of the generator per
    element, and drawing is most of the cost of a dropout mask on CPU (attention dropout draws
    ~40M per POYO training step). Here each element gets 16 random bits: one full-range 64-bit
    draw covers four elements (~2.5x faster). The comparison writes the mask straight in the
    activations' dtype: a byte mask must be converted before it multiplies a float tensor (a
    float-by-uint8 product is not vectorised), one more pass over the mask in each direction.
    Seeded by ``torch.manual_seed`` like any other draw.
    """
    threshold = round((1.0 - p) * 65536)
    n = like.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=like.device)
    bits.random_(-(2**63), None)  # full 64-bit range: four uniform int16 per element
    kept = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    torch.lt(bits.view(torch.int16)[:n].view(like.shape), threshold - 32768, out=kept)
    return kept, 65536.0 / threshold


def windowed_lengths(
    x: torch.Tensor,
    angles: Angles,
    dim_head: int,
    key_mask: torch.Tensor | None,
    batch: int,
    n_keys: int,
) -> list[int] | None:
    """Real keys per window if the windowed CPU path applies (CPU, float32/64, a quarter of the
    head in rotated pairs, no mask or "n Trues then padding" rows as ``collate`` builds them);
    None otherwise."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    if torch.is_autocast_enabled("cpu"):  # bf16-mixed training: projections come out bf16
        return None
    if angles[0].shape[-1] != dim_head // 4:
        return None
    if key_mask is None:
        return [n_keys] * batch
    lengths = key_mask.sum(dim=1)
    prefix = torch.arange(n_keys, device=key_mask.device)[None, :] < lengths[:, None]
    return lengths.tolist() if torch.equal(prefix, key_mask) else None


def _groups(lengths: list[int], per_key: int, single: bool = False) -> list[tuple[int, int, int]]:
    """``(first, stop, n)``: runs of consecutive windows with the same number of keys ``n``,
    each holding at most ``GROUP_WEIGHTS`` attention weights (``per_key`` per key), or one
    window each if ``single``."""
    most = 1 if single else max(1, GROUP_WEIGHTS // max(1, per_key * max(lengths, default=1)))
    groups, first = [], 0
    for b in range(1, len(lengths) + 1):
        if b == len(lengths) or lengths[b] != lengths[first] or b - first == most:
            groups.append((first, b, lengths[first]))
            first = b
    return groups


def interleaving(heads: int, dim_head: int, blocks: int = 1) -> torch.Tensor:
    """Feature order that puts each rotated pair side by side: per head ``0, r, 1, r + 1, ...,
    r - 1, 2r - 1`` then the unrotated rest (``r = dim_head // 4`` pairs), for ``blocks``
    consecutive projections (q; k, v; or q, k, v).

    The windowed path computes its projections with rows permuted this way (and the output
    projection with columns permuted alike), so a pair is one complex number and a rotation is
    one complex multiplication. A dot product does not depend on the order of its features:
    same function, same parameters.
    """
    r = dim_head // 4
    head = torch.cat(
        [
            torch.stack([torch.arange(r), torch.arange(r, 2 * r)], 1).flatten(),
            torch.arange(2 * r, dim_head),
        ]
    )
    one = torch.cat([head + h * dim_head for h in range(heads)])
    return torch.cat([one + i * heads * dim_head for i in range(blocks)])


def _rotate_pairs(dst: torch.Tensor, x: torch.Tensor, cis: torch.Tensor | None) -> torch.Tensor:
    """``dst = x`` with its leading interleaved pairs multiplied by ``cis`` (unit complex
    numbers, ``(..., 1, R)`` against ``x``'s ``(..., H, Dh)``), or a plain copy if None."""
    if cis is None:
        return dst.copy_(x)
    r = cis.shape[-1]
    pairs = torch.view_as_complex(x[..., : 2 * r].unflatten(-1, (r, 2)))
    torch.mul(pairs, cis, out=torch.view_as_complex(dst[..., : 2 * r].unflatten(-1, (r, 2))))
    dst[..., 2 * r :] = x[..., 2 * r :]
    return dst


def _rotate_in_place(x: torch.Tensor, cis: torch.Tensor | None) -> torch.Tensor:
    """``x``'s leading interleaved pairs multiplied by ``cis`` in place (see
    :func:`_rotate_pairs`)."""
    if cis is not None:
        r = cis.shape[-1]
        pairs = torch.view_as_complex(x[..., : 2 * r].unflatten(-1, (r, 2)))
        pairs.mul_(cis)
    return x


class HeadGeometry:
    """Heads, where queries, keys and values sit in the projections' outputs, and the rotations
    (``e^(i omega t)`` per token, ``(B, N, 1, R)``; conjugates for the counter-rotations)."""

    def __init__(
        self,
        heads: int,
        dim_head: int,
        q_col: int,
        k_col: int,
        q_angles: Angles,
        k_angles: Angles,
        rotate_value: bool,
        dtype: torch.dtype,
    ) -> None:
        self.heads, self.dim_head, self.inner = heads, dim_head, heads * dim_head
        self.q_col, self.k_col, self.v_col = q_col, k_col, k_col + heads * dim_head
        self.rotate_value = rotate_value

        def cis(angles: Angles) -> torch.Tensor:
            # (B, 1, N, R) -> (B, N, 1, R), in the precision of the activations
            cos, sin = (a.transpose(1, 2).to(dtype) for a in angles)
            return torch.complex(cos, sin)

        self.q_cis = cis(q_angles)
        same = k_angles[0] is q_angles[0] and k_angles[1] is q_angles[1]
        self.k_cis = self.q_cis if same else cis(k_angles)
        # Counter-rotations (conjugates) are made when first asked for: inference never needs
        # the keys' (a complex table per spike token, ~1% of POYO's inference time).
        self._inverse: dict[str, torch.Tensor] = {}

    def part(self, rows: torch.Tensor, col: int) -> torch.Tensor:
        """Columns ``[col, col + H * Dh)`` of (G, n, C) token rows, as (G, n, H, Dh)."""
        return rows[..., col : col + self.inner].unflatten(-1, (self.heads, self.dim_head))

    @staticmethod
    def to_heads(x: torch.Tensor, cis: torch.Tensor | None) -> torch.Tensor:
        """(G, n, H, Dh) -> rotated, contiguous (G * H, n, Dh), ready for ``bmm``."""
        g, n, h, d = x.shape
        out = x.new_empty(g, h, n, d)
        _rotate_pairs(out.transpose(1, 2), x, cis)
        return out.view(g * h, n, d)

    @staticmethod
    def from_heads(dst: torch.Tensor, x: torch.Tensor, cis: torch.Tensor | None) -> None:
        """(G * H, n, Dh) -> rotated into ``dst`` (G, n, H, Dh)."""
        g, n, h, d = dst.shape
        _rotate_pairs(dst, x.view(g, h, n, d).transpose(1, 2), cis)

    def in_place_layout(
        self,
        weight: torch.Tensor | None,
        kv_src: torch.Tensor,
        kv_index: torch.Tensor | None,
        n_q: int,
        lengths: list[int],
    ) -> str | None:
        """How :class:`_WindowedAttention` may work one window at a time on rows it made itself,
        rotating them in place and reading the heads where they lie: ``"qkv"`` (self-attention
        projected inside, queries, keys and values rotated by the same angles, no padded
        keys), ``"kv"`` (keys and values gathered from a table of distinct tokens), or None.
        Only for windows big enough (a window's weights at least a quarter of
        ``GROUP_WEIGHTS``) that a window alone keeps the per-call overhead small."""
        if 4 * self.heads * n_q * max(lengths, default=0) < GROUP_WEIGHTS:
            return None
        if weight is not None:
            alike = self.rotate_value and self.k_cis is self.q_cis
            if (
                alike
                and weight.shape[0] == 3 * self.inner
                and (self.q_col, self.k_col) == (0, self.inner)
                and all(n == n_q for n in lengths)
            ):
                return "qkv"
            return None
        if kv_index is not None and kv_src.shape[-1] == 2 * self.inner and self.k_col == 0:
            return "kv"
        return None

    def rotate_rows(self, rows: torch.Tensor, blocks: int, cis: torch.Tensor) -> torch.Tensor:
        """One window's (n, blocks * H * Dh) rows of keys (queries, keys, values; or keys,
        values) as (n, blocks, H, Dh), rotated in place by ``cis`` (n, 1, R): all blocks, or
        the first alone if values are not rotated (queries are rotated in "qkv" rows only when
        values are)."""
        x = rows.unflatten(-1, (blocks, self.heads, self.dim_head))
        _rotate_in_place(x if self.rotate_value else x[:, :1], cis.unsqueeze(1))
        return x

    def cis(self, which: str, b0: int, b1: int, n: int, inverse: bool = False) -> torch.Tensor:
        """Windows ``b0:b1``, first ``n`` tokens of the queries' (``"q"``) or keys' rotations,
        or of their conjugates (``inverse``)."""
        table = self.q_cis if which == "q" else self.k_cis
        if inverse:
            if self.k_cis is self.q_cis:
                which = "q"
            if which not in self._inverse:
                self._inverse[which] = table.conj().resolve_conj()
            table = self._inverse[which]
        return table[b0:b1, :n]


def _key_rows(
    kv_src: torch.Tensor, kv_index: torch.Tensor | None, b0: int, b1: int, n: int
) -> torch.Tensor:
    """The first n key/value rows of windows b0..b1: (G, n, C), gathered from a table of
    distinct tokens if ``kv_index`` is given."""
    if kv_index is None:
        return kv_src[b0:b1, :n]
    # a row gather: embedding's is ~6x faster than advanced indexing's elementwise one on CPU
    return torch.nn.functional.embedding(kv_index[b0:b1, :n], kv_src)


class _WindowedAttention(torch.autograd.Function):
    """Rotary attention (with dropout), a group of windows at a time; see the module docstring.

    Inputs are the projections' outputs, features interleaved (:func:`interleaving`):
    ``q_src`` (B, Nq, .) holds the queries from column ``q_col``, ``kv_src`` (B, Nk, .) the
    keys from ``k_col`` and the values right after them (self-attention passes one tensor as
    both) -- or, with ``kv_index`` (B, Nk), ``kv_src`` (U, .) holds the projections of U
    distinct tokens and ``kv_index`` says which one each key is. Self-attention may instead
    pass the tokens themselves as both sources with the projection's ``weight`` (C, dim): each
    group is then projected as it is reached (and its gradients taken back through the
    projection right after its backward): the whole batch's projections (~25 MB for POYO's
    processor) are never written out and read back from memory, which measured ~40% of the
    projection's time and made the rotations stall on cache misses. Returns (B, Nq, H * Dh),
    interleaved, for the output projection. Saved for the backward pass, per group: rotated
    queries, keys and values, softmax weights and (with dropout) the weights after dropout.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q_src: torch.Tensor,
        kv_src: torch.Tensor,
        kv_index: torch.Tensor | None,
        geo: HeadGeometry,
        lengths: list[int],
        p: float,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, n_q = q_src.shape[0], q_src.shape[1]
        scale = 1.0 / math.sqrt(geo.dim_head)
        out = q_src.new_empty(batch, n_q, geo.inner)
        saving = any(ctx.needs_input_grad[:2]) or ctx.needs_input_grad[6]
        saved: list[Any] = []
        # (inference takes PyTorch's fused kernel on groups of windows instead)
        in_place = geo.in_place_layout(weight, kv_src, kv_index, n_q, lengths)
        if not saving and p == 0:
            in_place = None
        for b0, b1, n in _groups(lengths, geo.heads * n_q, single=in_place is not None):
            o = out[b0:b1].unflatten(-1, (geo.heads, geo.dim_head))  # (G, Nq, H, Dh)
            if n == 0:  # no key at all: nothing to attend to
                o.zero_()
                saved.append(None)
                continue
            if weight is None:
                q_rows, rows = q_src[b0:b1], _key_rows(kv_src, kv_index, b0, b1, n)
            else:  # self-attention projected a group at a time: queries and keys alike
                q_rows = torch.nn.functional.linear(q_src[b0:b1], weight)
                rows = q_rows[:, :n]
            v_cis = geo.cis("k", b0, b1, n) if geo.rotate_value else None
            if not saving and p == 0:
                # Nothing to save (inference): rotated in place, where the projections lie
                # (this call's temporaries), and PyTorch's fused CPU kernel reads them there,
                # computing the softmax block by block without writing the weights out (10% of
                # POYO's inference time); with dropout or a backward pass the weights are needed.
                q = _rotate_in_place(geo.part(q_rows, geo.q_col), geo.cis("q", b0, b1, n_q))
                k = _rotate_in_place(geo.part(rows, geo.k_col), geo.cis("k", b0, b1, n))
                v = _rotate_in_place(geo.part(rows, geo.v_col), v_cis)
                heads_out = torch.nn.functional.scaled_dot_product_attention(
                    *(t.transpose(1, 2) for t in (q, k, v))
                )  # (G, H, Nq, Dh)
                # copied, then counter-rotated where it lies: a strided complex product into a
                # strided destination runs ~1.6x slower
                o.copy_(heads_out.transpose(1, 2))
                if geo.rotate_value:
                    _rotate_in_place(o, geo.cis("q", b0, b1, n_q, inverse=True))
                saved.append(None)
                continue
            if in_place == "qkv":
                # One window: its projections (this call's temporary, (n, 3, H, Dh)) rotated in
                # place, all three at once, and the heads read where they lie (bmm takes the
                # strided (H, n, Dh) views at full speed): no copy into a heads-first layout,
                # ~5% of a POYO 1.3M training step.
                qkv = geo.rotate_rows(rows[0], 3, geo.cis("q", b0, b1, n)[0])
                q, k, v = (qkv[:, i].transpose(0, 1) for i in range(3))  # (H, n, Dh) each
            elif in_place == "kv":  # the same for one window's gathered keys and values
                q = geo.to_heads(geo.part(q_rows, geo.q_col), geo.cis("q", b0, b1, n_q))
                kv = geo.rotate_rows(rows[0], 2, geo.cis("k", b0, b1, n)[0])
                k, v = (kv[:, i].transpose(0, 1) for i in range(2))
            else:
                q = geo.to_heads(geo.part(q_rows, geo.q_col), geo.cis("q", b0, b1, n_q))
                k = geo.to_heads(geo.part(rows, geo.k_col), geo.cis("k", b0, b1, n))
                v = geo.to_heads(geo.part(rows, geo.v_col), v_cis)
            del rows, q_rows
            scores = q.new_empty(q.shape[0], n_q, n)
            torch.baddbmm(scores, q, k.transpose(1, 2), beta=0.0, alpha=scale, out=scores)
            weights = torch.softmax(scores, dim=-1)  # (G * H, Nq, n)
            del scores
            dropped = weights
            if p > 0:
                kept, keep_scale = keep_mask(weights, p)  # 1 kept, 0 dropped
                dropped = kept.mul_(weights)  # in the mask's memory: the mask is not kept
            q_inv = geo.cis("q", b0, b1, n_q, inverse=True) if geo.rotate_value else None
            if in_place == "qkv":  # written where it belongs, then counter-rotated there
                torch.bmm(dropped, v, out=o[0].transpose(0, 1))
                if p > 0:
                    o.mul_(keep_scale)
                _rotate_in_place(o[0], q_inv[0])
            else:
                heads_out = torch.bmm(dropped, v)
                if p > 0:
                    heads_out.mul_(keep_scale)
                geo.from_heads(o, heads_out, q_inv)
            saved.append((q, k, v, weights, dropped) if saving else None)
        if saving:
            ctx.geo, ctx.lengths, ctx.p, ctx.groups = geo, lengths, p, saved
            ctx.in_place = in_place
            ctx.shared = q_src is kv_src
            ctx.shapes = (q_src.shape, kv_src.shape)
            ctx.dtype_device = (q_src.dtype, q_src.device)
            ctx.kv_index = kv_index
            ctx.weight, ctx.tokens = weight, (q_src if weight is not None else None)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        geo, lengths, p, groups = ctx.geo, ctx.lengths, ctx.p, ctx.groups  # kept: retain_graph
        (q_shape, kv_shape), shared, kv_index = ctx.shapes, ctx.shared, ctx.kv_index
        dtype, device = ctx.dtype_device
        n_q = q_shape[1]
        scale = 1.0 / math.sqrt(geo.dim_head)
        keep_scale = 65536.0 / round((1.0 - p) * 65536)  # keep_mask's
        weight, tokens = ctx.weight, ctx.tokens
        # Every column read in the forward pass is written below; any other column is zero.
        skip_q = False
        if weight is not None:  # per group: projections' gradients, then back through them
            whole = weight.shape[0] == 3 * geo.inner and (geo.q_col, geo.k_col) == (0, geo.inner)
            d_tokens = torch.empty_like(tokens)
            # a frozen projection (fine-tuning unit embeddings only) gets no gradient
            d_weight = torch.zeros_like(weight) if ctx.needs_input_grad[6] else None
        elif shared:
            whole = kv_shape[-1] == 3 * geo.inner and (geo.q_col, geo.k_col) == (0, geo.inner)
            d_kv = (torch.empty if whole else torch.zeros)(kv_shape, dtype=dtype, device=device)
            d_q = d_kv
        else:
            # queries of frozen, constant inputs (POYO's latents when adapting unit embeddings)
            # need no gradient: a third of the attention's backward products saved
            skip_q = not ctx.needs_input_grad[0]
            whole_q = q_shape[-1] == geo.inner and geo.q_col == 0
            new_q = torch.empty if whole_q else torch.zeros
            d_q = None if skip_q else new_q(q_shape, dtype=dtype, device=device)
            whole = kv_shape[-1] == 2 * geo.inner and geo.k_col == 0 and kv_index is None
            d_kv = (torch.empty if whole else torch.zeros)(kv_shape, dtype=dtype, device=device)
        kv_cols = slice(geo.k_col, geo.v_col + geo.inner)
        in_place = ctx.in_place
        for (b0, b1, n), saved in zip(
            _groups(lengths, geo.heads * n_q, single=in_place is not None), groups, strict=True
        ):
            if weight is not None:
                if saved is None:
                    d_tokens[b0:b1] = 0
                    continue
                new = torch.empty if whole else torch.zeros
                d_block = new(b1 - b0, n_q, weight.shape[0], dtype=dtype, device=device)
                d_block[:, n:, kv_cols] = 0  # padding keys: no gradient
                d_rows, dq_dst = d_block[:, :n], geo.part(d_block, geo.q_col)
            elif kv_index is None:
                d_kv[b0:b1, n:, kv_cols] = 0  # padding keys: no gradient
                d_rows = d_kv[b0:b1, :n]
            else:  # gradients of this group's keys, added to their tokens' rows below
                new = torch.empty if in_place == "kv" else torch.zeros  # "kv": every column
                d_rows = new(b1 - b0, n, kv_shape[-1], dtype=dtype, device=device)
            if weight is None and not skip_q:
                dq_dst = geo.part(d_q[b0:b1], geo.q_col)
            if saved is None:
                if not skip_q:
                    dq_dst.zero_()
                if kv_index is None:
                    d_rows[..., kv_cols] = 0
                continue
            q, k, v, weights, dropped = saved  # dropped: the weights times the 0/1 mask
            # The output was counter-rotated: its gradient gets the rotation.
            g = grad[b0:b1].unflatten(-1, (geo.heads, geo.dim_head))
            q_cis = geo.cis("q", b0, b1, n_q) if geo.rotate_value else None
            dq = dk = dv = None  # where in_place: views of the rows' gradients, written below
            if in_place == "qkv":  # rotated rows, read as strided heads
                g = _rotate_pairs(torch.empty_like(g[0]), g[0], q_cis[0]).transpose(0, 1)
                d_qkv = d_block[0].unflatten(-1, (3, geo.heads, geo.dim_head))
                dq, dk, dv = (d_qkv[:, i].transpose(0, 1) for i in range(3))  # (H, n, Dh)
            else:
                g = geo.to_heads(g, q_cis)
            if in_place == "kv":
                d_kv_rows = d_rows[0].unflatten(-1, (2, geo.heads, geo.dim_head))
                dk, dv = (d_kv_rows[:, i].transpose(0, 1) for i in range(2))
            if p > 0:
                g.mul_(keep_scale)
            dv = torch.bmm(dropped.transpose(1, 2), g, out=dv)  # (G * H, n, Dh)
            d_weights = torch.bmm(g, v.transpose(1, 2))  # (G * H, Nq, n)
            if p > 0:
                # Softmax backward through the mask: with m the mask, w the weights and
                # d = d_weights, d_scores = w * (m * d - sum(w * m * d)) = P - w * sum(P) for
                # P = (w * m) * d: two passes over the weights, and no mask saved (a weight
                # dropped or underflowed to 0 contributes 0 either way).
                d_scores = d_weights.mul_(dropped)
                d_scores.addcmul_(weights, d_scores.sum(-1, keepdim=True), value=-1.0)
            else:
                d_scores = torch._softmax_backward_data(d_weights, weights, -1, weights.dtype)
            del d_weights
            # baddbmm with beta=0 ignores its first argument: scale folded into the product.
            if not skip_q:
                dq = torch.baddbmm(
                    q if dq is None else dq, d_scores, k, beta=0.0, alpha=scale, out=dq
                )
            d_scores_t = d_scores.transpose(1, 2)
            dk = torch.baddbmm(
                k if dk is None else dk, d_scores_t, q, beta=0.0, alpha=scale, out=dk
            )
            # Back through the rotations: the counter-rotation of the gradients.
            if in_place == "qkv":  # all three alike, in place
                geo.rotate_rows(d_block[0], 3, geo.cis("q", b0, b1, n, inverse=True)[0])
                _project_back(d_block, tokens[b0:b1], weight, d_tokens[b0:b1], d_weight)
                continue
            if not skip_q:
                geo.from_heads(dq_dst, dq, geo.cis("q", b0, b1, n_q, inverse=True))
            k_inv = geo.cis("k", b0, b1, n, inverse=True)
            if in_place == "kv":
                geo.rotate_rows(d_rows[0], 2, k_inv[0])
            else:
                geo.from_heads(geo.part(d_rows, geo.k_col), dk, k_inv)
                v_inv = k_inv if geo.rotate_value else None
                geo.from_heads(geo.part(d_rows, geo.v_col), dv, v_inv)
            if kv_index is not None:
                d_kv.index_add_(0, kv_index[b0:b1, :n].reshape(-1), d_rows.flatten(0, 1))
            if weight is not None:
                _project_back(d_block, tokens[b0:b1], weight, d_tokens[b0:b1], d_weight)
        if weight is not None:
            return d_tokens, None, None, None, None, None, d_weight
        if shared:
            return d_kv, None, None, None, None, None, None
        return d_q, d_kv, None, None, None, None, None


def _project_back(
    d_rows: torch.Tensor,
    tokens: torch.Tensor,
    weight: torch.Tensor,
    d_tokens: torch.Tensor,
    d_weight: torch.Tensor | None,
) -> None:
    """Back through a group's projection ``rows = tokens @ weight.T``: ``d_tokens`` written,
    ``d_weight`` (None if frozen) accumulated."""
    d_flat, x_flat = d_rows.flatten(0, 1), tokens.flatten(0, 1)
    torch.mm(d_flat, weight, out=d_tokens.view(-1, tokens.shape[-1]))
    if d_weight is not None:
        d_weight.addmm_(d_flat.t(), x_flat)


def windowed_attention(
    q: torch.Tensor,
    kv: torch.Tensor,
    kv_index: torch.Tensor | None,
    geo: HeadGeometry,
    lengths: list[int],
    dropout: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention over each window's first ``lengths[b]`` keys, with interleaved projections
    (or, for self-attention, the tokens and the interleaved projection ``weight``). Where
    autograd records nothing (inference), the projections ``q`` and ``kv`` are rotated in place:
    pass temporaries."""
    return _WindowedAttention.apply(q, kv, kv_index, geo, lengths, dropout, weight)
