"""neurofm.data.binning: the one bin-edge rule (half-open bins, edges ``start + k * bin_size``)."""

from __future__ import annotations

import numpy as np

from neurofm.data import Spikes
from neurofm.data.binning import bin_index, bin_spikes, lagged_counts


def _brute_lagged(times, units, n_units, at, bin_size, n_lags, offset):
    out = np.zeros((len(at), n_lags, n_units), dtype=np.int64)
    for j, t in enumerate(at):
        for k in range(n_lags):
            lo, hi = t + offset - (k + 1) * bin_size, t + offset - k * bin_size
            for s, u in zip(times, units, strict=True):
                out[j, k, u] += lo <= s < hi
    return out


def test_binning_matches_brute_force():
    rng = np.random.default_rng(0)
    n_units, bin_size, n_lags, offset = 3, 0.05, 4, 0.03
    at = rng.uniform(0.1, 1.9, 25)  # unsorted on purpose
    times = rng.uniform(0, 2, 300)
    # Spikes exactly on lag edges must fall in the bin the edge opens (half-open bins).
    times[:8] = [at[i] + offset - (i % 5) * bin_size for i in range(8)]
    units = rng.integers(0, n_units, len(times))
    got = lagged_counts(times, units, n_units, at, bin_size, n_lags, offset)
    want = _brute_lagged(times, units, n_units, at, bin_size, n_lags, offset)
    assert got.shape == (25, n_lags, n_units)
    np.testing.assert_array_equal(got, want)

    start, n_bins = 0.1, 30
    edges = start + bin_size * np.arange(n_bins + 1)
    times[8:12] = edges[[0, 5, 29, 30]]  # on edges, incl. the grid's end (excluded)
    grid = bin_spikes(times, units, n_units, start, n_bins, bin_size)
    brute = np.array(
        [
            [((times >= edges[k]) & (times < edges[k + 1]) & (units == u)).sum() for u in range(3)]
            for k in range(n_bins)
        ]
    )
    np.testing.assert_array_equal(grid, brute)


def test_bin_index_is_the_rule():
    edges = 0.1 + 0.05 * np.arange(4)  # 3 bins from 0.1
    t = np.array([0.0, edges[0], np.nextafter(edges[1], 0), edges[1], edges[2], edges[3], 9.0])
    np.testing.assert_array_equal(bin_index(t, 0.1, 3, 0.05), [-1, 0, 0, 1, 2, -1, -1])
    # No tolerance: 0.15 s is below the float edge 3 * 0.05, so it closes bin 2, not opens bin 3.
    assert 0.15 < 3 * 0.05
    np.testing.assert_array_equal(bin_index(np.array([0.15]), 0.0, 4, 0.05), [2])
    assert bin_index(np.empty(0), 0.0, 4, 0.05).shape == (0,)


def test_spikes_binned_uses_the_rule_and_counts_are_totals():
    spikes = Spikes([0.0, 0.25, 0.5, 0.75, 1.0, 1.2], [0, 1, 0, 0, 1, 1], ["a", "b"])
    counts = spikes.binned(0.5, 2)  # [0, 0.5), [0.5, 1.0); 1.0 and 1.2 are past the grid
    np.testing.assert_array_equal(counts, [[1, 1], [2, 0]])
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(spikes.binned(0.5, 2, start=0.25), [[1, 1], [1, 2]])
    win = spikes.window(0.5, 1.5)  # times relative to the window
    np.testing.assert_array_equal(win.binned(0.5, 2), [[2, 0], [0, 2]])
    np.testing.assert_array_equal(spikes.binned(10.0, 1)[0], spikes.counts())
    np.testing.assert_array_equal(spikes.counts(), [3, 3])
