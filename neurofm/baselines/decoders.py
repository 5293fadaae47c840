"""Baselines for behaviour decoding from spikes: a Wiener filter and a GRU, per session.

Both are trained on the target samples inside each recording's ``train_domain``, tuned on
``valid_domain`` and scored exactly like POYO: on
:func:`~neurofm.data.targets.evaluation_targets` of a split, with
:func:`~neurofm.metrics.r2_score`. Every result table so has a floor.

* :class:`WienerFilter`: ridge regression from lagged spike counts (10 bins of 20 ms before
  each target sample, see :class:`~neurofm.baselines.features.Binning`) to the target. Features and
  target are z-scored on the training samples; the ridge penalty is picked from a grid by valid
  R^2. The fit streams the training samples chunk by chunk into ``X^T X`` and ``X^T y``, so
  memory depends on the number of features, not on the session's length.
* :class:`GRUDecoder`: a GRU over the session's spike counts on a fixed 20 ms grid (square-root
  transformed and z-scored per unit), with a linear readout; trained with Adam and MSE on
  z-scored targets over random windows of the train domain, early-stopped on valid R^2. A target
  sample at time ``t`` is read out from the GRU's output after the last bin ending at or before
  ``t + offset`` (a causal read-out that is at most one bin stale).

Both fit **one model per recording** (units differ between sessions); both take a
:class:`~neurofm.baselines.features.Binning`.

Examples
--------
>>> cat = Catalog("catalog")
>>> recs = [cat.open(i) for i in cat.ids]
>>> wf = WienerFilter().fit(recs, "hand_vel")
>>> wf.evaluate(recs, split="test")            # {recording id: R^2}
"""

from __future__ import annotations

import copy
import logging
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg  # at import time, so thread limits (threadpoolctl) also reach its BLAS
import torch
from torch import nn

from neurofm.baselines.features import Binning, recording_bins, recording_lagged_counts, spikes_of
from neurofm.data.recording import Recording
from neurofm.data.targets import EvalTargets, evaluation_targets
from neurofm.errors import InvalidDataError
from neurofm.metrics import r2_score

__all__ = ["GRUDecoder", "WienerFilter"]

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-1, 7))  # 0.1 ... 1e6


# --------------------------------------------------------------------------------------------
# shared: checks, targets, evaluation
# --------------------------------------------------------------------------------------------


def _require(rec: Recording, names: Sequence[str]) -> None:
    for name in names:
        if name not in rec:
            raise InvalidDataError(
                f"recording {rec.id!r} has no signal {name!r} (has {sorted(rec.signals)}); "
                "the baselines need the spikes, the target and the train/valid domains "
                "(ingest with a dataset card that defines the splits)"
            )


def _finite(ev: EvalTargets) -> EvalTargets:
    ok = np.isfinite(ev.values).all(axis=1)
    return ev if ok.all() else EvalTargets(ev.recording_id, ev.timestamps[ok], ev.values[ok])


def _train_targets(rec: Recording, target: str) -> EvalTargets:
    ev = _finite(evaluation_targets(rec, target, "train"))
    if len(ev.timestamps) < 2:
        raise InvalidDataError(
            f"recording {rec.id!r}: fewer than 2 samples of {target!r} inside 'train_domain'"
        )
    return ev


def _valid_targets(rec: Recording, target: str) -> EvalTargets | None:
    if "valid_domain" not in rec:
        return None
    ev = _finite(evaluation_targets(rec, target, "valid"))
    return ev if len(ev.timestamps) >= 2 else None


def _as_times(timestamps: Any, rec: Recording) -> np.ndarray:
    t = np.asarray(timestamps, dtype=np.float64)
    if t.ndim != 1 or not np.isfinite(t).all():
        raise InvalidDataError(
            f"recording {rec.id!r}: timestamps must be a 1-D array of finite times in seconds"
        )
    return t


def _ridge_solve(gram: np.ndarray, rhs: np.ndarray, alpha: float) -> np.ndarray:
    """``(gram + alpha I)^-1 rhs`` by Cholesky (least squares if singular, e.g. alpha 0)."""
    a = gram + alpha * np.eye(len(gram))
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a), rhs)
    except np.linalg.LinAlgError:
        return scipy.linalg.lstsq(a, rhs)[0]


class _PerSessionDecoder:
    """What both baselines share: per-recording models, ``evaluate`` and its checks."""

    name = "decoder"

    def __init__(self, binning: Binning, spikes: str) -> None:
        self.binning = binning
        self.spikes = spikes
        self.target: str | None = None
        self.sessions: dict[str, Any] = {}

    def fit(self, recordings: Sequence[Recording], target: str) -> _PerSessionDecoder:
        """Fit one model per recording on the samples of ``target`` in its ``train_domain``."""
        recordings = list(recordings)
        if not recordings:
            raise InvalidDataError(f"{self.name}.fit: no recordings given")
        for rec in recordings:  # check them all before spending time on any
            _require(rec, [self.spikes, target, "train_domain", *self._needs()])
            spikes_of(rec, self.spikes)
        self.target = target
        self.sessions = {}
        for rec in recordings:
            self.sessions[rec.id] = self._fit_one(rec, target)
        return self

    def _needs(self) -> list[str]:
        """Signals besides the spikes, the target and ``train_domain`` that fit requires."""
        return []

    def _fit_one(self, rec: Recording, target: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _session(self, rec: Recording) -> Any:
        if rec.id not in self.sessions:
            raise InvalidDataError(
                f"{self.name}: recording {rec.id!r} was not fitted (fitted: "
                f"{sorted(self.sessions)}); baselines are trained per session"
            )
        session = self.sessions[rec.id]
        n_units = len(spikes_of(rec, self.spikes).units)
        if n_units != session.n_units:
            raise InvalidDataError(
                f"{self.name}: recording {rec.id!r} has {n_units} units in {self.spikes!r}, "
                f"the model was fitted on {session.n_units}"
            )
        return session

    def predict(self, rec: Recording, timestamps: Any) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def predictions(
        self, rec: Recording, target: str | None = None, split: str = "test"
    ) -> tuple[EvalTargets, np.ndarray]:
        """The scored points of ``split`` and the predictions there, shape ``(T, D)``."""
        target = target or self.target
        if target is None:
            raise InvalidDataError(f"{self.name}: call fit before predictions/evaluate")
        ev = evaluation_targets(rec, target, split)
        return ev, self.predict(rec, ev.timestamps)

    def evaluate(
        self,
        recordings: Sequence[Recording],
        target: str | None = None,
        split: str = "test",
    ) -> dict[str, float]:
        """R^2 per recording on ``evaluation_targets(rec, target, split)`` (as POYO is scored)."""
        out = {}
        for rec in recordings:
            ev, pred = self.predictions(rec, target, split)
            out[rec.id] = r2_score(ev.values, pred)
        return out


# --------------------------------------------------------------------------------------------
# Wiener filter
# --------------------------------------------------------------------------------------------


@dataclass
class _WienerSession:
    n_units: int
    x_mean: np.ndarray  # (F,)
    x_scale: np.ndarray  # (F,)
    weights: np.ndarray  # (F, D), z-scored features -> z-scored target
    y_mean: np.ndarray  # (D,)
    y_std: np.ndarray  # (D,)
    alpha: float
    valid_r2: float | None
    n_train: int


class WienerFilter(_PerSessionDecoder):
    """Ridge regression from lagged binned spikes to the target, one per recording.

    Parameters
    ----------
    binning : Binning
        Bins and lags (default 10 bins of 20 ms of causal history, raw counts).
    alphas : sequence of float
        Ridge penalties tried (scikit-learn's convention: ``||y - Xw||^2 + alpha ||w||^2`` on
        z-scored features and target); the one with the best valid R^2 is kept. With a single
        value no ``valid_domain`` is needed.
    spikes : str
        Name of the spikes signal.
    chunk : int
        Target samples per feature chunk (memory: ``chunk * n_lags * n_units`` floats).

    Attributes
    ----------
    sessions : dict of str to _WienerSession
        Per recording: feature and target scaling, weights, chosen ``alpha``, ``valid_r2``.
    """

    name = "WienerFilter"

    def __init__(
        self,
        binning: Binning | None = None,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        spikes: str = "spikes",
        chunk: int = 2048,
    ) -> None:
        super().__init__(binning or Binning(), spikes)
        self.alphas = tuple(float(a) for a in alphas)
        if not self.alphas or min(self.alphas) < 0:
            raise InvalidDataError(f"WienerFilter.alphas: need values >= 0, got {alphas}")
        self.chunk = int(chunk)

    def _needs(self) -> list[str]:
        return ["valid_domain"] if len(self.alphas) > 1 else []

    def _features(self, rec: Recording, times: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        for lo in range(0, len(times), self.chunk):
            sl = slice(lo, lo + self.chunk)
            yield sl, recording_lagged_counts(rec, times[sl], self.binning, self.spikes)

    def _fit_one(self, rec: Recording, target: str) -> _WienerSession:
        train = _train_targets(rec, target)
        n_units = len(spikes_of(rec, self.spikes).units)
        n_feat = self.binning.n_lags * n_units
        y = train.values.astype(np.float64)
        # Sufficient statistics, chunk by chunk, around a reference point (the first chunk's
        # mean) so that centring afterwards does not cancel digits. Products are float32
        # within a chunk (exact for integer counts) and summed in float64 across chunks.
        n = len(y)
        ref = None
        sx = np.zeros(n_feat)
        gram = np.zeros((n_feat, n_feat))
        xty = np.zeros((n_feat, y.shape[1]))
        for sl, x in self._features(rec, train.timestamps):
            if ref is None:
                ref = x.mean(axis=0, dtype=np.float64).astype(np.float32)
            x -= ref
            sx += x.sum(axis=0, dtype=np.float64)
            gram += x.T @ x
            xty += x.T.astype(np.float64) @ y[sl]
        x_mean = ref + sx / n
        d = sx / n  # mean of the shifted features
        y_mean, y_std = y.mean(axis=0), y.std(axis=0)
        y_std = np.where(y_std > 0, y_std, 1.0)
        cov = gram - n * np.outer(d, d)  # centred X^T X
        xty_c = xty - n * np.outer(d, y_mean)  # centred X^T y (y uncentred: sum x_c = 0)
        x_scale = np.sqrt(np.clip(np.diag(cov) / n, 0.0, None))
        x_scale = np.where(x_scale > 1e-6, x_scale, 1.0)  # silent features stay 0
        cz = cov / np.outer(x_scale, x_scale)
        bz = xty_c / x_scale[:, None] / y_std[None, :]
        # (F, A, D): weights of every alpha, on z-scored features and target.
        w_all = np.stack([_ridge_solve(cz, bz, a) for a in self.alphas], axis=1)
        alphas = np.asarray(self.alphas)
        alpha = self.alphas[0]
        session = _WienerSession(
            n_units, x_mean, x_scale, w_all[:, 0], y_mean, y_std, alpha, None, n
        )
        valid = _valid_targets(rec, target)
        if len(self.alphas) > 1:
            if valid is None:
                raise InvalidDataError(
                    f"recording {rec.id!r}: fewer than 2 samples of {target!r} inside "
                    "'valid_domain', so the ridge penalty cannot be chosen (pass one alpha)"
                )
            # Valid predictions for all alphas at once.
            n_out = y.shape[1]
            pred = np.empty((len(valid.timestamps), len(alphas), n_out))
            flat = w_all.reshape(n_feat, -1)
            for sl, x in self._features(rec, valid.timestamps):
                z = (x - x_mean) / x_scale
                pred[sl] = (z @ flat).reshape(-1, len(alphas), n_out)
            pred = pred * y_std + y_mean
            scores = [r2_score(valid.values, pred[:, i]) for i in range(len(alphas))]
            best = int(np.argmax(scores))
            session.alpha, session.valid_r2 = self.alphas[best], float(scores[best])
            session.weights = w_all[:, best]
            log.info(
                "WienerFilter %s: alpha=%g, valid R2=%.3f (grid %s)",
                rec.id,
                session.alpha,
                session.valid_r2,
                ", ".join(f"{a:g}:{s:.3f}" for a, s in zip(self.alphas, scores, strict=True)),
            )
        elif valid is not None:
            session.valid_r2 = r2_score(valid.values, self._predict(rec, session, valid.timestamps))
        return session

    def _predict(self, rec: Recording, s: _WienerSession, times: np.ndarray) -> np.ndarray:
        out = np.empty((len(times), s.weights.shape[1]))
        for sl, x in self._features(rec, times):
            out[sl] = ((x - s.x_mean) / s.x_scale) @ s.weights * s.y_std + s.y_mean
        return out

    def predict(self, rec: Recording, timestamps: Any) -> np.ndarray:
        """Predicted target at ``timestamps`` (seconds) of a fitted recording, shape (T, D)."""
        session = self._session(rec)
        return self._predict(rec, session, _as_times(timestamps, rec))


# --------------------------------------------------------------------------------------------
# GRU
# --------------------------------------------------------------------------------------------


class _GRUNet(nn.Module):
    """Binned counts ``(B, S, U)`` -> GRU -> linear readout ``(B, S, D)``."""

    def __init__(
        self, n_units: int, n_outputs: int, hidden: int, num_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(n_units, hidden, num_layers, batch_first=True)
        self.readout = nn.Linear(hidden, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.dropout(x))  # (B, S, H)
        return self.readout(h)  # (B, S, D)


@dataclass
class _GRUSession:
    n_units: int
    model: _GRUNet
    x_mean: np.ndarray  # (U,)
    x_std: np.ndarray  # (U,)
    y_mean: np.ndarray  # (D,)
    y_std: np.ndarray  # (D,)
    valid_r2: float | None
    best_step: int
    steps: int


class GRUDecoder(_PerSessionDecoder):
    """A GRU on binned spike counts, one per recording.

    The session's spikes are binned on the grid ``[k * bin_size, (k + 1) * bin_size)`` from
    time 0, square-root transformed and z-scored per unit (statistics of the train domain). A
    target sample at ``t`` is read out after bin ``floor((t + offset) / bin_size) - 1``, the last
    bin ending at or before ``t + offset`` (bin 0 for the first bin's samples); training and
    prediction use the same read-out, on the true target samples (no interpolation).

    Training draws windows of ``seq_len`` seconds around random training samples; the first
    ``warmup`` seconds of a window only build up the GRU's state, the loss (MSE on the z-scored
    target) covers the train-domain samples read out in the rest. Spikes outside the train
    domain may enter a window as input; targets never do. Prediction runs the GRU over each run
    of requested times, starting ``warmup`` seconds before its first read-out bin (runs closer
    than ``warmup`` are merged), so every prediction has at least that much history.

    Parameters
    ----------
    binning : Binning
        ``bin_size``, ``offset`` and ``sqrt`` are used (default 20 ms, offset 0, sqrt on);
        ``n_lags`` is not: the GRU's memory replaces it.
    hidden, num_layers : int
        GRU width and depth.
    dropout : float
        Dropout on the input counts (units), during training.
    seq_len, warmup : float
        Training window and burn-in, in seconds.
    batch_size, steps, lr, weight_decay : int, int, float, float
        Adam with this learning rate and (L2) weight decay, ``steps`` updates of
        ``batch_size`` windows at most.
    eval_every, patience : int
        Valid R^2 is measured every ``eval_every`` steps; training stops after ``patience``
        evaluations without improvement and the best model is kept. Without a usable
        ``valid_domain`` the last model is kept.
    seed : int
        Seed of initialisation and window draws (per recording, mixed with its id), so a fit is
        deterministic on a given machine and thread count.
    progress : bool
        tqdm bar over the steps of every recording.
    device : str
        Torch device.
    spikes : str
        Name of the spikes signal.
    """

    name = "GRUDecoder"

    def __init__(
        self,
        binning: Binning | None = None,
        hidden: int = 64,
        num_layers: int = 1,
        dropout: float = 0.1,
        seq_len: float = 1.0,
        warmup: float = 0.3,
        batch_size: int = 32,
        steps: int = 300,
        lr: float = 3e-3,
        weight_decay: float = 1e-5,
        eval_every: int = 25,
        patience: int = 4,
        seed: int = 0,
        progress: bool = True,
        device: str = "cpu",
        spikes: str = "spikes",
    ) -> None:
        super().__init__(binning or Binning(sqrt=True), spikes)
        b = self.binning.bin_size
        self.seq_bins = max(int(round(seq_len / b)), 2)
        self.warm_bins = min(max(int(round(warmup / b)), 0), self.seq_bins - 1)
        self.hidden, self.num_layers, self.dropout = hidden, num_layers, dropout
        self.batch_size, self.steps = batch_size, steps
        self.lr, self.weight_decay = lr, weight_decay
        self.eval_every, self.patience = max(int(eval_every), 1), int(patience)
        self.seed, self.progress, self.device = seed, progress, torch.device(device)

    # ---- binning --------------------------------------------------------------------------

    def _readout_bins(self, times: np.ndarray) -> np.ndarray:
        k = np.floor((times + self.binning.offset) / self.binning.bin_size).astype(np.int64) - 1
        return np.maximum(k, 0)

    # ---- prediction -----------------------------------------------------------------------

    def _run(self, rec: Recording, s: _GRUSession, times: np.ndarray) -> np.ndarray:
        """Predictions at ``times`` (z-scored target units), shape ``(T, D)``."""
        out = np.empty((len(times), len(s.y_mean)), dtype=np.float32)
        if len(times) == 0:
            return out
        order = np.argsort(times, kind="stable")
        k = self._readout_bins(times[order])
        cut = np.flatnonzero(np.diff(k) > self.warm_bins) + 1
        runs = np.split(np.arange(len(k)), cut)
        starts = [max(int(k[r[0]]) - self.warm_bins, 0) for r in runs]
        stops = [int(k[r[-1]]) + 1 for r in runs]
        length = max(b - a for a, b in zip(starts, stops, strict=True))
        x = np.zeros((len(runs), length, s.n_units), dtype=np.float32)
        for i, (a, b) in enumerate(zip(starts, stops, strict=True)):
            # Right padding never reaches earlier outputs of a causal GRU.
            counts = recording_bins(rec, self.binning, a, b, self.spikes)
            x[i, : b - a] = (counts - s.x_mean) / s.x_std
        s.model.eval()
        with torch.no_grad():
            y = s.model(torch.from_numpy(x).to(self.device)).cpu().numpy()
        for i, r in enumerate(runs):
            out[order[r]] = y[i, k[r] - starts[i]]
        return out

    def predict(self, rec: Recording, timestamps: Any) -> np.ndarray:
        """Predicted target at ``timestamps`` (seconds) of a fitted recording, shape (T, D)."""
        session = self._session(rec)
        z = self._run(rec, session, _as_times(timestamps, rec))
        return z.astype(np.float64) * session.y_std + session.y_mean

    # ---- training -------------------------------------------------------------------------

    def _fit_one(self, rec: Recording, target: str) -> _GRUSession:
        from tqdm.auto import tqdm

        train = _train_targets(rec, target)
        valid = _valid_targets(rec, target)
        if valid is None:
            log.warning("GRUDecoder %s: no valid samples, no early stopping", rec.id)
        n_units = len(spikes_of(rec, self.spikes).units)
        k_train = self._readout_bins(train.timestamps)  # non-decreasing: times are sorted
        n_bins = int(k_train.max()) + 1 + self.seq_bins
        bins = recording_bins(rec, self.binning, 0, n_bins, self.spikes)
        # Input statistics over the bins the training samples are read out from.
        used = bins[np.unique(k_train)]
        x_mean = used.mean(axis=0)
        x_std = np.where(used.std(axis=0) > 1e-6, used.std(axis=0), 1.0).astype(np.float32)
        xz = torch.from_numpy((bins - x_mean) / x_std)
        y_mean, y_std = train.values.mean(axis=0), train.values.std(axis=0)
        y_std = np.where(y_std > 0, y_std, 1.0)
        yz = torch.from_numpy(((train.values - y_mean) / y_std).astype(np.float32))

        key = zlib.crc32(rec.id.encode())
        rng = np.random.default_rng([self.seed, key])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + key)
            model = _GRUNet(n_units, yz.shape[1], self.hidden, self.num_layers, self.dropout)
            model.to(self.device)
            # Dropout masks drawn in training come from this generator too.
            session = _GRUSession(n_units, model, x_mean, x_std, y_mean, y_std, None, 0, 0)
            self._train(rec, session, xz, yz, k_train, valid, rng, tqdm)
        return session

    def _batch(
        self, xz: torch.Tensor, yz: torch.Tensor, k_train: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        S, W = self.seq_bins, self.warm_bins
        n_bins = xz.shape[0]
        anchors = k_train[rng.integers(0, len(k_train), self.batch_size)]
        k0 = anchors - W - rng.integers(0, S - W, self.batch_size)
        k0 = np.clip(k0, 0, max(n_bins - S, 0))
        x = xz[torch.from_numpy(k0[:, None] + np.arange(S))]  # (B, S, U)
        rows, cols, idx = [], [], []
        for i, a in enumerate(k0):  # a loop over windows, not spikes
            lo, hi = np.searchsorted(k_train, [a + (W if a > 0 else 0), a + S])
            rows.append(np.full(hi - lo, i))
            cols.append(k_train[lo:hi] - a)
            idx.append(np.arange(lo, hi))
        row = torch.from_numpy(np.concatenate(rows))
        col = torch.from_numpy(np.concatenate(cols))
        return x, row, col, yz[torch.from_numpy(np.concatenate(idx))]

    def _train(
        self,
        rec: Recording,
        s: _GRUSession,
        xz: torch.Tensor,
        yz: torch.Tensor,
        k_train: np.ndarray,
        valid: EvalTargets | None,
        rng: np.random.Generator,
        tqdm: Any,
    ) -> None:
        model, dev = s.model, self.device
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best_r2, best_state, stale = -math.inf, None, 0
        bar = tqdm(
            total=self.steps,
            desc=f"GRU {rec.id}",
            unit="step",
            leave=False,
            disable=not self.progress,
        )
        try:
            for step in range(1, self.steps + 1):
                model.train()
                x, row, col, y = self._batch(xz, yz, k_train, rng)
                out = model(x.to(dev))
                loss = torch.mean((out[row.to(dev), col.to(dev)] - y.to(dev)) ** 2)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                s.steps = step
                bar.update(1)
                if valid is None or (step % self.eval_every and step != self.steps):
                    continue
                pred = self._run(rec, s, valid.timestamps) * s.y_std + s.y_mean
                r2 = r2_score(valid.values, pred)
                bar.set_postfix(loss=f"{loss.item():.3f}", valid_r2=f"{r2:.3f}")
                if r2 > best_r2:
                    best_r2, stale, s.best_step = r2, 0, step
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
        finally:
            bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
            s.valid_r2 = float(best_r2)
        log.info(
            "GRUDecoder %s: %d steps, best valid R2=%s at step %d",
            rec.id,
            s.steps,
            "n/a" if s.valid_r2 is None else f"{s.valid_r2:.3f}",
            s.best_step,
        )
