"""Ingestion throughput on Dask workers (issue 18.4): 1 vs 2 local worker processes.

One generated dandiset (:data:`N_ASSETS` NWB files of synthetic centre-out reaching, DANDI
layout, each large enough that reading and writing it takes ~0.5-1 s on one core) is ingested
into a fresh catalog three times: one file after another in this process (the serial path),
then with a :class:`~distributed.LocalCluster` of 1 and of 2 single-threaded worker processes,
one task per file (:mod:`neurofm.pipeline.cluster`). The files are local (as after
``neurofm pull``): what is measured is the per-asset work a task does (probe, read, stage
spikes, write, checksum) plus Dask's and the index merge's overhead, not a network.

Cluster start-up is not timed (a cluster serves many ingests); the workers import neurofm's
readers before the clock starts. Each figure is the best of :data:`REPEATS` runs, so that a
burst of work from another process does not decide it; still, the wall-clock speedup means
something only on an otherwise idle machine (the load average is printed with it).

So the CPU time is measured too (``getrusage`` of every worker and of this process, with
their children: the HDF5 probe runs in one): ``ingest_worker_cpu_s_per_asset`` and
``ingest_client_cpu_s_per_asset`` (the client's share: the scheduler, the futures, the index
merge). From them, ``ingest_speedup_2_workers_idle_estimate`` is what 2 workers would give
over 1 on an idle 2-core machine if CPU were the only limit: 1-worker CPU over the larger of
the busiest worker's CPU and all CPU (workers + client) spread over 2 cores.

Figures: ``ingest_assets_per_s_{serial,1_worker,2_workers}``, ``ingest_spikes_per_s_*``,
``ingest_speedup_2_workers`` (2 workers over 1, wall clock; goal >= 1.6 on a 2-core machine),
the CPU figures above and ``ingest_load_average``.

Run: ``.venv/bin/python benchmarks/scale_ingest.py`` (or through ``benchmarks/scale_bench.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

#: Files in the generated dandiset (subjects x sessions).
N_SUBJECTS, N_SESSIONS = 4, 4
N_ASSETS = N_SUBJECTS * N_SESSIONS
#: Trials per session and units per session: ~0.5-1 s of ingest per file on one core.
N_TRIALS = 60
UNITS = (90, 110)
REPEATS = 2


def _warm() -> None:
    """Import what a task needs, on a worker, before the clock starts."""
    import neurofm.pipeline.ingest  # noqa: F401
    import neurofm.readers.nwb  # noqa: F401


def _generate(folder: Path) -> None:
    from neurofm.synthetic import generate_reaching_dataset

    generate_reaching_dataset(
        folder,
        n_subjects=N_SUBJECTS,
        n_sessions=N_SESSIONS,
        n_trials=N_TRIALS,
        n_units_range=UNITS,
        progress=False,
    )
    shutil.rmtree(folder / "ground_truth", ignore_errors=True)  # JSON, not assets


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _one_ingest(src: Path, out: Path, client: Any | None) -> tuple[float, int, list[float], float]:
    """Seconds to ingest ``src`` into a fresh ``out``, the spikes ingested, each worker's CPU
    seconds and this process's."""
    from neurofm.data import Catalog
    from neurofm.pipeline import ingest

    shutil.rmtree(out, ignore_errors=True)
    workers0 = client.run(_cpu_seconds) if client is not None else {}
    mine0 = _cpu_seconds()
    t0 = time.perf_counter()
    report = ingest(src, out, progress=False, client=client)
    seconds = time.perf_counter() - t0
    mine = _cpu_seconds() - mine0
    workers1 = client.run(_cpu_seconds) if client is not None else {}
    if report.failed or len(report.ingested) != N_ASSETS:
        raise RuntimeError(f"ingest failed: {report.failed}")
    spikes = sum(int(e["n_spikes"]) for e in Catalog(out).entries)
    return seconds, spikes, [workers1[w] - workers0[w] for w in workers0], mine


def _best(src: Path, out: Path, client: Any | None) -> tuple[float, int, list[float], float]:
    runs = [_one_ingest(src, out, client) for _ in range(REPEATS)]
    return min(runs, key=lambda run: run[0])


def ingest_figures() -> dict[str, float]:
    """Ingest throughput with the serial path, 1 and 2 local Dask workers.

    Returns
    -------
    dict of str to float
        ``ingest_assets_per_s_*``, ``ingest_spikes_per_s_*`` (``serial``, ``1_worker``,
        ``2_workers``), ``ingest_speedup_2_workers`` and ``ingest_load_average`` (the 1-minute
        load average when the measurement ended: above ~0.5 the speedup is not meaningful on
        a 2-core machine).
    """
    from neurofm.pipeline.cluster import dask_client

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="neurofm-scale-ingest-") as tmp:
        src, out = Path(tmp) / "dandiset", Path(tmp) / "catalog"
        _generate(src)
        _one_ingest(src, out, None)  # warm this process's imports and the page cache
        seconds, spikes, _, _ = _best(src, out, None)
        figures["ingest_assets_per_s_serial"] = N_ASSETS / seconds
        figures["ingest_spikes_per_s_serial"] = spikes / seconds
        cpu = {}
        for workers, label in ((1, "1_worker"), (2, "2_workers")):
            with dask_client(workers=workers) as client:
                client.run(_warm)
                seconds, spikes, worker_cpu, client_cpu = _best(src, out, client)
            figures[f"ingest_assets_per_s_{label}"] = N_ASSETS / seconds
            figures[f"ingest_spikes_per_s_{label}"] = spikes / seconds
            cpu[workers] = (worker_cpu, client_cpu)
    figures["ingest_speedup_2_workers"] = (
        figures["ingest_assets_per_s_2_workers"] / figures["ingest_assets_per_s_1_worker"]
    )
    (one,), one_client = cpu[1]
    two, two_client = cpu[2]
    figures["ingest_worker_cpu_s_per_asset"] = one / N_ASSETS
    figures["ingest_client_cpu_s_per_asset"] = one_client / N_ASSETS
    figures["ingest_speedup_2_workers_idle_estimate"] = max(one, one_client) / max(
        max(two), (sum(two) + two_client) / 2
    )
    figures["ingest_load_average"] = os.getloadavg()[0]
    return figures


if __name__ == "__main__":  # workers are spawned processes: they must not rerun this
    for name, value in ingest_figures().items():
        print(f"{name}: {value:.4g}")
