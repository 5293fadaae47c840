"""SAMBA's evaluation: stitched predictions, checkpoints, scores, controls and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from samba_factory import make_recording

from neurofm.cli import main
from neurofm.data.catalog import Catalog
from neurofm.errors import InvalidDataError, NeuroFMError
from neurofm.evaluation.samba import (
    evaluate_samba,
    predict_run,
    shuffled_eeg,
    stimulus_scores,
)
from neurofm.tokenizers.multimodal import VolumeWindow, load_paired_run
from neurofm.training.samba import (
    SambaBundle,
    is_samba_checkpoint,
    load_samba,
    samba_tokenizer,
    volume_windows,
)


def test_checkpoint_round_trip_gives_the_same_predictions(tiny_samba, tiny_samba_catalog):
    module, ckpt = tiny_samba
    assert is_samba_checkpoint(ckpt)
    assert module.global_step > 0
    bundle = load_samba(ckpt)
    assert bundle.channels == ["C3", "Cz", "C4"] and bundle.model.config.classes == ["a", "b"]
    run = load_paired_run(
        Catalog(tiny_samba_catalog).open("sub-01_run-1"), bundle.model.config.geometry
    )
    a = predict_run(bundle, run, "test")
    module.model.eval()
    live = SambaBundle(module.model, module.scaler, module.cfg, module.channels, module.parcels)
    b = predict_run(live, run, "test")
    np.testing.assert_allclose(a.pred, b.pred, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.volumes, run.volumes_in("test"))
    # predictions are back in the BOLD's units (parcel 3 is 3x parcel 1 in the data)
    assert a.pred[:, 2].std() > a.pred[:, 0].std()


def test_predictions_are_the_mean_over_the_windows_covering_each_volume(
    tiny_samba, tiny_samba_catalog
):
    bundle = load_samba(tiny_samba[1])
    model, w = bundle.model, bundle.model.config.window_trs
    run = load_paired_run(Catalog(tiny_samba_catalog).open("sub-02_run-1"), model.config.geometry)
    tok = samba_tokenizer(model, bundle.scaler)
    got = predict_run(bundle, run, "test", tokenizer=tok)
    sums, count = np.zeros(run.bold.shape), np.zeros(len(run.bold))
    with torch.no_grad():
        for win in volume_windows([run], "test", w, w // 2):
            energy = torch.from_numpy(tok(run, win.start)["energy"])[None]
            sums[win.start : win.start + w] += model(energy=energy)["bold"][0].numpy()
            count[win.start : win.start + w] += 1
    vols = run.volumes_in("test")
    want = bundle.scaler.bold_inverse(sums[vols] / count[vols][:, None])
    np.testing.assert_allclose(got.pred, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.true, run.bold[vols])


def test_shuffled_eeg_pairs_each_window_with_another_of_its_run():
    windows = [VolumeWindow("a", s) for s in (0, 3, 6, 9)] + [VolumeWindow("b", 0)]
    mixed = shuffled_eeg(windows, seed=0)
    assert [(m.recording_id, m.start) for m in mixed] == [
        (w.recording_id, w.start) for w in windows
    ]
    run_a = mixed[:4]
    assert all(m.eeg_start != m.start for m in run_a)  # a derangement: never its own EEG
    assert sorted(m.eeg_start for m in run_a) == [0, 3, 6, 9]  # every EEG used once
    assert mixed[4].eeg_start is None  # a run with one window keeps its own
    assert shuffled_eeg(windows, seed=0) == mixed


def test_stimulus_scores_use_balanced_accuracy():
    s = stimulus_scores(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), n_classes=2)
    assert s.accuracy == 0.75 and s.majority_chance == 0.75
    assert s.balanced_accuracy == pytest.approx(0.5) and s.chance == 0.5 and s.n_volumes == 4


def test_evaluation_reports_scores_and_the_shuffled_control(tiny_samba, tiny_samba_catalog):
    report = evaluate_samba(load_samba(tiny_samba[1]), tiny_samba_catalog, "test")
    assert set(report.per_recording) == {"sub-01_run-1", "sub-02_run-1"}
    for scores in report.per_recording.values():
        assert scores["r_per_parcel"].shape == (3,)
        assert -1 <= scores["r_mean"] <= 1 and scores["mse"] >= 0
    assert set(report.shuffled) == set(report.per_recording)
    assert report.alpha.shape == (4,) and report.alpha.sum() == pytest.approx(1.0, abs=1e-5)
    assert report.hrf_peaks.shape == (3,)


def test_mismatched_montage_and_foreign_checkpoints_are_refused(tiny_samba, tmp_path):
    bundle = load_samba(tiny_samba[1])
    other = make_recording(channels=("Fp1", "Fz", "Fp2"))
    run = load_paired_run(other, bundle.model.config.geometry)
    with pytest.raises(InvalidDataError, match=r"EEG channels \['Fp1', 'Fz', 'Fp2'\] differ"):
        predict_run(bundle, run, "test")
    junk = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, junk)
    assert not is_samba_checkpoint(junk)
    with pytest.raises(NeuroFMError, match="not a neurofm SAMBA checkpoint"):
        load_samba(junk)
    with pytest.raises(NeuroFMError, match="no such checkpoint"):
        load_samba(tmp_path / "missing.ckpt")


def test_cli_evaluate_scores_a_samba_checkpoint(tiny_samba, tiny_samba_catalog, capsys):
    assert main(["evaluate", str(tiny_samba[1]), str(tiny_samba_catalog), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["samba"]) == {"sub-01_run-1", "sub-02_run-1"}
    assert set(out["baselines"]["Ridge"]) == set(out["samba"])
    assert out["stimulus"]["classes"] == ["a", "b"]
    assert len(out["wavelet_attention"]) == 4
