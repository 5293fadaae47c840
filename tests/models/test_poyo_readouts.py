"""POYO's readouts: linear + weighted MSE for values, logits + weighted cross-entropy for
classes; samples of weight 0 do not count, and both readouts load the same checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from neurofm.errors import NeuroFMError
from neurofm.models.poyo import POYO, ClassReadout, POYOConfig, RegressionReadout

TINY = dataclasses.replace(
    POYOConfig.from_yaml(Path(__file__).resolve().parents[2] / "models" / "poyo_tiny.yaml"),
    depth=1,
)


def test_regression_loss_is_the_weighted_mse_and_ignores_weight_zero():
    torch.manual_seed(0)
    pred, values = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    weights = torch.tensor([[1.0, 1, 0, 1, 0], [1, 0, 0, 1, 1]])
    readout = RegressionReadout(8, 3)
    loss = readout.loss(pred, values, weights)
    keep = weights > 0
    assert loss == pytest.approx(((pred[keep] - values[keep]) ** 2).mean().item(), rel=1e-6)
    values[~keep] = 1e6  # whatever sits under weight 0 does not count
    assert readout.loss(pred, values, weights) == pytest.approx(loss.item(), rel=1e-6)


def test_class_loss_is_the_weighted_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3)
    classes = torch.tensor([[0, 2, 1, 1], [2, 2, 0, 1]])
    weights = torch.tensor([[1.0, 1, 0, 1], [0, 1, 1, 1]])
    readout = ClassReadout(8, 3)
    loss = readout.loss(logits, classes[..., None].float(), weights)
    keep = weights > 0
    expected = F.cross_entropy(logits[keep], classes[keep])
    assert loss == pytest.approx(expected.item(), rel=1e-6)
    garbage = classes.clone()
    garbage[~keep] = 0
    assert readout.loss(logits, garbage[..., None].float(), weights) == pytest.approx(
        loss.item(), rel=1e-6
    )


def test_the_readout_is_chosen_per_target_kind_and_checkpoints_load_either_way():
    torch.manual_seed(0)
    regression = POYO(TINY, ["a/u0"], ["a"])
    assert type(regression.readout) is RegressionReadout  # the default
    classes = POYO(dataclasses.replace(TINY, dim_out=3), ["a/u0"], ["a"], readout="class")
    assert isinstance(classes.readout, ClassReadout) and classes.readout.out_features == 3
    assert list(classes.state_dict()) == list(regression.state_dict())
    with pytest.raises(NeuroFMError, match="readout must be one of"):
        POYO(TINY, readout="ordinal")
