"""Baselines scored on the same points as the models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurofm.baselines.hrf_ridge import HRFRidge
from neurofm.data.catalog import Catalog
from neurofm.errors import NeuroFMError, SpecError
from neurofm.evaluation.baselines import evaluate_baselines, evaluate_ridge, score_baselines
from neurofm.specs import BaselineOptions, EvaluateStep, validate


def test_ridge_is_fitted_on_every_train_domain_and_scored_on_the_split(tiny_samba_catalog):
    scores = evaluate_ridge(tiny_samba_catalog, "test")
    assert set(scores) == {"sub-01_run-1", "sub-02_run-1"}
    cat = Catalog(tiny_samba_catalog)
    recs = [cat.open(rid) for rid in cat.ids]
    try:
        direct = HRFRidge().fit(recs).evaluate(recs, "test")
    finally:
        for rec in recs:
            rec.close()
    for rid, s in scores.items():
        assert s["r2"] == pytest.approx(direct[rid]["r2"])
        np.testing.assert_allclose(s["r_per_parcel"], direct[rid]["r_per_parcel"])


def test_unknown_spike_baselines_are_refused(tiny_samba_catalog):
    with pytest.raises(NeuroFMError, match=r"\['ridge'\] are not spike baselines"):
        evaluate_baselines(tiny_samba_catalog, "hand_vel", "test", ["ridge"])


# ---- spike baselines: options from the evaluate step, tuning beside the scores ---------------


@pytest.fixture(scope="module")
def reaching_catalog(tmp_path_factory):
    """One synthetic reaching session with train/valid/test domains (the demo's card)."""
    from reaching_factory import reaching_catalog

    return reaching_catalog(tmp_path_factory.mktemp("spike_baselines"), 1, 30)


SMALL = {
    "wiener": {"alphas": [10.0, 1e4], "history": [0.1, 0.2]},
    "gru": {
        "candidates": [{"hidden": 8, "lr": 1e-2}, {"hidden": 16, "lr": 1e-2}],
        "max_steps": 30,
        "search_steps": 10,
        "eval_every": 10,
    },
}


def test_spike_baselines_follow_the_options_and_say_how_they_were_tuned(
    reaching_catalog, one_torch_thread
):
    from neurofm.baselines.decoders import GRUDecoder, WienerFilter
    from neurofm.baselines.features import Binning

    options = validate(BaselineOptions, SMALL, "pipe.yaml")
    scores = score_baselines(
        reaching_catalog, "hand_vel", "test", ["wiener", "gru"], options=options, progress=False
    )
    (rid,) = Catalog(reaching_catalog).ids
    assert list(scores.r2) == ["Wiener", "GRU"]
    # the very decoders the options describe, fitted directly, give the same scores
    cat = Catalog(reaching_catalog)
    with cat.open(rid) as rec:
        wiener = WienerFilter(Binning(), alphas=[10.0, 1e4], lags=[5, 10]).fit([rec], "hand_vel")
        gru = GRUDecoder(
            candidates=[(8, 1e-2), (16, 1e-2)],
            max_steps=30,
            search_steps=10,
            eval_every=10,
            progress=False,
        ).fit([rec], "hand_vel")
        assert scores.r2["Wiener"][rid] == wiener.evaluate([rec], "hand_vel")[rid]
        assert scores.r2["GRU"][rid] == pytest.approx(gru.evaluate([rec], "hand_vel")[rid])
        assert scores.tuning["Wiener"][rid]["describe"] == wiener.describe(rid)
        assert scores.tuning["GRU"][rid]["describe"] == gru.describe(rid)
    lines = scores.lines()
    assert lines[0].startswith("Wiener (1 session, ")
    assert lines[0].endswith(
        "s): ridge alpha (2 values, 10-10000) x history (0.1, 0.2 s) chosen per session "
        "on valid R^2"
    )
    valid = scores.tuning["Wiener"][rid]["valid_r2"]
    assert lines[1] == f"  {rid}: {wiener.describe(rid)} (valid R^2 {valid:.3f})"
    assert lines[2].startswith("GRU (1 session, ") and "hidden/lr in {8/1e-2, 16/1e-2}" in lines[2]
    assert lines[3].startswith(f"  {rid}: hidden ")
    saved = json.loads(json.dumps(scores.to_json()))  # plain JSON values
    assert saved["GRU"]["sessions"][rid]["r2"] == scores.r2["GRU"][rid]
    assert saved["GRU"]["sessions"][rid]["steps"] <= 30
    assert saved["Wiener"]["search"] == scores.searches["Wiener"]


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"gru": {"max_step": 5}}, r"pipe.yaml: gru.max_step: unknown key"),
        ({"gru": {"patience": 0}}, r"pipe.yaml: gru.patience: .*greater than or equal to 1"),
        ({"gru": {"candidates": []}}, r"pipe.yaml: gru.candidates: .*at least 1"),
        ({"wiener": {"history": [0.05]}}, r"history 0.05 s is not a multiple of bin_size 0.02"),
        ({"wiener": {"alphas": [-1]}}, r"pipe.yaml: wiener.alphas\[0\]: .*greater than or equal"),
        ({"ridge": {}}, r"pipe.yaml: ridge: unknown key"),
    ],
)
def test_bad_baseline_options_name_the_key(values, match):
    with pytest.raises(SpecError, match=match):
        validate(BaselineOptions, values, "pipe.yaml")


def test_evaluate_step_takes_baseline_options():
    step = validate(
        EvaluateStep,
        {"baselines": ["gru"], "baseline_options": {"gru": {"max_steps": 400}}},
        "pipe.yaml",
    )
    assert step.baseline_options.gru.max_steps == 400
    assert step.baseline_options.wiener == BaselineOptions().wiener  # the rest: defaults


def test_evaluate_step_reports_the_tuning_beside_the_scores(pretrained_poyo, tmp_path):
    """``neurofm evaluate`` / the evaluate step: the table, then how each baseline was tuned
    per session; the scores JSON keeps its shape, the tuning has its own file."""
    from neurofm.evaluation.checkpoint import evaluate_checkpoint

    root, ckpt = pretrained_poyo
    options = validate(
        EvaluateStep,
        {"split": "test", "baselines": ["wiener", "gru"], "baseline_options": SMALL, "plot": True},
        "pipe.yaml",
    )
    report, lines = evaluate_checkpoint(ckpt, root / "cat_pre", options, tmp_path)
    sessions = sorted(report.r2["POYO"])
    assert set(report.r2) == {"POYO", "Wiener", "GRU"} and len(sessions) == 2
    table_end = next(i for i, line in enumerate(lines) if line.startswith("Wiener ("))
    assert lines[table_end - 1].split("\n")[-1].startswith("mean")  # right after the table
    tuning = lines[table_end : table_end + 6]
    assert tuning[0].startswith("Wiener (2 sessions, ")
    assert [line.split(":")[0].strip() for line in tuning[1:3]] == sessions
    assert tuning[3].startswith("GRU (2 sessions, ")
    assert all(" lr 1e-2, best at step " in line for line in tuning[4:6])
    assert json.loads((tmp_path / "results_test.json").read_text()) == report.r2
    saved = json.loads((tmp_path / "baselines_test.json").read_text())
    assert saved == report.metrics["baselines"]
    assert set(saved["GRU"]["sessions"]) == set(sessions)
    for rid in sessions:
        assert saved["Wiener"]["sessions"][rid]["r2"] == report.r2["Wiener"][rid]
        assert saved["Wiener"]["sessions"][rid]["history_s"] in (0.1, 0.2)
    # the plot is labelled with the target's channel names and unit
    assert (tmp_path / "plots" / "poyo_test.png").is_file()
