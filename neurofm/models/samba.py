"""SAMBA: EEG-to-fMRI translation through wavelet attention, graph attention and a recurrent
decoder, with a stimulus classifier on its hidden states (``reference/samba.md`` 1 and 5).

Data flow of one window (shapes in comments below)::

    EEG (B, C, N) --db5 DWT, 3 levels--> band energies on the feature grid (B, C, S, 4)
      --attention over scales--> (B, C, S, d), alpha (B, C, S, 4)
      --GATv2 over the EEG channel graph-->        (B, C, S, d)
      --spatial mapping, channels -> parcels-->     (B, P, S, d)
      --per-parcel learnable double-gamma HRF (causal conv on the grid)-->
      --read out at each volume's grid step-->      (B, P, W, d)
      --GATv2 over the fMRI parcel graph-->         (B, P, W, d)
      --GRU over TRs, autoregressive (teacher forcing in training only)--> BOLD (B, W, P)
                                                    hidden states (B, W, P, h) -> stimulus

Where this departs from the public code, and why:

* The HRF is applied to band-energy features, not to the raw EEG before the wavelet transform:
  a 30 s low-pass kernel on the raw signal removes the oscillations whose power drives BOLD, so
  the wavelet bands after it carry almost nothing. Convolving band power with an HRF is the
  classic EEG-informed fMRI model (``reference/samba.md`` 5.1.2 allows this placement).
* The HRF is per fMRI parcel (hemodynamics are local to the tissue the BOLD is measured in),
  its parameters are registered and train (the public code keeps them in a Python list, so they
  never do), bounded with ``tanh`` around Glover's shape. Free per-parcel parameters replace
  the public code's MLP on a constant input, which is the same function class.
* Attention over scales is the May-2024 design (input-dependent softmax over bands), not the
  Dec-2024 fixed coefficient mask: its weights say which band matters, per channel and time.
* Connectivity graphs are top-k correlation graphs of the training data, so the mask means
  something (the public code's dense correlation mask is full attention).
* The loss is 1 - Pearson r per parcel (mean-centred), not the cosine of uncentred signals.
"""

from __future__ import annotations

import math
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass
from torch import nn

from neurofm.display import config_html, config_repr
from neurofm.errors import InvalidDataError
from neurofm.tokenizers.multimodal import NO_LABEL, WindowGeometry

__all__ = [
    "DoubleGammaHRF",
    "GraphAttention",
    "Samba",
    "SambaConfig",
    "StimulusHead",
    "WaveletAttention",
    "WaveletDecomposition",
    "connectivity_graph",
    "correlation_loss",
]


@dataclass(config=ConfigDict(extra="forbid"))
class SambaConfig:
    """SAMBA's shapes and training losses (``models/samba.yaml``).

    ``n_channels``, ``n_parcels`` and ``classes`` come from the data when a model is built
    for a catalog; the rest is the config file's. Each field is checked when a config is made
    (positive sizes and times, dropout in [0, 1), known names); values that are valid alone
    but not together are :meth:`check`'s.

    Attributes
    ----------
    window_trs : int
        Volumes (TRs) per training window (>= 2).
    history_s : float
        EEG before a window's first volume, s (the HRF needs it; >= ``hrf_length_s``).
    grid_per_tr : int
        Steps of the EEG feature grid per TR.
    eeg_rate : float
        EEG sampling rate after resampling, Hz.
    tr : float
        Repetition time of the BOLD, s.
    n_channels : int
        EEG channels (set from the data).
    n_parcels : int
        BOLD parcels (set from the data).
    classes : list of str
        Stimulus classes of the stimulus head (set from the data; empty: no head).
    wavelet : str
        PyWavelets discrete wavelet of the band decomposition (``db5``).
    levels : int
        Wavelet levels (``levels + 1`` bands).
    dim : int
        Width of the per-band and per-channel features.
    band_feature : {"amplitude", "log_energy"}
        A band's feature: root mean square of its coefficients, or log of their mean square.
    heads : int
        Heads of the graph attention layers.
    graph_k : int
        Neighbours per node of the channel and parcel graphs.
    hidden : int
        Width of the recurrent decoder.
    dropout : float
        Dropout, in [0, 1).
    hrf_length_s : float
        Length of the learnable HRF kernel, s.
    hrf_peak_init : float
        Initial HRF peak time, s.
    hrf_peak_range : float
        How far a parcel's HRF peak may move from ``hrf_peak_init``, s.
    hrf_lr_scale : float
        The HRF parameters learn this many times faster than the rest.
    teacher_forcing : float
        Initial probability of feeding the true BOLD back to the decoder; decays linearly to
        0 at mid-training.
    loss : {"corr", "mse", "corr+mse"}
        Training loss on the parcels: 1 - Pearson r, mean squared error, or both.
    mse_weight : float
        Weight of the MSE term in ``corr+mse``.
    class_weight : float
        Weight of the stimulus head's cross-entropy.
    """

    # window geometry
    window_trs: Annotated[int, Field(ge=2, description="volumes per window")] = 16
    history_s: Annotated[float, Field(ge=0, description="EEG before the first volume, s")] = 24.0
    grid_per_tr: Annotated[int, Field(gt=0, description="feature-grid steps per TR")] = 2
    eeg_rate: Annotated[float, Field(gt=0, description="EEG rate after resampling, Hz")] = 128.0
    tr: Annotated[float, Field(gt=0, description="repetition time, s")] = 2.0
    # sizes
    n_channels: Annotated[int, Field(ge=0)] = 0
    n_parcels: Annotated[int, Field(ge=0)] = 0
    classes: list[str] = field(default_factory=list)
    wavelet: str = "db5"
    levels: Annotated[int, Field(gt=0, description="wavelet levels (levels + 1 bands)")] = 3
    dim: Annotated[int, Field(gt=0)] = 16
    band_feature: Literal["amplitude", "log_energy"] = "amplitude"  # log of mean squared coef
    heads: Annotated[int, Field(gt=0)] = 2
    graph_k: Annotated[int, Field(gt=0, description="neighbours per node of the graphs")] = 6
    hidden: Annotated[int, Field(gt=0)] = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1
    # HRF (seconds)
    hrf_length_s: Annotated[float, Field(gt=0)] = 24.0
    hrf_peak_init: Annotated[float, Field(gt=0)] = 6.0
    hrf_peak_range: Annotated[float, Field(ge=0)] = 3.0
    # the HRF's 5 parameters per parcel learn this much faster
    hrf_lr_scale: Annotated[float, Field(gt=0)] = 3.0
    # training
    # initial probability, decays linearly to 0 at mid-training
    teacher_forcing: Annotated[float, Field(ge=0, le=1)] = 0.5
    loss: Literal["corr", "mse", "corr+mse"] = "corr+mse"
    mse_weight: Annotated[float, Field(ge=0)] = 0.5
    class_weight: Annotated[float, Field(ge=0)] = 0.5  # the stimulus head's cross-entropy

    def __repr__(self) -> str:  # only the fields that differ from the defaults
        return config_repr(self)

    def _repr_html_(self) -> str:
        return config_html(self)

    @field_validator("wavelet")
    @classmethod
    def _known_wavelet(cls, value: str) -> str:
        import pywt

        if value not in pywt.wavelist(kind="discrete"):
            raise ValueError("not a discrete wavelet PyWavelets knows (e.g. db5, sym4, coif3)")
        return value

    @property
    def geometry(self) -> WindowGeometry:
        return WindowGeometry(
            self.window_trs, self.history_s, self.grid_per_tr, self.eeg_rate, self.tr
        )

    def check(self) -> None:
        """Raise :class:`InvalidDataError` on inconsistent values."""
        self.geometry.check()
        if self.band_feature not in ("log_energy", "amplitude"):
            raise InvalidDataError(
                f"band_feature: expected log_energy or amplitude, got {self.band_feature!r}"
            )
        if self.loss not in ("corr", "mse", "corr+mse"):
            raise InvalidDataError(f"loss: expected corr, mse or corr+mse, got {self.loss!r}")
        if self.hrf_length_s > self.history_s + 1e-9:
            raise InvalidDataError(
                f"hrf_length_s ({self.hrf_length_s}) must not exceed history_s "
                f"({self.history_s}): the first volume of a window needs the whole kernel"
            )
        if self.hrf_lr_scale <= 0:
            raise InvalidDataError(f"hrf_lr_scale must be > 0, got {self.hrf_lr_scale}")
        if self.hrf_peak_init - self.hrf_peak_range <= 0:
            raise InvalidDataError("hrf_peak_init - hrf_peak_range must be > 0 s")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SambaConfig:
        """Read ``models/samba.yaml`` (a ``model: samba`` tag is allowed).

        Raises
        ------
        SpecError
            Unknown key or a value of the wrong type, naming the file and the key.
        InvalidDataError
            Values that are each valid but inconsistent together (see :meth:`check`), naming
            the file.
        """
        from neurofm.specs import read_yaml, validate

        values = read_yaml(path) or {}
        if isinstance(values, dict):
            values.pop("model", None)
        config = validate(cls, values, path)
        try:
            config.check()
        except InvalidDataError as exc:
            raise InvalidDataError(f"{path}: {exc}") from None
        return config


# --------------------------------------------------------------------------------------------
# wavelets
# --------------------------------------------------------------------------------------------


class WaveletDecomposition(nn.Module):
    """Multilevel 1-D DWT with PyWavelets' filters as fixed convolutions (gradients flow).

    Equal to ``pywt.wavedec(x, wavelet, mode="zero", level=levels)``, returned from the finest
    detail to the approximation: ``[cD1, cD2, ..., cDJ, cAJ]``. pywt itself is numpy-only, so
    the filter bank is applied here with ``conv1d``.
    """

    def __init__(self, wavelet: str = "db5", levels: int = 3) -> None:
        super().__init__()
        import pywt

        w = pywt.Wavelet(wavelet)
        # conv1d correlates; flipping the filters makes it pywt's convolution.
        self.register_buffer(
            "bank", torch.tensor([w.dec_lo[::-1], w.dec_hi[::-1]], dtype=torch.float64)
        )
        self.levels = levels

    def centres(self, n_bands: int) -> list[tuple[float, float]]:
        """``(scale, shift)`` per band: coefficient ``k`` is centred on input sample
        ``scale * k + shift`` (each level halves the rate and delays by the filter)."""
        taps = self.bank.shape[-1]
        scale, shift, out = 1.0, 0.0, []
        for _ in range(self.levels):
            # level coefficient k comes from previous-level samples around 2k + 1 - (taps-1)/2
            shift, scale = scale * (1 - (taps - 1) / 2) + shift, 2 * scale
            out.append((scale, shift))
        out.append(out[-1])  # the approximation sits where the coarsest detail does
        return out[:n_bands]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # x: (M, N) -> [(M, N1), (M, N2), ..., (M, NJ), (M, NJ)]
        # Strided windows times the 2-filter bank: on CPU this is ~2x faster than conv1d
        # (oneDNN handles single-channel strided convolutions poorly).
        taps = self.bank.shape[-1]
        bank = self.bank.to(x.dtype).t()  # (taps, 2)
        out = []
        a = x
        for _ in range(self.levels):
            padded = F.pad(a, (taps - 1, taps - 1))[..., 1:]  # full convolution, odd samples
            both = padded.unfold(-1, taps, 2) @ bank  # (M, n_out, 2)
            a = both[..., 0]
            out.append(both[..., 1])
        out.append(a)
        return out


class WaveletAttention(nn.Module):
    """Band energies of every channel on the feature grid, mixed by attention over scales.

    Each band's log-energy (per grid step) is standardised, embedded by its own linear map
    (unit-norm, so a band cannot be silenced by shrinking its weights: only the attention can
    do that), scored, and the embeddings are summed with softmax weights ``alpha`` over bands.
    """

    def __init__(self, config: SambaConfig) -> None:
        super().__init__()
        self.dwt = WaveletDecomposition(config.wavelet, config.levels)
        n_bands = config.levels + 1
        self.norm = nn.BatchNorm1d(n_bands, affine=False)
        self.embed = nn.Parameter(torch.randn(n_bands, config.dim))
        self.bias = nn.Parameter(torch.zeros(n_bands, config.dim))
        self.score = nn.Linear(config.dim, 1)
        self.band_bias = nn.Parameter(torch.zeros(n_bands))
        self.samples_per_step = config.geometry.samples_per_step
        self.log_energy = config.band_feature == "log_energy"

    def band_energy(self, eeg: torch.Tensor, n_steps: int | None = None) -> torch.Tensor:
        """Band feature per grid step, (B, C, S, J + 1): log mean squared coefficient (or its
        square root, ``band_feature: amplitude``).

        Step ``m`` covers EEG samples ``[m * spg, (m + 1) * spg)``; each band's energy there
        is the average over the coefficients centred in that span (fractional coefficients
        at the edges weighted by their share), so the grid means the same time in every band.
        Works on a window (``n_steps`` = the window's) or on a whole run at once (the
        training data precomputes runs this way: the DWT has no parameters).
        """
        b, c, n = eeg.shape
        spg = self.samples_per_step
        n_steps = n // spg if n_steps is None else n_steps
        bands = self.dwt(eeg.reshape(b * c, n))
        edges = torch.arange(n_steps + 1, dtype=torch.float64) * spg
        energies = []
        for band, (scale, shift) in zip(bands, self.dwt.centres(len(bands)), strict=True):
            cum = F.pad(band.pow(2).cumsum(dim=-1), (1, 0))  # cum[k] = sum of the first k
            # coefficient k is centred at scale * k + shift: the span's edges in coefficients
            pos = ((edges - shift) / scale + 0.5).clamp(0, band.shape[-1]).to(eeg.dtype)
            lo = pos.floor().long().clamp(max=band.shape[-1] - 1)
            frac = (pos - lo).to(band.dtype)
            at = cum[:, lo] + frac * (cum[:, lo + 1] - cum[:, lo])  # interpolated cumsum
            width = (pos[1:] - pos[:-1]).clamp_min(1e-6).to(band.dtype)
            energies.append((at[:, 1:] - at[:, :-1]) / width)
        e = torch.stack(energies, dim=-1)  # (B*C, S, K)
        e = torch.log(e + 1e-4) if self.log_energy else torch.sqrt(e + 1e-8)
        return e.view(b, c, n_steps, len(bands))

    def forward(self, energy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # energy (B, C, S, K) from band_energy -> features (B, C, S, d), alpha (B, C, S, K)
        b, c, s, k = energy.shape
        e = self.norm(energy.reshape(-1, k)).view(b, c, s, k)
        emb = F.normalize(self.embed, dim=-1)
        h = e.unsqueeze(-1) * emb + self.bias  # (B, C, S, K, d)
        alpha = torch.softmax(self.score(torch.tanh(h)).squeeze(-1) + self.band_bias, dim=-1)
        return (alpha.unsqueeze(-1) * h).sum(dim=-2), alpha


# --------------------------------------------------------------------------------------------
# hemodynamics
# --------------------------------------------------------------------------------------------


class DoubleGammaHRF(nn.Module):
    """One learnable double-gamma HRF per parcel (Glover's form), applied as a causal conv.

    ``h(t) = (t/d1)^(d1/b1) e^(-(t-d1)/b1) - c (t/d2)^(d2/b2) e^(-(t-d2)/b2)``: the response
    peaks at ``d1``, the undershoot at ``d2``. Every parameter is bounded by a ``tanh`` around
    Glover's values: ``d1 = peak_init +- peak_range``, ``b1, b2`` in 0.45-1.35 s,
    ``d2 = d1 + 3..9 s``, ``c`` in 0.175-0.525. The kernel is scaled so its positive lobe sums
    to one (the decoder sets the gain).
    """

    def __init__(
        self, n_parcels: int, dt: float, length_s: float, peak_init: float, peak_range: float
    ) -> None:
        super().__init__()
        self.dt, self.peak_init, self.peak_range = dt, peak_init, peak_range
        self.theta = nn.Parameter(torch.zeros(n_parcels, 5))
        self.register_buffer("t", torch.arange(int(round(length_s / dt))) * dt)

    def parameters_s(self) -> dict[str, torch.Tensor]:
        """The bounded parameters, per parcel (seconds, and the undershoot ratio ``c``)."""
        th = torch.tanh(self.theta)
        d1 = self.peak_init + self.peak_range * th[:, 0]
        return {
            "d1": d1,
            "b1": 0.9 * (1 + 0.5 * th[:, 1]),
            "d2": d1 + 6.0 * (1 + 0.5 * th[:, 2]),
            "b2": 0.9 * (1 + 0.5 * th[:, 3]),
            "c": 0.35 * (1 + 0.5 * th[:, 4]),
        }

    def kernel(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """The HRFs sampled at ``t`` (default the grid): (P, T)."""
        p = self.parameters_s()
        t = (self.t if t is None else t).clamp_min(1e-6)[None, :]

        def lobe(d: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            d, b = d[:, None], b[:, None]
            return torch.exp((d / b) * (torch.log(t) - torch.log(d)) - (t - d) / b)

        peak = lobe(p["d1"], p["b1"])
        k = peak - p["c"][:, None] * lobe(p["d2"], p["b2"])
        return k / peak.sum(dim=1, keepdim=True)

    def peaks(self, resolution: float = 0.01) -> np.ndarray:
        """Time of each parcel's HRF maximum, s (found on a fine grid)."""
        with torch.no_grad():
            t = torch.arange(0.0, float(self.t[-1]) + self.dt, resolution)
            k = self.kernel(t)
            return t[k.argmax(dim=1)].numpy().astype(np.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, P, d, S) -> same, each parcel's features convolved with its HRF (causal)
        b, p, d, s = x.shape
        k = self.kernel().flip(-1)  # conv1d correlates: flip for a causal convolution
        weight = k.repeat_interleave(d, dim=0).unsqueeze(1)  # (P*d, 1, L)
        y = F.conv1d(F.pad(x.reshape(b, p * d, s), (k.shape[-1] - 1, 0)), weight, groups=p * d)
        return y.view(b, p, d, s)


# --------------------------------------------------------------------------------------------
# graphs
# --------------------------------------------------------------------------------------------


def connectivity_graph(series: np.ndarray, k: int) -> torch.Tensor:
    """Top-``k`` functional-connectivity graph of a (T, N) series, as an ``edge_index``.

    Each node keeps its ``k`` neighbours of largest |Pearson r| (self excluded); the graph is
    made symmetric. Self-loops are left to ``GATv2Conv``.

    Returns
    -------
    torch.Tensor
        (2, E) int64, sources in row 0 and targets in row 1.
    """
    x = np.asarray(series, np.float64)
    n = x.shape[1]
    if n < 2:
        raise InvalidDataError(f"connectivity_graph: need at least 2 nodes, got {n}")
    strength = np.abs(np.nan_to_num(np.corrcoef(x, rowvar=False)))
    np.fill_diagonal(strength, -1.0)  # never one's own neighbour
    k = min(k, n - 1)
    nearest = np.argsort(-strength, axis=1, kind="stable")[:, :k]
    adj = np.zeros((n, n), dtype=bool)
    adj[np.repeat(np.arange(n), k), nearest.ravel()] = True
    adj |= adj.T
    src, dst = np.nonzero(adj)
    return torch.from_numpy(np.stack([src, dst]).astype(np.int64))


class GraphAttention(nn.Module):
    """Residual GATv2 (torch-geometric) applied to many copies of one small graph at once."""

    def __init__(
        self, dim: int, heads: int, edge_index: torch.Tensor, n_nodes: int, dropout: float
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GATv2Conv

        self.conv = GATv2Conv(dim, dim, heads=heads, concat=False, dropout=dropout)
        self.register_buffer("edge_index", edge_index.clone())
        self.n_nodes = n_nodes
        self._batched: tuple[int, torch.Tensor] | None = None

    def _edges(self, copies: int) -> torch.Tensor:
        if (
            self._batched is None
            or self._batched[0] != copies
            or self._batched[1].device != self.edge_index.device
        ):
            offsets = torch.arange(copies, device=self.edge_index.device) * self.n_nodes
            edges = (self.edge_index[:, None, :] + offsets[None, :, None]).reshape(2, -1)
            self._batched = (copies, edges)
        return self._batched[1]

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> Any:
        # x (..., N, d): every leading index is one copy of the graph
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        copies = flat.shape[0] // self.n_nodes
        if return_attention:
            out, (edges, att) = self.conv(flat, self._edges(copies), return_attention_weights=True)
            return x + F.gelu(out).view(shape), (edges, att)
        out = self.conv(flat, self._edges(copies))
        # Residual without a LayerNorm: normalising each node's few features would erase the
        # amplitude that carries the band power.
        return x + F.gelu(out).view(shape)


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


def correlation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - Pearson r`` over time (dim 1), averaged over the batch and the other dims."""
    p = pred - pred.mean(dim=1, keepdim=True)
    t = target - target.mean(dim=1, keepdim=True)
    r = (p * t).sum(dim=1) / (p.norm(dim=1) * t.norm(dim=1) + 1e-8)
    return (1 - r).mean()


class StimulusHead(nn.Module):
    """Linear read-out of the stimulus class from every parcel's decoder state, factorised.

    ``logits[k] = sum_p sum_r W[k, p, r] (U h_p)[r] + b[k]``: a linear map of the (P x h)
    states, but of rank ``rank`` per parcel, so it has ``h r + K P r`` weights instead of
    ``K P h``. With a few hundred labelled volumes the full map overfits (held-out accuracy
    ~0.05 lower in our runs).
    """

    def __init__(self, n_parcels: int, hidden: int, n_classes: int, rank: int = 2) -> None:
        super().__init__()
        self.project = nn.Linear(hidden, rank, bias=False)
        self.weight = nn.Parameter(torch.randn(n_classes, n_parcels, rank) / math.sqrt(n_parcels))
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden (B, W, P, h) -> logits (B, W, K)
        return torch.einsum("bwpr,kpr->bwk", self.project(hidden), self.weight) + self.bias


class Samba(nn.Module):
    """SAMBA (see the module docstring for the data flow).

    Parameters
    ----------
    config : SambaConfig
        With ``n_channels``, ``n_parcels`` (and ``classes`` for the stimulus head) set.
    eeg_graph, fmri_graph : torch.Tensor
        ``edge_index`` of the channel and parcel graphs (:func:`connectivity_graph`), stored
        in the model's state (and so in checkpoints).
    """

    def __init__(
        self, config: SambaConfig, eeg_graph: torch.Tensor, fmri_graph: torch.Tensor
    ) -> None:
        super().__init__()
        config.check()
        if config.n_channels < 2 or config.n_parcels < 2:
            raise InvalidDataError(
                f"SambaConfig: n_channels ({config.n_channels}) and n_parcels "
                f"({config.n_parcels}) must be set from the data (>= 2)"
            )
        self.config = config
        g = config.geometry
        d = config.dim
        self.wavelet = WaveletAttention(config)
        self.eeg_gat = GraphAttention(d, config.heads, eeg_graph, config.n_channels, config.dropout)
        self.mapping = nn.Parameter(
            torch.randn(config.n_parcels, config.n_channels) / math.sqrt(config.n_channels)
        )
        self.mapping_bias = nn.Parameter(torch.zeros(config.n_parcels, d))
        self.hrf = DoubleGammaHRF(
            config.n_parcels, g.dt, config.hrf_length_s, config.hrf_peak_init, config.hrf_peak_range
        )
        self.fmri_gat = GraphAttention(
            d, config.heads, fmri_graph, config.n_parcels, config.dropout
        )
        self.gru = nn.GRUCell(d + 1, config.hidden)
        self.readout = nn.Linear(config.hidden, 1)
        # A direct linear path from the hemodynamic features to BOLD; the GRU adds what
        # depends on the sequence (slow drifts, nonlinear recovery) on top.
        self.skip = nn.Linear(d, 1)
        self.parcel_gain = nn.Parameter(torch.ones(config.n_parcels))
        self.parcel_bias = nn.Parameter(torch.zeros(config.n_parcels))
        self.dropout = nn.Dropout(config.dropout)
        n_classes = len(config.classes)
        self.classifier = (
            StimulusHead(config.n_parcels, config.hidden, n_classes) if n_classes else None
        )
        self.register_buffer("readout_steps", torch.from_numpy(g.readout_steps.astype(np.int64)))

    def band_energy(self, eeg: torch.Tensor) -> torch.Tensor:
        """Wavelet band energies of EEG windows (B, C, N) on the grid: (B, C, S, J + 1)."""
        return self.wavelet.band_energy(eeg, self.config.geometry.n_steps)

    def encode(self, energy: torch.Tensor) -> dict[str, torch.Tensor]:
        """Band energies (B, C, S, K) -> parcel features at the volumes (B, W, P, d)."""
        u, alpha = self.wavelet(energy)  # (B, C, S, d), (B, C, S, K)
        u = self.eeg_gat(u.transpose(1, 2)).transpose(1, 2)  # graph over channels, per step
        v = torch.einsum("bcsd,pc->bpds", self.dropout(u), self.mapping)
        v = v + self.mapping_bias[None, :, :, None]  # (B, P, d, S)
        v = self.hrf(v)[..., self.readout_steps]  # (B, P, d, W)
        z = self.fmri_gat(v.permute(0, 3, 1, 2))  # (B, W, P, d), graph over parcels, per TR
        return {"features": z, "alpha": alpha}

    def forward(
        self,
        eeg: torch.Tensor | None = None,
        *,
        energy: torch.Tensor | None = None,
        bold: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Translate EEG windows to BOLD.

        Parameters
        ----------
        eeg : torch.Tensor, optional
            (B, C, N) z-scored EEG of the windows (gradients flow back to it).
        energy : torch.Tensor, optional
            (B, C, S, J + 1) their band energies instead (:meth:`band_energy`, or computed
            once per run by the training data).
        bold : torch.Tensor, optional
            (B, W, P) z-scored BOLD: fed back as the previous volume with probability
            ``teacher_forcing`` (training only; at evaluation the model's own prediction is).

        Returns
        -------
        dict
            ``bold`` (B, W, P) predicted z-scored BOLD, ``hidden`` (B, W, P, h) decoder states,
            ``alpha`` (B, C, S, J + 1) attention over wavelet scales, ``logits`` (B, W, K)
            stimulus classes (when the config has classes).
        """
        if (eeg is None) == (energy is None):
            raise ValueError("give exactly one of eeg or energy")
        if energy is None:
            energy = self.band_energy(eeg)
        enc = self.encode(energy)
        z = enc["features"]
        b, w, p, d = z.shape
        h = z.new_zeros(b * p, self.config.hidden)
        prev = z.new_zeros(b * p, 1)
        preds, hiddens = [], []
        for k in range(w):
            h = self.gru(torch.cat([z[:, k].reshape(b * p, d), prev], dim=1), h)
            y = (self.readout(h) + self.skip(z[:, k].reshape(b * p, d))).view(b, p)
            y = y * self.parcel_gain + self.parcel_bias
            preds.append(y)
            hiddens.append(h.view(b, p, -1))
            prev = y.reshape(b * p, 1)
            if bold is not None and teacher_forcing > 0:
                use = torch.rand(b * p, 1, device=z.device) < teacher_forcing
                prev = torch.where(use, bold[:, k].reshape(b * p, 1), prev)
        out = {
            "bold": torch.stack(preds, dim=1),
            "hidden": torch.stack(hiddens, dim=1),
            "alpha": enc["alpha"],
        }
        if self.classifier is not None:
            out["logits"] = self.classifier(self.dropout(out["hidden"]))
        return out

    def parameter_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: the HRF's few, bounded parameters get ``hrf_lr_scale`` x ``lr``
        and no weight decay (decay would pull them to the initial shape, not to zero)."""
        hrf = [p for n, p in self.named_parameters() if n.startswith("hrf.")]
        rest = [p for n, p in self.named_parameters() if not n.startswith("hrf.")]
        return [
            {"params": rest, "lr": lr, "weight_decay": weight_decay},
            {"params": hrf, "lr": lr * self.config.hrf_lr_scale, "weight_decay": 0.0},
        ]

    def loss(
        self, out: dict[str, torch.Tensor], bold: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Training loss and its parts: correlation, MSE and stimulus cross-entropy."""
        c = self.config
        parts: dict[str, torch.Tensor] = {}
        total = bold.new_zeros(())
        if "corr" in c.loss:
            parts["corr"] = correlation_loss(out["bold"], bold)
            total = total + parts["corr"]
        if "mse" in c.loss:
            parts["mse"] = F.mse_loss(out["bold"], bold)
            total = total + (c.mse_weight if c.loss != "mse" else 1.0) * parts["mse"]
        if "logits" in out and labels is not None and c.class_weight > 0:
            mask = labels != NO_LABEL
            if mask.any():
                parts["ce"] = F.cross_entropy(out["logits"][mask], labels[mask])
                total = total + c.class_weight * parts["ce"]
        parts["loss"] = total
        return parts
