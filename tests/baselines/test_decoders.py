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
    control = WienerFilter(lags=[10]).fit(shifted, TARGET).evaluate(shifted, TARGET)
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
    gru = GRUDecoder(candidates=[(64, 3e-3)], max_steps=150, eval_every=15, progress=False)
    r2 = gru.fit(recordings, TARGET).evaluate(recordings, TARGET, split="test")
    # Measured 0.85 and 0.81 with these settings.
    assert min(r2.values()) >= 0.5, r2
    rec = recordings[0]
    ev = evaluation_targets(rec, TARGET, "test")
    assert gru.predict(rec, ev.timestamps).shape == ev.values.shape

    def short(seed):
        model = GRUDecoder(max_steps=10, search_steps=5, eval_every=5, progress=False, seed=seed)
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


# ---- tuning: the Wiener filter's search --------------------------------------------------------


def test_wiener_search_picks_the_best_valid_pair_as_if_each_were_fitted_alone(recordings):
    """A shorter history's statistics are a block of the longest one's: the search must pick
    the (history, alpha) whose own fit has the best valid R^2, with that fit's weights."""
    rec = recordings[0]
    lags, alphas = (2, 4), (1.0, 1e3, 1e5)
    search = WienerFilter(alphas=alphas, lags=lags).fit([rec], TARGET)
    alone = {
        (k, a): WienerFilter(alphas=[a], lags=[k]).fit([rec], TARGET).sessions[rec.id]
        for k in lags
        for a in alphas
    }
    (k, a), best = max(alone.items(), key=lambda kv: kv[1].valid_r2)
    chosen = search.sessions[rec.id]
    assert (chosen.n_lags, chosen.alpha) == (k, a)
    assert chosen.valid_r2 == pytest.approx(best.valid_r2, abs=1e-9)
    np.testing.assert_allclose(chosen.weights, best.weights, rtol=1e-6, atol=1e-9)
    # Every pair's valid R^2 is reported, as fitted alone: equal up to the float32 products
    # of X^T X (a block of a larger product rounds differently), which a small penalty on an
    # ill-conditioned Gram matrix amplifies to ~1e-4.
    for (kk, aa), s in alone.items():
        assert search.tuning(rec.id)["grid"][f"{kk * 0.02:g}s/{aa:g}"] == pytest.approx(
            s.valid_r2, abs=1e-3
        )
    t = search.tuning(rec.id)
    assert t["alpha"] == a and t["history_s"] == pytest.approx(k * 0.02)
    assert search.describe(rec.id) == f"alpha {a:g}, history {k * 0.02:g} s"
    ev = evaluation_targets(rec, TARGET, "test")
    np.testing.assert_allclose(  # predictions use the chosen history
        search.predict(rec, ev.timestamps),
        WienerFilter(alphas=[a], lags=[k]).fit([rec], TARGET).predict(rec, ev.timestamps),
        rtol=1e-6,
        atol=1e-9,
    )


def test_wiener_default_search_is_history_by_alpha(wiener):
    assert wiener.lags == (5, 10, 15) and len(wiener.alphas) == 8
    assert wiener.search_description() == (
        "ridge alpha (8 values, 0.1-1e+06) x history (0.1, 0.2, 0.3 s) chosen per session "
        "on valid R^2"
    )
    for rid, session in wiener.sessions.items():
        assert len(wiener.tuning(rid)["grid"]) == 3 * 8
        assert session.valid_r2 == max(wiener.tuning(rid)["grid"].values())


# ---- tuning: the GRU's early stopping and search ---------------------------------------------


def test_gru_early_stops_and_keeps_the_best_weights(recordings):
    rec = recordings[0]
    gru = GRUDecoder(
        candidates=[(16, 3e-2)],
        max_steps=300,
        eval_every=5,
        patience=2,
        lr_patience=1,
        progress=False,
    ).fit([rec], TARGET)
    t = gru.tuning(rec.id)
    assert t["early_stopped"] and t["steps"] < 300
    # stopped `patience` evaluations after the best one
    assert t["steps"] == t["best_step"] + 2 * 5
    # the weights kept are the best evaluation's, not the last step's
    valid = evaluation_targets(rec, TARGET, "valid")
    assert r2_score(valid.values, gru.predict(rec, valid.timestamps)) == pytest.approx(
        t["valid_r2"], abs=1e-5
    )
    assert gru.describe(rec.id) == (
        f"hidden 16, lr 3e-2, best at step {t['best_step']} of {t['steps']}, early-stopped"
    )


def test_gru_search_continues_the_best_candidate(recordings):
    rec = recordings[0]
    gru = GRUDecoder(
        candidates=[(8, 1e-4), (16, 1e-2)],  # a hopeless learning rate, and a good one
        max_steps=40,
        search_steps=10,
        eval_every=10,
        patience=10,
        progress=False,
    ).fit([rec], TARGET)
    t = gru.tuning(rec.id)
    assert set(t["search"]) == {"8/1e-4", "16/1e-2"}
    assert t["search"]["16/1e-2"] > t["search"]["8/1e-4"]
    assert (t["hidden"], t["lr"]) == (16, 1e-2) and t["steps"] == 40 and not t["early_stopped"]
    assert t["total_steps"] == 10 + 40  # the loser stopped after its search steps
    assert t["valid_r2"] >= t["search"]["16/1e-2"]
    assert gru.search_description().startswith(
        "hidden/lr in {8/1e-4, 16/1e-2}, 10 steps each, the best on valid R^2 trained on; "
        "early stopping on valid R^2 every 10 steps"
    )


def test_gru_without_valid_samples_trains_the_first_candidate_to_max_steps(caplog):
    rec = _toy()
    signals = {k: v for k, v in rec.signals.items() if k != "valid_domain"}
    rec = Recording(rec.id, signals, rec.duration)
    gru = GRUDecoder(candidates=[(8, 1e-3), (16, 1e-3)], max_steps=12, progress=False)
    with caplog.at_level("WARNING"):
        gru.fit([rec], TARGET)
    t = gru.tuning(rec.id)
    assert (t["hidden"], t["steps"], t["search"], t["valid_r2"]) == (8, 12, {}, None)
    assert "no valid samples: no search, no early stopping" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"candidates": []}, r"GRUDecoder.candidates: need \(hidden >= 1, lr > 0\) pairs"),
        ({"candidates": [(16, 0.0)]}, r"GRUDecoder.candidates"),
        ({"max_steps": 0}, r"GRUDecoder.max_steps: need an integer >= 1, got 0"),
        ({"patience": 1.5}, r"GRUDecoder.patience: need an integer >= 1"),
        ({"dropout": 1.0}, r"GRUDecoder.dropout: need 0 <= dropout < 1, got 1.0"),
        ({"dropout": -0.1}, r"GRUDecoder.dropout: need 0 <= dropout < 1, got -0.1"),
    ],
)
def test_gru_bad_options(kwargs, match):
    with pytest.raises(InvalidDataError, match=match):
        GRUDecoder(**kwargs)


def test_wiener_bad_options():
    with pytest.raises(InvalidDataError, match=r"WienerFilter.lags: need integers >= 1"):
        WienerFilter(lags=[0, 5])
    with pytest.raises(InvalidDataError, match=r"WienerFilter.alphas: need values >= 0"):
        WienerFilter(alphas=[-1.0])


def test_spec_defaults_are_the_decoders_defaults():
    """The evaluate step's baseline_options and the Python classes agree on every default."""
    import inspect

    from neurofm.specs import BaselineOptions

    opts = BaselineOptions()
    wiener = WienerFilter()
    assert tuple(opts.wiener.alphas) == wiener.alphas
    assert tuple(opts.wiener.lags) == wiener.lags
    assert opts.wiener.bin_size == wiener.binning.bin_size
    defaults = {k: p.default for k, p in inspect.signature(GRUDecoder.__init__).parameters.items()}
    assert [(c.hidden, c.lr) for c in opts.gru.candidates] == list(defaults["candidates"])
    for name in ("max_steps", "search_steps", "eval_every", "patience", "lr_patience"):
        assert getattr(opts.gru, name) == defaults[name], name
    assert (opts.gru.batch_size, opts.gru.seed) == (defaults["batch_size"], defaults["seed"])
