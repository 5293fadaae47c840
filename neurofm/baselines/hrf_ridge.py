"""Baseline for EEG -> fMRI translation: ridge on HRF-convolved EEG band power (EEG-informed fMRI).

The classic EEG-informed fMRI model (Goldman et al. 2002; Laufs et al. 2003; de Munck et al.
2009) predicts each parcel's BOLD signal from EEG band power convolved with a canonical
haemodynamic response. :class:`HRFRidge` is that model, fitted by ridge regression:

1. **Band power.** Each EEG channel (:func:`neurofm.data.channels.eeg_channels`: type
   ``"eeg"``, not marked bad; EOG/ECG and bad channels are left out, as SAMBA leaves them out)
   is band-passed in the standard bands (delta 1-4, theta 4-8, alpha 8-12, beta 13-30,
   gamma 30-45 Hz; clipped below Nyquist) with MNE's zero-phase FIR
   (:func:`mne.filter.filter_data`); its Hilbert envelope squared is the instantaneous power.
2. **Grid.** Power is averaged in bins of ``grid`` seconds (0.1 s) and log-transformed (band
   power is log-normal; the log makes a multiplicative modulation additive).
3. **HRF.** Each log-power series is convolved causally with nilearn's Glover HRF
   (:func:`nilearn.glm.first_level.glover_hrf`, 32 s) on that grid, the series' first value
   standing in for the time before the EEG began (so the start shows no artificial ramp), and
   sampled at each BOLD volume time; optional ``lags`` add copies sampled ``lag`` s earlier.
4. **Ridge.** Features are z-scored on the training samples, BOLD is centred on them, and the
   ridge penalty of each parcel (or one shared by all) is picked from a grid by the R^2 on the
   valid domains; without valid samples scikit-learn's
   :class:`~sklearn.linear_model.RidgeCV` picks it by efficient leave-one-out on the training
   samples.

Unlike the spike baselines (one model per session, because units differ), EEG channels are the
same electrodes in every recording, so **one model is fitted on the train domains of all the
training recordings pooled** and applies to any recording with the same channels, including
held-out subjects. Channels are matched by name, not by position; a recording whose EEG
channels (or BOLD parcels) differ from the fitted ones is an error naming both sets.

It is scored like every EEG->fMRI model in neurofm: on
:func:`~neurofm.data.targets.evaluation_targets` of the BOLD signal in a split's domain,
with per-parcel Pearson r (mean and SD over parcels), R^2 averaged over parcels and the MSE.

Examples
--------
>>> cat = Catalog("catalog")
>>> recs = [cat.open(i) for i in cat.ids]
>>> model = HRFRidge().fit(recs)                    # train domains, alpha on valid domains
>>> model.evaluate(recs, split="test")["sub-03_ses-01_task-stim_run-1"]["r_mean"]
>>> times, bold = model.predict(recs[0])            # every BOLD volume
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurofm.data.channels import eeg_channels
from neurofm.data.recording import Recording
from neurofm.data.signals import RegularSeries
from neurofm.data.targets import EvalTargets, evaluation_targets
from neurofm.errors import InvalidDataError
from neurofm.metrics import pearson_r, r2_score

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_BANDS",
    "HRFRidge",
    "band_log_power",
    "hrf_convolve",
    "usable_bands",
]

log = logging.getLogger(__name__)

#: Standard EEG bands (Hz): delta, theta, alpha, beta, gamma.
DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 12.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}
#: Ridge penalties tried (features are z-scored, so they are in units of "samples").
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in 10.0 ** np.arange(-2, 7))
#: Highest usable band edge as a fraction of Nyquist: MNE's FIR needs a transition band above
#: the low-pass edge, so an edge at Nyquist itself cannot be filtered.
_NYQUIST_FRACTION = 0.9


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def usable_bands(
    bands: Mapping[str, tuple[float, float]], rate: float
) -> dict[str, tuple[float, float]]:
    """``bands`` with upper edges clipped to 0.9 x Nyquist; bands starting above it are dropped.

    Raises
    ------
    InvalidDataError
        If a band is not ``0 <= low < high`` or none is left at this rate.
    """
    top = _NYQUIST_FRACTION * rate / 2.0
    out = {}
    for name, (lo, hi) in bands.items():
        if not 0 <= lo < hi:
            raise InvalidDataError(f"bands.{name}: need 0 <= low < high Hz, got ({lo}, {hi})")
        if lo >= top:
            log.info("band %s (%g-%g Hz) is above %g Hz at %g Hz: dropped", name, lo, hi, top, rate)
            continue
        out[name] = (float(lo), float(min(hi, top)))
    if not out:
        raise InvalidDataError(
            f"bands: none lies below {top:g} Hz (0.9 x Nyquist at {rate:g} Hz): {dict(bands)}"
        )
    return out


def band_log_power(
    data: np.ndarray,
    rate: float,
    bands: Mapping[str, tuple[float, float]],
    grid: float = 0.1,
) -> np.ndarray:
    """Log band power of each channel, averaged in bins of ``grid`` seconds.

    Parameters
    ----------
    data : ndarray, shape (time, channels)
        Samples at ``rate`` Hz (any unit; the log makes the unit an additive constant).
    rate : float
        Sampling rate, Hz.
    bands : mapping of str to (float, float)
        Pass bands in Hz, already below Nyquist (see :func:`usable_bands`). A band starting at
        0 Hz is a low-pass.
    grid : float
        Bin length, s. Bin ``k`` covers ``[k, k + 1) * grid`` from the first sample, so its
        centre is ``(k + 0.5) * grid``; an incomplete last bin is dropped.

    Returns
    -------
    ndarray, shape (bins, bands, channels)
        ``log(mean over the bin of |hilbert(bandpassed)|^2)``.
    """
    import mne
    import scipy.fft
    import scipy.signal

    x = np.ascontiguousarray(np.asarray(data, dtype=np.float64).T)  # (C, T): MNE's layout
    n_time = x.shape[1]
    per_bin = grid * rate
    n_bins = int(np.floor(n_time / per_bin + 1e-9))
    if n_bins < 1:
        raise InvalidDataError(f"band_log_power: {n_time} samples are shorter than one bin")
    # Bin edges as sample indices; rounding keeps bins aligned when grid * rate isn't whole.
    edges = np.round(np.arange(n_bins + 1) * per_bin).astype(np.int64)
    n_fft = scipy.fft.next_fast_len(n_time)
    out = np.empty((n_bins, len(bands), x.shape[0]))
    for b, (lo, hi) in enumerate(bands.values()):
        filtered = mne.filter.filter_data(
            x, rate, lo if lo > 0 else None, hi, n_jobs=None, verbose=False
        )
        # Zero-padding to a fast FFT length; the envelope's edge effect is a few samples.
        analytic = scipy.signal.hilbert(filtered, N=n_fft, axis=1)[:, :n_time]
        power = analytic.real**2 + analytic.imag**2
        binned = np.add.reduceat(power[:, : edges[-1]], edges[:-1], axis=1)
        binned /= np.diff(edges)
        # A flat (dead) channel has zero power: floor it so the log stays finite.
        out[:, b, :] = np.log(np.maximum(binned, np.finfo(np.float64).tiny)).T
    return out


def hrf_convolve(x: np.ndarray, dt: float, time_length: float = 32.0) -> np.ndarray:
    """Causal convolution of ``x`` (time on axis 0, sampled every ``dt`` s) with a Glover HRF.

    The kernel is :func:`nilearn.glm.first_level.glover_hrf` sampled every ``dt`` s over
    ``time_length`` s (unit sum). Before the first sample, the signal is taken to sit at its
    mean over the first ``time_length`` s: the brain was active before the recording began, so
    zeros there would put a spurious ramp-up at the start, and the first sample alone is too
    noisy (and biased by filter edge effects) to stand for that level.

    Returns
    -------
    ndarray, same shape as ``x``
        ``y[n] = sum_k h[k] x[n - k]``.
    """
    import scipy.signal
    from nilearn.glm.first_level import glover_hrf

    x = np.asarray(x, dtype=np.float64)
    h = glover_hrf(t_r=dt, oversampling=1, time_length=time_length)
    shape = x.shape
    flat = x.reshape(len(x), -1)
    level = flat[: len(h)].mean(axis=0, keepdims=True)
    padded = np.concatenate([np.repeat(level, len(h) - 1, axis=0), flat], axis=0)
    y = scipy.signal.oaconvolve(padded, h[:, None], mode="valid", axes=0)
    return y.reshape(shape)


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


@dataclass
class _RecordingInputs:
    """What the features of one recording need: its EEG (fitted channel order) and parcels."""

    eeg: np.ndarray  # (time, channels) in the fitted channel order
    rate: float
    start: float
    end: float
    parcels: np.ndarray  # the recording's BOLD parcel names, its own order


def _require(rec: Recording, names: Sequence[str], why: str) -> None:
    for name in names:
        if name not in rec:
            raise InvalidDataError(
                f"recording {rec.id!r} has no signal {name!r} (has {sorted(rec.signals)}); {why}"
            )


def _regular(rec: Recording, name: str) -> RegularSeries:
    series = rec[name].load()
    if not isinstance(series, RegularSeries):
        raise InvalidDataError(
            f"recording {rec.id!r}: signal {name!r} is a {type(series).__name__}, expected a "
            "RegularSeries (EEG samples, or parcel BOLD at 1/TR)"
        )
    return series


def _set_difference_message(got: Sequence[str], want: Sequence[str]) -> str:
    # Plain str, so the message shows ['Cz'], not numpy's [np.str_('Cz')].
    missing = sorted({str(n) for n in want} - {str(n) for n in got})
    extra = sorted({str(n) for n in got} - {str(n) for n in want})
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unexpected {extra}")
    return ", ".join(parts) or "duplicated names"


def _finite(ev: EvalTargets) -> EvalTargets:
    ok = np.isfinite(ev.values).all(axis=1)
    return ev if ok.all() else EvalTargets(ev.recording_id, ev.timestamps[ok], ev.values[ok])


class HRFRidge:
    """Ridge regression from HRF-convolved EEG log band power to parcel BOLD.

    Parameters
    ----------
    bands : mapping of str to (float, float), optional
        Frequency bands in Hz; default :data:`DEFAULT_BANDS` (delta to gamma). Upper edges are
        clipped to 0.9 x Nyquist at the EEG's rate, and bands above that dropped.
    grid : float
        Bin length (s) of the band-power grid on which the HRF is applied.
    lags : sequence of float
        Extra delays (s) at which the convolved features are also sampled (``t - lag``), e.g.
        ``(0, 2, 4)``: lets the regression adjust the canonical HRF's timing per parcel, at
        the cost of ``len(lags)`` times more features. Default ``(0,)``: the canonical HRF
        alone.
    hrf_length : float
        Length of the HRF kernel, s.
    alphas : sequence of float
        Ridge penalties to choose from.
    alpha_per_parcel : bool
        Pick a penalty per parcel (parcels differ in how well the scalp sees them, so in the
        signal-to-noise ratio of their features) instead of one for all.
    eeg, target : str
        Names of the EEG and BOLD signals in the recordings.

    Attributes
    ----------
    channels_ : ndarray of str
        The EEG channels, in the order of the features (set by :meth:`fit`).
    parcels_ : ndarray of str
        The BOLD parcels, in the order of ``coef_``'s columns.
    bands_ : dict
        The bands actually used (after clipping at the training EEG's Nyquist).
    alpha_ : ndarray, shape (parcels,)
        The chosen ridge penalty of each parcel (all equal unless ``alpha_per_parcel``).
    valid_scores_ : ndarray, shape (alphas, parcels), or None
        Valid R^2 of each penalty and parcel (None when RidgeCV chose by leave-one-out).
    coef_ : ndarray, shape (features, parcels)
        Weights on z-scored features; features are ordered (lag, band, channel).
    intercept_ : ndarray, shape (parcels,)
    """

    name = "hrf_ridge"

    def __init__(
        self,
        bands: Mapping[str, tuple[float, float]] | None = None,
        grid: float = 0.1,
        lags: Sequence[float] = (0.0,),
        hrf_length: float = 32.0,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        alpha_per_parcel: bool = True,
        eeg: str = "eeg",
        target: str = "bold",
    ) -> None:
        self.bands = dict(bands if bands is not None else DEFAULT_BANDS)
        if not grid > 0:
            raise InvalidDataError(f"{self.name}.grid: must be > 0 s, got {grid}")
        if len(lags) == 0 or any(not np.isfinite(lag) or lag < 0 for lag in lags):
            raise InvalidDataError(f"{self.name}.lags: need one or more delays >= 0 s ({lags})")
        if len(alphas) == 0 or any(not a > 0 for a in alphas):
            raise InvalidDataError(f"{self.name}.alphas: need penalties > 0, got {alphas}")
        self.grid = float(grid)
        self.lags = tuple(float(lag) for lag in lags)
        self.hrf_length = float(hrf_length)
        self.alphas = tuple(float(a) for a in alphas)
        self.alpha_per_parcel = bool(alpha_per_parcel)
        self.eeg = eeg
        self.target = target
        self.channels_: np.ndarray | None = None
        self.parcels_: np.ndarray | None = None
        self.rate_: float | None = None
        self.bands_: dict[str, tuple[float, float]] = {}
        self.alpha_: np.ndarray | None = None
        self.valid_scores_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None
        self.feature_mean_: np.ndarray | None = None
        self.feature_scale_: np.ndarray | None = None

    # ---- inputs ------------------------------------------------------------------------------

    def _inputs(self, rec: Recording) -> _RecordingInputs:
        """The recording's EEG in the fitted channel order, checked against the fitted model."""
        why = "HRFRidge needs the EEG and the BOLD parcel series"
        _require(rec, [self.eeg, self.target], why)
        eeg = _regular(rec, self.eeg)
        bold = _regular(rec, self.target)
        idx = eeg_channels(eeg, where=f"recording {rec.id!r}: {self.eeg}")
        names = np.asarray(eeg.channels)[idx].astype(str)
        if len(set(names)) != len(names):
            raise InvalidDataError(f"recording {rec.id!r}: {self.eeg}.channels has duplicates")
        if self.channels_ is not None:
            if set(names) != set(self.channels_):
                raise InvalidDataError(
                    f"recording {rec.id!r}: {self.eeg}.channels (type 'eeg') differ from the "
                    f"{len(self.channels_)} channels the model uses: "
                    f"{_set_difference_message(names, self.channels_)}; EEG channels are "
                    "matched by name, so every recording needs the same electrodes"
                )
            # Reorder to the fitted order: the same electrode must feed the same weights.
            position = {n: i for i, n in enumerate(names)}
            idx = idx[[position[n] for n in self.channels_]]
        if self.rate_ is not None and not np.isclose(eeg.rate, self.rate_):
            raise InvalidDataError(
                f"recording {rec.id!r}: {self.eeg}.rate is {eeg.rate:g} Hz, the model was "
                f"fitted at {self.rate_:g} Hz; resample (e.g. a card's preprocessing.resample)"
            )
        parcels = np.asarray(bold.channels).astype(str)
        if self.parcels_ is not None and (
            len(parcels) != len(self.parcels_) or set(parcels) != set(self.parcels_)
        ):
            raise InvalidDataError(
                f"recording {rec.id!r}: {self.target}.channels (parcels) differ from the "
                f"model's {len(self.parcels_)}: "
                f"{_set_difference_message(parcels, self.parcels_)}"
            )
        data = np.asarray(eeg.data)[:, idx]
        if not np.isfinite(data).all():
            raise InvalidDataError(f"recording {rec.id!r}: {self.eeg}.data has NaN or inf")
        return _RecordingInputs(data, float(eeg.rate), float(eeg.start), float(eeg.end), parcels)

    def _features(self, rec: Recording, inputs: _RecordingInputs, times: np.ndarray) -> np.ndarray:
        """Design matrix at ``times`` (s): shape (times, lags x bands x channels), unscaled."""
        if len(times) and (times.min() < inputs.start or times.max() > inputs.end + self.grid):
            raise InvalidDataError(
                f"recording {rec.id!r}: {self.target} times span [{times.min():.2f}, "
                f"{times.max():.2f}] s, beyond the EEG's [{inputs.start:.2f}, {inputs.end:.2f})"
            )
        power = band_log_power(inputs.eeg, inputs.rate, self.bands_, self.grid)
        conv = hrf_convolve(power, self.grid, self.hrf_length)  # (bins, bands, channels)
        conv = conv.reshape(len(conv), -1)
        centres = inputs.start + (np.arange(len(conv)) + 0.5) * self.grid
        columns = []
        for lag in self.lags:
            at = times - lag
            # Linear interpolation between bin centres; np.interp holds the end values
            # outside them, which the span check above limits to the EEG's edges.
            columns.append(np.stack([np.interp(at, centres, c) for c in conv.T], axis=1))
        return np.concatenate(columns, axis=1)

    # ---- fit ---------------------------------------------------------------------------------

    def fit(self, recordings: Sequence[Recording]) -> HRFRidge:
        """Fit on the BOLD samples in the ``train_domain`` of every recording, pooled.

        The penalty is chosen by the R^2 on the pooled ``valid_domain`` samples (per parcel,
        or averaged over parcels without ``alpha_per_parcel``); recordings without training
        samples (held-out subjects) are skipped.

        Raises
        ------
        InvalidDataError
            No recording has training samples; a recording lacks the EEG, the BOLD or the
            domains; EEG channels (by name), EEG rates or BOLD parcels differ between
            recordings.
        """
        recordings = list(recordings)
        if not recordings:
            raise InvalidDataError(f"{self.name}.fit: no recordings given")
        why = "fitting needs the EEG, the BOLD and the train/valid domains (ingest with a card)"
        for rec in recordings:  # check them all before spending time on any
            _require(rec, [self.eeg, self.target, "train_domain"], why)
        self.channels_ = self.parcels_ = self.rate_ = None
        parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train": [], "valid": []}
        for rec in recordings:
            train = _finite(evaluation_targets(rec, self.target, "train"))
            valid = None
            if "valid_domain" in rec:
                valid = _finite(evaluation_targets(rec, self.target, "valid"))
            if len(train.timestamps) == 0:
                log.info("%s: recording %s has no training samples: skipped", self.name, rec.id)
                continue
            inputs = self._inputs(rec)
            if self.channels_ is None:  # the first training recording sets the reference
                eeg = _regular(rec, self.eeg)
                self.channels_ = np.asarray(eeg.channels)[
                    eeg_channels(eeg, where=f"recording {rec.id!r}: {self.eeg}")
                ]
                self.channels_ = self.channels_.astype(str)
                self.parcels_, self.rate_ = inputs.parcels, inputs.rate
                self.bands_ = usable_bands(self.bands, inputs.rate)
            order = self._parcel_order(inputs.parcels)
            n_valid = 0 if valid is None else len(valid.timestamps)
            times = train.timestamps if not n_valid else np.r_[train.timestamps, valid.timestamps]
            feats = self._features(rec, inputs, times)  # band power once per recording
            n_train = len(train.timestamps)
            parts["train"].append((feats[:n_train], train.values[:, order]))
            if n_valid:
                parts["valid"].append((feats[n_train:], valid.values[:, order]))
        if not parts["train"]:
            ids = [rec.id for rec in recordings]
            raise InvalidDataError(
                f"{self.name}.fit: no {self.target} samples in any train_domain of {ids}"
            )
        x_train = np.concatenate([p[0] for p in parts["train"]])
        y_train = np.concatenate([p[1] for p in parts["train"]])
        self.feature_mean_ = x_train.mean(axis=0)
        scale = x_train.std(axis=0)
        # A constant feature (e.g. a flat channel) carries nothing: leave it at zero.
        self.feature_scale_ = np.where(scale > 1e-12, scale, 1.0)
        self.intercept_ = y_train.mean(axis=0)
        x = (x_train - self.feature_mean_) / self.feature_scale_
        y = y_train - self.intercept_
        valid = None
        if parts["valid"]:
            xv = np.concatenate([p[0] for p in parts["valid"]])
            yv = np.concatenate([p[1] for p in parts["valid"]])
            if len(xv) >= 2:
                valid = ((xv - self.feature_mean_) / self.feature_scale_, yv)
        self.alpha_, self.coef_ = self._solve(x, y, valid)
        log.info(
            "%s: %d training samples, %d features, median alpha %g",
            self.name,
            len(x),
            x.shape[1],
            float(np.median(self.alpha_)),
        )
        return self

    def _parcel_order(self, parcels: np.ndarray) -> np.ndarray:
        """Indices taking a recording's parcel order to the fitted order."""
        position = {n: i for i, n in enumerate(parcels)}
        return np.array([position[n] for n in self.parcels_], dtype=np.int64)

    def _solve(
        self, x: np.ndarray, y: np.ndarray, valid: tuple[np.ndarray, np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ridge weights for the best penalty (per parcel or shared): by valid R^2, else by
        RidgeCV's leave-one-out on the training samples. Returns (alphas, coef)."""
        n_parcels = y.shape[1]
        self.valid_scores_ = None
        if valid is None:
            from sklearn.linear_model import RidgeCV

            log.info("%s: no valid samples; RidgeCV picks alpha by leave-one-out", self.name)
            ridge = RidgeCV(
                alphas=self.alphas, fit_intercept=False, alpha_per_target=self.alpha_per_parcel
            ).fit(x, y)
            alphas = np.broadcast_to(np.asarray(ridge.alpha_, dtype=np.float64), (n_parcels,))
            return alphas.copy(), np.asarray(ridge.coef_, dtype=np.float64).T
        # One SVD serves every penalty: w(a) = V diag(s / (s^2 + a)) U^T y.
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        uty = u.T @ y
        xv, yv = valid
        ss_tot = np.maximum(((yv - yv.mean(axis=0)) ** 2).sum(axis=0), 1e-300)
        weights = np.empty((len(self.alphas), x.shape[1], n_parcels))
        scores = np.empty((len(self.alphas), n_parcels))
        for i, alpha in enumerate(self.alphas):
            weights[i] = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
            residual = yv - (xv @ weights[i] + self.intercept_)
            scores[i] = 1.0 - (residual**2).sum(axis=0) / ss_tot
        self.valid_scores_ = scores
        if self.alpha_per_parcel:
            best = scores.argmax(axis=0)  # (parcels,)
        else:  # one penalty for all: the best R^2 averaged over parcels
            best = np.full(n_parcels, int(scores.mean(axis=1).argmax()))
        coef = weights[best, :, np.arange(n_parcels)].T  # (features, parcels)
        return np.asarray(self.alphas)[best], coef

    # ---- predict / evaluate --------------------------------------------------------------------

    def predict(self, rec: Recording, timestamps: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted BOLD of ``rec``.

        Parameters
        ----------
        rec : Recording
            Any recording with the fitted EEG channels and BOLD parcels (held-out subjects too).
        timestamps : array-like, optional
            Times (s) to predict at; default every sample of the BOLD signal.

        Returns
        -------
        timestamps : ndarray, shape (T,)
        values : ndarray, shape (T, parcels)
            In BOLD units, columns in the recording's own parcel order (as its ``bold``).
        """
        if self.coef_ is None:
            raise InvalidDataError(f"{self.name}: call fit before predict/evaluate")
        inputs = self._inputs(rec)
        if timestamps is None:
            times = np.asarray(_regular(rec, self.target).timestamps, dtype=np.float64)
        else:
            times = np.asarray(timestamps, dtype=np.float64)
            if times.ndim != 1 or not np.isfinite(times).all():
                raise InvalidDataError(
                    f"recording {rec.id!r}: timestamps must be a 1-D array of finite seconds"
                )
        x = (self._features(rec, inputs, times) - self.feature_mean_) / self.feature_scale_
        fitted_order = x @ self.coef_ + self.intercept_
        # Back to the recording's parcel order, so columns line up with its own BOLD.
        values = np.empty_like(fitted_order)
        values[:, self._parcel_order(inputs.parcels)] = fitted_order
        return times, values

    def predictions(self, rec: Recording, split: str = "test") -> tuple[EvalTargets, np.ndarray]:
        """The scored BOLD samples of ``split`` and the predictions there, shape (T, parcels)."""
        ev = evaluation_targets(rec, self.target, split)
        _, pred = self.predict(rec, ev.timestamps)
        return ev, pred

    def evaluate(
        self, recordings: Sequence[Recording], split: str = "test"
    ) -> dict[str, dict[str, Any]]:
        """Scores per recording on ``evaluation_targets(rec, target, split)``.

        Returns
        -------
        dict
            Recording id -> ``r_mean`` and ``r_sd`` (Pearson r over time per parcel: mean and
            SD over parcels), ``r2`` (averaged over parcels), ``mse`` (over samples and
            parcels), ``r_per_parcel`` (ndarray, the recording's parcel order) and
            ``n_samples``. Recordings with fewer than 3 samples in the split (e.g. a held-out
            subject's empty train domain) are left out.
        """
        out: dict[str, dict[str, Any]] = {}
        for rec in recordings:
            ev, pred = self.predictions(rec, split)
            if len(ev.timestamps) < 3:
                log.info(
                    "%s: %s has %d %s samples: not scored",
                    self.name,
                    rec.id,
                    len(ev.timestamps),
                    split,
                )
                continue
            r = pearson_r(ev.values, pred)
            out[rec.id] = {
                "r_mean": float(np.mean(r)),
                "r_sd": float(np.std(r)),
                "r2": r2_score(ev.values, pred),
                "mse": float(np.mean((np.asarray(ev.values, dtype=np.float64) - pred) ** 2)),
                "r_per_parcel": r,
                "n_samples": len(ev.timestamps),
            }
        return out
