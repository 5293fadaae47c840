"""Spike plots on a recording whose spikes are placed by hand, so every plotted number is known."""

from __future__ import annotations

import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import pytest

from neurofm.data import Intervals, Recording, RegularSeries, Spikes, Units
from neurofm.data.storage import LazySpikes
from neurofm.errors import InvalidDataError
from neurofm.viz.spikes import plot_psth, plot_raster, plot_trial

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Five trials; the last has no go cue (a failed trial). PSTH windows: go - 0.2 .. go + 0.4.
STARTS = np.array([0.5, 2.5, 4.5, 6.5, 8.5])
GO = np.array([1.0, 3.0, 5.0, 7.0, np.nan])
TARGET = np.array([0.0, 90.0, 0.0, 90.0, 0.0])
W0, W1, BIN = -0.2, 0.4, 0.1
N_BINS = 6
IDS = ["a", "b", "c"]
AREAS = ["PMd", "M1", "PMd"]  # sorted by area: b (M1), then a, c (PMd, in table order)


def known_counts() -> np.ndarray:
    """counts[trial, bin, unit] of the four trials with a go cue: 0 to 3 spikes, varying."""
    i, k, u = np.meshgrid(np.arange(4), np.arange(N_BINS), np.arange(3), indexing="ij")
    return (2 * i + u + k * (u + 1)) % 4


def spike_table() -> tuple[np.ndarray, np.ndarray]:
    times, units = [], []
    counts = known_counts()
    for i in range(4):
        for k in range(N_BINS):
            for u in range(3):
                n = counts[i, k, u]
                # spread inside the bin, well away from its edges
                times += [GO[i] + W0 + BIN * (k + (j + 1) / (n + 1)) for j in range(n)]
                units += [u] * n
        # spikes outside every PSTH window: never counted
        times += [GO[i] - 0.45, GO[i] + 0.6]
        units += [0, 2]
    # the raster test's edges (1.5 is in its range, 4.5 is not), and spikes of the failed trial
    times += [1.5, 4.5, 9.0, 9.05]
    units += [1, 0, 1, 1]
    order = np.argsort(times, kind="stable")
    return np.asarray(times)[order], np.asarray(units)[order]


@pytest.fixture(scope="module")
def rec() -> Recording:
    times, units = spike_table()
    t = np.arange(0, 10.5, 0.01)
    trials = Intervals(
        STARTS,
        STARTS + 1.5,
        columns={"go_cue_time": GO, "target_dir": TARGET},
        time_columns=["go_cue_time"],
        name="trials",
    )
    return Recording(
        "sub-X_ses-1",
        {
            "spikes": Spikes(times, units, Units(IDS, {"area": AREAS})),
            "hand_vel": RegularSeries(
                np.c_[np.sin(t), np.cos(t)], rate=100.0, channels=["x", "y"], unit="m/s"
            ),
            "trials": trials,
        },
        duration=10.5,
    )


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _sem(rates: np.ndarray) -> np.ndarray:
    return rates.std(axis=0, ddof=1) / np.sqrt(rates.shape[0])


def _band(ax, index: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edge of fill_between band ``index`` at each ``x``."""
    vertices = ax.collections[index].get_paths()[0].vertices
    lo = [vertices[np.isclose(vertices[:, 0], v), 1].min() for v in x]
    hi = [vertices[np.isclose(vertices[:, 0], v), 1].max() for v in x]
    return np.asarray(lo), np.asarray(hi)


CENTERS = W0 + BIN * (np.arange(N_BINS) + 0.5)


# --------------------------------------------------------------------------------------------
# PSTH
# --------------------------------------------------------------------------------------------


def test_population_psth_plots_the_known_rates_with_sem(rec):
    fig = plot_psth(rec, align="go_cue_time", window=(W0, W1), bin_size=BIN)
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    rates = known_counts() / BIN  # Hz, [trial, bin, unit]
    population = rates.mean(axis=2)  # mean rate per unit, per trial
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), CENTERS)
    np.testing.assert_allclose(line.get_ydata(), population.mean(axis=0))
    lo, hi = _band(ax, 0, CENTERS)
    sem = _sem(population)
    assert sem.max() > 0  # the band is not trivially empty
    np.testing.assert_allclose(lo, population.mean(axis=0) - sem)
    np.testing.assert_allclose(hi, population.mean(axis=0) + sem)
    # the failed trial (NaN go cue) is left out
    assert line.get_label() == "all trials (n=4)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["all trials (n=4)", "± SEM across trials", "go_cue"]  # band explained


def test_unit_psth_one_panel_per_chosen_unit(rec):
    fig = plot_psth(rec, window=(W0, W1), bin_size=BIN, by="unit", units=["c", 0])
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["c (PMd)", "a (PMd)"]  # id (area)
    rates = known_counts() / BIN
    for ax, u in zip(shown, [2, 0], strict=True):
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), rates[:, :, u].mean(axis=0))
        lo, hi = _band(ax, 0, CENTERS)
        np.testing.assert_allclose(hi - lo, 2 * _sem(rates[:, :, u]))


def test_unit_psth_default_picks_the_most_active_units(rec):
    totals = known_counts().sum(axis=(0, 1))
    best = int(np.argmax(totals))
    fig = plot_psth(rec, window=(W0, W1), bin_size=BIN, by="unit", max_units=1)
    want = [f"{IDS[best]} ({AREAS[best]})"]
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == want


def test_psth_grouped_by_a_trial_column(rec):
    fig = plot_psth(rec, window=(W0, W1), bin_size=BIN, group_by="target_dir")
    ax = fig.axes[0]
    population = (known_counts() / BIN).mean(axis=2)
    lines = ax.get_lines()[:2]
    assert [ln.get_label() for ln in lines] == ["target_dir=0 (n=2)", "target_dir=90 (n=2)"]
    np.testing.assert_allclose(lines[0].get_ydata(), population[[0, 2]].mean(axis=0))
    np.testing.assert_allclose(lines[1].get_ydata(), population[[1, 3]].mean(axis=0))


def test_psth_rows_select_trials(rec):
    fig = plot_psth(rec, window=(W0, W1), bin_size=BIN, by="unit", units=["b"], rows=[1, 3])
    rates = known_counts()[[1, 3], :, 1] / BIN
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), rates.mean(axis=0))


def test_psth_leaves_out_windows_that_leave_the_recording(rec):
    # aligned on the trials' ends (2.0 ... 10.0 s): the last window [10, 11) passes 10.5 s
    fig = plot_psth(rec, align="end", window=(0.0, 1.0), bin_size=0.5)
    assert fig.axes[0].get_lines()[0].get_label() == "all trials (n=4)"


def test_psth_reads_only_the_aligned_windows_of_a_lazy_recording(rec, tmp_path, monkeypatch):
    rec.save(tmp_path / "rec.h5")
    calls = []
    window = LazySpikes.window

    def spy(self, start, end):
        calls.append((start, end))
        return window(self, start, end)

    def no_load(self):
        raise AssertionError("plot_psth read the whole spike train")

    monkeypatch.setattr(LazySpikes, "window", spy)
    monkeypatch.setattr(LazySpikes, "load", no_load)
    with Recording.open(tmp_path / "rec.h5") as lazy:
        fig = plot_psth(lazy, window=(W0, W1), bin_size=BIN)
    np.testing.assert_allclose(calls, [(g + W0, g + W0 + N_BINS * BIN) for g in GO[:4]])
    population = (known_counts() / BIN).mean(axis=2)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), population.mean(axis=0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"align": "reward_time"}, r"trials\.reward_time: no such column to align on"),
        ({"group_by": "colour"}, r"trials\.colour: no such column to group by"),
        ({"rows": [0, 9]}, r"trial 9 out of range \[0, 5\)"),
        ({"spikes": "mua"}, "no spikes signal 'mua'"),
        ({"trials": "epochs"}, "no intervals signal 'epochs'"),
        ({"trials": "spikes"}, "signal 'spikes' holds spikes, expected intervals"),
        ({"units": ["zz"]}, r"spikes\.units: no unit with id 'zz'"),
        ({"bin_size": 0.07}, "must divide the window"),
        ({"window": (0.4, -0.2)}, "finite start < end"),
        ({"by": "area"}, "by must be 'population' or 'unit'"),
    ],
)
def test_psth_errors_name_the_field(rec, kwargs, match):
    with pytest.raises(InvalidDataError, match=match):
        plot_psth(rec, **{"window": (W0, W1), "bin_size": BIN, **kwargs})


def test_psth_without_any_usable_trial(rec):
    with pytest.raises(InvalidDataError, match=r"trials\.go_cue_time: no trial"):
        plot_psth(rec, window=(W0, W1), bin_size=BIN, rows=[4])


def test_psth_png_written_atomically(rec, tmp_path):
    path = tmp_path / "figs" / "psth.png"
    fig = plot_psth(rec, window=(W0, W1), bin_size=BIN, path=path)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in path.parent.iterdir()) == ["psth.png"]  # no temp file left


# --------------------------------------------------------------------------------------------
# raster
# --------------------------------------------------------------------------------------------


def _expected(start: float, end: float, row_of_unit: list[int]) -> set[tuple[float, int]]:
    times, units = spike_table()
    keep = (times >= start) & (times < end)
    return {(float(t), row_of_unit[u]) for t, u in zip(times[keep], units[keep], strict=True)}


def _drawn(fig) -> set[tuple[float, int]]:
    offsets = np.asarray(fig.axes[0].collections[0].get_offsets())
    assert len({tuple(o) for o in offsets}) == len(offsets)  # no spike drawn twice
    return {(float(t), int(r)) for t, r in offsets}


def test_raster_draws_exactly_the_spikes_in_the_range(rec):
    fig = plot_raster(rec, 1.5, 4.5, sort_by=None)
    expected = _expected(1.5, 4.5, [0, 1, 2])
    assert (1.5, 1) in expected and not any(t == 4.5 for t, _ in expected)  # half-open
    drawn = _drawn(fig)
    assert len(drawn) == len(expected)
    # times come back as window-relative + start: equal up to rounding
    for (t, r), (te, re) in zip(sorted(drawn), sorted(expected), strict=True):
        assert r == re and t == pytest.approx(te, abs=1e-12)
    assert fig.axes[0].get_xlim() == (1.5, 4.5)


def test_raster_sorted_by_area(rec):
    fig = plot_raster(rec, 0.0, 10.5, sort_by="area")
    drawn = _drawn(fig)
    expected = _expected(0.0, 10.5, [1, 0, 2])  # a -> row 1, b -> row 0, c -> row 2
    assert {r for _, r in drawn} == {0, 1, 2}
    assert sorted((round(t, 9), r) for t, r in drawn) == sorted(
        (round(t, 9), r) for t, r in expected
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["M1", "PMd"]
    np.testing.assert_allclose(ax.get_yticks(), [0.0, 1.5])


def test_raster_groups_and_colours_units_by_area_by_default(rec, laid_out):
    fig = plot_raster(rec, 0.0, 10.5)
    assert _drawn(fig) == _drawn(plot_raster(rec, 0.0, 10.5, sort_by="area"))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "units by area"
    spikes = ax.collections[0]
    rows = np.asarray(spikes.get_offsets())[:, 1].astype(int)
    colours = spikes.get_facecolors()
    # row 0 is M1 (unit b), rows 1-2 PMd (a, c): one colour per area, different areas differ
    m1, pmd = colours[rows == 0], colours[rows > 0]
    assert len(m1) and len(pmd)
    assert (m1 == m1[0]).all() and (pmd == pmd[0]).all() and not np.allclose(m1[0], pmd[0])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["M1 (1 unit)", "PMd (2 units)", "trials (start to end)"]
    legend_colours = [h.get_color() for h in fig.legends[0].legend_handles[:2]]
    np.testing.assert_allclose(legend_colours, [m1[0], pmd[0]])
    laid_out(fig)


def test_raster_without_areas_is_black_in_table_order():
    times, units = spike_table()
    plain = Recording("r", {"spikes": Spikes(times, units, IDS)}, duration=10.5)
    fig = plot_raster(plain, 0.0, 10.5)
    assert _drawn(fig) == _expected(0.0, 10.5, [0, 1, 2])
    assert fig.axes[0].get_ylabel() == "unit" and not fig.legends  # nothing to explain


def test_raster_errors(rec):
    with pytest.raises(InvalidDataError, match=r"spikes\.units\.depth: no such column"):
        plot_raster(rec, 0.0, 1.0, sort_by="depth")
    with pytest.raises(InvalidDataError, match="finite start < end"):
        plot_raster(rec, 2.0, 1.0)
    with pytest.raises(InvalidDataError, match="no spikes signal 'mua'"):
        plot_raster(rec, 0.0, 1.0, spikes="mua")


# --------------------------------------------------------------------------------------------
# one trial
# --------------------------------------------------------------------------------------------


def test_plot_trial_raster_and_behaviour(rec, tmp_path):
    path = tmp_path / "trial.png"
    fig = plot_trial(rec, trial=1, path=path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    raster, vel = fig.axes  # hand_pos is absent and skipped
    start, end = STARTS[1] - 0.3, STARTS[1] + 1.5 + 0.3
    times, units = spike_table()
    keep = (times >= start) & (times < end)
    offsets = np.asarray(raster.collections[0].get_offsets())
    np.testing.assert_allclose(offsets[:, 0], times[keep], atol=1e-12)
    # rows grouped by area: b (M1) first, then a and c (PMd)
    np.testing.assert_array_equal(offsets[:, 1], np.array([1, 0, 2])[units[keep]])
    assert [t.get_text() for t in raster.get_yticklabels()] == ["M1", "PMd"]
    assert [ln.get_label() for ln in vel.get_lines()[:2]] == ["x", "y"]  # channel names
    assert vel.get_ylabel() == "hand_vel\n(m/s)"  # the unit
    # event names along the raster's top, at the events' times
    (top,) = raster.child_axes
    assert [t.get_text() for t in top.get_xticklabels()] == ["go_cue"]
    np.testing.assert_allclose(top.get_xticks(), [GO[1]])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["trial (start to end)", "trial events", "M1 (1 unit)", "PMd (2 units)"]
    assert vel.get_lines()[0].get_xdata()[0] == pytest.approx(start)
    # the go cue is marked on both axes
    for ax in (raster, vel):
        assert any(ln.get_xdata()[0] == GO[1] for ln in ax.get_lines())


def test_plot_trial_errors(rec):
    with pytest.raises(InvalidDataError, match=r"trials: trial 7 out of range \[0, 5\)"):
        plot_trial(rec, trial=7)
    with pytest.raises(InvalidDataError, match=r"trial -1 out of range"):
        plot_trial(rec, trial=-1)
    with pytest.raises(InvalidDataError, match="no intervals signal 'epochs'"):
        plot_trial(rec, trial=0, trials="epochs")


def test_on_a_simulated_reaching_session(tmp_path, laid_out):
    """A realistic session (the synthetic generator): every plot draws and saves."""
    from neurofm.synthetic.reaching import simulate_session

    s = simulate_session(0, n_trials=12, n_units_range=(20, 24))
    times = np.concatenate(s.spike_times)
    unit = np.repeat(np.arange(len(s.spike_times)), [len(x) for x in s.spike_times])
    order = np.argsort(times, kind="stable")
    ids = [f"u{i}" for i in range(len(s.spike_times))]
    tr = s.trials
    rec = Recording(
        f"sub-{s.subject_id}_ses-{s.session_id}",
        {
            "spikes": Spikes(times[order], unit[order], Units(ids, {"area": s.units["area"]})),
            "hand_vel": RegularSeries(s.hand_vel, rate=s.behavior_rate, unit="m/s"),
            "trials": Intervals(
                tr["start_time"],
                tr["stop_time"],
                columns={k: tr[k] for k in ("go_cue_time", "move_onset_time", "target_dir")},
                time_columns=["go_cue_time", "move_onset_time"],
            ),
        },
        duration=s.duration,
    )
    paths = {name: tmp_path / f"{name}.png" for name in ("trial", "raster", "psth", "units")}
    figures = [
        plot_trial(rec, trial=2, path=paths["trial"]),
        plot_raster(rec, 5.0, 15.0, sort_by="area", path=paths["raster"]),
        plot_psth(rec, align="move_onset_time", group_by="target_dir", path=paths["psth"]),
        plot_psth(rec, align="go_cue_time", by="unit", max_units=6, path=paths["units"]),
    ]
    for fig in figures:
        laid_out(fig)  # nothing clipped, nothing overlapping
    for path in paths.values():
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.stat().st_size > 10_000  # drawn, not an empty canvas
