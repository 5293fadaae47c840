"""Baselines (Wiener filter, GRU) on the synthetic reaching data, scored like POYO."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from neurofm.baselines.decoders import GRUDecoder, WienerFilter
from neurofm.baselines.features import Binning, recording_bins, recording_lagged_counts
from neurofm.data import Catalog, Intervals, Recording, RegularSeries, Spikes
from neurofm.data.targets import evaluation_targets
from neurofm.errors import InvalidDataError
from neurofm.metrics import r2_score
from neurofm.pipeline import ingest
from neurofm.specs import load_card
from neurofm.synthetic.reaching import generate_reaching_dataset

TARGET = "hand_vel"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One BLAS and torch thread: on a shared 2-core machine, spinning threads cost 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover
        limit = contextlib.nullcontext()
    with limit:
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baselines")
    generate_reaching_dataset(tmp / "raw", n_subjects=1, n_sessions=2, n_trials=40, progress=False)
    card = load_card("datasets/synthetic_reaching.yaml")
    report = ingest(tmp / "raw", tmp / "cat", card=card, progress=False)
    assert report.ok, report.failed
    cat = Catalog(tmp / "cat")
    recs = [cat.open(i) for i in cat.ids]
    yield recs
    for rec in recs:
        rec.close()


@pytest.fixture(scope="module")
def wiener(recordings):
    return WienerFilter().fit(recordings, TARGET)


# ---- binning ----------------------------------------------------------------------------------


def _brute_lagged(times, units, n_units, at, bin_size, n_lags, offset):
    out = np.zeros((len(at), n_lags, n_units), dtype=np.int64)
    for j, t in enumerate(at):
        for k in range(n_lags):
            lo, hi = t + offset - (k + 1) * bin_size, t + offset - k * bin_size
            for s, u in zip(times, units, strict=True):
                out[j, k, u] += lo <= s < hi
    return out


# The counting itself (bin_spikes, lagged_counts, the bin-edge rule) is tested in
# tests/data/test_binning.py; here, the features the baselines read from recordings.


def test_recording_lagged_counts_match_brute_force():
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 5, 400))
    units = rng.integers(0, 4, len(times))
    rec = Recording("r", {"spikes": Spikes(times, units, ["a", "b", "c", "d"])})
    at = np.sort(rng.uniform(0, 5, 60))
    binning = Binning(bin_size=0.02, n_lags=5, offset=0.01, sqrt=True)
    feats = recording_lagged_counts(rec, at, binning, chunk=16)  # several chunks
    want = _brute_lagged(times, units, 4, at, 0.02, 5, 0.01).reshape(60, -1)
    np.testing.assert_array_equal(feats, np.sqrt(want).astype(np.float32))


def test_recording_bins_are_a_window_of_the_grid_from_time_zero():
    rng = np.random.default_rng(2)
    times = np.sort(rng.uniform(0, 3, 300))
    units = rng.integers(0, 2, len(times))
    rec = Recording("r", {"spikes": Spikes(times, units, ["a", "b"])})
    binning = Binning(bin_size=0.05, sqrt=True)
    got = recording_bins(rec, binning, 10, 30)
    edges = 0.05 * np.arange(10, 31)
    brute = [
        [((times >= edges[k]) & (times < edges[k + 1]) & (units == u)).sum() for u in range(2)]
        for k in range(20)
    ]
    np.testing.assert_array_equal(got, np.sqrt(np.array(brute)).astype(np.float32))
    whole = recording_bins(rec, binning, 0, 60)
    np.testing.assert_array_equal(whole[10:30], got)  # bins of different calls line up


# ---- Wiener filter ----------------------------------------------------------------------------


def test_wiener_decodes_velocity(recordings, wiener):
    r2 = wiener.evaluate(recordings, TARGET, split="test")
    assert set(r2) == {r.id for r in recordings}
    # Measured 0.85 and 0.89 on these two sessions.
    assert min(r2.values()) >= 0.6, r2
    for session in wiener.sessions.values():
        assert session.alpha in wiener.alphas and session.valid_r2 > 0.6


def test_wiener_control_time_shifted_target(recordings, wiener):
    """Spikes cannot predict a target rolled by ~40 s: R^2 collapses (the decoder is real)."""
    shifted = []
    for rec in recordings:
        mem = rec.load()
        vel = mem[TARGET]
        rolled = RegularSeries(np.roll(vel.data, len(vel) // 3, axis=0), vel.rate, vel.start)
        shifted.append(Recording(rec.id, {**mem.signals, TARGET: rolled}, mem.duration))
    control = WienerFilter().fit(shifted, TARGET).evaluate(shifted, TARGET)
    real = wiener.evaluate(recordings, TARGET)
    assert max(control.values()) < 0.2, control
    assert all(real[k] > control[k] + 0.5 for k in real), (real, control)


def test_scored_on_exactly_the_evaluation_targets(recordings, wiener):
    seen = {}
    predict = wiener.predict

    def spy(rec, timestamps):
        seen[rec.id] = np.array(timestamps)
        return predict(rec, timestamps)

    wiener.predict = spy
    try:
        r2 = wiener.evaluate(recordings, TARGET, split="test")
    finally:
        del wiener.predict
    for rec in recordings:
        ev = evaluation_targets(rec, TARGET, "test")
        np.testing.assert_array_equal(seen[rec.id], ev.timestamps)
        pred = wiener.predict(rec, ev.timestamps)
        assert pred.shape == ev.values.shape
        assert r2[rec.id] == r2_score(ev.values, pred)
    # Any times can be asked for, in any order; the answer does not depend on the order.
    rec = recordings[0]
    t = np.array([3.0, 1.2345, 50.0])
    np.testing.assert_allclose(wiener.predict(rec, t)[[1, 0, 2]], wiener.predict(rec, t[[1, 0, 2]]))


# ---- GRU --------------------------------------------------------------------------------------


def test_gru_decodes_velocity_and_is_deterministic(recordings):
    gru = GRUDecoder(steps=150, eval_every=15, progress=False, seed=0)
    r2 = gru.fit(recordings, TARGET).evaluate(recordings, TARGET, split="test")
    # Measured 0.85 and 0.81 with these settings.
    assert min(r2.values()) >= 0.5, r2
    rec = recordings[0]
    ev = evaluation_targets(rec, TARGET, "test")
    assert gru.predict(rec, ev.timestamps).shape == ev.values.shape

    def short(seed):
        model = GRUDecoder(steps=10, eval_every=5, progress=False, seed=seed)
        return model.fit([rec], TARGET).predict(rec, ev.timestamps)

    a, b, c = short(1), short(1), short(2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ---- bad input --------------------------------------------------------------------------------


def _toy(with_target=True, with_train=True):
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 10, 500))
    signals = {"spikes": Spikes(times, rng.integers(0, 3, 500), ["a", "b", "c"])}
    if with_target:
        signals[TARGET] = RegularSeries(rng.normal(size=(1000, 2)), 100.0)
    if with_train:
        signals["train_domain"] = Intervals([0.0], [6.0])
    signals["valid_domain"] = Intervals([6.0], [8.0])
    signals["test_domain"] = Intervals([8.0], [10.0])
    return Recording("toy-rec", signals)


@pytest.mark.parametrize("model", [WienerFilter, GRUDecoder])
@pytest.mark.parametrize("missing", [TARGET, "train_domain"])
def test_missing_signal_is_a_clear_error(model, missing):
    rec = _toy(with_target=missing != TARGET, with_train=missing != "train_domain")
    decoder = model(progress=False) if model is GRUDecoder else model()
    with pytest.raises(InvalidDataError, match=f"'toy-rec' has no signal '{missing}'"):
        decoder.fit([rec], TARGET)


def test_unfitted_recording_is_a_clear_error(recordings, wiener):
    with pytest.raises(InvalidDataError, match="'toy-rec' was not fitted"):
        wiener.predict(_toy(), [1.0])
