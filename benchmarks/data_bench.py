"""Data-layer benchmark: lazy window reads and NWB ingest, neurofm side by side with torch_brain.

What it measures (every figure is printed as ``name: value``, ratios last):

(a) neurofm window latency. Two synthetic recordings (150 units at 5-20 Hz, a 2-channel hand
    velocity at 1 kHz), 10 minutes and 10 hours long, are saved with ``Recording.save`` and opened
    once with ``Recording.open``, the way a data loader keeps its files open. Each sample reads a
    random 1 s window ``rec.window(a, a + 1)`` and touches its spike times, unit indices and hand
    velocity. Printed: the median latency per length, and the ratio 10 h / 10 min.
    Goal: ratio <= 1.5 (a window costs O(log n + k) whatever the recording's length).
(b) torch_brain on the same data and the same windows. The arrays are written in torch_brain's
    format (``Data.to_hdf5``) and read through ``torch_brain.datasets.Dataset`` with its default
    ``keep_files_open=True``: the file is opened once with ``Data.from_hdf5(lazy=True)``, every
    item deep-copies that lazy ``Data`` and calls ``Data.slice(a, a + 1)``; touching
    ``spikes.timestamps``, ``spikes.unit_index`` and ``hand_vel.vel`` materialises the arrays.
    Both libraries are checked to return identical spikes and samples for a set of windows, and
    the two readers alternate window by window so background load hits both alike.
    Goal: torch_brain / neurofm latency >= 5 at both lengths.
    Secondary figures: a reopen-per-window variant of both (open the file, read one window, close),
    and torch_brain's ``Data.slice`` without the per-item deep copy.
(c) NWB ingest. An NWB file with >= 50 million spikes (500 units at 5-15 Hz for 3 hours, per-unit
    sorted spike times in the Units table, gzip-compressed as DANDI files usually are, plus a
    100 Hz hand velocity) is written with pynwb once and cached in ``bench-output/``. Then
    ``neurofm ingest BIG.nwb --out CATALOG`` runs in a subprocess (the bench venv's ``neurofm``
    script); printed: spikes ingested per second of wall time (process start to exit, imports
    included), the peak resident memory of the ingest process tree, and the spike count, which
    is checked against the catalog's recording. Goal: memory stays flat, far below the size of the
    spike arrays (the file's 54 M float64 spike times alone are ~430 MB). Secondary figures: the
    same file with contiguous, uncompressed spike times (separates decompression from merging).

All scratch data goes to a temporary folder under ``bench-output/`` (git-ignored), removed at the
end; only the big NWB file stays there as a cache keyed by its parameters. Timings are medians over
many repetitions: the machine is shared. Page caches are warm (files were just written or read),
for both libraries alike.

Run alone: ``.venv-bench/bin/python benchmarks/data_bench.py [--reps N] [--no-ingest]``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import psutil
from torch_brain.data import ArrayDict, Data, Interval, IrregularTimeSeries, RegularTimeSeries
from torch_brain.datasets import Dataset, DatasetIndex

from neurofm.data import Recording, RegularSeries, Spikes

REPO = Path(__file__).resolve().parent.parent
BENCH_OUT = REPO / "bench-output"

# Synthetic session used by (a) and (b).
N_UNITS = 150
RATE_RANGE_HZ = (5.0, 20.0)
VEL_RATE_HZ = 1000.0
LENGTHS = {"10min": 600.0, "10h": 36000.0}
SEEDS = {"10min": 1, "10h": 2}
WINDOW_S = 1.0

# Big NWB file used by (c); the cache key is built from these.
NWB_UNITS = 500
NWB_RATE_RANGE_HZ = (5.0, 15.0)
NWB_DURATION_S = 3 * 3600.0
NWB_VEL_RATE_HZ = 100.0
NWB_GZIP = 4  # the main figures; a contiguous uncompressed copy gives the secondary ones
NWB_SEED = 7
NWB_GENERATOR_VERSION = 1  # bump when the writer below changes what it writes
MIN_NWB_SPIKES = 50_000_000


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------


def section(text: str) -> None:
    print(f"# {text}", flush=True)


def figure(name: str, value: float, fmt: str = ".4f") -> None:
    print(f"{name}: {value:{fmt}}", flush=True)


# ------------------------------------------------------------------------------------------------
# synthetic session, written in both formats
# ------------------------------------------------------------------------------------------------


@dataclass
class Session:
    timestamps: np.ndarray  # float64, sorted
    unit_index: np.ndarray  # int32
    unit_ids: list[str]
    vel: np.ndarray  # float32 [T, 2] at VEL_RATE_HZ from 0 s
    duration: float


def make_session(duration: float, seed: int) -> Session:
    """Independent Poisson units, drawn as one merged process (already sorted, no sort needed).

    The superposition of Poisson processes of rates r_u is a Poisson process of rate sum(r_u)
    whose events belong to unit u with probability r_u / sum(r_u).
    """
    rng = np.random.default_rng(seed)
    rates = rng.uniform(*RATE_RANGE_HZ, N_UNITS)
    total = float(rates.sum())
    expected = total * duration
    n_draw = int(expected + 8 * np.sqrt(expected) + 100)
    times = rng.exponential(1.0 / total, n_draw)
    np.cumsum(times, out=times)
    n = int(np.searchsorted(times, duration, side="left"))
    timestamps = times[:n]
    unit_index = rng.choice(N_UNITS, size=n, p=rates / total).astype(np.int32)
    # Hand velocity: a smooth-ish 2-D trace (sum of slow sinusoids plus noise), float32.
    n_vel = int(round(duration * VEL_RATE_HZ))
    t = np.arange(n_vel, dtype=np.float64) / VEL_RATE_HZ
    vel = np.empty((n_vel, 2), dtype=np.float32)
    vel[:, 0] = np.sin(2 * np.pi * 0.5 * t)
    vel[:, 1] = np.cos(2 * np.pi * 0.3 * t)
    vel += 0.05 * rng.standard_normal((n_vel, 2), dtype=np.float32)
    ids = [f"elec{u // 4:03d}/unit{u % 4}" for u in range(N_UNITS)]
    return Session(timestamps, unit_index, ids, vel, duration)


def write_neurofm(session: Session, path: Path, rec_id: str) -> None:
    rec = Recording(
        rec_id,
        {
            "spikes": Spikes(session.timestamps, session.unit_index, session.unit_ids),
            "hand_vel": RegularSeries(session.vel, VEL_RATE_HZ, 0.0, ["vx", "vy"], unit="m/s"),
        },
        duration=session.duration,
    )
    rec.save(path)


def write_torch_brain(session: Session, path: Path) -> None:
    """The layout brainsets pipelines write: spikes, units, a regular behaviour, a domain."""
    data = Data(
        spikes=IrregularTimeSeries(
            timestamps=session.timestamps, unit_index=session.unit_index, domain="auto"
        ),
        units=ArrayDict(id=np.array(session.unit_ids)),
        hand_vel=RegularTimeSeries(sampling_rate=VEL_RATE_HZ, vel=session.vel, domain_start=0.0),
        domain=Interval(0.0, session.duration),
    )
    with h5py.File(path, "w") as f:
        data.to_hdf5(f)


# ------------------------------------------------------------------------------------------------
# (a) and (b): window reads
# ------------------------------------------------------------------------------------------------


def read_neurofm(rec: Recording, a: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    win = rec.window(a, a + WINDOW_S)
    return win.spikes.timestamps, win.spikes.unit_index, win.hand_vel.data


def read_torch_brain(ds: Dataset, rec_id: str, a: float) -> tuple[np.ndarray, ...]:
    sample = ds[DatasetIndex(rec_id, a, a + WINDOW_S)]
    # Attribute access resolves the lazy slice and reads the arrays from the file.
    return sample.spikes.timestamps, sample.spikes.unit_index, sample.hand_vel.vel


def read_torch_brain_nocopy(lazy: Data, a: float) -> tuple[np.ndarray, ...]:
    sample = lazy.slice(a, a + WINDOW_S)
    return sample.spikes.timestamps, sample.spikes.unit_index, sample.hand_vel.vel


def reopen_neurofm(path: Path, a: float) -> tuple[np.ndarray, ...]:
    with Recording.open(path) as rec:
        return read_neurofm(rec, a)


def reopen_torch_brain(path: Path, a: float) -> tuple[np.ndarray, ...]:
    with h5py.File(path, "r") as f:
        sample = Data.from_hdf5(f, lazy=True).slice(a, a + WINDOW_S)
        return sample.spikes.timestamps, sample.spikes.unit_index, sample.hand_vel.vel


def check_same_windows(rec: Recording, ds: Dataset, rec_id: str, duration: float) -> int:
    """Both libraries must return identical spikes and samples: we compare equal work."""
    rng = np.random.default_rng(123)
    starts = [0.0, duration - WINDOW_S, 1.0, 17.0, duration / 2, 0.25, 0.999, 0.1]
    starts += list(rng.uniform(0, duration - WINDOW_S, 40))
    n_spikes = 0
    for a in starts:
        ts_n, ui_n, vel_n = read_neurofm(rec, a)
        ts_t, ui_t, vel_t = read_torch_brain(ds, rec_id, a)
        assert len(ts_n) == len(ts_t) > 0, (a, len(ts_n), len(ts_t))
        assert np.array_equal(ts_n, ts_t), f"spike times differ in window [{a}, {a + WINDOW_S})"
        assert np.array_equal(ui_n.astype(np.int64), ui_t.astype(np.int64)), a
        assert vel_n.shape == vel_t.shape, (a, vel_n.shape, vel_t.shape)
        assert np.array_equal(vel_n, vel_t), f"hand velocity differs in window [{a}, {a + 1})"
        n_spikes += len(ts_n)
    return n_spikes


Reader = tuple[Callable[[float], object], float]  # (read the window starting at a, duration)


def time_interleaved(readers: dict[str, Reader], fractions: np.ndarray) -> dict[str, list[float]]:
    """Time every reader on windows at ``fraction * (duration - 1 s)``.

    Readers take turns window by window, and which one goes first rotates, so a burst of
    background load or a slow drift of the machine hits every reader and every length alike.
    """
    names = list(readers)
    out: dict[str, list[float]] = {name: [] for name in names}
    for i, u in enumerate(fractions):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            read, duration = readers[name]
            a = float(u) * (duration - WINDOW_S)
            t0 = time.perf_counter()
            read(a)
            out[name].append(time.perf_counter() - t0)
    return out


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def build(tmp: Path, label: str, duration: float) -> tuple[Path, Path, str]:
    t0 = time.perf_counter()
    session = make_session(duration, seed=SEEDS[label])
    n_spikes = len(session.timestamps)
    rec_id = f"synthetic_{label}"
    ours = tmp / "neurofm" / f"{rec_id}.h5"
    theirs = tmp / "torch_brain" / f"{rec_id}.h5"
    ours.parent.mkdir(exist_ok=True)
    theirs.parent.mkdir(exist_ok=True)
    write_neurofm(session, ours, rec_id)
    write_torch_brain(session, theirs)
    del session
    gc.collect()
    section(
        f"{label}: {n_spikes:,} spikes, {N_UNITS} units, hand_vel 2 ch at {VEL_RATE_HZ:g} Hz; "
        f"files neurofm {ours.stat().st_size / 2**20:.0f} MB, torch_brain "
        f"{theirs.stat().st_size / 2**20:.0f} MB; built in {time.perf_counter() - t0:.1f} s"
    )
    return ours, theirs, rec_id


def bench_windows(tmp: Path, reps: int) -> dict[str, float]:
    readers: dict[str, Reader] = {}
    reopen: dict[str, Reader] = {}
    opened: list[Recording | Data] = []
    for label, duration in LENGTHS.items():
        ours, theirs, rec_id = build(tmp, label, duration)
        rec = Recording.open(ours)
        ds = Dataset(theirs.parent, recording_ids=[rec_id])  # keep_files_open=True (default)
        # What the Dataset holds and deep-copies per item: the file's lazy Data, opened once.
        lazy = Data.from_hdf5(h5py.File(theirs, "r"), lazy=True)
        opened += [rec, lazy]
        n_checked = check_same_windows(rec, ds, rec_id, duration)
        section(f"{label}: identical spikes and hand_vel in 48 windows ({n_checked:,} spikes)")
        readers[f"window_latency_{label}_ms"] = (lambda a, r=rec: read_neurofm(r, a), duration)
        readers[f"torch_brain_window_latency_{label}_ms"] = (
            lambda a, d=ds, i=rec_id: read_torch_brain(d, i, a),
            duration,
        )
        readers[f"torch_brain_slice_nocopy_latency_{label}_ms"] = (
            lambda a, x=lazy: read_torch_brain_nocopy(x, a),
            duration,
        )
        reopen[f"reopen_window_latency_{label}_ms"] = (
            lambda a, p=ours: reopen_neurofm(p, a),
            duration,
        )
        reopen[f"torch_brain_reopen_window_latency_{label}_ms"] = (
            lambda a, p=theirs: reopen_torch_brain(p, a),
            duration,
        )

    rng = np.random.default_rng(100)
    time_interleaved(readers, rng.random(200))  # warm-up, not counted
    times = time_interleaved(readers, rng.random(reps))
    time_interleaved(reopen, rng.random(20))
    times.update(time_interleaved(reopen, rng.random(max(reps // 4, 1))))
    for obj in opened:
        obj.close()
    del readers, reopen, opened
    gc.collect()  # closes the files the Datasets kept open
    return {name: median_ms(samples) for name, samples in times.items()}


# ------------------------------------------------------------------------------------------------
# (c): NWB ingest
# ------------------------------------------------------------------------------------------------


def big_nwb_path(gzip: int) -> Path:
    lo, hi = NWB_RATE_RANGE_HZ
    key = (
        f"u{NWB_UNITS}_r{lo:g}-{hi:g}_d{NWB_DURATION_S:g}_v{NWB_VEL_RATE_HZ:g}"
        f"_gz{gzip}_s{NWB_SEED}_g{NWB_GENERATOR_VERSION}"
    )
    return BENCH_OUT / f"big_reaching_{key}.nwb"


def write_big_nwb(path: Path, gzip: int) -> int:
    """Write the big NWB file; returns its spike count. Memory ~ one float64 per spike.

    ``gzip`` > 0: chunked (8 MB chunks, within the ~10 MB hdmf/neuroconv aim) and compressed at
    that level, as DANDI files usually are; 0: contiguous and uncompressed.
    """
    compress = {"compression": "gzip", "compression_opts": gzip} if gzip else {}
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import BehavioralTimeSeries
    from pynwb.misc import Units

    rng = np.random.default_rng(NWB_SEED)
    rates = rng.uniform(*NWB_RATE_RANGE_HZ, NWB_UNITS)
    counts = rng.poisson(rates * NWB_DURATION_S)
    ends = np.cumsum(counts).astype(np.uint64)
    spike_times = np.empty(int(ends[-1]), dtype=np.float64)
    lo = 0
    for n in counts:  # per-unit sorted times, unit after unit, as the NWB Units table stores them
        spike_times[lo : lo + n] = np.sort(rng.uniform(0.0, NWB_DURATION_S, n))
        lo += n
    times = VectorData(
        name="spike_times",
        description="spike times of each unit (s)",
        data=H5DataIO(spike_times, chunks=(1 << 20,), **compress) if gzip else spike_times,
    )
    index = VectorIndex(name="spike_times_index", data=H5DataIO(ends), target=times)
    units = Units(
        name="units",
        description="synthetic sorted units",
        id=np.arange(NWB_UNITS),
        columns=[times, index],
        colnames=["spike_times"],
    )
    nwb = NWBFile(
        session_description="synthetic reaching session for the ingest benchmark",
        identifier=f"neurofm-bench-{path.stem}",
        session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
        session_id="bench",
    )
    nwb.units = units
    n_vel = int(NWB_DURATION_S * NWB_VEL_RATE_HZ)
    t = np.arange(n_vel) / NWB_VEL_RATE_HZ
    vel = np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.3 * t)], axis=1)
    behavior = nwb.create_processing_module("behavior", "hand kinematics")
    behavior.add(
        BehavioralTimeSeries(
            name="BehavioralTimeSeries",
            time_series=[
                TimeSeries(
                    name="hand_vel",
                    data=H5DataIO(vel, **compress) if gzip else vel,
                    unit="m/s",
                    rate=NWB_VEL_RATE_HZ,
                    starting_time=0.0,
                    description="hand velocity (x, y)",
                )
            ],
        )
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.nwb")
    try:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return int(ends[-1])


def nwb_spike_count(path: Path) -> int:
    with h5py.File(path, "r") as f:
        index = f["units/spike_times_index"]
        return int(index[index.shape[0] - 1])


def neurofm_command() -> list[str]:
    script = Path(sys.executable).parent / "neurofm"
    if script.exists():
        return [str(script)]
    found = shutil.which("neurofm")
    if found:
        return [found]
    return [sys.executable, "-m", "neurofm.cli"]


# Runs the measured command from a small, fresh process: ru_maxrss of RUSAGE_CHILDREN also counts
# the pages a child inherits at fork, so forking the ingest straight from this (GB-sized) process
# would report this process's size, not the ingest's.
LAUNCHER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": rc, "wall_s": wall, "maxrss_kb": usage.ru_maxrss}, f)
"""


def run_measured(cmd: list[str], poll_s: float = 0.02) -> tuple[float, float, int, str]:
    """Run ``cmd``; return wall seconds, peak RSS (MB) of its process tree, exit code, output.

    The peak is the larger of the RSS polled and summed over the command's process tree (which
    counts worker processes together) and the kernel's ru_maxrss of its largest process (which
    catches a peak shorter than the polling interval).
    """
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        log_path = Path(scratch) / "output.log"
        with open(log_path, "wb") as log:
            launcher = psutil.Popen(
                [sys.executable, "-S", "-c", LAUNCHER, str(result), *cmd],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            peak = 0
            while launcher.poll() is None:
                rss = 0
                try:
                    for p in launcher.children(recursive=True):
                        try:
                            rss += p.memory_info().rss
                        except psutil.Error:
                            pass
                except psutil.Error:
                    pass
                peak = max(peak, rss)
                time.sleep(poll_s)
        output = log_path.read_text(errors="replace")
        if launcher.returncode != 0 or not result.exists():
            return float("nan"), float("nan"), launcher.returncode or 1, output
        measured = json.loads(result.read_text())
    peak_mb = max(peak / 2**20, measured["maxrss_kb"] / 1024)
    return measured["wall_s"], peak_mb, measured["rc"], output


def catalog_spike_count(catalog: Path) -> tuple[int, int]:
    """Spikes and units of the (one) recording the ingest wrote into ``catalog``."""
    found = []
    for path in sorted(catalog.rglob("*.h5")):
        try:
            rec = Recording.open(path)
        except Exception:  # the catalog's index, or anything that is not a recording
            continue
        with rec:
            for name in rec:
                sig = rec[name]
                if sig.kind == "spikes":
                    found.append((len(sig), len(sig.units)))
    assert len(found) == 1, f"expected one spikes signal in {catalog}, found {found}"
    return found[0]


def bench_ingest(tmp: Path, gzip: int) -> dict[str, float]:
    path = big_nwb_path(gzip)
    if path.exists():
        n_spikes = nwb_spike_count(path)
        section(f"cached NWB {path.relative_to(REPO)}: {n_spikes:,} spikes")
    else:
        t0 = time.perf_counter()
        n_spikes = write_big_nwb(path, gzip)
        gc.collect()
        section(
            f"wrote NWB {path.relative_to(REPO)}: {n_spikes:,} spikes in "
            f"{time.perf_counter() - t0:.0f} s ({path.stat().st_size / 2**20:.0f} MB)"
        )
    assert n_spikes >= MIN_NWB_SPIKES, n_spikes

    if importlib.util.find_spec("neurofm.cli") is None:
        section("SKIPPED ingest: neurofm.cli does not exist yet (no `neurofm ingest` command)")
        return {}
    catalog = tmp / f"catalog_gz{gzip}"
    cmd = [*neurofm_command(), "ingest", str(path), "--out", str(catalog)]
    section(f"running: neurofm ingest {path.name} --out <tmp>/{catalog.name}")
    wall, peak_mb, rc, output = run_measured(cmd)
    if rc != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed with exit code {rc}:\n{output[-4000:]}")
    got_spikes, got_units = catalog_spike_count(catalog)
    assert got_spikes == n_spikes, f"catalog has {got_spikes} spikes, the NWB file {n_spikes}"
    assert got_units == NWB_UNITS, f"catalog has {got_units} units, the NWB file {NWB_UNITS}"
    section(f"catalog recording has all {got_spikes:,} spikes of {got_units} units")
    result = {
        "ingest_wall_s": wall,
        "ingest_spikes_per_s": n_spikes / wall,
        "ingest_peak_rss_mb": peak_mb,
        "ingest_n_spikes": n_spikes,
    }
    shutil.rmtree(catalog, ignore_errors=True)
    return result


# ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000, help="random windows per length")
    parser.add_argument("--no-ingest", action="store_true", help="skip (c), the NWB ingest")
    args = parser.parse_args()

    BENCH_OUT.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="data_bench.", dir=BENCH_OUT))
    try:
        section(f"(a)+(b) random {WINDOW_S:g} s windows, median of {args.reps} per length")
        windows = bench_windows(tmp, args.reps)
        section("(a) neurofm: Recording.open once, rec.window(a, a + 1), arrays touched")
        for label in LENGTHS:
            figure(f"window_latency_{label}_ms", windows[f"window_latency_{label}_ms"])
        section("(b) torch_brain: Dataset (files kept open), deepcopy + Data.slice, arrays touched")
        for label in LENGTHS:
            key = f"torch_brain_window_latency_{label}_ms"
            figure(key, windows[key])
        section("(b) torch_brain Data.slice on the shared lazy Data, without the deep copy")
        for label in LENGTHS:
            key = f"torch_brain_slice_nocopy_latency_{label}_ms"
            figure(key, windows[key])
        section(f"(b) reopen per window (open, one window, close), median of {args.reps // 4}")
        for label in LENGTHS:
            for key in (
                f"reopen_window_latency_{label}_ms",
                f"torch_brain_reopen_window_latency_{label}_ms",
            ):
                figure(key, windows[key])

        if not args.no_ingest:
            section("(c) NWB ingest: `neurofm ingest BIG.nwb --out CATALOG` in a subprocess")
            section(f"(c) spike_times chunked, gzip level {NWB_GZIP} (as on DANDI)")
            ingest = bench_ingest(tmp, NWB_GZIP)
            if ingest:
                figure("ingest_wall_s", ingest["ingest_wall_s"], ".1f")
                figure("ingest_spikes_per_s", ingest["ingest_spikes_per_s"], ".0f")
                figure("ingest_peak_rss_mb", ingest["ingest_peak_rss_mb"], ".0f")
                figure("ingest_n_spikes", ingest["ingest_n_spikes"], "d")
                section("(c) the same file, spike_times contiguous and uncompressed")
                plain = bench_ingest(tmp, 0)
                figure("ingest_uncompressed_wall_s", plain["ingest_wall_s"], ".1f")
                figure("ingest_uncompressed_spikes_per_s", plain["ingest_spikes_per_s"], ".0f")
                figure("ingest_uncompressed_peak_rss_mb", plain["ingest_peak_rss_mb"], ".0f")

        section("ratios: 10h/10min goal <= 1.5; torch_brain/neurofm goal >= 5")
        w = windows
        figure(
            "window_latency_ratio_10h_over_10min",
            w["window_latency_10h_ms"] / w["window_latency_10min_ms"],
            ".2f",
        )
        figure(
            "torch_brain_window_latency_ratio_10h_over_10min",
            w["torch_brain_window_latency_10h_ms"] / w["torch_brain_window_latency_10min_ms"],
            ".2f",
        )
        for label in LENGTHS:
            figure(
                f"window_latency_ratio_torch_brain_over_neurofm_{label}",
                w[f"torch_brain_window_latency_{label}_ms"] / w[f"window_latency_{label}_ms"],
                ".2f",
            )
        for label in LENGTHS:
            figure(
                f"reopen_window_latency_ratio_torch_brain_over_neurofm_{label}",
                w[f"torch_brain_reopen_window_latency_{label}_ms"]
                / w[f"reopen_window_latency_{label}_ms"],
                ".2f",
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
