"""Scoring a saved checkpoint: POYO or SAMBA, with the baselines of its kind, typed options."""

from __future__ import annotations

import json

import pytest

from neurofm.errors import NeuroFMError
from neurofm.evaluation.checkpoint import evaluate_checkpoint
from neurofm.specs import EvaluateStep

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_samba_checkpoint_with_the_ridge_baseline(tiny_samba, tiny_samba_catalog, tmp_path):
    options = EvaluateStep(split="test", plot=False)  # baselines None: ridge for SAMBA
    report, lines = evaluate_checkpoint(tiny_samba[1], tiny_samba_catalog, options, tmp_path)
    assert set(report.r2) == {"SAMBA", "Ridge"}
    assert set(report.r2["SAMBA"]) == {"sub-01_run-1", "sub-02_run-1"} and not report.plots
    saved = json.loads((tmp_path / "results_test.json").read_text())
    assert saved == json.loads(json.dumps(report.metrics))
    assert lines[0].startswith("evaluate: SAMBA on the test split")
    none = EvaluateStep(baselines=[], plot=False)
    report, _ = evaluate_checkpoint(tiny_samba[1], tiny_samba_catalog, none, tmp_path)
    assert set(report.r2) == {"SAMBA"} and report.metrics["baselines"] == {}
    with pytest.raises(NeuroFMError, match=r"baselines \['gru', 'wiener'\] are for spikes"):
        evaluate_checkpoint(
            tiny_samba[1],
            tiny_samba_catalog,
            EvaluateStep(baselines=["wiener", "gru"], plot=False),
            tmp_path,
        )


def test_poyo_checkpoint_on_the_sessions_it_knows(pretrained_poyo, tmp_path):
    root, ckpt = pretrained_poyo
    options = EvaluateStep(split="test", baselines=["wiener"], plot=False)
    report, lines = evaluate_checkpoint(ckpt, root / "cat_pre", options, tmp_path)
    assert set(report.r2) == {"POYO", "Wiener"}
    assert set(report.r2["Wiener"]) == set(report.r2["POYO"]) and len(report.r2["POYO"]) == 2
    assert json.loads((tmp_path / "results_test.json").read_text()) == report.r2
    assert lines[0] == "evaluate: stitched R^2 on the test split"
    with pytest.raises(NeuroFMError, match="ridge baseline is for SAMBA"):
        evaluate_checkpoint(ckpt, root / "cat_pre", EvaluateStep(baselines=["ridge"]), tmp_path)
