"""Objects explain themselves in Jupyter: short reprs with ids, counts and durations, HTML
tables, and nothing read from disk to build them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurofm.data.catalog import Catalog
from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals, IrregularSeries, RegularSeries, Spikes, Units
from neurofm.data.storage import LazyIntervals, LazyIrregularSeries, LazyRegularSeries, LazySpikes
from neurofm.display import config_repr, html_table


def _recording(rid: str = "sub-S0_ses-1") -> Recording:
    units = Units(["e1/u1", "e1/u2", "e2/u1"], {"area": ["M1", "M1", "PMd"]})
    spikes = Spikes([0.25, 0.5, 1.0, 79.5], [0, 1, 2, 1], units)
    vel = RegularSeries(np.zeros((16000, 2)), 200.0, 0.0, ["x", "y"], name="hand_vel", unit="m/s")
    cursor = IrregularSeries([0.0, 0.5, 40.0], np.zeros((3, 2)), ["x", "y"], name="cursor_pos")
    trials = Intervals(
        [1.0, 10.0],
        [5.0, 14.5],
        columns={"go_cue_time": [2.0, 11.0], "target_dir": [0, 90]},
        time_columns=["go_cue_time"],
        name="trials",
    )
    signals = {"spikes": spikes, "hand_vel": vel, "cursor_pos": cursor, "trials": trials}
    meta = {"subject_id": "S0", "session_id": "1", "modality": "ecephys"}
    return Recording(rid, signals, metadata=meta, provenance={"dandiset_id": "000000"})


def test_signal_reprs_give_counts_times_and_channels():
    rec = _recording()
    assert repr(rec.spikes) == "<Spikes 'spikes': 4 spikes, 3 units; time 0.2-79.5 s>"
    assert repr(rec.hand_vel) == (
        "<RegularSeries 'hand_vel': 16,000 samples x 2 channels; rate 200 Hz; "
        "time 0.0-80.0 s; channels x, y; unit m/s>"
    )
    assert repr(rec.cursor_pos) == (
        "<IrregularSeries 'cursor_pos': 3 samples x 2 channels; time 0.0-40.0 s; channels x, y>"
    )
    assert repr(rec.trials) == (
        "<Intervals 'trials': 2 intervals; time 1.0-14.5 s; columns go_cue_time, target_dir>"
    )
    assert repr(rec.spikes.units) == "<Units: 3 units (e1/u1, e1/u2, e2/u1); columns area>"
    empty = Spikes([], [], ["a"])
    assert repr(empty) == "<Spikes 'spikes': 0 spikes, 1 unit; time empty>"


def test_recording_repr_names_the_session_and_every_signal():
    text = repr(_recording())
    first, *lines = text.splitlines()
    assert first == (
        "<Recording 'sub-S0_ses-1': 80.0 s; subject S0; session 1; ecephys; dandi:000000"
    )
    assert lines[0] == "  spikes (Spikes): 4 spikes, 3 units; time 0.2-79.5 s"
    assert lines[3].startswith("  trials (Intervals): 2 intervals;") and text.endswith(">")
    html = _recording()._repr_html_()
    assert html.startswith("<table>") and html.endswith("</table>")
    assert html.count("<tr>") == 5  # header + one row per signal
    assert "sub-S0_ses-1" in html and "16,000 samples x 2 channels" in html


def test_lazy_reprs_read_no_data(tmp_path, monkeypatch):
    """A lazy recording's repr says what it holds without loading any signal."""
    _recording().save(tmp_path / "r.h5")

    def refuse(*_args, **_kwargs):
        raise AssertionError("a repr loaded data")

    for cls in (LazySpikes, LazyRegularSeries, LazyIrregularSeries, LazyIntervals):
        monkeypatch.setattr(cls, "load", refuse)
        monkeypatch.setattr(cls, "window", refuse)
    monkeypatch.setattr(LazyIntervals, "_loaded", refuse)
    with Recording.open(tmp_path / "r.h5") as lazy:
        text = repr(lazy)
        assert "lazy, r.h5" in text.splitlines()[0]
        assert "  spikes (Spikes): 4 spikes, 3 units; time 0.2-79.5 s" in text
        assert "  trials (Intervals): 2 intervals; time 1.0-14.5 s" in text
        assert repr(lazy.trials).endswith("; on disk in r.h5>")
        assert "<table>" in lazy._repr_html_() and "<table>" in lazy.spikes._repr_html_()


def test_catalog_repr_from_the_index(tmp_path):
    cat = Catalog(tmp_path / "cat", create=True)
    cat.add(_recording("sub-S0_ses-1"))
    cat.add(_recording("sub-S0_ses-2"))
    text = repr(cat)
    assert text.splitlines()[0].endswith(": 2 recordings, 1 subject, 2.7 min, 6 units")
    assert "  sub-S0_ses-2: subject S0; ecephys; 80.0 s; 3 units; M1, PMd" in text
    html = cat._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == 3
    assert "sub-S0_ses-1" in html and "spikes, hand_vel, cursor_pos, trials" in html


def test_config_reprs_show_what_differs_from_the_defaults():
    from neurofm.models.poyo import POYOConfig
    from neurofm.models.samba import SambaConfig
    from neurofm.specs import BaselineOptions, load_card
    from neurofm.training.poyo import TrainConfig

    cfg = POYOConfig(dim=32, depth=1)
    assert repr(cfg) == "POYOConfig(dim=32, depth=1)"
    assert eval(repr(cfg)) == cfg  # short, and still the same config
    assert repr(POYOConfig()) == "POYOConfig()"
    assert repr(SambaConfig(hidden=8)) == "SambaConfig(hidden=8)"
    assert repr(TrainConfig(epochs=3, lr=1e-3)) == "TrainConfig(epochs=3, lr=0.001)"
    assert repr(BaselineOptions(gru={"max_steps": 10})) == (
        "BaselineOptions(gru=GRUOptions(max_steps=10))"
    )
    root = Path(__file__).resolve().parents[1]
    card = load_card(root / "datasets" / "synthetic_reaching.yaml")
    assert repr(card).startswith("DatasetCard(name='synthetic_reaching'")
    html = cfg._repr_html_()
    assert html.startswith("<table>") and "2 fields set" in html
    assert "<b>32</b>" in html and "<b>dim_head</b>" not in html


def test_result_reprs():
    from neurofm.evaluation.baselines import BaselineScores
    from neurofm.evaluation.poyo import EvalResult, SessionPrediction
    from neurofm.pipeline.ingest import IngestReport
    from neurofm.training.finetune import FinetuneResult

    pred = SessionPrediction(
        "sub-S0_ses-1",
        np.arange(100.0),
        np.zeros((100, 2)),
        np.zeros((100, 2)),
        0.8125,
        channels=("x", "y"),
        unit="m/s",
    )
    assert repr(pred) == (
        "<SessionPrediction 'sub-S0_ses-1': score 0.812 on 100 points x 2 (x, y), m/s>"
    )
    result = EvalResult("test", {"sub-S0_ses-1": pred}, target="hand_vel")
    assert repr(result) == (
        "<EvalResult test split, hand_vel R^2: mean 0.812 over 1 session (sub-S0_ses-1 0.812)>"
    )
    assert result._repr_html_().startswith("<table>") and "<td style='text-align:left'>100<" in (
        result._repr_html_()
    )
    scores = BaselineScores(r2={"Wiener": {"a": 0.5, "b": 0.7}, "GRU": {"a": 0.6, "b": 0.8}})
    assert repr(scores) == "<BaselineScores: mean R^2 Wiener 0.600, GRU 0.700 over 2 sessions>"
    assert scores._repr_html_().count("<tr>") == 3
    ft = FinetuneResult(
        Path("run/last.ckpt"), "sub-S1_ses-2", "unit-id", 20, ["unit_emb.weight"], {"x": 0.5}, 0.5
    )
    assert repr(ft) == (
        "<FinetuneResult 'sub-S1_ses-2': unit-id on 20 trials; trains unit_emb.weight; "
        "R^2 0.500; last.ckpt>"
    )
    assert ft._repr_html_().startswith("<table>")
    report = IngestReport(Path("cat"), [("a.nwb", "a")], [], [("b.nwb", "b.nwb: bad units")])
    assert repr(report) == (
        "<IngestReport 'cat': 1 ingested, 0 up to date, 1 failed\n  failed b.nwb: b.nwb: bad units>"
    )
    assert report._repr_html_().count("<tr>") == 3


def test_samba_report_repr():
    from neurofm.evaluation.samba import SambaReport, StimulusScores

    report = SambaReport(
        "test",
        per_recording={"r1": {"r_mean": 0.5, "r_sd": 0.1, "r2": 0.2}},
        shuffled={"r1": {"r_mean": 0.01}},
        probe=StimulusScores(0.7, 0.6, 0.4, 1 / 3, 50),
    )
    assert repr(report) == (
        "<SambaReport test split; per-parcel r 0.500 over 1 recording; time-shuffled EEG "
        "0.010; stimulus probe balanced accuracy 0.600 (chance 0.333)>"
    )
    assert report._repr_html_().count("<tr>") == 2


def test_html_table_escapes_and_cuts():
    html = html_table("a <b>", [("<x>", i) for i in range(25)], ("k", "v"))
    assert "&lt;x&gt;" in html and "a &lt;b&gt;" in html and "... 5 more" in html
    assert html.count("<tr>") == 1 + 20 + 1


def test_config_repr_shows_values_that_cannot_be_compared():
    from dataclasses import dataclass, field

    @dataclass
    class C:
        a: object = field(default_factory=lambda: np.arange(3))

    assert config_repr(C()) == "C(a=array([0, 1, 2]))"  # == gives an array: shown, not hidden


def test_samba_bundle_repr_is_one_line_not_the_layers(tiny_samba):
    from neurofm.training.samba import load_samba

    bundle = load_samba(tiny_samba[1])
    text = repr(bundle)
    n = sum(p.numel() for p in bundle.model.parameters())
    assert text.startswith(f"<SambaBundle: {n:,} parameters; EEG 3 channels (C3, Cz, C4) -> ")
    assert "BOLD 3 parcels (p1, p2, p3); SambaConfig(" in text and "\n" not in text
