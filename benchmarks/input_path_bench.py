"""Input-path benchmark: sampler -> window -> tokenize -> collate -> batch, neurofm vs torch_brain.

What it measures. Two realistic recordings (30 minutes each: 200 units at 2-30 Hz with a units
table of brain areas and depths; three behaviour series, ``hand_pos`` and ``hand_vel`` (2
channels at 1 kHz) and ``eye`` (2 channels at 100 Hz); 300 trials with a condition label and a
go time; train/valid/test domains) are written in both libraries' formats. Each library then
produces batches of 32 random 1 s training windows through its own training input path, in
the training process (no DataLoader workers), one torch thread:

- neurofm: ``RandomWindowSampler`` over the train domains -> ``WindowDataset`` (recordings
  opened once, a ``Recording.window`` per item of the signals the tokenizer reads) ->
  ``SpikeTokenizer`` (spikes, start/end tokens, latents, hand-velocity outputs, z-scored; unit
  rows looked up once per recording) -> ``collate``, via a ``DataLoader``; what
  :class:`neurofm.training.poyo.POYODataModule` builds.
- torch_brain 0.2.1: ``RandomFixedWindowSampler`` over the same train domains ->
  ``torch_brain.datasets.Dataset`` (files kept open; per item: a deep copy of the lazy
  ``Data`` and ``Data.slice``) -> ``POYO.tokenize`` plus the hand-velocity outputs (``pad8``
  of timestamps, mask and values, as torch_brain's POYO example adds them) ->
  ``torch_brain.batching.collate``, via a ``DataLoader``; the documented path.

Both tokenize the same windows' spikes into the same number of tokens (checked on a few
windows before timing). The two paths alternate batch by batch, so background load hits both
alike; the figures are medians of per-batch wall times over ``--batches`` batches.

Figures: ``input_path_neurofm_windows_per_s``, ``input_path_torch_brain_windows_per_s`` and
``input_path_speedup_vs_torch_brain`` (goal >= 5).

Run in the benchmark venv: ``.venv-bench/bin/python benchmarks/input_path_bench.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

BATCH, WINDOW_S, DURATION_S, N_UNITS, N_TRIALS = 32, 1.0, 1800.0, 200, 300
LATENT_STEP, LATENTS_PER_STEP = 0.125, 8  # models/poyo_tiny.yaml


def make_session(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rates = rng.uniform(2.0, 30.0, N_UNITS)
    total = float(rates.sum())
    n = rng.poisson(total * DURATION_S)
    times = np.sort(rng.uniform(0.0, DURATION_S, n))
    units = rng.choice(N_UNITS, size=n, p=rates / total).astype(np.int32)
    t_fast = np.arange(int(DURATION_S * 1000)) / 1000.0
    t_slow = np.arange(int(DURATION_S * 100)) / 100.0
    pos = np.stack([np.sin(0.3 * t_fast), np.cos(0.2 * t_fast)], 1).astype(np.float32)
    vel = np.gradient(pos, axis=0).astype(np.float32) * 1000
    eye = rng.standard_normal((len(t_slow), 2)).astype(np.float32)
    starts = np.sort(rng.uniform(0, DURATION_S - 4, N_TRIALS))
    starts = starts[np.concatenate([[True], np.diff(starts) > 4.0])]  # non-overlapping
    # train/valid/test domains: 70/15/15 % of the recording in contiguous blocks
    edges = [0.0, 0.7 * DURATION_S, 0.85 * DURATION_S, DURATION_S]
    return {
        "times": times,
        "units": units,
        "ids": [f"ch{u // 2:03d}/u{u % 2}" for u in range(N_UNITS)],
        "area": np.array(["M1", "PMd"])[np.arange(N_UNITS) % 2],
        "depth": rng.uniform(0, 2000, N_UNITS),
        "pos": pos,
        "vel": vel,
        "eye": eye,
        "trial_start": starts,
        "trial_end": starts + 3.5,
        "condition": rng.integers(0, 8, len(starts)).astype(str),
        "go": starts + 1.0,
        "domains": {k: (edges[i], edges[i + 1]) for i, k in enumerate(("train", "valid", "test"))},
    }


def write_neurofm(s: dict, catalog_dir: Path, rec_id: str) -> None:
    from neurofm.data import Catalog, Intervals, Recording, RegularSeries, Spikes, Units

    signals = {
        "spikes": Spikes(s["times"], s["units"], Units(s["ids"], {"area": s["area"],
                                                                  "depth": s["depth"]})),
        "hand_pos": RegularSeries(s["pos"], 1000.0, 0.0, ["x", "y"]),
        "hand_vel": RegularSeries(s["vel"], 1000.0, 0.0, ["x", "y"]),
        "eye": RegularSeries(s["eye"], 100.0, 0.0, ["x", "y"]),
        "trials": Intervals(s["trial_start"], s["trial_end"],
                            columns={"condition": s["condition"], "go": s["go"]},
                            time_columns=["go"]),
    }  # fmt: skip
    for split, (a, b) in s["domains"].items():
        signals[f"{split}_domain"] = Intervals([a], [b])
    rec = Recording(rec_id, signals, duration=DURATION_S)
    with Catalog(catalog_dir, create=True, writer=True) as cat:
        cat.add(rec)


def write_torch_brain(s: dict, path: Path, rec_id: str) -> None:
    from torch_brain.data import ArrayDict, Data, Interval, IrregularTimeSeries, RegularTimeSeries

    data = Data(
        session=Data(id=rec_id),
        spikes=IrregularTimeSeries(timestamps=s["times"], unit_index=s["units"], domain="auto"),
        # brainsets write unit ids namespaced by session, so vocabularies of sessions never clash
        units=ArrayDict(id=np.array([f"{rec_id}/{u}" for u in s["ids"]]), area=s["area"],
                        depth=s["depth"]),
        hand_pos=RegularTimeSeries(sampling_rate=1000.0, pos=s["pos"], domain_start=0.0),
        hand_vel=RegularTimeSeries(sampling_rate=1000.0, vel=s["vel"], domain_start=0.0),
        eye=RegularTimeSeries(sampling_rate=100.0, pos=s["eye"], domain_start=0.0),
        trials=Interval(start=s["trial_start"], end=s["trial_end"], condition=s["condition"],
                        go=s["go"]),
        domain=Interval(0.0, DURATION_S),
    )  # fmt: skip
    for split, (a, b) in s["domains"].items():
        setattr(data, f"{split}_domain", Interval(a, b))
    with h5py.File(path, "w") as f:
        data.to_hdf5(f)


def neurofm_loader(catalog_dir: Path, ids: list[str], seed: int):
    from neurofm.data import Catalog
    from neurofm.data.sampling import RandomWindowSampler
    from neurofm.models.poyo import POYO, POYOConfig
    from neurofm.tokenizers.spikes import SpikeTokenizer, collate
    from neurofm.training.datasets import OpenRecordings, WindowDataset, split_domains_of
    from neurofm.training.poyo import catalog_vocab, fit_scaler

    recordings = OpenRecordings(Catalog(catalog_dir))
    units, sessions = catalog_vocab(recordings, ids)
    config = POYOConfig(dim=64, depth=1, window_length=WINDOW_S, latent_step=LATENT_STEP,
                        num_latents_per_step=LATENTS_PER_STEP)  # fmt: skip
    model = POYO(config, units, sessions)
    domains = split_domains_of(recordings, "train", ids)
    tokenizer = SpikeTokenizer(
        model.unit_emb.index, model.session_emb.index, WINDOW_S, LATENT_STEP, LATENTS_PER_STEP,
        target="hand_vel", scaler=fit_scaler(recordings, ids, "hand_vel", domains),
    )  # fmt: skip
    sampler = RandomWindowSampler(domains, WINDOW_S, seed=seed)
    return torch.utils.data.DataLoader(
        WindowDataset(recordings, tokenizer), batch_size=BATCH, sampler=sampler, collate_fn=collate
    ), model


def torch_brain_loader(data_dir: Path, ids: list[str], seed: int):
    from torch_brain.batching import collate, pad8
    from torch_brain.data import Interval
    from torch_brain.datasets import Dataset
    from torch_brain.models import POYO
    from torch_brain.samplers import RandomFixedWindowSampler

    model = POYO(sequence_length=WINDOW_S, latent_step=LATENT_STEP, dim_out=2, dim=64, depth=1,
                 num_latents_per_step=LATENTS_PER_STEP)  # fmt: skip

    def tokenize(data):
        x = model.tokenize(data)
        x["output_timestamps"] = pad8(data.hand_vel.timestamps)
        x["output_mask"] = pad8(np.ones(len(data.hand_vel), dtype=bool))
        x["target"] = pad8(data.hand_vel.vel)
        return x

    dataset = Dataset(data_dir, recording_ids=ids, transform=tokenize, keep_files_open=True)
    unit_ids, session_ids = [], []
    for rid in ids:
        rec = dataset.get_recording(rid)
        unit_ids += [str(u) for u in rec.units.id]
        session_ids.append(str(rec.session.id))
    model.unit_emb.initialize_vocab(unit_ids)
    model.session_emb.initialize_vocab(session_ids)
    intervals = {}
    for rid in ids:
        train = dataset.get_recording(rid).train_domain
        intervals[rid] = Interval(np.asarray(train.start), np.asarray(train.end))
    sampler = RandomFixedWindowSampler(
        sampling_intervals=intervals, window_length=WINDOW_S,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=BATCH, sampler=sampler, collate_fn=collate
    )
    return loader, model


def endless(loader):
    while True:
        yield from loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=60, help="timed batches per library")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids = ["sub-A_ses-1", "sub-A_ses-2"]
        (tmp / "tb").mkdir()
        for i, rid in enumerate(ids):
            s = make_session(seed=i)
            write_neurofm(s, tmp / "catalog", rid)
            write_torch_brain(s, tmp / "tb" / f"{rid}.h5", rid)
        ours, _ = neurofm_loader(tmp / "catalog", ids, seed=0)
        theirs, _ = torch_brain_loader(tmp / "tb", ids, seed=0)
        a, b = endless(ours), endless(theirs)
        # same work: tokens per window equal in distribution (different random windows), and
        # both batches hold 32 windows with start/end tokens for all 200 units
        first_a, first_b = next(a), next(b)
        assert first_a["input_mask"].shape[0] == first_b["input_mask"].shape[0] == BATCH
        tok_a = first_a["input_mask"].sum(1).float().mean().item()
        tok_b = first_b["input_mask"].sum(1).float().mean().item()
        print(f"# tokens per window: neurofm {tok_a:.0f}, torch_brain {tok_b:.0f}")
        times: dict[str, list[float]] = {"neurofm": [], "torch_brain": []}
        for _ in range(args.batches):
            for name, it in (("neurofm", a), ("torch_brain", b)):
                t0 = time.perf_counter()
                next(it)
                times[name].append(time.perf_counter() - t0)
    rate = {k: BATCH / statistics.median(v) for k, v in times.items()}
    print(f"input_path_neurofm_windows_per_s: {rate['neurofm']:.0f}")
    print(f"input_path_torch_brain_windows_per_s: {rate['torch_brain']:.0f}")
    print(f"input_path_speedup_vs_torch_brain: {rate['neurofm'] / rate['torch_brain']:.2f}")


if __name__ == "__main__":
    main()
