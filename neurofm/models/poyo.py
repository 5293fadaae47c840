"""POYO: a PerceiverIO that reads every spike as a token and decodes behaviour at any time.

Follows Azabou et al. (NeurIPS 2023) and the notes in shared/reference/poyo.md: a spike token is
its unit's embedding plus a token-type embedding (spike / start / end of the window); rotary
embeddings carry time; a fixed grid of latent tokens cross-attends to the spikes (encoder), then
self-attends (processor); output queries -- the session's embedding at each output time --
cross-attend to the latents (decoder); a readout per target type gives the behaviour: a linear
map to the (z-scored) values for regression, logits over the classes for a categorical target,
each with its weighted loss (a sample of weight 0, e.g. a NaN gap, does not count).

Shapes: B windows, N input tokens, L latents, Q output times, D = ``dim``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass
from torch import nn

from neurofm.display import config_html, config_repr
from neurofm.errors import NeuroFMError
from neurofm.models.layers import (
    Dropout,
    FeedForward,
    RotaryCrossAttention,
    RotarySelfAttention,
    RotaryTimeEmbedding,
    VocabEmbedding,
)

TOKEN_SPIKE, TOKEN_START, TOKEN_END = 0, 1, 2


@dataclass(config=ConfigDict(extra="forbid"))
class POYOConfig:
    """Shape of a POYO model (``models/poyo_*.yaml``).

    Every field is checked when a config is made (in YAML or in Python): sizes are positive,
    dropouts lie in [0, 1), times are positive. A config file's mistakes are one
    :class:`~neurofm.errors.SpecError` naming the file and the key.

    Attributes
    ----------
    dim : int
        Width of every token (D).
    depth : int
        Self-attention layers of the processor.
    dim_head : int
        Width of an attention head (a multiple of 4, for the rotary embedding).
    cross_heads : int
        Heads of the encoder and decoder cross-attention.
    self_heads : int
        Heads of the processor's self-attention.
    ffn_dropout : float
        Dropout inside the feed-forward blocks, in [0, 1).
    lin_dropout : float
        Dropout before the linear readout, in [0, 1).
    atn_dropout : float
        Dropout of the attention weights, in [0, 1).
    window_length : float
        Length of a context window, s.
    latent_step : float
        Step of the latent tokens' time grid, s (at most ``window_length``).
    num_latents_per_step : int
        Latent tokens at each grid step.
    dim_out : int
        Dimensions of the target (set from the data when a model is built for a catalog).
    t_min : float
        Shortest period of the rotary time embedding, s.
    t_max : float
        Longest period of the rotary time embedding, s (greater than ``t_min``).
    emb_init_scale : float
        Standard deviation of new unit and session embeddings.
    """

    dim: Annotated[int, Field(gt=0, description="width of every token (D)")] = 64
    depth: Annotated[int, Field(gt=0, description="self-attention (processor) layers")] = 6
    dim_head: Annotated[
        int, Field(gt=0, multiple_of=4, description="width of an attention head")
    ] = 64
    cross_heads: Annotated[int, Field(gt=0, description="heads of the encoder/decoder")] = 2
    self_heads: Annotated[int, Field(gt=0, description="heads of the processor")] = 8
    ffn_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    lin_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.4
    atn_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    window_length: Annotated[float, Field(gt=0, description="window, s")] = 1.0
    # validate_default: the checks against window_length / t_min apply to defaults too
    latent_step: Annotated[
        float, Field(gt=0, validate_default=True, description="latent grid step, s")
    ] = 0.125
    num_latents_per_step: Annotated[int, Field(gt=0)] = 16
    dim_out: Annotated[int, Field(gt=0, description="target dimensions (set from the data)")] = 2
    t_min: Annotated[float, Field(gt=0, description="shortest rotary period, s")] = 1e-4
    t_max: Annotated[
        float, Field(gt=0, validate_default=True, description="longest rotary period, s")
    ] = 2.0627
    emb_init_scale: Annotated[float, Field(gt=0)] = 0.02

    def __repr__(self) -> str:  # only the fields that differ from the defaults
        return config_repr(self)

    def _repr_html_(self) -> str:
        return config_html(self)

    @field_validator("latent_step")
    @classmethod
    def _latents_in_window(cls, value: float, info: ValidationInfo) -> float:
        window = info.data.get("window_length")
        if window is not None and value > window:
            raise ValueError(
                f"must not exceed window_length ({window:g} s): a window needs at least one "
                "step of latents"
            )
        return value

    @field_validator("t_max")
    @classmethod
    def _periods(cls, value: float, info: ValidationInfo) -> float:
        t_min = info.data.get("t_min")
        if t_min is not None and value <= t_min:
            raise ValueError(f"must be greater than t_min ({t_min:g} s)")
        return value

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


class RegressionReadout(nn.Linear):
    """Linear readout to ``dim_out`` z-scored values; loss: weighted mean squared error."""

    kind = "regression"

    def loss(
        self,
        pred: torch.Tensor,  # (B, Q, dim_out)
        values: torch.Tensor,  # (B, Q, dim_out)
        weights: torch.Tensor,  # (B, Q), 0 for padding and masked samples
    ) -> torch.Tensor:
        """Mean over weighted samples of the squared error averaged over outputs."""
        err = ((pred - values) ** 2).mean(dim=-1)
        return (err * weights).sum() / weights.sum().clamp_min(1e-8)


class ClassReadout(nn.Linear):
    """Linear readout to one logit per class; loss: weighted cross-entropy."""

    kind = "class"

    def loss(
        self,
        pred: torch.Tensor,  # (B, Q, n_classes) logits
        values: torch.Tensor,  # (B, Q, 1) class index, as a float
        weights: torch.Tensor,  # (B, Q)
    ) -> torch.Tensor:
        """Mean over weighted samples of the cross-entropy of the true class."""
        target = values[..., 0].round().long().clamp_min(0)
        err = F.cross_entropy(pred.flatten(0, 1), target.flatten(), reduction="none")
        weights = weights.flatten()
        return (err * weights).sum() / weights.sum().clamp_min(1e-8)


#: The readout for each kind of target.
READOUTS: dict[str, type[nn.Linear]] = {"regression": RegressionReadout, "class": ClassReadout}


#: The batch keys :meth:`POYO.forward` reads (what :func:`neurofm.tokenizers.spikes.collate`
#: makes, and what torch_brain's POYO takes too).
INPUT_KEYS = (
    "input_unit_index",
    "input_timestamps",
    "input_token_type",
    "input_mask",
    "latent_index",
    "latent_timestamps",
    "session_index",
    "output_timestamps",
)


class POYO(nn.Module):
    """The POYO model.

    Parameters
    ----------
    config : POYOConfig
        Sizes, dropouts, time geometry (``dim_out``: target dimensions, or classes).
    units, sessions : iterable of str
        Initial vocabularies (unit ids are namespaced ``"<recording id>/<unit id>"``).
    readout : {"regression", "class"}
        What the outputs are: values (linear readout, MSE) or logits over ``dim_out`` classes
        (cross-entropy). Both hold one ``nn.Linear``'s parameters, so checkpoints load either
        way; the training config saved beside the weights says which.
    """

    def __init__(
        self,
        config: POYOConfig,
        units: list[str] | None = None,
        sessions: list[str] | None = None,
        readout: str = "regression",
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
        if readout not in READOUTS:
            raise NeuroFMError(f"readout must be one of {sorted(READOUTS)}, got {readout!r}")
        self.readout = READOUTS[readout](c.dim, c.dim_out)

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
        pairs, which = _distinct(input_unit_index * n_types + input_token_type)
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


def _distinct(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(keys, return_inverse=True)`` for integer keys (a unit's index times the
    token types plus the type: bounded by the vocabulary). On CPU, where the keys are
    non-negative and their range is not much wider than their number, a count per key and a
    running sum say the same ~4x faster than unique's sort (1 ms for POYO 1.3M's batch of ~75k
    spike tokens); otherwise unique itself (on CUDA bincount is not deterministic; over a vast
    vocabulary the counts would cost more than the sort)."""
    if keys.device.type != "cpu" or keys.numel() == 0:
        return torch.unique(keys, return_inverse=True)
    low, high = (int(v) for v in torch.aminmax(keys))
    if low < 0 or high > 8 * keys.numel() + 4096:
        return torch.unique(keys, return_inverse=True)
    present = torch.bincount(keys.flatten(), minlength=high + 1) > 0
    rank = torch.cumsum(present, 0) - 1  # a present key's place among the distinct ones
    return present.nonzero().squeeze(1), torch.take(rank, keys)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
