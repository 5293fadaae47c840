"""Tables, JSON and plots of an evaluation, for POYO and SAMBA alike."""

from __future__ import annotations

import json

import numpy as np

from neurofm.evaluation.reports import (
    band_ranges,
    results_table,
    samba_lines,
    samba_results_table,
    samba_summary,
    write_json,
)
from neurofm.evaluation.samba import SambaReport, StimulusScores


def test_band_ranges_name_each_wavelet_band():
    assert band_ranges(128.0, 3) == ["D1 32-64 Hz", "D2 16-32 Hz", "D3 8-16 Hz", "A3 0-8 Hz"]


def test_results_table_has_a_row_per_session_and_a_mean():
    table = results_table({"POYO": {"s1": 0.5, "s2": 0.7}, "Wiener": {"s1": 0.1}})
    lines = table.splitlines()
    assert lines[0].split() == ["session", "POYO", "Wiener"]
    assert lines[2].split() == ["s1", "0.500", "0.100"]
    assert lines[3].split() == ["s2", "0.700", "nan"]  # a session a model lacks
    assert lines[-1].split() == ["mean", "0.600", "0.100"]


def _report() -> SambaReport:
    scores = {"r_mean": 0.5, "r_sd": 0.1, "r2": 0.2, "mse": 1.0, "r_per_parcel": np.ones(2)}
    return SambaReport(
        "test",
        per_recording={"rec-1": scores},
        shuffled={"rec-1": dict(scores, r_mean=0.01)},
        head=StimulusScores(0.5, 0.4, 0.6, 1 / 3, 30),
        alpha=np.array([0.7, 0.1, 0.1, 0.1]),
        hrf_peaks=np.array([5.0, 6.0]),
    )


def test_samba_table_json_and_lines(tmp_path):
    report = _report()
    ridge = {"rec-1": {"r_mean": 0.3, "r_sd": 0.2, "r2": 0.05}}
    table = samba_results_table(report, {"Ridge": ridge}).splitlines()
    assert table[0].split()[:3] == ["recording", "SAMBA", "r"] and "Ridge r" in table[0]
    cells = ["rec-1", "0.500", "+-", "0.10", "0.200", "0.010", "0.300", "+-", "0.20", "0.050"]
    assert table[1].split() == cells
    assert table[-1].split() == ["mean", "0.500", "0.010", "0.300"]
    bands = band_ranges(128.0, 3)
    summary = samba_summary(report, {"Ridge": ridge}, ["a", "b", "c"], bands)
    path = write_json(summary, tmp_path / "results_test.json")
    back = json.loads(path.read_text())
    assert back["samba"]["rec-1"]["r_per_parcel"] == [1.0, 1.0]
    assert back["stimulus"]["head"]["balanced_accuracy"] == 0.4
    assert back["stimulus"]["linear_probe"] is None
    assert list(back["wavelet_attention"]) == bands and back["hrf_peak_s"] == [5.0, 6.0]
    lines = samba_lines(report, {"Ridge": ridge}, bands, [tmp_path / "p.png"])
    assert lines[0].startswith("evaluate: SAMBA on the test split")
    assert "learned HRF peak: median 5.50 s (parcels 5.00-6.00 s)" in lines
    assert any(
        line.startswith("stimulus (end-to-end head on decoder states, 30 volumes)")
        for line in lines
    )
    assert lines[-1] == f"plot: {tmp_path / 'p.png'}"
