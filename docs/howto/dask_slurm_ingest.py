"""Ingest a dandiset on a SLURM cluster: Dask workers as SLURM jobs (dask-jobqueue).

Run it on the login node (or in a small SLURM job of its own): it starts a Dask scheduler
here, submits ``--jobs`` SLURM jobs of one single-threaded Dask worker each, and runs one
task per asset on them (pull, verified -> read -> write the recording). The catalog index is
merged here as tasks finish, so a run killed halfway leaves a valid catalog, and running the
same command again does only the assets still missing.

    pip install "neurofm[slurm]"
    python dask_slurm_ingest.py dandi:000128 --out /shared/catalogs/mc_maze \\
        --jobs 16 --memory 8GB --walltime 02:00:00 --account mylab

``--dry-run`` prints the SLURM job script and exits; ``--local N`` runs the same ingest on N
local worker processes instead (no SLURM needed: a rehearsal on a laptop).

The catalog folder (and ``--to``, where assets are downloaded) must be on a file system every
node sees at the same path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="dandi:<id>[@<version>]")
    parser.add_argument("--out", type=Path, required=True, help="catalog folder (shared)")
    parser.add_argument("--to", type=Path, help="download folder (default <out>/_raw/<id>)")
    parser.add_argument("--include", action="append", help="only assets matching (glob)")
    parser.add_argument("--stream", action="store_true", help="read over HTTP, no download")
    parser.add_argument("--api-url", help="DANDI API URL (default: the public archive)")
    parser.add_argument("--jobs", type=int, default=8, help="SLURM jobs (= Dask workers)")
    parser.add_argument("--memory", default="8GB", help="memory per job")
    parser.add_argument("--walltime", default="02:00:00", help="time limit per job")
    parser.add_argument("--queue", help="SLURM partition")
    parser.add_argument("--account", help="SLURM account")
    where = parser.add_mutually_exclusive_group()  # a rehearsal has no job script to print
    where.add_argument("--local", type=int, metavar="N", help="N local workers, not SLURM")
    where.add_argument("--dry-run", action="store_true", help="print the job script, exit")
    args = parser.parse_args(argv)

    from distributed import Client

    from neurofm.pipeline import ingest_dandi

    if args.local:
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=args.local, threads_per_worker=1, processes=True)
    else:
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            parser.error(
                "SLURM workers need dask-jobqueue: pip install 'neurofm[slurm]' (--local N "
                "rehearses on this machine without it)"
            )

        cluster = SLURMCluster(
            cores=1,  # one single-threaded worker per job: readers hold the GIL
            processes=1,
            memory=args.memory,
            walltime=args.walltime,
            queue=args.queue,
            account=args.account,
            # Each worker's scratch on the node's local disk, not the shared file system.
            local_directory="$TMPDIR",
            job_script_prologue=["export OMP_NUM_THREADS=1"],
        )
        if args.dry_run:
            print(cluster.job_script())
            cluster.close()
            return 0
        cluster.scale(jobs=args.jobs)
    with cluster, Client(cluster) as client:
        _, report = ingest_dandi(
            args.ref,
            args.out,
            to=args.to,
            include=args.include,
            stream=args.stream,
            api_url=args.api_url,
            client=client,
        )
    for source, reason in report.failed:
        print(f"error: {source}: {reason}", file=sys.stderr)
    print(
        f"{len(report.ingested)} ingested, {len(report.skipped)} up to date, "
        f"{len(report.failed)} failed -> {args.out}"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":  # Dask's local workers are spawned: they must not rerun this
    sys.exit(main())
