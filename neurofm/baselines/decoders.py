"""Baselines for behaviour decoding from spikes: a Wiener filter and a GRU, per session.

Both are trained on the target samples inside each recording's ``train_domain``, tuned on its
``valid_domain`` and scored exactly like POYO: on
:func:`~neurofm.data.targets.evaluation_targets` of a split, with
:func:`~neurofm.metrics.r2_score`. Every result table so has a floor, and a fair one: each
baseline gets a small search over its few hyperparameters, chosen per session by valid R^2,
and says what it chose (:meth:`WienerFilter.tuning`, :meth:`GRUDecoder.tuning`).

* :class:`WienerFilter`: ridge regression from lagged spike counts (20 ms bins, see
  :class:`~neurofm.baselines.features.Binning`) to the target. Features and target are z-scored
  on the training samples; the **ridge penalty** (8 values, 0.1 to 1e6) and the **history
  length** (5, 10 or 15 bins: 0.1, 0.2 or 0.3 s) are picked together by valid R^2. The fit
  streams the training samples chunk by chunk into ``X^T X`` and ``X^T y`` of the longest
  history once; a shorter history's statistics are a block of those (features are lag-major),
  so the search costs one pass over the data. Memory depends on the number of features, not on
  the session's length.
* :class:`GRUDecoder`: a GRU over the session's spike counts on a fixed 20 ms grid (square-root
  transformed and z-scored per unit), with a linear readout; trained with Adam and MSE on
  z-scored targets over random windows of the train domain. **Early stopping** on valid R^2
  (measured every ``eval_every`` steps; the learning rate halves after ``lr_patience``
  evaluations without improvement, training stops after ``patience``, the best weights are
  kept). The **search** (successive halving): each (hidden size, learning rate) candidate
  trains ``search_steps`` steps, and the one with the best valid R^2 goes on training, up to
  ``max_steps`` in all. A target sample at time ``t`` is read out from the GRU's output after
  the last bin ending at or before ``t + offset`` (a causal read-out that is at most one bin
  stale).

Both fit **one model per recording** (units differ between sessions); both take a
:class:`~neurofm.baselines.features.Binning`.

Examples
--------
>>> cat = Catalog("catalog")
>>> recs = [cat.open(i) for i in cat.ids]
>>> wf = WienerFilter().fit(recs, "hand_vel")
>>> wf.evaluate(recs, split="test")            # {recording id: R^2}
>>> wf.tuning(recs[0].id)                     # {'alpha': 10000.0, 'history_s': 0.2, ...}
>>> gru = GRUDecoder(max_steps=600).fit(recs, "hand_vel")
>>> gru.describe(recs[0].id)  # 'hidden 128, lr 3e-3, best at step 500 of 700, early-stopped'
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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
from neurofm.progress import progress_bar
from neurofm.threads import ThreadPolicy

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_GRU_CANDIDATES",
    "DEFAULT_LAGS",
    "GRUDecoder",
    "WienerFilter",
    "format_lr",
]

log = logging.getLogger(__name__)

#: Ridge penalties the Wiener filter tries (z-scored features and target).
DEFAULT_ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-1, 7))  # 0.1 ... 1e6
#: Histories the Wiener filter tries, in bins (of 20 ms by default: 0.1, 0.2, 0.3 s).
DEFAULT_LAGS = (5, 10, 15)
#: (hidden size, learning rate) candidates of the GRU's search.
DEFAULT_GRU_CANDIDATES = ((64, 3e-3), (128, 3e-3))


def format_lr(lr: float) -> str:
    """A learning rate as people write it: ``3e-3``, ``1e-2``, ``0.5``."""
    if lr >= 0.1:
        return f"{lr:g}"
    mantissa, exp = f"{lr:.0e}".split("e")
    if float(f"{mantissa}e{exp}") != lr:  # not one significant digit: 2.5e-3
        mantissa, exp = f"{lr:.1e}".split("e")
    return f"{mantissa}e{int(exp)}"


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
        self._threads: ThreadPolicy | None = None

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
        # a fair share of the cores on a shared machine, looked at again while the GRU trains
        self._threads = ThreadPolicy()
        self._threads.start()
        try:
            for rec in recordings:
                self.sessions[rec.id] = self._fit_one(rec, target)
        finally:
            self._threads.stop()
            self._threads = None
        return self

    def _needs(self) -> list[str]:
        """Signals besides the spikes, the target and ``train_domain`` that fit requires."""
        return []

    def _fit_one(self, rec: Recording, target: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fitted(self, recording_id: str) -> Any:
        if recording_id not in self.sessions:
            raise InvalidDataError(
                f"{self.name}: recording {recording_id!r} was not fitted (fitted: "
                f"{sorted(self.sessions)}); baselines are trained per session"
            )
        return self.sessions[recording_id]

    def _session(self, rec: Recording) -> Any:
        session = self._fitted(rec.id)
        n_units = len(spikes_of(rec, self.spikes).units)
        if n_units != session.n_units:
            raise InvalidDataError(
                f"{self.name}: recording {rec.id!r} has {n_units} units in {self.spikes!r}, "
                f"the model was fitted on {session.n_units}"
            )
        return session

    def predict(self, rec: Recording, timestamps: Any) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def tuning(self, recording_id: str) -> dict[str, Any]:  # pragma: no cover - abstract
        """What the hyperparameter search chose for a fitted recording (JSON values)."""
        raise NotImplementedError

    def describe(self, recording_id: str) -> str:  # pragma: no cover - abstract
        """The choice for a fitted recording, in a few words."""
        raise NotImplementedError

    def search_description(self) -> str:  # pragma: no cover - abstract
        """The search, in one line."""
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
    n_lags: int  # history chosen, in bins
    x_mean: np.ndarray  # (F,) with F = n_lags * n_units
    x_scale: np.ndarray  # (F,)
    weights: np.ndarray  # (F, D), z-scored features -> z-scored target
    y_mean: np.ndarray  # (D,)
    y_std: np.ndarray  # (D,)
    alpha: float
    valid_r2: float | None
    n_train: int
    grid: dict[str, float] = field(default_factory=dict)  # "lags/alpha" -> valid R^2


class WienerFilter(_PerSessionDecoder):
    """Ridge regression from lagged binned spikes to the target, one per recording.

    Parameters
    ----------
    binning : Binning
        Bin width, offset and transform (default 20 ms bins, causal, raw counts). Its
        ``n_lags`` is the history when ``lags`` is None.
    alphas : sequence of float
        Ridge penalties tried (scikit-learn's convention: ``||y - Xw||^2 + alpha ||w||^2`` on
        z-scored features and target).
    lags : sequence of int, optional
        Histories tried, in bins (default 5, 10, 15: 0.1, 0.2, 0.3 s of 20 ms bins). Every
        (history, alpha) pair is scored on the valid samples and the best is kept (ties go to
        the shorter history and the smaller penalty). With a single pair no ``valid_domain``
        is needed.
    spikes : str
        Name of the spikes signal.
    chunk : int
        Target samples per feature chunk (memory: ``chunk * max(lags) * n_units`` floats).

    Attributes
    ----------
    sessions : dict of str to _WienerSession
        Per recording: chosen history and ``alpha``, scaling, weights, ``valid_r2`` and the
        valid R^2 of every pair tried.
    """

    name = "WienerFilter"

    def __init__(
        self,
        binning: Binning | None = None,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        lags: Sequence[int] | None = DEFAULT_LAGS,
        spikes: str = "spikes",
        chunk: int = 2048,
    ) -> None:
        super().__init__(binning or Binning(), spikes)
        self.alphas = tuple(float(a) for a in alphas)
        if not self.alphas or min(self.alphas) < 0:
            raise InvalidDataError(f"WienerFilter.alphas: need values >= 0, got {list(alphas)}")
        lag_list = [self.binning.n_lags] if lags is None else list(lags)
        if not lag_list or any(int(k) != k or k < 1 for k in lag_list):
            raise InvalidDataError(f"WienerFilter.lags: need integers >= 1, got {lag_list}")
        self.lags = tuple(sorted({int(k) for k in lag_list}))
        self.chunk = int(chunk)

    def _needs(self) -> list[str]:
        return ["valid_domain"] if len(self.alphas) * len(self.lags) > 1 else []

    def _features(
        self, rec: Recording, times: np.ndarray, n_lags: int
    ) -> Iterator[tuple[slice, np.ndarray]]:
        binning = dataclasses.replace(self.binning, n_lags=n_lags)
        for lo in range(0, len(times), self.chunk):
            sl = slice(lo, lo + self.chunk)
            yield sl, recording_lagged_counts(rec, times[sl], binning, self.spikes)

    def _fit_one(self, rec: Recording, target: str) -> _WienerSession:
        train = _train_targets(rec, target)
        n_units = len(spikes_of(rec, self.spikes).units)
        longest = self.lags[-1]
        n_feat = longest * n_units
        y = train.values.astype(np.float64)
        # Sufficient statistics of the longest history, chunk by chunk, around a reference
        # point (the first chunk's mean) so that centring afterwards does not cancel digits.
        # Products are float32 within a chunk (exact for integer counts) and summed in float64
        # across chunks.
        n = len(y)
        ref = None
        sx = np.zeros(n_feat)
        gram = np.zeros((n_feat, n_feat))
        xty = np.zeros((n_feat, y.shape[1]))
        for sl, x in self._features(rec, train.timestamps, longest):
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
        # Features are lag-major (lag k of unit u is k * n_units + u), so a history of h bins
        # is the leading h * n_units block of every statistic. weights[h]: (F_h, A, D).
        weights = {}
        for h in self.lags:
            f = h * n_units
            weights[h] = np.stack(
                [_ridge_solve(cz[:f, :f], bz[:f], a) for a in self.alphas], axis=1
            )
        h, alpha, valid_r2, grid = self.lags[0], self.alphas[0], None, {}
        valid = _valid_targets(rec, target)
        if len(self.alphas) * len(self.lags) > 1:
            if valid is None:
                raise InvalidDataError(
                    f"recording {rec.id!r}: fewer than 2 samples of {target!r} inside "
                    "'valid_domain', so the ridge penalty and history cannot be chosen (pass "
                    "one alpha and one history)"
                )
            scores = self._valid_scores(rec, valid, weights, x_mean, x_scale, y_mean, y_std)
            grid = {f"{k * self.binning.bin_size:g}s/{a:g}": r for (k, a), r in scores.items()}
            (h, alpha), valid_r2 = max(scores.items(), key=lambda kv: kv[1])  # first best
            log.info(
                "WienerFilter %s: history %g s, alpha %g, valid R2 %.3f (grid %s)",
                rec.id,
                h * self.binning.bin_size,
                alpha,
                valid_r2,
                ", ".join(f"{k}:{r:.3f}" for k, r in grid.items()),
            )
        f = h * n_units
        session = _WienerSession(
            n_units,
            h,
            x_mean[:f],
            x_scale[:f],
            weights[h][:, self.alphas.index(alpha)],
            y_mean,
            y_std,
            alpha,
            valid_r2,
            n,
            grid,
        )
        if valid_r2 is None and valid is not None:
            session.valid_r2 = r2_score(valid.values, self._predict(rec, session, valid.timestamps))
        return session

    def _valid_scores(
        self,
        rec: Recording,
        valid: EvalTargets,
        weights: dict[int, np.ndarray],
        x_mean: np.ndarray,
        x_scale: np.ndarray,
        y_mean: np.ndarray,
        y_std: np.ndarray,
    ) -> dict[tuple[int, float], float]:
        """Valid R^2 of every (history, alpha), from one pass of the longest history."""
        n_units = len(x_mean) // self.lags[-1]
        n_alpha, n_out = len(self.alphas), len(y_mean)
        preds = {h: np.empty((len(valid.timestamps), n_alpha, n_out)) for h in self.lags}
        for sl, x in self._features(rec, valid.timestamps, self.lags[-1]):
            z = (x - x_mean) / x_scale
            for h, w in weights.items():
                f = h * n_units
                preds[h][sl] = (z[:, :f] @ w.reshape(f, -1)).reshape(-1, n_alpha, n_out)
        scores = {}
        for h in self.lags:
            pred = preds[h] * y_std + y_mean
            for i, a in enumerate(self.alphas):
                scores[(h, a)] = r2_score(valid.values, pred[:, i])
        return scores

    def _predict(self, rec: Recording, s: _WienerSession, times: np.ndarray) -> np.ndarray:
        out = np.empty((len(times), s.weights.shape[1]))
        for sl, x in self._features(rec, times, s.n_lags):
            out[sl] = ((x - s.x_mean) / s.x_scale) @ s.weights * s.y_std + s.y_mean
        return out

    def predict(self, rec: Recording, timestamps: Any) -> np.ndarray:
        """Predicted target at ``timestamps`` (seconds) of a fitted recording, shape (T, D)."""
        session = self._session(rec)
        return self._predict(rec, session, _as_times(timestamps, rec))

    def tuning(self, recording_id: str) -> dict[str, Any]:
        """What the search chose for a fitted recording: ``alpha``, ``history_s``,
        ``valid_r2`` and the valid R^2 of every pair tried (``grid``, keyed
        ``"<history>s/<alpha>"``)."""
        s = self._fitted(recording_id)
        return {
            "alpha": s.alpha,
            "history_s": round(s.n_lags * self.binning.bin_size, 9),
            "valid_r2": s.valid_r2,
            "grid": dict(s.grid),
        }

    def describe(self, recording_id: str) -> str:
        """``alpha 1e+04, history 0.2 s`` for a fitted recording."""
        s = self._fitted(recording_id)
        return f"alpha {s.alpha:g}, history {s.n_lags * self.binning.bin_size:g} s"

    def search_description(self) -> str:
        """The search, in one line."""
        hist = ", ".join(f"{k * self.binning.bin_size:g}" for k in self.lags)
        alphas = (
            f"{min(self.alphas):g}-{max(self.alphas):g}"
            if len(self.alphas) > 1
            else (f"{self.alphas[0]:g}")
        )
        if len(self.lags) * len(self.alphas) == 1:
            return f"ridge alpha {alphas}, history {hist} s (fixed)"
        return (
            f"ridge alpha ({len(self.alphas)} values, {alphas}) x history ({hist} s) "
            "chosen per session on valid R^2"
        )


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
    hidden: int = 0
    lr: float = 0.0
    valid_r2: float | None = None
    best_step: int = 0  # the step whose weights were kept
    steps: int = 0  # steps the kept candidate trained
    early_stopped: bool = False
    search: dict[str, float] = field(default_factory=dict)  # "hidden/lr" -> valid R^2
    total_steps: int = 0  # every candidate's steps: the search's cost


@dataclass
class _Run:
    """One candidate's training: its model, optimiser and early-stopping state."""

    hidden: int
    lr: float
    model: _GRUNet
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    step: int = 0
    best_r2: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_step: int = 0
    stale: int = 0  # evaluations since the last improvement
    stopped: bool = False  # by early stopping


class GRUDecoder(_PerSessionDecoder):
    """A GRU on binned spike counts, one per recording, early-stopped and tuned on valid R^2.

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

    **Early stopping.** Valid R^2 is measured every ``eval_every`` steps; after ``lr_patience``
    evaluations without improvement the learning rate halves (and again after as many more),
    after ``patience`` training stops; the weights of the best evaluation are kept.

    **Search.** With several ``candidates`` (hidden size, learning rate), each trains
    ``search_steps`` steps (early stopping included); the one with the best valid R^2 so far
    goes on, up to ``max_steps`` steps in all (successive halving: the losers cost only their
    search steps). Without a usable ``valid_domain`` neither runs: the first candidate trains
    ``max_steps`` steps and the last weights are kept (a warning says so).

    Parameters
    ----------
    binning : Binning
        ``bin_size``, ``offset`` and ``sqrt`` are used (default 20 ms, offset 0, sqrt on);
        ``n_lags`` is not: the GRU's memory replaces it.
    candidates : sequence of (int, float)
        ``(hidden size, learning rate)`` pairs searched (default ``(64, 3e-3), (128, 3e-3)``).
    num_layers : int
        GRU depth.
    dropout : float
        Dropout probability on the input counts (units), during training; in [0, 1).
    seq_len, warmup : float
        Training window and burn-in, in seconds.
    batch_size : int
        Windows per step.
    max_steps, search_steps : int
        Adam updates of the chosen candidate at most, and of each candidate in the search.
    eval_every, patience, lr_patience : int
        Steps between valid evaluations; evaluations without improvement before stopping, and
        before halving the learning rate.
    weight_decay : float
        Adam's (L2) weight decay.
    seed : int
        Seed of initialisation and window draws (per recording and candidate, mixed with the
        recording's id), so a fit is deterministic on a given machine and thread count.
    progress : bool
        Progress (a bar on a terminal, lines in a log) over the steps of every recording.
    device : str
        Torch device.
    spikes : str
        Name of the spikes signal.
    """

    name = "GRUDecoder"

    def __init__(
        self,
        binning: Binning | None = None,
        candidates: Sequence[tuple[int, float]] = DEFAULT_GRU_CANDIDATES,
        num_layers: int = 1,
        dropout: float = 0.1,
        seq_len: float = 1.0,
        warmup: float = 0.3,
        batch_size: int = 32,
        max_steps: int = 1000,
        search_steps: int = 150,
        eval_every: int = 50,
        patience: int = 4,
        lr_patience: int = 2,
        weight_decay: float = 1e-5,
        seed: int = 0,
        progress: bool = True,
        device: str = "cpu",
        spikes: str = "spikes",
    ) -> None:
        super().__init__(binning or Binning(sqrt=True), spikes)
        self.candidates = [(int(h), float(lr)) for h, lr in candidates]
        if not self.candidates or any(h < 1 or not lr > 0 for h, lr in self.candidates):
            raise InvalidDataError(
                f"GRUDecoder.candidates: need (hidden >= 1, lr > 0) pairs, got {list(candidates)}"
            )
        for name, value in (
            ("max_steps", max_steps),
            ("search_steps", search_steps),
            ("eval_every", eval_every),
            ("patience", patience),
            ("lr_patience", lr_patience),
            ("batch_size", batch_size),
        ):
            if int(value) != value or value < 1:
                raise InvalidDataError(f"GRUDecoder.{name}: need an integer >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidDataError(f"GRUDecoder.dropout: need 0 <= dropout < 1, got {dropout}")
        b = self.binning.bin_size
        self.seq_bins = max(int(round(seq_len / b)), 2)
        self.warm_bins = min(max(int(round(warmup / b)), 0), self.seq_bins - 1)
        self.num_layers, self.dropout = num_layers, dropout
        self.batch_size, self.max_steps = int(batch_size), int(max_steps)
        self.search_steps = min(int(search_steps), self.max_steps)
        self.weight_decay = weight_decay
        self.eval_every, self.patience = int(eval_every), int(patience)
        self.lr_patience = int(lr_patience)
        self.seed, self.progress, self.device = seed, progress, torch.device(device)

    # ---- binning --------------------------------------------------------------------------

    def _readout_bins(self, times: np.ndarray) -> np.ndarray:
        k = np.floor((times + self.binning.offset) / self.binning.bin_size).astype(np.int64) - 1
        return np.maximum(k, 0)

    # ---- prediction -----------------------------------------------------------------------

    def _run(
        self, rec: Recording, s: _GRUSession, times: np.ndarray, model: _GRUNet | None = None
    ) -> np.ndarray:
        """Predictions at ``times`` (z-scored target units), shape ``(T, D)``."""
        model = s.model if model is None else model
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
        was_training = model.training
        model.eval()
        with torch.no_grad():
            y = model(torch.from_numpy(x).to(self.device)).cpu().numpy()
        model.train(was_training)
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
        train = _train_targets(rec, target)
        valid = _valid_targets(rec, target)
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
        candidates = self.candidates
        if valid is None:
            log.warning(
                "GRUDecoder %s: no valid samples: no search, no early stopping (hidden %d, "
                "lr %s, %d steps)",
                rec.id,
                candidates[0][0],
                format_lr(candidates[0][1]),
                self.max_steps,
            )
            candidates = candidates[:1]
        searching = len(candidates) > 1

        key = zlib.crc32(rec.id.encode())
        planned = len(candidates) * self.search_steps + self.max_steps - self.search_steps
        session = _GRUSession(n_units, None, x_mean, x_std, y_mean, y_std)  # type: ignore[arg-type]
        bar = progress_bar(
            total=planned if searching else self.max_steps,
            desc=f"GRU {rec.id}",
            unit="step",
            leave=False,
            disable=not self.progress,
        )
        try:
            # Dropout masks come from the global torch generator: forked, so a fit neither
            # depends on nor disturbs the caller's random state.
            with torch.random.fork_rng(devices=[]):
                runs = []
                for i, (hidden, lr) in enumerate(candidates):
                    torch.manual_seed((self.seed * 1_000_003 + key + 7_919 * i) % 2**62)
                    model = _GRUNet(n_units, yz.shape[1], hidden, self.num_layers, self.dropout)
                    model.to(self.device)
                    opt = torch.optim.Adam(
                        model.parameters(), lr=lr, weight_decay=self.weight_decay
                    )
                    rng = np.random.default_rng([self.seed, key, i])
                    runs.append(_Run(hidden, lr, model, opt, rng))
                data = (xz, yz, k_train, valid)
                if searching:
                    for run in runs:
                        self._advance(rec, session, run, data, self.search_steps, bar)
                    session.search = {
                        f"{r.hidden}/{format_lr(r.lr)}": float(r.best_r2) for r in runs
                    }
                best = max(runs, key=lambda r: r.best_r2)  # the first of equals
                self._advance(rec, session, best, data, self.max_steps, bar)
        finally:
            bar.close()
        if best.best_state is not None:
            best.model.load_state_dict(best.best_state)
        session.model = best.model
        session.hidden, session.lr = best.hidden, best.lr
        session.valid_r2 = None if best.best_state is None else float(best.best_r2)
        session.best_step = best.best_step if best.best_state is not None else best.step
        session.steps, session.early_stopped = best.step, best.stopped
        session.total_steps = sum(r.step for r in runs)
        log.info(
            "GRUDecoder %s: %s, valid R2 %s%s",
            rec.id,
            self._describe(session),
            "n/a" if session.valid_r2 is None else f"{session.valid_r2:.3f}",
            f" (search after {self.search_steps} steps: "
            + ", ".join(f"{k}:{v:.3f}" for k, v in session.search.items())
            + ")"
            if session.search
            else "",
        )
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

    def _advance(
        self,
        rec: Recording,
        s: _GRUSession,
        run: _Run,
        data: tuple[torch.Tensor, torch.Tensor, np.ndarray, EvalTargets | None],
        until: int,
        bar: Any,
    ) -> None:
        """Train ``run`` up to step ``until`` (or until early stopping), evaluating on valid
        every ``eval_every`` steps and at ``until``."""
        xz, yz, k_train, valid = data
        model, dev = run.model, self.device
        bar.set_description(f"GRU {rec.id} (hidden {run.hidden}, lr {format_lr(run.lr)})")
        model.train()
        while run.step < until and not run.stopped:
            x, row, col, y = self._batch(xz, yz, k_train, run.rng)
            out = model(x.to(dev))
            loss = torch.mean((out[row.to(dev), col.to(dev)] - y.to(dev)) ** 2)
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            run.opt.step()
            run.step += 1
            bar.update(1)
            if self._threads is not None:
                self._threads.recheck()
            if valid is None or (run.step % self.eval_every and run.step != until):
                continue
            pred = self._run(rec, s, valid.timestamps, model) * s.y_std + s.y_mean
            r2 = r2_score(valid.values, pred)
            bar.set_postfix(loss=f"{loss.item():.3f}", valid_r2=f"{r2:.3f}")
            if r2 > run.best_r2:
                run.best_r2, run.stale, run.best_step = r2, 0, run.step
                run.best_state = copy.deepcopy(model.state_dict())
                continue
            run.stale += 1
            if run.stale >= self.patience:
                run.stopped = True
            elif run.stale % self.lr_patience == 0:
                for group in run.opt.param_groups:
                    group["lr"] *= 0.5

    # ---- what was chosen ------------------------------------------------------------------

    def _describe(self, s: _GRUSession) -> str:
        end = "early-stopped" if s.early_stopped else "max_steps reached"
        return (
            f"hidden {s.hidden}, lr {format_lr(s.lr)}, best at step {s.best_step} of "
            f"{s.steps}, {end}"
        )

    def tuning(self, recording_id: str) -> dict[str, Any]:
        """What the search chose for a fitted recording: ``hidden``, ``lr``, ``best_step``
        (whose weights are kept), ``steps`` trained, ``early_stopped``, ``valid_r2``, the
        valid R^2 of each candidate after the search steps (``search``) and ``total_steps``
        of all candidates."""
        s = self._fitted(recording_id)
        return {
            "hidden": s.hidden,
            "lr": s.lr,
            "best_step": s.best_step,
            "steps": s.steps,
            "early_stopped": s.early_stopped,
            "valid_r2": s.valid_r2,
            "search": dict(s.search),
            "total_steps": s.total_steps,
        }

    def describe(self, recording_id: str) -> str:
        """``hidden 128, lr 3e-3, best at step 600 of 850, early-stopped``."""
        return self._describe(self._fitted(recording_id))

    def search_description(self) -> str:
        """The search and the stopping rule, in one line."""
        stop = (
            f"early stopping on valid R^2 every {self.eval_every} steps (lr halved after "
            f"{self.lr_patience}, stop after {self.patience} without improvement), at most "
            f"{self.max_steps} steps"
        )
        if len(self.candidates) == 1:
            h, lr = self.candidates[0]
            return f"hidden {h}, lr {format_lr(lr)}; {stop}"
        grid = ", ".join(f"{h}/{format_lr(lr)}" for h, lr in self.candidates)
        return (
            f"hidden/lr in {{{grid}}}, {self.search_steps} steps each, the best on valid R^2 "
            f"trained on; {stop}"
        )
