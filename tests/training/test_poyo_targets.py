"""POYO on real data's targets: behaviour with NaN gaps (masked in the scaler and the loss),
per-trial values at an event time (regression) and categories (classification)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from target_factory import gap_recording, make_catalog, trial_recording

from neurofm.data.targets import TrialTarget
from neurofm.errors import InvalidDataError
from neurofm.evaluation.poyo import evaluate_poyo
from neurofm.models.poyo import ClassReadout, POYOConfig, RegressionReadout
from neurofm.tokenizers.spikes import ClassEncoder, TargetScaler
from neurofm.training.datasets import split_domains_of
from neurofm.training.poyo import TrainConfig, fit_scaler, load_poyo, train_poyo

REPO = Path(__file__).resolve().parents[2]
SMALL = dataclasses.replace(POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml"), depth=1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gaps(tmp_path_factory) -> Path:
    return make_catalog(tmp_path_factory.mktemp("gaps") / "catalog", [gap_recording()])


@pytest.fixture(scope="module")
def rsg(tmp_path_factory) -> Path:
    recs = [trial_recording("rsg-a", seed=0), trial_recording("rsg-b", seed=1)]
    return make_catalog(tmp_path_factory.mktemp("rsg") / "catalog", recs)


def test_the_scaler_ignores_nan_gaps(gaps):
    from neurofm.data import Catalog

    cat = Catalog(gaps)
    scaler = fit_scaler(cat, ["gap"], "hand_vel", split_domains_of(cat, "train"))
    vel = gap_recording()["hand_vel"].data[:1200]  # the train domain, [0, 12 s)
    finite = vel[np.isfinite(vel).all(axis=1)]
    assert len(finite) == 1150
    np.testing.assert_array_equal(scaler.mean, finite.mean(axis=0))
    np.testing.assert_array_equal(scaler.std, finite.std(axis=0) + 1e-8)


def test_training_through_nan_gaps_keeps_the_loss_finite(gaps, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=4, unit_dropout=None)
    module, ckpt = train_poyo(gaps, SMALL, cfg, tmp_path / "run", progress=False)
    metrics = pd.read_csv(next((tmp_path / "run" / "logs").rglob("metrics.csv")))
    losses = metrics["train_loss"].dropna()
    assert len(losses) >= 2 and np.isfinite(losses).all()
    assert np.isfinite(float(module.trainer.callback_metrics["val_r2"]))
    model, scaler, _ = load_poyo(ckpt)
    result = evaluate_poyo(model, scaler, gaps, "hand_vel", "valid")  # rows 1250-1259 masked
    assert result.n_masked == 10 and np.isfinite(result.mean_r2)


def test_a_per_trial_value_is_learned_at_its_event_time(rsg, tmp_path):
    target = TrialTarget("tp", "set_time")
    cfg = TrainConfig(target=target, epochs=5, batch_size=8, lr=3e-3, unit_dropout=None)
    _, ckpt = train_poyo(rsg, SMALL, cfg, tmp_path / "run", progress=False)
    model, scaler, saved = load_poyo(ckpt)
    assert saved.target == target  # stored as plain types, read back as the dataclass
    assert isinstance(model.readout, RegressionReadout) and isinstance(scaler, TargetScaler)
    assert model.config.dim_out == 1
    result = evaluate_poyo(model, scaler, rsg, saved.target, "test")
    assert result.metric == "r2" and result.target == "tp@set_time"
    for rid, session in result.sessions.items():
        trials = trial_recording(rid, seed=0 if rid == "rsg-a" else 1)["trials"]
        np.testing.assert_allclose(session.timestamps, trials.columns["set_time"][50:])
        np.testing.assert_array_equal(session.truth[:, 0], trials.columns["tp"][50:])
    # the spikes say short (0.6 s) or long (1.0 s): a decoder that reads them scores high
    assert min(result.r2.values()) > 0.8, result.r2


def test_a_category_is_learned_with_logits_and_scored_by_balanced_accuracy(rsg, tmp_path):
    target = TrialTarget("is_short", "set_time", "class")
    cfg = TrainConfig(target=target, epochs=4, batch_size=8, lr=3e-3, unit_dropout=None)
    module, ckpt = train_poyo(rsg, SMALL, cfg, tmp_path / "run", progress=False)
    assert "val_balanced_accuracy" in module.trainer.callback_metrics
    model, encoder, saved = load_poyo(ckpt)
    assert isinstance(model.readout, ClassReadout) and model.config.dim_out == 2
    assert encoder == ClassEncoder(("False", "True")) and saved.target == target
    result = evaluate_poyo(model, encoder, rsg, saved.target, "test")
    assert result.metric == "balanced_accuracy" and result.metric_name == "balanced accuracy"
    assert all(np.isnan(v) for v in result.r2.values())
    assert min(result.scores.values()) >= 0.9, result.scores  # chance is 0.5


def test_fit_scaler_refuses_what_cannot_be_learned(rsg):
    from neurofm.data import Catalog

    cat = Catalog(rsg)
    domains = split_domains_of(cat, "train")
    with pytest.raises(InvalidDataError, match=r"holds object values, not numbers.*kind: class"):
        fit_scaler(cat, ["rsg-a"], TrialTarget("eye", "set_time"), domains)
    with pytest.raises(InvalidDataError, match=r"the target 'trials' is intervals, not a"):
        fit_scaler(cat, ["rsg-a"], "trials", domains)
    one = {"rsg-a": domains["rsg-a"].take(np.array([0]))}  # one trial: one class
    with pytest.raises(InvalidDataError, match=r"has 1 class\(es\) in the train domains"):
        fit_scaler(cat, ["rsg-a"], TrialTarget("is_short", "set_time", "class"), one)
