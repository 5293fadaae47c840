"""Every public NWB dataset card, end to end on a replica of its dandiset.

Each replica (``neurofm.testing.replicas``) is a few small NWB files in the dandiset's layout,
with the real files' quirks, served by the local DANDI server under the card's dandiset id and
pinned version. The card's own pipeline (``pipelines/<card>.yaml``) runs through ``neurofm
run`` with a tiny training budget: pull -> ingest -> train -> evaluate (the card's default
split). A run must end with finite scores, and the catalog must hold exactly what the replica
holds minus what the card's repairs drop, which the test computes from the replica's own
record of its quirks (never from neurofm's report).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from neurofm.specs import load_card, load_pipeline
from neurofm.testing.replicas import NWB_REPLICAS, serve_replicas

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / "datasets"
PIPELINES = REPO / "pipelines"
CARDS = sorted(NWB_REPLICAS)

#: A tiny model and batch for CPU tests. MC_RTT keeps its pipeline's model: its 0.5 s window
#: is what fits NLB's 600 ms trials (the tiny model's window is 1 s).
FAST = ["--epochs", "1", "steps.train.batch_size=8", "steps.evaluate.plot=false"]
TINY = ["steps.train.model=../models/poyo_tiny.yaml"]
#: Every card's evaluate step keeps its default split (the card's splits.evaluate_on). The
#: GRU baseline costs ~10-35 s per run on CPU, so the cards with a series target score POYO
#: against the Wiener filter only; DMFC_RSG's evaluate step runs exactly as written (its
#: default baselines are none: Wiener and GRU decode series, not one value per trial).
AS_WRITTEN = "dmfc_rsg"

#: Which trials each card's validity rule keeps, computed here from the replica's columns
#: (independently of neurofm's expression parser).
VALID = {
    "mc_maze": lambda t: t["success"].astype(bool),
    "mc_maze_large": lambda t: t["success"].astype(bool),
    "mc_maze_medium": lambda t: t["success"].astype(bool),
    "mc_maze_small": lambda t: t["success"].astype(bool),
    "mc_rtt": lambda t: np.ones(len(t["start_time"]), bool),
    "area2_bump": lambda t: t["result"] == "R",
    "dmfc_rsg": lambda t: ~t["is_outlier"].astype(bool),
    "churchland_2012": lambda t: (t["task_success"] == 1) & (t["discard_trial"] == 0),
    "perich_miller_2018": lambda t: t["result"] == "R",
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DANDI_NO_ET", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _expected_drops(card, quirks: dict) -> tuple[list[str], list[int], list[int]]:
    """(units dropped, trial rows dropped, trial rows clipped) by the card's repairs."""
    repairs = card.repairs
    units = (
        list(quirks.get("unsorted_units", [])) if repairs.unsorted_spikes == "drop_units" else []
    )
    trials = (
        sorted({i for pair in quirks.get("overlapping_trials", []) for i in pair})
        if repairs.overlapping_trials == "drop"
        else []
    )
    clipped = (
        [pair[0] for pair in quirks.get("float_noise_overlaps", [])]
        if repairs.trial_overlap is not None
        else []
    )
    return units, trials, clipped


def _domain_of(rec, times: np.ndarray) -> np.ndarray:
    """Which domain (train/valid/test, '' for none) each time falls in."""
    out = np.full(len(times), "", dtype=object)
    for split in ("train", "valid", "test"):
        name = f"{split}_domain"
        if name in rec:
            inside = rec[name].load().contains(times)
            assert not (inside & (out != "")).any(), f"a time in two domains ({split})"
            out[inside] = split
    return out


@pytest.mark.parametrize("name", CARDS)
def test_card_runs_end_to_end_on_its_replica(name, replica, tmp_path, capsys, one_torch_thread):
    from neurofm.cli import main
    from neurofm.data.catalog import Catalog

    truth = replica(name)
    card = load_card(DATASETS / f"{name}.yaml")
    pipeline = PIPELINES / f"{name}.yaml"
    load_pipeline(pipeline)  # the pipeline as written validates against its card
    assert truth.dandiset_id == card.source.dandi
    if card.source.version:
        assert card.source.version in truth.published_versions
    work = tmp_path / "work"
    options = list(FAST) + ([] if name == "mc_rtt" else TINY)
    if name != AS_WRITTEN and isinstance(card.fields.target, str):
        options.append("steps.evaluate.baselines=[wiener]")
    with serve_replicas([truth]) as server:
        code = main(
            ["run", str(pipeline), "--api-url", server.api_url, "--workdir", str(work), *options]
        )
    out, err = capsys.readouterr()
    assert code == 0, f"neurofm run {name} failed:\n{err[-3000:]}"
    assert "Traceback" not in out + err

    # pull: exactly the files the card's include selects (never the NLB test-only files)
    selected = {f.path: f for f in truth.selected(card.source.include)}
    assert selected and not any(f.test_only for f in selected.values())
    pulled = sorted(p.relative_to(work / "raw").as_posix() for p in (work / "raw").rglob("*.nwb"))
    assert pulled == sorted(selected)

    # evaluate: the card's default split, a finite score per recording
    split = card.splits.evaluate_on
    results = json.loads((work / f"results_{split}.json").read_text())
    catalog = Catalog(work / "catalog")
    assert sorted(results["POYO"]) == sorted(catalog.ids)
    for model, scores in results.items():
        for rid, score in scores.items():
            assert math.isfinite(score), (model, rid, score)

    # the catalog: the replica's truth minus exactly what the card's repairs dropped
    assert len(catalog) == len(selected)
    for entry in catalog.entries:
        with catalog.open(entry["id"]) as rec:
            f = selected[rec.provenance.asset_path]
            assert rec.provenance.dandiset_id == truth.dandiset_id
            if card.source.version:
                assert rec.provenance.dandiset_version == card.source.version
            units, dropped, clipped = _expected_drops(card, f.quirks)
            assert entry["n_units"] == f.n_units - len(units)
            assert entry["n_spikes"] == f.n_spikes - sum(f.unit_spikes[u] for u in units)
            spikes = rec["spikes"].load()
            assert sorted(map(str, spikes.units.ids)) == sorted(set(f.unit_spikes) - set(units))
            assert np.all(np.diff(spikes.timestamps) >= 0)
            trials = rec[card.fields.trials].load()
            assert len(trials) == f.n_trials - len(dropped)
            kept = np.setdiff1d(np.arange(f.n_trials), dropped)
            np.testing.assert_array_equal(trials.start, f.trials["start_time"][kept])
            if isinstance(card.fields.target, str):
                target = rec[card.fields.target].load()
                assert len(target) == f.behaviour[card.fields.target]
                values = target.data if target.kind == "regular" else target.values
                nan = int(np.isnan(values).any(axis=1).sum())
                assert nan == f.nan_samples[card.fields.target]
            repairs = rec.provenance.extra.get("repairs") or {}
            if card.repairs.unsorted_spikes == "drop_units":
                assert sorted(repairs["unsorted_spikes"]["units"]) == sorted(units)
            if card.repairs.overlapping_trials == "drop":
                assert repairs["overlapping_trials"]["trials"] == dropped
            if card.repairs.trial_overlap is not None:
                assert repairs["trial_overlap"]["trials"] == clipped
                ends = f.trials["stop_time"].copy()
                ends[clipped] = f.trials["start_time"][np.asarray(clipped, int) + 1]
                np.testing.assert_array_equal(trials.end, ends[kept])

            # domains: every kept trial that passes the card's rule sits in its split, the
            # others in none (the rule is computed here from the replica's columns)
            columns = {k: np.asarray(v)[kept] for k, v in f.trials.items()}
            valid = VALID[name](columns)
            mid = (trials.start + trials.end) / 2
            where = _domain_of(rec, mid)
            if card.splits.by == "column":
                mapped = np.array(
                    [card.splits.values.get(str(v), str(v)) for v in columns["split"]], dtype=object
                )
                expected = np.where(valid & (mapped != "drop"), mapped, "")
                np.testing.assert_array_equal(where, expected)
            else:
                assert ((where != "") == valid).all()
                assert {"train", "valid", "test"} <= set(where[valid]) or valid.sum() < 5


def test_a_card_rule_the_file_cannot_meet_is_one_clear_line(replica, tmp_path, capsys):
    """Area2_Bump's ``result`` holds strings: a bare ``valid_trials: result`` would keep every
    trial. The run must stop on one line naming the file and the column, not train on
    everything, and not end on a misleading later error."""
    from neurofm.cli import main

    truth = replica("area2_bump")
    pipeline = PIPELINES / "area2_bump.yaml"
    with serve_replicas([truth]) as server:
        code = main(
            [
                "run",
                str(pipeline),
                "--api-url",
                server.api_url,
                "--workdir",
                str(tmp_path / "work"),
                "card.fields.valid_trials=result",
                *FAST,
                *TINY,
            ]
        )
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("neurofm: error:")]
    assert errors, err[-2000:]
    assert "sub-Han_desc-train_behavior+ecephys.nwb" in errors[0]
    assert "'result'" in errors[0] and "strings" in errors[0]
    # nothing was trained on a silently kept-all table
    assert not (tmp_path / "work" / "poyo" / "last.ckpt").exists()
    assert not any("run the ingest step first" in line for line in errors)
