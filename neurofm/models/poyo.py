"""POYO: a PerceiverIO that reads every spike as a token and decodes behaviour at any time.

Follows Azabou et al. (NeurIPS 2023) and the notes in shared/reference/poyo.md: a spike token is
its unit's embedding plus a token-type embedding (spike / start / end of the window); rotary
embeddings carry time; a fixed grid of latent tokens cross-attends to the spikes (encoder), then
self-attends (processor); output queries -- the session's embedding at each output time --
cross-attend to the latents (decoder); a linear readout gives the behaviour.

Shapes: B windows, N input tokens, L latents, Q output times, D = ``dim``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurofm.models.layers import (
    Dropout,
    FeedForward,
    RotaryCrossAttention,
    RotarySelfAttention,
    RotaryTimeEmbedding,
    VocabEmbedding,
)

TOKEN_SPIKE, TOKEN_START, TOKEN_END = 0, 1, 2


@dataclass
class POYOConfig:
    """Shape of a POYO model (``models/poyo_*.yaml``)."""

    dim: int = 64
    depth: int = 6
    dim_head: int = 64
    cross_heads: int = 2
    self_heads: int = 8
    ffn_dropout: float = 0.2
    lin_dropout: float = 0.4
    atn_dropout: float = 0.2
    window_length: float = 1.0
    latent_step: float = 0.125
    num_latents_per_step: int = 16
    dim_out: int = 2
    t_min: float = 1e-4
    t_max: float = 2.0627
    emb_init_scale: float = 0.02

    @classmethod
    def from_yaml(cls, path: str | Path) -> POYOConfig:
        """Read ``models/poyo_*.yaml`` (a ``model: poyo`` tag is allowed).

        Raises
        ------
        SpecError
            Unknown key or a value of the wrong type, naming the file and the key.
        """
        from neurofm.specs import read_yaml, validate

        values = read_yaml(path) or {}
        if isinstance(values, dict):
            values.pop("model", None)
        return validate(cls, values, path)


class POYO(nn.Module):
    """The POYO model.

    Parameters
    ----------
    config : POYOConfig
        Sizes, dropouts, time geometry.
    units, sessions : iterable of str
        Initial vocabularies (unit ids are namespaced ``"<recording id>/<unit id>"``).
    """

    def __init__(
        self, config: POYOConfig, units: list[str] | None = None, sessions: list[str] | None = None
    ) -> None:
        super().__init__()
        c = self.config = config
        self.unit_emb = VocabEmbedding(c.dim, units or (), c.emb_init_scale, name="unit")
        self.session_emb = VocabEmbedding(c.dim, sessions or (), c.emb_init_scale, name="session")
        self.token_type_emb = nn.Embedding(4, c.dim)
        self.latent_emb = nn.Embedding(c.num_latents_per_step, c.dim)
        self.rotary = RotaryTimeEmbedding(c.dim_head, c.dim_head // 2, c.t_min, c.t_max)

        self.enc_atn = RotaryCrossAttention(
            c.dim, c.cross_heads, c.dim_head, c.atn_dropout, rotate_value=True
        )
        self.enc_ffn = FeedForward(c.dim, dropout=c.ffn_dropout)
        self.proc_layers = nn.ModuleList(
            nn.ModuleList(
                [
                    RotarySelfAttention(c.dim, c.self_heads, c.dim_head, c.atn_dropout, True),
                    FeedForward(c.dim, dropout=c.ffn_dropout),
                ]
            )
            for _ in range(c.depth)
        )
        self.dropout = Dropout(c.lin_dropout)
        self.dec_atn = RotaryCrossAttention(
            c.dim, c.cross_heads, c.dim_head, c.atn_dropout, rotate_value=False
        )
        self.dec_ffn = FeedForward(c.dim, dropout=c.ffn_dropout)
        self.readout = nn.Linear(c.dim, c.dim_out)

    def forward(
        self,
        input_unit_index: torch.Tensor,  # (B, N)
        input_timestamps: torch.Tensor,  # (B, N)
        input_token_type: torch.Tensor,  # (B, N)
        input_mask: torch.Tensor,  # (B, N) bool
        latent_index: torch.Tensor,  # (B, L)
        latent_timestamps: torch.Tensor,  # (B, L)
        session_index: torch.Tensor,  # (B,)
        output_timestamps: torch.Tensor,  # (B, Q)
        **_: Any,
    ) -> torch.Tensor:
        """Predicted behaviour at the output times, shape ``(B, Q, dim_out)``."""
        # A spike token is its unit's embedding plus its type's: embed, normalise and project
        # each distinct (unit, type) pair once; the encoder gathers them per token.
        n_types = self.token_type_emb.num_embeddings
        pairs, which = torch.unique(
            input_unit_index * n_types + input_token_type, return_inverse=True
        )
        tokens = self.unit_emb(pairs // n_types) + self.token_type_emb(pairs % n_types)  # (U, D)
        latents = self.latent_emb(latent_index)  # (B, L, D)
        in_angles = self.rotary(input_timestamps)
        lat_angles = self.rotary(latent_timestamps)
        out_angles = self.rotary(output_timestamps)

        latents = latents + self.enc_atn(
            latents, tokens, lat_angles, in_angles, input_mask, context_index=which
        )  # which: (B, N) -> rows of tokens
        latents = latents + self.enc_ffn(latents)
        for attn, ffn in self.proc_layers:
            latents = latents + self.dropout(attn(latents, lat_angles))
            latents = latents + self.dropout(ffn(latents))

        queries = self.session_emb(session_index)[:, None, :].expand(
            -1, output_timestamps.shape[1], -1
        )  # (B, Q, D)
        out = queries + self.dec_atn(queries, latents, out_angles, lat_angles)
        out = out + self.dec_ffn(out)
        return self.readout(out)

    def backbone_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Everything but the unit and session embeddings (what unit-id fine-tuning freezes)."""
        return [
            (n, p)
            for n, p in self.named_parameters()
            if not n.startswith(("unit_emb.", "session_emb."))
        ]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
