"""Two ingests into one catalog at once keep every recording (issue 14.2, failure 2)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path


def _neurofm() -> list[str]:
    script = Path(sys.executable).with_name("neurofm")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "neurofm.cli"]


def test_two_real_ingests_at_once_keep_every_recording(reaching_raw, tmp_path):
    catalog = tmp_path / "catalog"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logs = [(tmp_path / f"out{i}.txt", tmp_path / f"err{i}.txt") for i in range(2)]
    procs = [
        subprocess.Popen(
            [*_neurofm(), "ingest", str(reaching_raw / subject), "--out", str(catalog)],
            stdout=out.open("w"),  # files, not pipes: a full pipe would stall a writer
            stderr=err.open("w"),
            env=env,
        )
        for subject, (out, err) in zip(("sub-S0", "sub-S1"), logs, strict=True)
    ]
    codes = [p.wait(timeout=300) for p in procs]
    results = [(c, o.read_text(), e.read_text()) for c, (o, e) in zip(codes, logs, strict=True)]
    for code, out, err in results:
        assert code == 0, err
        assert out.strip().splitlines()[-1].startswith("4 ingested, 0 up to date, 0 failed")
    expected = sorted(p.name.removesuffix("_ecephys.nwb") for p in reaching_raw.rglob("*.nwb"))
    assert len(expected) == 8
    with closing(sqlite3.connect(catalog / "catalog.sqlite")) as db:
        indexed = [r[0] for r in db.execute("SELECT id FROM recordings ORDER BY id")]
        domains = db.execute("SELECT count(DISTINCT recording_id) FROM domains").fetchone()[0]
    assert indexed == expected
    assert domains == 0  # ingested without splits: no domains indexed
    assert not (catalog / "catalog.json").exists()
    assert sorted(p.stem for p in catalog.glob("*.h5")) == expected
    from neurofm.data.recording import verify_recording

    assert all(verify_recording(p) == [] for p in catalog.glob("*.h5"))
    assert not list(catalog.glob(".*.tmp"))


def test_many_writers_in_threads_keep_every_entry(reaching_catalog, tmp_path):
    """Index read-modify-write under the lock: 4 Catalog objects add 3 recordings each."""
    from concurrent.futures import ThreadPoolExecutor

    from neurofm.data import Catalog, Recording

    source = Catalog(reaching_catalog)
    rec_id = source.ids[0]
    out = tmp_path / "many"

    def add(worker: int) -> None:
        cat = Catalog(out, create=True)  # each worker reads the (empty) index once, up front
        for k in range(3):
            with Recording.open(reaching_catalog / f"{rec_id}.h5") as lazy:
                rec = lazy.load()
            rec.id = f"w{worker}_{k}"
            cat.add(rec)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, range(4)))
    assert sorted(Catalog(out).ids) == sorted(f"w{w}_{k}" for w in range(4) for k in range(3))
    shutil.rmtree(out)
