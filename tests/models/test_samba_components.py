"""SAMBA's parts against known answers: wavelets vs PyWavelets, band energies, the HRF,
graphs, the correlation loss, window geometry, checkpoints and clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import pywt
import torch

from neurofm.data.catalog import Catalog, time_domains
from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals, RegularSeries
from neurofm.errors import InvalidDataError, NeuroFMError
from neurofm.models.samba import (
    DoubleGammaHRF,
    Samba,
    SambaConfig,
    WaveletDecomposition,
    connectivity_graph,
    correlation_loss,
)
from neurofm.tokenizers.multimodal import (
    MultimodalScaler,
    MultimodalTokenizer,
    WindowGeometry,
    load_paired_run,
)
from neurofm.training.samba import (
    RunFeatures,
    SambaTrainConfig,
    evaluate_samba,
    is_samba_checkpoint,
    load_samba,
    predict_run,
    train_samba,
)
from neurofm.training.samba_report import band_ranges

ROOT = Path(__file__).resolve().parents[2]
FS, TR = 128.0, 2.0


def small_config(**kw) -> SambaConfig:
    base = dict(window_trs=6, history_s=8.0, hrf_length_s=8.0, dim=4, hidden=8, heads=1)
    base.update(kw)
    return SambaConfig(**base)


def small_model(config: SambaConfig) -> Samba:
    rng = np.random.default_rng(0)
    graph = connectivity_graph(rng.standard_normal((50, 3)), 2)
    return Samba(dataclasses.replace(config, n_channels=3, n_parcels=3), graph, graph)


# --------------------------------------------------------------------------------------------
# wavelets and band energies
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wavelet,levels,n", [("db5", 3, 517), ("db2", 4, 1000), ("haar", 2, 64)])
def test_dwt_equals_pywavelets(wavelet, levels, n):
    x = np.random.default_rng(0).standard_normal((3, n))
    ours = WaveletDecomposition(wavelet, levels)(torch.tensor(x))
    ref = pywt.wavedec(x, wavelet, mode="zero", level=levels)[::-1]  # finest detail first
    assert len(ours) == levels + 1
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-12)


def test_dwt_passes_gradients_to_its_input():
    x = torch.randn(2, 256, dtype=torch.float64, requires_grad=True)
    sum(b.pow(2).sum() for b in WaveletDecomposition("db5", 3)(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_band_energy_finds_a_sinusoid_in_its_band_and_time():
    config = small_config()
    model = small_model(config)
    t = np.arange(int(40 * FS)) / FS
    tone = np.where((t >= 10) & (t < 30), np.sin(2 * np.pi * 40.0 * t), 0.0)  # D1: 32-64 Hz
    slow = np.sin(2 * np.pi * 4.0 * t)  # A3: 0-8 Hz, all the time
    eeg = torch.tensor(np.stack([tone, slow, tone + slow])[None], dtype=torch.float64)
    model.wavelet.log_energy = False
    amp = model.wavelet.band_energy(eeg).numpy()[0]  # (C, S, K), 1 s steps
    assert amp.shape == (3, 40, 4)
    assert np.argmax(amp[0, 20]) == 0 and np.argmax(amp[1, 20]) == 3
    assert amp[0, 15, 0] > 20 * amp[0, 5, 0]  # on only while the tone plays
    assert amp[0, 35, 0] < 0.05 * amp[0, 15, 0]
    # the DWT is orthonormal: a unit sine (power 1/2) wholly in D1, which has one coefficient
    # per 2 samples, gives a mean squared D1 coefficient of 2 x 1/2 (minus a little leakage)
    assert amp[0, 20, 0] ** 2 == pytest.approx(1.0, rel=0.15)


def test_window_energies_equal_the_run_energies_they_are_cut_from():
    config = small_config()
    g = config.geometry
    model = small_model(config)
    run = torch.randn(1, 3, 90 * g.samples_per_step, dtype=torch.float64)
    whole = model.wavelet.band_energy(run)
    v = 7  # window start in volumes: a TR is 256 samples, a multiple of 2^3 (same wavelet phase)
    i0 = v * g.grid_per_tr * g.samples_per_step
    window = model.band_energy(run[:, :, i0 : i0 + g.n_samples])
    inner = slice(3, g.n_steps - 3)  # away from the window's zero-padded edges
    np.testing.assert_allclose(
        window[0, :, inner].numpy(), whole[0, :, v * g.grid_per_tr :][:, inner].numpy(), atol=1e-9
    )


def test_band_ranges_name_each_wavelet_band():
    assert band_ranges(128.0, 3) == ["D1 32-64 Hz", "D2 16-32 Hz", "D3 8-16 Hz", "A3 0-8 Hz"]


# --------------------------------------------------------------------------------------------
# HRF, graphs, loss
# --------------------------------------------------------------------------------------------


def test_hrf_peaks_where_its_parameters_say_and_its_parameters_train():
    hrf = DoubleGammaHRF(4, dt=0.5, length_s=24.0, peak_init=6.0, peak_range=3.0)
    with torch.no_grad():
        hrf.theta[:, 0] = torch.tensor([-2.0, -0.5, 0.0, 1.0])
    d1 = hrf.parameters_s()["d1"].detach().numpy()
    np.testing.assert_allclose(d1, 6.0 + 3.0 * np.tanh([-2.0, -0.5, 0.0, 1.0]))
    # the undershoot pulls the maximum a little earlier than d1, never later
    peaks = hrf.peaks()
    assert np.all(peaks <= d1 + 1e-6) and np.all(peaks >= d1 - 0.3)
    # causal: an impulse at step 20 leaves steps before it untouched, peaks d1 later
    x = torch.zeros(1, 4, 1, 80)
    x[..., 20] = 1.0
    y = hrf(x)[0, :, 0].detach().numpy()
    assert np.abs(y[:, :21]).max() < 1e-6
    np.testing.assert_allclose(np.argmax(y, axis=1) * 0.5 - 10.0, peaks, atol=0.5)
    # registered parameters that receive gradients (the public code's HRF never trained)
    assert any(p is hrf.theta for p in hrf.parameters())
    hrf(torch.randn(2, 4, 3, 60)).pow(2).sum().backward()
    assert hrf.theta.grad is not None and hrf.theta.grad.abs().sum() > 0


def test_connectivity_graph_keeps_the_strongest_correlations_both_ways():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, 2))
    x = np.column_stack(
        [
            base[:, 0],
            base[:, 0] + 0.1 * rng.standard_normal(500),
            base[:, 1],
            -base[:, 1] + 0.1 * rng.standard_normal(500),
            rng.standard_normal(500),
        ]
    )
    edges = connectivity_graph(x, k=1).numpy()
    pairs = set(map(tuple, edges.T))
    assert {(0, 1), (1, 0), (2, 3), (3, 2)} <= pairs  # anti-correlation counts too
    assert all((b, a) in pairs for a, b in pairs)  # symmetric
    assert all(a != b for a, b in pairs)  # self-loops are GATv2Conv's job
    with pytest.raises(InvalidDataError, match="at least 2 nodes"):
        connectivity_graph(x[:, :1], k=1)


def test_correlation_loss_is_one_minus_pearson_r():
    t = torch.linspace(0, 6, 50)
    y = torch.sin(t)[None, :, None]
    assert float(correlation_loss(3 * y + 2, y)) == pytest.approx(0.0, abs=1e-6)
    assert float(correlation_loss(-y, y)) == pytest.approx(2.0, abs=1e-6)
    noise = torch.randn(1, 50, 1, generator=torch.Generator().manual_seed(0))
    r = np.corrcoef(y.ravel().numpy(), (y + noise).ravel().numpy())[0, 1]
    assert float(correlation_loss(y + noise, y)) == pytest.approx(1 - r, abs=1e-5)


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------


def make_recording(
    rid: str = "sub-01_run-1",
    subject: str = "01",
    n_vol: int = 60,
    lead: float = 5.0,
    channels: tuple[str, ...] = ("C3", "Cz", "C4"),
    tr: float = TR,
    seed: int = 0,
) -> Recording:
    """EEG whose 40 Hz amplitude drives BOLD with a 4 s delay, and a volume index ramp."""
    rng = np.random.default_rng(seed)
    n = int((lead + n_vol * tr + 3) * FS)
    t = np.arange(n) / FS
    drive = 1 + 0.8 * np.sin(2 * np.pi * t / 23.0 + rng.uniform(0, 6))
    eeg = np.column_stack(
        [
            drive * np.sin(2 * np.pi * 40 * t + k) + 0.1 * rng.standard_normal(n)
            for k in range(len(channels))
        ]
        + [rng.standard_normal(n)]  # an ECG channel: not EEG, left out
    )
    vol_t = lead + tr * np.arange(n_vol)
    bold = np.column_stack([np.interp(vol_t - 4.0, t, drive) * (p + 1) for p in range(3)])
    dom = time_domains(vol_t[0], vol_t[-1] + tr, (0.6, 0.2, 0.2))
    signals = {
        "eeg": RegularSeries(
            eeg,
            FS,
            0.0,
            [*channels, "ECG"],
            name="eeg",
            channel_info={"type": np.array(["eeg"] * len(channels) + ["ecg"], dtype=object)},
        ),
        "bold": RegularSeries(bold, 1 / tr, lead, ["p1", "p2", "p3"], name="bold"),
        "events": Intervals(
            np.array([lead + 10.0, lead + 40.0]),
            np.array([lead + 16.0, lead + 46.0]),
            np.array(["a", "b"], dtype=object),
            name="events",
        ),
        **{f"{k}_domain": v for k, v in dom.items()},
    }
    return Recording(rid, signals, n / FS, {"subject_id": subject})


def test_window_geometry_puts_each_volume_at_the_centre_of_its_grid_step():
    g = WindowGeometry(window_trs=6, history_s=8.0, grid_per_tr=2, eeg_rate=FS, tr=TR)
    rec = make_recording()
    run = load_paired_run(rec, g, classes=["a", "b"], label_lag=0.0)
    assert run.channels == ["C3", "Cz", "C4"]  # the ECG channel is not EEG
    scaler = MultimodalScaler(np.zeros(3), np.ones(3), np.zeros(3), np.ones(3))
    item = MultimodalTokenizer(g, scaler)(run, start=10)
    assert item["eeg"].shape == (3, g.n_samples) and item["bold"].shape == (6, 3)
    # the window's EEG starts history + dt/2 before its first volume
    t0 = run.eeg_t0 + np.arange(run.eeg.shape[1]) / FS
    i0 = int(np.argmin(np.abs(t0 - (run.bold_times[10] - g.history_s - g.dt / 2))))
    np.testing.assert_array_equal(item["eeg"], run.eeg[:, i0 : i0 + g.n_samples])
    centres = run.bold_times[10] - g.history_s + g.dt * np.arange(g.n_steps)
    np.testing.assert_allclose(centres[g.readout_steps], run.bold_times[10:16])
    # labels: the block active at each volume (lag 0)
    lab = run.labels
    inside_a = (run.bold_times >= 15.0) & (run.bold_times < 21.0)
    assert (lab[inside_a] == 0).all() and (lab[~inside_a & (run.bold_times < 40)] == -1).all()


def test_window_starts_stay_inside_the_split_and_cover_it():
    g = WindowGeometry(window_trs=6, history_s=8.0, eeg_rate=FS, tr=TR)
    run = load_paired_run(make_recording(), g)
    test_vols = run.volumes_in("test")
    starts = run.window_starts("test", 6, stride=4)
    covered = np.unique(np.concatenate([np.arange(s, s + 6) for s in starts]))
    np.testing.assert_array_equal(covered, test_vols)


def test_paired_run_errors_name_the_recording_and_the_field():
    g = WindowGeometry(window_trs=6, history_s=8.0, eeg_rate=FS, tr=3.0)
    with pytest.raises(InvalidDataError, match=r"sub-01_run-1.*TR 2 s.*3 s"):
        load_paired_run(make_recording(), g)
    rec = make_recording()
    del rec.signals["bold"]
    with pytest.raises(InvalidDataError, match=r"sub-01_run-1.*no signal 'bold'"):
        load_paired_run(rec, dataclasses.replace(g, tr=TR))
    with pytest.raises(InvalidDataError, match="whole number of EEG samples"):
        load_paired_run(make_recording(), WindowGeometry(eeg_rate=100.0, grid_per_tr=3))


def test_config_file_errors_are_clear(tmp_path):
    bad = tmp_path / "samba.yaml"
    bad.write_text("model: samba\nwindow_trs: 16\nhidden_size: 3\n")
    with pytest.raises(InvalidDataError, match=r"samba.yaml: unknown keys \['hidden_size'\]"):
        SambaConfig.from_yaml(bad)
    bad.write_text("hrf_length_s: 30\nhistory_s: 20\n")
    with pytest.raises(InvalidDataError, match="hrf_length_s"):
        SambaConfig.from_yaml(bad)
    assert SambaConfig.from_yaml(ROOT / "models" / "samba.yaml").eeg_rate == 128.0


# --------------------------------------------------------------------------------------------
# training, checkpoints, evaluation (tiny, fast)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory):
    path = tmp_path_factory.mktemp("samba_cat") / "catalog"
    cat = Catalog(path, create=True)
    cat.add(make_recording("sub-01_run-1", "01", seed=0))
    cat.add(make_recording("sub-02_run-1", "02", seed=1))
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_catalog, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("samba_run")
    try:
        module, ckpt = train_samba(
            tiny_catalog,
            small_config(),
            SambaTrainConfig(epochs=3, batch_size=4),
            out,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return module, ckpt


def test_checkpoint_round_trip_gives_the_same_predictions(tiny_model, tiny_catalog):
    module, ckpt = tiny_model
    assert is_samba_checkpoint(ckpt)
    assert module.global_step > 0
    bundle = load_samba(ckpt)
    assert bundle.channels == ["C3", "Cz", "C4"] and bundle.model.config.classes == ["a", "b"]
    run = load_paired_run(Catalog(tiny_catalog).open("sub-01_run-1"), bundle.model.config.geometry)
    a = predict_run(bundle, run, "test")
    module.model.eval()
    from neurofm.training.samba import SambaBundle

    live = SambaBundle(module.model, module.scaler, module.cfg, module.channels, module.parcels)
    b = predict_run(live, run, "test")
    np.testing.assert_allclose(a.pred, b.pred, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.volumes, run.volumes_in("test"))
    # predictions are back in the BOLD's units (parcel 3 is 3x parcel 1 in the data)
    assert a.pred[:, 2].std() > a.pred[:, 0].std()


def test_raw_eeg_and_precomputed_energies_give_the_same_output(tiny_model, tiny_catalog):
    bundle = load_samba(tiny_model[1])
    model = bundle.model
    run = load_paired_run(Catalog(tiny_catalog).open("sub-02_run-1"), model.config.geometry)
    feats = RunFeatures(run, model, bundle.scaler)
    tok = MultimodalTokenizer(model.config.geometry, bundle.scaler)
    start = 20
    with torch.no_grad():
        from_eeg = model(torch.from_numpy(tok(run, start)["eeg"])[None].double().float())
        from_energy = model(energy=torch.from_numpy(feats.window(start)["energy"])[None])
    # windows differ from the run only at their zero-padded edges, which the HRF barely sees
    np.testing.assert_allclose(from_eeg["bold"].numpy(), from_energy["bold"].numpy(), atol=0.05)


def test_evaluation_reports_scores_and_the_shuffled_control(tiny_model, tiny_catalog):
    report = evaluate_samba(load_samba(tiny_model[1]), tiny_catalog, "test")
    assert set(report.per_recording) == {"sub-01_run-1", "sub-02_run-1"}
    for scores in report.per_recording.values():
        assert scores["r_per_parcel"].shape == (3,)
        assert -1 <= scores["r_mean"] <= 1 and scores["mse"] >= 0
    assert set(report.shuffled) == set(report.per_recording)
    assert report.alpha.shape == (4,) and report.alpha.sum() == pytest.approx(1.0, abs=1e-5)
    assert report.hrf_peaks.shape == (3,)


def test_mismatched_montage_and_foreign_checkpoints_are_refused(tiny_model, tmp_path):
    bundle = load_samba(tiny_model[1])
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


def test_cli_evaluate_scores_a_samba_checkpoint(tiny_model, tiny_catalog, capsys):
    import json

    from neurofm.cli import main

    assert main(["evaluate", str(tiny_model[1]), str(tiny_catalog), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["samba"]) == {"sub-01_run-1", "sub-02_run-1"}
    assert set(out["baselines"]["Ridge"]) == set(out["samba"])
    assert out["stimulus"]["classes"] == ["a", "b"]
    assert len(out["wavelet_attention"]) == 4


def test_resumed_training_continues_exactly(tiny_catalog, tmp_path, one_torch_thread):
    cfg = SambaTrainConfig(epochs=2, batch_size=4)
    whole, _ = train_samba(tiny_catalog, small_config(), cfg, tmp_path / "a", progress=False)
    _, last = train_samba(
        tiny_catalog, small_config(), cfg, tmp_path / "b", progress=False, stop_after_epochs=1
    )
    first = tmp_path / "epoch1.ckpt"
    first.write_bytes(last.read_bytes())  # the resumed run overwrites last.ckpt
    resumed, _ = train_samba(
        tiny_catalog, small_config(), cfg, tmp_path / "b", progress=False, resume=first
    )
    assert resumed.global_step == whole.global_step > 0
    assert torch.load(first, weights_only=True)["global_step"] == whole.global_step // 2
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    # the resumed run really starts from the checkpoint: change it and the result changes
    ckpt = torch.load(first, weights_only=True)
    ckpt["state_dict"]["model.parcel_bias"] += 1.0
    torch.save(ckpt, tmp_path / "changed.ckpt")
    changed, _ = train_samba(
        tiny_catalog,
        small_config(),
        cfg,
        tmp_path / "b",
        progress=False,
        resume=tmp_path / "changed.ckpt",
    )
    assert not torch.equal(changed.model.parcel_bias, whole.model.parcel_bias)
