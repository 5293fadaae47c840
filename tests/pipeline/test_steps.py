"""The train and evaluate steps of a pipeline, called directly with typed options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from neurofm.errors import NeuroFMError, SpecError
from neurofm.pipeline.steps import EvaluateReport, model_kind, run_evaluate_step, run_train_step
from neurofm.specs import EvaluateStep, TrainStep, load_card

ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "datasets" / "synthetic_eeg_fmri.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_model_kind_reads_the_tag_and_names_the_file_when_wrong(tmp_path):
    assert model_kind(ROOT / "models" / "samba.yaml") == "samba"
    assert model_kind(ROOT / "models" / "poyo_tiny.yaml") == "poyo"
    bad = tmp_path / "m.yaml"
    bad.write_text("model: transformer\ndim: 8\n")
    with pytest.raises(SpecError, match=r"m\.yaml: model: expected 'poyo' or 'samba', got 'tr"):
        model_kind(bad)


def test_train_step_refuses_a_wrong_model_tag_and_a_missing_catalog(tiny_samba_catalog, tmp_path):
    card = load_card(CARD)
    (tmp_path / "wrong.yaml").write_text("model: samb\n")
    with pytest.raises(SpecError, match=r"wrong\.yaml: model: expected 'poyo' or 'samba'"):
        run_train_step(
            TrainStep(model="wrong.yaml"), card, tiny_samba_catalog, tmp_path, tmp_path, False
        )
    with pytest.raises(NeuroFMError, match="no catalog to train on"):
        run_train_step(TrainStep(), card, tmp_path / "none", tmp_path, tmp_path, False)
    samba = yaml.safe_load((ROOT / "models" / "samba.yaml").read_text())
    (tmp_path / "samba.yaml").write_text(yaml.safe_dump(samba))
    opts = TrainStep(model="samba.yaml", unit_dropout=(1, 2, 3))
    with pytest.raises(NeuroFMError, match="unit_dropout is a POYO option"):
        run_train_step(opts, card, tiny_samba_catalog, tmp_path, tmp_path, False)


def test_typed_evaluate_step_scores_a_checkpoint(tiny_samba, tiny_samba_catalog, tmp_path):
    card = load_card(CARD)
    opts = EvaluateStep(split="valid", baselines=["ridge"], plot=False)
    report, lines = run_evaluate_step(opts, card, tiny_samba_catalog, tiny_samba[1], tmp_path)
    assert isinstance(report, EvaluateReport) and report.ok and report.split == "valid"
    assert set(report.r2) == {"SAMBA", "Ridge"}
    assert json.loads((tmp_path / "results_valid.json").read_text())["split"] == "valid"
    assert lines[0].startswith("evaluate: SAMBA on the valid split")
    with pytest.raises(NeuroFMError, match="are for spikes"):
        run_evaluate_step(
            EvaluateStep(baselines=["gru"]), card, tiny_samba_catalog, tiny_samba[1], tmp_path
        )
