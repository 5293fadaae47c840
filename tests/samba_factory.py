"""Tiny EEG-fMRI recordings and a tiny SAMBA, for the model, training, evaluation and pipeline
tests (the session-scoped fixtures ``tiny_samba_catalog`` and ``tiny_samba`` in conftest.py
train it once per test session)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from neurofm.data.catalog import Catalog, time_domains
from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals, RegularSeries

FS, TR = 128.0, 2.0
RECORDINGS = ("sub-01_run-1", "sub-02_run-1")


def small_config(**kw):
    """A SAMBA config small enough to train in seconds on one thread."""
    from neurofm.models.samba import SambaConfig

    base = dict(window_trs=6, history_s=8.0, hrf_length_s=8.0, dim=4, hidden=8, heads=1)
    base.update(kw)
    return SambaConfig(**base)


def small_model(config):
    """An untrained SAMBA of ``config`` for 3 channels and 3 parcels."""
    from neurofm.models.samba import Samba, connectivity_graph

    rng = np.random.default_rng(0)
    graph = connectivity_graph(rng.standard_normal((50, 3)), 2)
    return Samba(dataclasses.replace(config, n_channels=3, n_parcels=3), graph, graph)


def make_recording(
    rid: str = "sub-01_run-1",
    subject: str = "01",
    n_vol: int = 60,
    lead: float = 5.0,
    channels: tuple[str, ...] = ("C3", "Cz", "C4"),
    tr: float = TR,
    seed: int = 0,
    bad: tuple[str, ...] = (),
) -> Recording:
    """EEG whose 40 Hz amplitude drives BOLD with a 4 s delay, and a volume index ramp.

    An ECG channel (type ``ecg``) rides along; channels named in ``bad`` are marked bad.
    """
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
    info = {"type": np.array(["eeg"] * len(channels) + ["ecg"], dtype=object)}
    if bad:
        info["bad"] = np.array([c in bad for c in [*channels, "ECG"]])
    signals = {
        "eeg": RegularSeries(eeg, FS, 0.0, [*channels, "ECG"], name="eeg", channel_info=info),
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


def make_catalog(path: Path) -> Path:
    """A catalog of two tiny recordings (subjects 01 and 02)."""
    cat = Catalog(path, create=True)
    cat.add(make_recording(RECORDINGS[0], "01", seed=0))
    cat.add(make_recording(RECORDINGS[1], "02", seed=1))
    return path


def train_tiny(catalog: Path, out: Path):
    """Train the tiny SAMBA for 3 epochs on one torch thread; returns (module, checkpoint)."""
    import torch

    from neurofm.training.samba import SambaTrainConfig, train_samba

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_samba(
            catalog, small_config(), SambaTrainConfig(epochs=3, batch_size=4), out, progress=False
        )
    finally:
        torch.set_num_threads(threads)
