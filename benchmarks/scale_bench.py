"""Scale figures (issue 18.4): the catalog index with 10,000 sessions, ingestion on Dask workers,
training across processes. Prints ``name: value`` lines.

Sections, each a function returning ``{name: value}``:

* :func:`catalog_figures` (here): a synthetic index of :data:`N_RECORDINGS` rows (no recording
  files; each row as ingest writes it: metadata, 170 unit ids, train/valid/test domains of
  200 trials) -- open + select + splits (goal < 1 s), an index update of one recording
  (goal < 50 ms), the peak memory of open + select + splits + vocabulary in a fresh process
  (goal < 200 MB).
* ``ingest_figures()`` in ``benchmarks/scale_ingest.py`` and ``training_figures()`` in
  ``benchmarks/scale_training.py``, when those files exist (they are optional here).

Run: ``.venv/bin/python benchmarks/scale_bench.py`` (``--only catalog`` for this section).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

#: Rows of the synthetic index.
N_RECORDINGS = 10_000
#: Units per session (POYO-1: 27,373 units over 158 sessions, ~173 each).
UNITS_PER_SESSION = 170
#: Trials per session, split 70/10/20 into train/valid/test domains.
TRIALS_PER_SESSION = 200
SUBJECTS = 500
AREAS = ("M1", "PMd", "S1", "V1", "CA1", "PFC")
#: Repeats of each timing; the median is reported.
REPEATS = 5


def _synthetic_rows() -> Iterator[tuple[dict, object]]:
    """``(entry, details)`` per recording, as ``Catalog.add`` would index a real one."""
    from neurofm.data.catalog import _Details, split_domains
    from neurofm.data.signals import Intervals

    rng = np.random.default_rng(0)
    for i in range(N_RECORDINGS):
        rid = f"sub-{i % SUBJECTS:04d}_ses-{i // SUBJECTS:03d}"
        starts = np.arange(TRIALS_PER_SESSION) * 3.0
        trials = Intervals(starts, starts + 2.0)
        domains = split_domains(trials, (0.7, 0.1, 0.2), seed=i)
        areas = sorted(rng.choice(AREAS, size=2, replace=False).tolist())
        entry = {
            "id": rid,
            "file": f"{rid}.h5",
            "subject_id": f"{i % SUBJECTS:04d}",
            "session_id": f"{i // SUBJECTS:03d}",
            "species": "Macaca mulatta",
            "task": "center-out reaching",
            "modality": "ecephys",
            "areas": areas,
            "duration_s": float(TRIALS_PER_SESSION * 3.0),
            "n_units": UNITS_PER_SESSION,
            "n_spikes": int(rng.integers(100_000, 1_000_000)),
            "signals": {"spikes": "spikes", "hand_vel": "regular", "trials": "intervals"}
            | {f"{s}_domain": "intervals" for s in domains},
            "source_path": f"/data/dandiset/sub-{i % SUBJECTS:04d}/{rid}_ecephys.nwb",
            "source_url": None,
            "source_sha256": f"{i:064x}",
            "dandiset_id": "000000",
        }
        units = {"spikes": [f"unit-{u:04d}" for u in range(UNITS_PER_SESSION)]}
        bounds = {s: (d.start, d.end) for s, d in domains.items()}
        yield entry, _Details(units, bounds)


def build_index(folder: Path) -> float:
    """Write the synthetic index into ``folder``; seconds it took."""
    from neurofm.data.catalog import INDEX_NAME, _build_index, _link_into_place

    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _build_index(folder, _synthetic_rows(), {})
    _link_into_place(tmp, folder / INDEX_NAME)
    return time.perf_counter() - t0


def open_select_splits(folder: Path) -> int:
    """What a pretraining run asks of the index before its first step: open it, query it,
    and read the train/valid/test domains of every recording (not only of the selection:
    the worst case). Returns a count, to check."""
    from neurofm.data.catalog import Catalog

    cat = Catalog(folder)
    chosen = cat.select(area="M1", subject_id=[f"{s:04d}" for s in range(0, SUBJECTS, 2)])
    assert 0 < len(chosen) < len(cat)
    n = 0
    for split in ("train", "valid", "test"):
        n += sum(len(d) for d in cat.domains(split).values())
    return n


def _median_s(fn: Callable[[], object], repeats: int = REPEATS) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of ``fn()`` (CPU time is what a shared machine's
    load does not inflate)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


_MEMORY_CHILD = """
import json, resource, sys, tracemalloc
from pathlib import Path
sys.path.insert(0, {bench_dir!r})
import numpy, sqlite3, neurofm.data.catalog  # the baseline holds the imports
from scale_bench import open_select_splits
from neurofm.data.catalog import Catalog
def rss():  # peak resident memory (MiB) since the last reset
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:  # Linux: the peak restarts from now
            f.write("5")
    except OSError:
        pass
reset_peak()
base = rss()
open_select_splits(Path({folder!r}))
splits = rss()
units = sum(len(u) for u in Catalog(Path({folder!r})).unit_ids().values())
vocab = rss()
tracemalloc.start()  # after the RSS figures: its own bookkeeping costs memory too
open_select_splits(Path({folder!r}))
traced = tracemalloc.get_traced_memory()[1]
print(json.dumps({{"splits": splits - base, "traced": traced / 2**20, "vocab": vocab - base,
                  "units": units}}))
"""


def _memory(folder: Path, n_units: int) -> dict[str, float]:
    """Peak memory of open + select + splits, then of the unit vocabulary, in a fresh process
    (growth of the peak RSS over the interpreter's after its imports)."""
    code = _MEMORY_CHILD.format(bench_dir=str(Path(__file__).parent), folder=str(folder))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["units"] == n_units, doc
    return {
        "catalog_peak_memory_mb": doc["splits"],
        "catalog_traced_peak_mb": doc["traced"],
        "catalog_vocab_peak_memory_mb": doc["vocab"],
    }


def catalog_figures() -> dict[str, float]:
    """The catalog index with :data:`N_RECORDINGS` synthetic rows.

    Returns
    -------
    dict of str to float
        ``catalog_build_s`` (writing the synthetic index, once); ``catalog_open_select_splits_s``
        (median; goal < 1 s); ``catalog_update_one_ms`` (median of ``Catalog.register`` of one
        small recording file into the 10,000-row index, seen by the writer's own object;
        goal < 50 ms); ``catalog_open_select_splits_cpu_s`` and ``catalog_update_one_cpu_ms``
        (the same in CPU time, which a busy machine does not inflate); ``catalog_vocab_s``
        (every recording's unit ids, 1.7 million); ``catalog_peak_memory_mb`` (open + select +
        splits in a fresh process: growth of the peak RSS over the interpreter's; goal
        < 200 MB); ``catalog_traced_peak_mb`` (tracemalloc's peak of the same work);
        ``catalog_vocab_peak_memory_mb`` (the same process after it also read every unit id);
        ``catalog_load_average`` (1-minute load average at the end).
    """
    from neurofm.data import Catalog, Recording, Spikes, Units

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="neurofm-scale-") as tmp:
        folder = Path(tmp) / "catalog"
        figures["catalog_build_s"] = build_index(folder)
        expected = open_select_splits(folder)
        assert expected > 0
        wall, cpu = _median_s(lambda: open_select_splits(folder))
        figures["catalog_open_select_splits_s"] = wall
        figures["catalog_open_select_splits_cpu_s"] = cpu
        cat = Catalog(folder)
        figures["catalog_vocab_s"] = _median_s(lambda: cat.unit_ids(), repeats=3)[0]

        rng = np.random.default_rng(1)
        updates, updates_cpu = [], []
        for k in range(20):
            times = np.sort(rng.uniform(0, 10, 1000))
            rec = Recording(
                f"new-{k:02d}",
                {
                    "spikes": Spikes(
                        times, rng.integers(0, 5, 1000), Units([f"u{i}" for i in range(5)])
                    )
                },
                metadata={"subject_id": "new"},
            )
            rec.save(folder / f"{rec.id}.h5")  # as a worker would, before the client indexes it
            t0, c0 = time.perf_counter(), time.process_time()
            cat.register(f"{rec.id}.h5")
            updates.append(time.perf_counter() - t0)
            updates_cpu.append(time.process_time() - c0)
            assert rec.id in cat
        assert len(Catalog(folder)) == N_RECORDINGS + 20
        figures["catalog_update_one_ms"] = statistics.median(updates) * 1e3
        figures["catalog_update_one_cpu_ms"] = statistics.median(updates_cpu) * 1e3
        figures.update(_memory(folder, N_RECORDINGS * UNITS_PER_SESSION + 20 * 5))
    # Wall-clock figures mean something only on an otherwise idle machine: say how busy it was.
    figures["catalog_load_average"] = os.getloadavg()[0]
    return figures


#: Other engineers' sections: (module in benchmarks/, function).
_SECTIONS = (("scale_ingest", "ingest_figures"), ("scale_training", "training_figures"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["catalog", "ingest", "training"], default=None)
    args = parser.parse_args(argv)
    sections: list[tuple[str, Callable[[], dict[str, float]]]] = []
    if args.only in (None, "catalog"):
        sections.append(("catalog", catalog_figures))
    for module, function in _SECTIONS:
        name = module.removeprefix("scale_")
        if args.only not in (None, name):
            continue
        try:
            fn = getattr(importlib.import_module(module), function)
        except ImportError as exc:  # a section not written yet, or its extra not installed
            print(f"# {name}: skipped ({exc})", file=sys.stderr)
            continue
        sections.append((name, fn))
    for _, fn in sections:
        for key, value in fn().items():
            print(f"{key}: {value:.4g}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
