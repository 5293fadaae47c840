"""Scoring real data's targets: NaN gaps masked and counted, per-trial values scored at their
event times (R^2), categories by balanced accuracy; the split a card evaluates on by default,
and a clear error when a split is empty."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from target_factory import UNITS, gap_recording, make_catalog, trial_recording

from neurofm.cli import main
from neurofm.data import Catalog, Intervals
from neurofm.data.targets import TrialTarget, evaluation_targets
from neurofm.errors import InvalidDataError
from neurofm.evaluation.poyo import evaluate_poyo
from neurofm.metrics import balanced_accuracy, r2_score
from neurofm.models.poyo import POYO, POYOConfig
from neurofm.pipeline.steps import run_evaluate_step
from neurofm.specs import DatasetCard, EvaluateStep, validate
from neurofm.tokenizers.spikes import ClassEncoder, TargetScaler, unit_keys
from neurofm.training.poyo import TrainConfig, train_poyo

SMALL = dataclasses.replace(
    POYOConfig.from_yaml(Path(__file__).resolve().parents[2] / "models" / "poyo_tiny.yaml"),
    depth=1,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def model_for(ids: list[str], dim_out: int, readout: str = "regression") -> POYO:
    torch.manual_seed(0)
    units = [k for rid in ids for k in unit_keys(rid, UNITS)]
    return POYO(dataclasses.replace(SMALL, dim_out=dim_out), units, ids, readout)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    recs = [gap_recording(), trial_recording("rsg-a", seed=0), trial_recording("rsg-b", seed=1)]
    return make_catalog(tmp_path_factory.mktemp("targets") / "catalog", recs)


def test_evaluation_targets_mask_non_finite_samples_and_count_them():
    rec = gap_recording()
    valid = evaluation_targets(rec, "hand_vel", "valid")  # [12, 15): rows 1250-1259 NaN in x
    assert valid.n_masked == 10 and len(valid.timestamps) == 290
    assert np.isfinite(valid.values).all()
    assert not np.isin(np.round(valid.timestamps * 100).astype(int), np.arange(1250, 1260)).any()
    test = evaluation_targets(rec, "hand_vel", "test")
    assert test.n_masked == 0 and len(test.timestamps) == 500


def test_nan_gaps_are_left_out_of_the_score(catalog):
    model = model_for(["gap"], 2)
    scaler = TargetScaler(np.array([1.0, -3.0]), np.array([2.0, 0.5]))
    result = evaluate_poyo(model, scaler, catalog, "hand_vel", "valid", recordings=["gap"])
    session = result.sessions["gap"]
    assert session.n_masked == result.n_masked == 10 and len(session.timestamps) == 290
    assert np.isfinite(session.r2)
    assert session.r2 == pytest.approx(r2_score(session.truth, session.prediction))


def test_per_trial_values_are_scored_at_their_event_times(catalog):
    model = model_for(["rsg-a", "rsg-b"], 1)
    scaler = TargetScaler(np.array([0.8]), np.array([0.2]))
    target = TrialTarget("tp", "set_time")
    result = evaluate_poyo(model, scaler, catalog, target, "valid", recordings=["rsg-a", "rsg-b"])
    assert result.metric == "r2" and result.target == "tp@set_time"
    for rid, session in result.sessions.items():
        trials = trial_recording(rid, seed=0 if rid == "rsg-a" else 1)["trials"]
        np.testing.assert_allclose(session.timestamps, trials.columns["set_time"][40:50])
        np.testing.assert_array_equal(session.truth[:, 0], trials.columns["tp"][40:50])
        assert (
            session.score
            == session.r2
            == pytest.approx(r2_score(session.truth, session.prediction))
        )


def test_categories_are_scored_by_balanced_accuracy(catalog):
    model = model_for(["rsg-a", "rsg-b"], 2, "class")
    encoder = ClassEncoder(("False", "True"))
    target = TrialTarget("is_short", "set_time", "class")
    result = evaluate_poyo(model, encoder, catalog, target, "test", recordings=["rsg-a", "rsg-b"])
    assert result.metric == "balanced_accuracy" and result.classes == ("False", "True")
    for rid, session in result.sessions.items():
        short = trial_recording(rid, seed=0 if rid == "rsg-a" else 1)["trials"].columns["is_short"]
        np.testing.assert_array_equal(session.truth[:, 0], short[50:].astype(float))
        assert set(np.unique(session.prediction)) <= {0.0, 1.0}
        expected = balanced_accuracy(session.truth[:, 0], session.prediction[:, 0])
        assert session.score == pytest.approx(expected) and np.isnan(session.r2)
    assert result.mean_score == pytest.approx(np.mean(list(result.scores.values())))


def test_a_model_for_values_cannot_score_classes(catalog):
    model = model_for(["rsg-a"], 1)
    target = TrialTarget("is_short", "set_time", "class")
    with pytest.raises(InvalidDataError, match="is a class target but the model was trained on"):
        evaluate_poyo(model, TargetScaler(np.zeros(1), np.ones(1)), catalog, target, "test")


# --------------------------------------------------------------------------------------------
# evaluate_on, and an empty split
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nlb_like(tmp_path_factory) -> tuple[Path, Path]:
    """A catalog ingested with a card that evaluates on valid (test empty), and a checkpoint."""
    recs = []
    for rid, seed in (("rsg-a", 0), ("rsg-b", 1)):
        rec = trial_recording(rid, seed=seed)
        rec.signals["test_domain"] = Intervals([], [])
        rec.metadata.extra.update(dataset_card="nlb_like", evaluate_on="valid")
        recs.append(rec)
    root = tmp_path_factory.mktemp("nlb_like")
    catalog = make_catalog(root / "catalog", recs)
    cfg = TrainConfig(target="hand_vel", epochs=1, batch_size=8, unit_dropout=None)
    _, ckpt = train_poyo(catalog, SMALL, cfg, root / "run", progress=False, max_steps=2)
    return catalog, ckpt


def test_the_empty_split_error_names_the_card_and_the_split_it_evaluates(nlb_like):
    catalog, _ = nlb_like
    model = model_for(["rsg-a", "rsg-b"], 2)
    with pytest.raises(InvalidDataError) as err:
        evaluate_poyo(model, TargetScaler(np.zeros(2), np.ones(2)), catalog, "hand_vel", "test")
    assert str(err.value) == (
        f"{catalog}: no recording has a non-empty test_domain (dataset card 'nlb_like'); the "
        "card evaluates on valid: use that split"
    )


def test_evaluate_scores_the_cards_split_by_default(nlb_like, tmp_path, capsys):
    catalog, ckpt = nlb_like
    card = validate(
        DatasetCard,
        {
            "name": "nlb_like",
            "source": {"dandi": "000001"},
            "fields": {"target": "hand_vel", "split_column": "split"},
            "splits": {"by": "column", "values": {"test": "drop"}, "evaluate_on": "valid"},
        },
        "nlb_like.yaml",
    )
    options = EvaluateStep(baselines=[], plot=False)
    assert options.split is None
    report, lines = run_evaluate_step(options, card, catalog, ckpt, tmp_path)
    assert report.split == "valid" and (tmp_path / "results_valid.json").is_file()
    assert lines[0] == "evaluate: stitched R^2 on the valid split"
    assert main(["evaluate", str(ckpt), str(catalog), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (
        doc["split"] == "valid"
        and doc["metric"] == "r2"
        and set(doc["r2"])
        == {
            "rsg-a",
            "rsg-b",
        }
    )
    assert Catalog(catalog).ids == ["rsg-a", "rsg-b"]


def test_balanced_accuracy_counts_a_class_missing_from_the_truth_as_a_miss(recwarn):
    # recall of "a" 1/2, of "b" 1/1; "c" is not a class of the truth (a short test split)
    assert balanced_accuracy(np.array(["a", "a", "b"]), np.array(["a", "c", "b"])) == 0.75
    assert not [w for w in recwarn if "classes not in y_true" in str(w.message)]
