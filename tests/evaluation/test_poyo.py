"""POYO's stitched evaluation, scored on exactly the points every decoder is scored on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.data import Catalog, Intervals, Recording, RegularSeries, Spikes
from neurofm.data.targets import evaluation_targets
from neurofm.errors import InvalidDataError
from neurofm.evaluation.poyo import evaluate_poyo
from neurofm.metrics import r2_score
from neurofm.models.poyo import POYO, POYOConfig
from neurofm.tokenizers.spikes import TargetScaler, unit_keys

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    rng = np.random.default_rng(0)
    cat = Catalog(tmp_path_factory.mktemp("poyo_eval") / "catalog", create=True)
    for rid in ("rec-a", "rec-b"):
        t = np.sort(rng.uniform(0, 12, 3000))
        cat.add(
            Recording(
                rid,
                {
                    "spikes": Spikes(t, rng.integers(0, 6, 3000), [f"u{i}" for i in range(6)]),
                    "hand_vel": RegularSeries(rng.normal(size=(1200, 2)), 100.0),
                    "train_domain": Intervals([0.0], [8.0]),
                    "test_domain": Intervals([8.0, 10.5], [10.0, 12.0]),
                },
            )
        )
    return cat.path


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = dataclasses.replace(POYOConfig.from_yaml(MODELS / "poyo_tiny.yaml"), depth=1)
    units = [k for rid in ("rec-a", "rec-b") for k in unit_keys(rid, [f"u{i}" for i in range(6)])]
    return POYO(config, units, ["rec-a", "rec-b"])


def test_scores_every_evaluation_point_once_in_the_targets_units(catalog, model):
    scaler = TargetScaler(np.array([1.0, -1.0]), np.array([2.0, 3.0]))
    result = evaluate_poyo(model, scaler, catalog, "hand_vel", "test")
    assert result.split == "test" and set(result.r2) == {"rec-a", "rec-b"}
    for rid, session in result.sessions.items():
        with Catalog(catalog).open(rid) as rec:
            truth = evaluation_targets(rec, "hand_vel", "test")
        np.testing.assert_array_equal(session.timestamps, truth.timestamps)
        np.testing.assert_array_equal(session.truth, truth.values)
        assert session.prediction.shape == truth.values.shape
        assert session.r2 == pytest.approx(r2_score(truth.values, session.prediction))
    assert result.mean_r2 == pytest.approx(np.mean(list(result.r2.values())))
    # only the recordings asked for, and the model is left in the mode it was in
    model.train()
    one = evaluate_poyo(model, scaler, catalog, "hand_vel", "test", recordings=["rec-b"])
    assert set(one.r2) == {"rec-b"} and model.training
    assert one.r2["rec-b"] == pytest.approx(result.r2["rec-b"])


def test_a_split_no_recording_has_is_a_clear_error(catalog, model):
    scaler = TargetScaler(np.zeros(2), np.ones(2))
    with pytest.raises(InvalidDataError, match="valid_domain"):
        evaluate_poyo(model, scaler, catalog, "hand_vel", "valid")
