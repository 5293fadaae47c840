"""Analyses on recordings: binned windows of a :class:`~neurofm.data.Recording`.

Everything here reads through ``Recording.window``, so a lazily opened recording of any length
is read a window at a time and memory stays flat:

* :class:`DecodeBehaviour`: a :class:`~neurofm.analysis.tasks.Task` whose trials are windows
  around each behavioural trial: binned spike counts in, binned behaviour (e.g. hand velocity)
  out, for the rich/lazy RNNs and the bias-only RNNs alike;
* :func:`spike_count_correlation` and :func:`coupling_matrix`: connectivity estimates that feed
  the "experimentally driven" initial weights
  (:func:`neurofm.analysis.initializers.from_connectivity`);
* :func:`open_recording_source`: a recording from an analysis config (a saved ``.h5``, a catalog
  entry, or a synthetic reaching session written as NWB and read back by the NWB reader).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from neurofm.analysis.results import StrictModel
from neurofm.analysis.tasks import Task, TaskBatch
from neurofm.data import Catalog, Recording
from neurofm.data.binning import bin_index
from neurofm.errors import InvalidDataError, NeuroFMError

log = logging.getLogger(__name__)

__all__ = [
    "DecodeBehaviour",
    "RecordingSource",
    "SyntheticReachingSession",
    "binned_counts",
    "coupling_matrix",
    "open_recording_source",
    "spike_count_correlation",
    "top_units",
]


def binned_counts(
    recording: Recording,
    start: float,
    end: float,
    bin_size: float,
    spikes: str = "spikes",
    units: np.ndarray | None = None,
) -> np.ndarray:
    """Spike counts of ``[start, end)`` in bins of ``bin_size`` s: shape (n_bins, n_units).

    Only that window of the recording is read, and binned by the package's one rule
    (:mod:`neurofm.data.binning`): bin ``k`` is ``[k * bin_size, (k + 1) * bin_size)`` in
    the window's time. ``units`` selects (and orders) columns.
    """
    n_bins = int(round((end - start) / bin_size))
    sp = recording.window(start, start + n_bins * bin_size)[spikes]
    counts = sp.binned(bin_size, n_bins).astype(np.float64)
    return counts if units is None else counts[:, units]


def _chunks(duration: float, bin_size: float, chunk: float) -> Iterator[tuple[float, float]]:
    # whole bins per chunk, edges computed from integer bin indices: no bin is split or shifted
    per = max(1, int(chunk / bin_size))
    total = int(np.floor(duration / bin_size + 1e-9))
    for i in range(0, total, per):
        yield i * bin_size, min(i + per, total) * bin_size


def top_units(recording: Recording, n: int | None, spikes: str = "spikes") -> np.ndarray:
    """Indices of the ``n`` units with the most spikes, in table order (all units if None)."""
    counts = recording[spikes].counts()
    if n is None:
        return np.arange(len(counts))
    if n > len(counts):
        raise InvalidDataError(
            f"recording {recording.id!r}: asked for {n} units, it has only {len(counts)}"
        )
    return np.sort(np.argsort(-counts, kind="stable")[:n])


def spike_count_correlation(
    recording: Recording,
    bin_size: float = 0.05,
    units: np.ndarray | None = None,
    spikes: str = "spikes",
    chunk: float = 60.0,
) -> np.ndarray:
    """Pearson correlation of binned spike counts between units, shape (n_units, n_units).

    Streams the recording in ``chunk``-second windows, accumulating sums and cross-products,
    so memory does not grow with the recording's length. Units that never vary get zero
    correlation with everything; the diagonal is 1.
    """
    total, s1, s2 = 0, None, None
    for a, b in _chunks(recording.duration, bin_size, chunk):
        x = binned_counts(recording, a, b, bin_size, spikes, units)
        s1 = x.sum(0) if s1 is None else s1 + x.sum(0)
        s2 = x.T @ x if s2 is None else s2 + x.T @ x
        total += len(x)
    if s1 is None or total < 2:
        raise InvalidDataError(f"recording {recording.id!r}: too short to bin at {bin_size} s")
    mean = s1 / total
    cov = s2 / total - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    corr[~np.isfinite(corr)] = 0.0
    np.fill_diagonal(corr, 1.0)
    return corr


def coupling_matrix(
    recording: Recording,
    bin_size: float = 0.05,
    units: np.ndarray | None = None,
    ridge: float = 1.0,
    spikes: str = "spikes",
    chunk: float = 60.0,
) -> np.ndarray:
    """Lag-one coupling estimate ``A``: ridge regression of counts(t+1) on counts(t).

    ``A[i, j]`` is how much unit ``j``'s (z-scored) count predicts unit ``i``'s in the next
    bin: a directed, non-symmetric effective connectivity. Streams like
    :func:`spike_count_correlation`; the last bin of a chunk pairs with the first of the next.
    """
    prev, n = None, 0
    sxx = sxy = s1 = sq = None
    for a, b in _chunks(recording.duration, bin_size, chunk):
        x = binned_counts(recording, a, b, bin_size, spikes, units)
        x_full = x if prev is None else np.vstack([prev, x])
        past, future = x_full[:-1], x_full[1:]
        sxx = past.T @ past if sxx is None else sxx + past.T @ past
        sxy = past.T @ future if sxy is None else sxy + past.T @ future
        s1 = past.sum(0) if s1 is None else s1 + past.sum(0)
        sq = future.sum(0) if sq is None else sq + future.sum(0)
        n += len(past)
        prev = x[-1:]
    if sxx is None or n < 2:
        raise InvalidDataError(f"recording {recording.id!r}: too short to bin at {bin_size} s")
    mx, my = s1 / n, sq / n
    cxx = sxx / n - np.outer(mx, mx)
    cxy = sxy / n - np.outer(mx, my)
    sd = np.sqrt(np.clip(np.diag(cxx), 1e-12, None))
    # standardise so the ridge penalty treats slow and fast units alike
    cxx_z = cxx / np.outer(sd, sd)
    cxy_z = cxy / np.outer(sd, sd)
    beta = np.linalg.solve(cxx_z + ridge / n * len(sd) * np.eye(len(sd)), cxy_z)
    return beta.T  # A[i, j]: from j to i


# --------------------------------------------------------------------------------------------
# decoding behaviour from windows
# --------------------------------------------------------------------------------------------


class DecodeBehaviour(Task):
    """Decode binned behaviour from binned spikes, one window per (jittered) trial.

    Each trial gives windows of ``n_bins`` bins of ``bin_size`` s starting ``offset`` s from
    its ``align`` event (``move_onset_time`` by default), jittered by up to ``+-jitter`` s so
    the network sees many distinct windows. Inputs are square-root spike counts z-scored per
    unit, targets the behaviour signal averaged per bin and z-scored per channel (statistics of
    the training windows). Trials whose ``split_column`` is ``test`` or ``valid`` are probes;
    without that column the last quarter of the trials is.

    Parameters
    ----------
    recording : Recording
        Needs a spikes signal, a behaviour :class:`~neurofm.data.RegularSeries` and trials.
    behaviour : str
        Name of the behaviour signal (default ``hand_vel``).
    bin_size : float
        Bin width in seconds.
    n_bins : int
        Bins per window (the trial length of the task).
    align, offset, jitter : str, float, float
        Window placement (see above); a missing or NaN align time falls back to the trial start.
    windows_per_trial : int
        Jittered windows per trial.
    units : int, optional
        Keep the ``units`` units with the most spikes (default all).
    seed : int
        Seed of the jitter.
    """

    name = "recording"
    kind = "regress"

    def __init__(
        self,
        recording: Recording,
        behaviour: str = "hand_vel",
        bin_size: float = 0.1,
        n_bins: int = 8,
        align: str = "move_onset_time",
        offset: float = -0.3,
        jitter: float = 0.2,
        windows_per_trial: int = 8,
        units: int | None = None,
        spikes: str = "spikes",
        trials: str = "trials",
        split_column: str = "split",
        seed: int = 0,
    ) -> None:
        for sig in (spikes, behaviour, trials):
            if sig not in recording:
                raise InvalidDataError(
                    f"recording {recording.id!r}: no signal {sig!r} "
                    f"(has {', '.join(sorted(recording.signals))})"
                )
        self.recording_id = recording.id
        self.units = top_units(recording, units, spikes)
        table = recording[trials].load()
        starts = np.asarray(table.start, float)
        if align in table.columns:
            anchor = np.asarray(table.columns[align], float)
            anchor = np.where(np.isfinite(anchor), anchor, starts)
        else:
            anchor = starts
        if split_column in table.columns:
            split = np.asarray(table.columns[split_column]).astype(str)
            is_probe = np.isin(split, ["test", "valid"])
        else:
            is_probe = np.arange(len(starts)) >= int(0.75 * len(starts))
        length = n_bins * bin_size
        rng = np.random.default_rng(seed)
        shifts = rng.uniform(-jitter, jitter, (len(starts), windows_per_trial))
        window_starts = anchor[:, None] + offset + shifts
        ok = (window_starts >= 0) & (window_starts + length <= recording.duration)
        self.bin_size, self.n_bins = bin_size, n_bins
        train_x, train_y, probe_x, probe_y = [], [], [], []
        for i in range(len(starts)):
            for start in window_starts[i][ok[i]]:
                x, y = self._window(recording, float(start), behaviour, spikes)
                (probe_x if is_probe[i] else train_x).append(x)
                (probe_y if is_probe[i] else train_y).append(y)
        if not train_x or not probe_x:
            raise InvalidDataError(
                f"recording {recording.id!r}: need training and probe trials "
                f"(got {len(train_x)} and {len(probe_x)} windows)"
            )
        tx, ty = np.sqrt(np.stack(train_x)), np.stack(train_y)
        px, py = np.sqrt(np.stack(probe_x)), np.stack(probe_y)
        # statistics of the training windows only, so the probes are truly held out
        x_mean, x_sd = tx.mean((0, 1)), tx.std((0, 1)) + 1e-6
        y_mean, y_sd = ty.mean((0, 1)), ty.std((0, 1)) + 1e-9
        self.x_train = ((tx - x_mean) / x_sd).astype(np.float32)
        self.y_train = ((ty - y_mean) / y_sd).astype(np.float32)
        self.x_probe = ((px - x_mean) / x_sd).astype(np.float32)
        self.y_probe = ((py - y_mean) / y_sd).astype(np.float32)
        self.n_in, self.n_out, self.seq_len = len(self.units), ty.shape[-1], n_bins
        log.info(
            "%s: %d training and %d probe windows of %d units",
            recording.id,
            len(self.x_train),
            len(self.x_probe),
            self.n_in,
        )

    def _window(
        self, recording: Recording, start: float, behaviour: str, spikes: str
    ) -> tuple[np.ndarray, np.ndarray]:
        end = start + self.n_bins * self.bin_size
        win = recording.window(start, end)
        counts = binned_counts(win, 0.0, end - start, self.bin_size, spikes, self.units)
        series = win[behaviour]
        # Behaviour samples binned by the same rule as the spikes (half-open bins).
        b = bin_index(series.timestamps, 0.0, self.n_bins, self.bin_size)
        inside = b >= 0
        b, data = b[inside], np.asarray(series.data, float)[inside]
        sums = np.zeros((self.n_bins, data.shape[1]))
        np.add.at(sums, b, data)
        n = np.bincount(b, minlength=self.n_bins)[:, None]
        return counts, sums / np.maximum(n, 1)

    def _batch(self, x: np.ndarray, y: np.ndarray) -> TaskBatch:
        mask = np.ones(x.shape[:2], bool)
        return TaskBatch(x, y, mask, mask.copy())

    def sample(self, n: int, rng: np.random.Generator) -> TaskBatch:
        idx = rng.integers(0, len(self.x_train), n)
        return self._batch(self.x_train[idx], self.y_train[idx])

    def probe(self, n: int, seed: int = 12345) -> TaskBatch:
        idx = np.random.default_rng(seed).permutation(len(self.x_probe))[:n]
        return self._batch(self.x_probe[idx], self.y_probe[idx])


# --------------------------------------------------------------------------------------------
# where the recording comes from
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def open_recording_source(
    path: str | Path | None = None,
    catalog: str | Path | None = None,
    recording_id: str | None = None,
    synthetic: dict[str, Any] | None = None,
) -> Iterator[Recording]:
    """Open the recording an analysis config names, lazily; closed (and cleaned) on exit.

    Give exactly one of ``path`` (a saved recording ``.h5``), ``catalog`` with
    ``recording_id``, or ``synthetic``: keyword arguments of
    :func:`neurofm.synthetic.reaching.simulate_session` (``seed``, ``n_trials``, ``n_units``)
    for a session that is written as NWB, read back by :func:`neurofm.readers.nwb.read_nwb`
    and saved as a recording in a temporary folder, exactly the path real data takes.
    """
    given = [k for k, v in (("path", path), ("catalog", catalog), ("synthetic", synthetic)) if v]
    if len(given) != 1:
        raise InvalidDataError(
            f"recording: give exactly one of path, catalog (+ id) or synthetic (got {given})"
        )
    if path:
        rec = Recording.open(path)
        try:
            yield rec
        finally:
            rec.close()
        return
    if catalog:
        if not recording_id:
            raise InvalidDataError("recording: a catalog needs the recording's id")
        rec = Catalog(catalog).open(recording_id)
        try:
            yield rec
        finally:
            rec.close()
        return
    from neurofm.readers.nwb import read_nwb
    from neurofm.synthetic.reaching import simulate_session, write_session_nwb

    opts = dict(synthetic or {})
    n_units = int(opts.pop("n_units", 100))
    session = simulate_session(
        int(opts.pop("seed", 0)), 0, 0, n_units_range=(n_units, n_units), **opts
    )
    with tempfile.TemporaryDirectory(prefix="neurofm-analysis-") as tmp:
        # DANDI-style name, so the recording id is sub-<subject>_ses-<session> as for real data
        nwb_path = Path(tmp) / f"sub-{session.subject_id}_ses-{session.session_id}_ecephys.nwb"
        write_session_nwb(nwb_path, session)
        rec_path = Path(tmp) / "session.h5"
        loaded = read_nwb(nwb_path)
        try:
            loaded.save(rec_path)
        finally:
            loaded.close()
        rec = Recording.open(rec_path)
        try:
            yield rec
        finally:
            rec.close()


class SyntheticReachingSession(StrictModel):
    """A simulated centre-out reaching session (:mod:`neurofm.synthetic.reaching`)."""

    seed: int = 0
    n_trials: int = Field(60, ge=8, description="trials in the session")
    n_units: int = Field(100, ge=2, description="recorded units")


class RecordingSource(StrictModel):
    """Where an analysis's recording comes from, and how it is windowed (config section)."""

    path: str | None = Field(None, description="a saved recording (.h5), relative to the config")
    catalog: str | None = Field(None, description="a catalog folder, relative to the config")
    id: str | None = Field(None, description="the recording's id in the catalog")
    synthetic: SyntheticReachingSession | None = None
    behaviour: str = Field("hand_vel", description="behaviour signal to decode")
    bin_size: float = Field(0.1, gt=0, description="bin width (s) of the decoding windows")
    n_bins: int = Field(8, ge=1, description="bins per decoding window")

    @model_validator(mode="after")
    def _one_source(self) -> RecordingSource:
        given = [k for k in ("path", "catalog", "synthetic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, catalog or synthetic (got {given})")
        if self.catalog is not None and not self.id:
            raise ValueError("a catalog source needs the recording's 'id'")
        return self

    @contextlib.contextmanager
    def open(self, base: Path, where: str = "recording") -> Iterator[Recording]:
        """Open the recording (paths relative to ``base``, the config's folder); a problem
        names the config's field, ``where`` (e.g. ``"study.yaml: recording"``) + the key."""
        key = "path" if self.path else "catalog" if self.catalog else "synthetic"
        with contextlib.ExitStack() as stack:
            try:
                rec = stack.enter_context(
                    open_recording_source(
                        path=base / self.path if self.path else None,
                        catalog=base / self.catalog if self.catalog else None,
                        recording_id=self.id,
                        synthetic=self.synthetic.model_dump() if self.synthetic else None,
                    )
                )
            except NeuroFMError as exc:
                raise type(exc)(f"{where}.{key}: {exc}") from None
            yield rec

    def decode_task(self, recording: Recording, **kwargs: Any) -> DecodeBehaviour:
        """The :class:`DecodeBehaviour` task this section describes."""
        return DecodeBehaviour(recording, self.behaviour, self.bin_size, self.n_bins, **kwargs)
