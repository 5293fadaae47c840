"""SAMBA's parts against known answers: wavelets vs PyWavelets, band energies, the HRF,
graphs, the correlation loss, window geometry, checkpoints and clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import pywt
import torch
from samba_factory import FS, TR, make_recording, small_config, small_model

from neurofm.data.catalog import Catalog
from neurofm.errors import InvalidDataError, NeuroFMError, SpecError
from neurofm.models.samba import (
    DoubleGammaHRF,
    SambaConfig,
    WaveletDecomposition,
    connectivity_graph,
    correlation_loss,
)
from neurofm.tokenizers.multimodal import (
    MultimodalScaler,
    MultimodalTokenizer,
    VolumeWindow,
    WindowGeometry,
    collate_windows,
    load_paired_run,
)
from neurofm.training.checkpoints import seal
from neurofm.training.samba import (
    PairedRunDataset,
    SambaTrainConfig,
    ShuffledVolumeSampler,
    load_samba,
    samba_tokenizer,
    train_samba,
    volume_windows,
)

ROOT = Path(__file__).resolve().parents[2]


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
    with pytest.raises(SpecError, match=r"samba\.yaml: hidden_size: unknown key"):
        SambaConfig.from_yaml(bad)
    bad.write_text("hrf_length_s: 30\nhistory_s: 20\n")
    with pytest.raises(InvalidDataError, match="hrf_length_s"):
        SambaConfig.from_yaml(bad)
    assert SambaConfig.from_yaml(ROOT / "models" / "samba.yaml").eeg_rate == 128.0


# --------------------------------------------------------------------------------------------
# the data path: sampler -> dataset -> tokenizer -> collate (tiny, fast)
# --------------------------------------------------------------------------------------------


def test_tokenizer_caches_each_runs_band_energies_and_cuts_windows_from_them():
    config = small_config()
    g = config.geometry
    model = small_model(config)
    run = load_paired_run(make_recording(), g)
    scaler = MultimodalScaler.fit([run])
    calls = []

    def energies(eeg):
        return model.wavelet.band_energy(torch.from_numpy(eeg)[None])[0].detach().numpy()

    def transform(eeg):
        calls.append(eeg.shape)
        return energies(eeg)

    tok = MultimodalTokenizer(g, scaler, transform)
    items = [tok(run, s) for s in (0, 7, 30)]
    assert len(calls) == 1  # one transform of the whole run, however many windows
    # the cache holds the run's z-scored EEG from its first window's EEG start, in float32
    offset = run.window_eeg_start(0, g)
    z = ((run.eeg - scaler.eeg_mean[:, None]) / scaler.eeg_std[:, None])[:, offset:]
    whole = energies(z.astype(np.float32))
    for s, item in zip((0, 7, 30), items, strict=True):
        assert item["energy"].shape == (3, g.n_steps, config.levels + 1)
        np.testing.assert_array_equal(item["energy"], whole[:, s * g.grid_per_tr :][:, : g.n_steps])
        np.testing.assert_array_equal(item["bold"], MultimodalTokenizer(g, scaler)(run, s)["bold"])
        assert item["start"] == s and item["recording_id"] == run.recording_id
    # the shuffled control: BOLD of one window, energies of another
    mixed = tok(run, 7, eeg_start=30)
    np.testing.assert_array_equal(mixed["energy"], items[2]["energy"])
    np.testing.assert_array_equal(mixed["bold"], items[1]["bold"])
    # a new run of the same id (e.g. reloaded) is not served stale energies
    tok(load_paired_run(make_recording(), g), 0)
    assert len(calls) == 2


def test_samplers_dataset_and_collate_make_batches():
    g = small_config().geometry
    run = load_paired_run(make_recording(), g, classes=["a", "b"])
    windows = volume_windows([run], "train", g.window_trs)
    assert [w.start for w in windows] == list(run.window_starts("train", g.window_trs))
    assert all(isinstance(w, VolumeWindow) and w.eeg_start is None for w in windows)
    half = volume_windows([run], "test", g.window_trs, stride=3)
    covered = np.unique(np.concatenate([np.arange(w.start, w.start + 6) for w in half]))
    np.testing.assert_array_equal(covered, run.volumes_in("test"))
    sampler = ShuffledVolumeSampler(windows, seed=3)
    first = list(sampler)
    assert sorted(first) == sorted(windows) and len(sampler) == len(windows)
    assert list(sampler) == first  # the order depends only on (seed, epoch)
    sampler.set_epoch(1)
    assert list(sampler) != first
    scaler = MultimodalScaler.fit([run])
    data = PairedRunDataset([run], MultimodalTokenizer(g, scaler))
    batch = collate_windows([data[w] for w in first[:4]])
    assert batch["eeg"].shape == (4, 3, g.n_samples) and batch["eeg"].dtype == torch.float32
    assert batch["bold"].shape == (4, 6, 3) and batch["labels"].dtype == torch.int64
    assert batch["start"].tolist() == [w.start for w in first[:4]]
    assert batch["recording_id"] == [run.recording_id] * 4


def test_raw_eeg_and_precomputed_energies_give_the_same_output(tiny_samba, tiny_samba_catalog):
    bundle = load_samba(tiny_samba[1])
    model = bundle.model
    run = load_paired_run(Catalog(tiny_samba_catalog).open("sub-02_run-1"), model.config.geometry)
    tok = MultimodalTokenizer(model.config.geometry, bundle.scaler)
    cached = samba_tokenizer(model, bundle.scaler)  # band energies of the whole run, cached
    start = 20
    with torch.no_grad():
        from_eeg = model(torch.from_numpy(tok(run, start)["eeg"])[None].double().float())
        from_energy = model(energy=torch.from_numpy(cached(run, start)["energy"])[None])
    # windows differ from the run only at their zero-padded edges, which the HRF barely sees
    np.testing.assert_allclose(from_eeg["bold"].numpy(), from_energy["bold"].numpy(), atol=0.05)


def test_resumed_training_continues_exactly(tiny_samba_catalog, tmp_path, one_torch_thread):
    cfg = SambaTrainConfig(epochs=2, batch_size=4)
    whole, _ = train_samba(tiny_samba_catalog, small_config(), cfg, tmp_path / "a", progress=False)
    _, last = train_samba(
        tiny_samba_catalog, small_config(), cfg, tmp_path / "b", progress=False, stop_after_epochs=1
    )
    first = tmp_path / "epoch1.ckpt"
    first.write_bytes(last.read_bytes())  # the resumed run overwrites last.ckpt
    resumed, _ = train_samba(
        tiny_samba_catalog, small_config(), cfg, tmp_path / "b", progress=False, resume=first
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
    with pytest.raises(NeuroFMError, match=r"changed\.ckpt: its weights changed after it was"):
        train_samba(
            tiny_samba_catalog,
            small_config(),
            cfg,
            tmp_path / "c",
            progress=False,
            resume=tmp_path / "changed.ckpt",
        )  # the digest written with the checkpoint no longer matches: refused
    torch.save(seal(ckpt), tmp_path / "changed.ckpt")  # a deliberate change, sealed again
    changed, _ = train_samba(
        tiny_samba_catalog,
        small_config(),
        cfg,
        tmp_path / "b",
        progress=False,
        resume=tmp_path / "changed.ckpt",
    )
    assert not torch.equal(changed.model.parcel_bias, whole.model.parcel_bias)
