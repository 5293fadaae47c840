"""Integrity of stored recordings (issue 14.3, failures 3 and 8).

One flipped byte in a spike time or a velocity sample must be found by ``neurofm verify``, make
``ingest`` re-ingest the recording instead of calling it up to date, and be marked by ``info``
without hiding the healthy recordings. Temporary files left by a killed writer are reported,
and removed by the next ingest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from faultkit import run_main

from neurofm.data import Catalog, Recording
from neurofm.data.recording import verify_recording
from neurofm.pipeline import ingest


def flip_byte(path: Path, dataset: str, element: int, byte: int = 7) -> tuple[int, int]:
    """XOR one byte of element ``element`` of a contiguous dataset, in place, behind HDF5's back.

    Returns (offset in the file, new byte value). Byte 7 of a little-endian float64 holds the
    sign and the top of the exponent: the value jumps by orders of magnitude.
    """
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        offset = ds.id.get_offset() + element * ds.dtype.itemsize + byte
    with open(path, "r+b") as fh:
        fh.seek(offset)
        old = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([old ^ 0x40]))
    return offset, old ^ 0x40


def first_id(catalog: Path) -> str:
    return sorted(p.stem for p in catalog.glob("*.h5"))[0]


def test_fresh_recordings_verify_clean(reaching_catalog):
    for path in sorted(reaching_catalog.glob("*.h5")):
        assert verify_recording(path) == []
    code, out, err = run_main("verify", str(reaching_catalog))
    assert code == 0, err
    assert (
        out.strip().splitlines()[-1] == f"4 recordings, 4 healthy, 0 broken -> {reaching_catalog}"
    )


def test_an_object_added_afterwards_is_named_once(reaching_catalog):
    path = reaching_catalog / f"{first_id(reaching_catalog)}.h5"
    with h5py.File(path, "a") as f:
        f["my_notes"] = np.arange(3)
        f.create_group("signals/extra")
    assert verify_recording(path) == [
        "my_notes: not written by neurofm (added afterwards)",
        "signals/extra: not written by neurofm (added afterwards)",
    ]


def test_an_unindexed_recording_file_is_pointed_out(reaching_catalog):
    stray = reaching_catalog / "copied_in.h5"
    stray.write_bytes((reaching_catalog / f"{first_id(reaching_catalog)}.h5").read_bytes())
    try:
        code, out, err = run_main("verify", str(reaching_catalog))
        assert code == 0, err  # nothing the catalog lists is broken
        assert f"not indexed  {stray}: no entry of this catalog names it" in out
        code, out, _ = run_main("verify", str(reaching_catalog), "--json")
        assert json.loads(out)["unindexed"] == [str(stray)]
    finally:
        stray.unlink()


@pytest.mark.parametrize(
    "dataset",
    ["signals/spikes/timestamps", "signals/hand_vel/data"],
    ids=["spike_time", "velocity_sample"],
)
def test_one_flipped_byte_is_found_and_repaired_by_ingest(dataset, reaching_raw, reaching_catalog):
    rec_id = first_id(reaching_catalog)
    path = reaching_catalog / f"{rec_id}.h5"
    flip_byte(path, dataset, element=5)

    # verify: names the recording and the dataset, exit 1
    assert verify_recording(path) == [f"{dataset}: content changed since it was written"]
    code, out, err = run_main("verify", str(reaching_catalog))
    assert code == 1
    assert f"BROKEN  {rec_id}: {dataset}: content changed since it was written" in out
    assert (
        out.strip().splitlines()[-1] == f"4 recordings, 3 healthy, 1 broken -> {reaching_catalog}"
    )
    code, out, _ = run_main("verify", str(path))  # one recording
    assert code == 1 and f"BROKEN  {rec_id}" in out

    # info on the catalog: the healthy ones listed, the broken one marked, no traceback
    code, out, err = run_main("info", str(reaching_catalog))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"catalog {reaching_catalog}: 4 recordings (1 broken)"
    listed = [line.split()[0] for line in lines[3:] if line.strip()]
    assert sorted(listed) == sorted(p.stem for p in reaching_catalog.glob("*.h5"))
    broken = [line for line in lines if line.startswith(rec_id)]
    assert len(broken) == 1 and "BROKEN" in broken[0] and dataset in broken[0]
    assert "Traceback" not in err

    # ingest: not "up to date"; the recording is re-ingested and healthy again
    report = ingest(reaching_raw / "sub-S0", reaching_catalog, progress=False)
    assert report.ok, report.failed
    assert [rid for _, rid in report.ingested] == [rec_id]
    assert len(report.skipped) == 3
    assert verify_recording(path) == []
    with Recording.open(path) as rec:
        spikes = rec.spikes.load()
        assert np.all(np.diff(spikes.timestamps) >= 0)
        assert np.abs(rec.hand_vel.load().data).max() < 10.0  # m/s, not 1e306


def flip_in_string_heap(path: Path, dataset: str) -> None:
    """Make one stored text of a vlen-string dataset invalid UTF-8 (its first byte -> 0xff)."""
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        offset, text = ds.id.get_offset(), ds[0]
    raw = path.read_bytes()
    # An element is (length u32, global heap collection address u64, object index u32).
    collection = int.from_bytes(raw[offset + 4 : offset + 12], "little")
    at = raw.index(text, collection)
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.write(b"\xff")


@pytest.mark.parametrize("dataset", ["signals/spikes/unit_index", "signals/trials/columns/split"])
def test_info_survives_a_flip_in_unit_index_or_trial_split(dataset, reaching_catalog):
    rec_id = first_id(reaching_catalog)
    path = reaching_catalog / f"{rec_id}.h5"
    if dataset.endswith("split"):
        flip_in_string_heap(path, dataset)
    else:  # the top byte of an int32 -> a negative unit index
        with h5py.File(path, "r") as f:
            at = f[dataset].id.get_offset() + 3 * 4 + 3
        with open(path, "r+b") as fh:
            fh.seek(at)
            fh.write(b"\xff")
    code, out, err = run_main("info", str(reaching_catalog))
    assert code == 1
    assert "Traceback" not in err
    marked = [line for line in out.splitlines() if line.startswith(rec_id)]
    assert len(marked) == 1 and "BROKEN" in marked[0] and dataset in marked[0]
    assert len([line for line in out.splitlines() if line.startswith("sub-")]) == 4
    code, out, err = run_main("info", str(path))
    assert code == 1
    assert err.startswith(f"neurofm: error: {path}: {dataset}: content changed")
    assert len(err.splitlines()) == 1
    code, out, _ = run_main("verify", str(reaching_catalog))
    assert code == 1 and f"BROKEN  {rec_id}: {dataset}: content changed" in out


def test_broken_recordings_in_info_json(reaching_catalog):
    rec_id = first_id(reaching_catalog)
    flip_byte(reaching_catalog / f"{rec_id}.h5", "signals/spikes/timestamps", 0)
    code, out, _ = run_main("info", str(reaching_catalog), "--json")
    assert code == 1
    summaries = {s["id"]: s for s in json.loads(out)}
    assert len(summaries) == 4
    assert summaries[rec_id]["status"] == "broken"
    assert summaries[rec_id]["problems"] == [
        "signals/spikes/timestamps: content changed since it was written"
    ]
    assert all(s["status"] == "ok" for k, s in summaries.items() if k != rec_id)


def test_recording_without_checksums_is_reported_unverified(reaching_catalog):
    """Files written before checksums existed stay readable; verify says they are unchecked."""
    rec_id = first_id(reaching_catalog)
    path = reaching_catalog / f"{rec_id}.h5"
    with h5py.File(path, "a") as f:
        del f.attrs["checksums"]
    assert verify_recording(path) == []
    code, out, _ = run_main("verify", str(reaching_catalog))
    assert code == 0
    assert f"UNCHECKED  {rec_id}: no checksums (written by an older neurofm)" in out


# --------------------------------------------------------------------------------------------
# temporary files left by a killed writer (failure 8)
# --------------------------------------------------------------------------------------------


def _killed_writer(catalog: Path, rec_id: str) -> Path:
    """Run a writer that is SIGKILLed halfway through saving ``rec_id`` into ``catalog``."""
    script = f"""
import os, signal, sys
from pathlib import Path
from neurofm.atomic import atomic_path
with atomic_path(Path({str(catalog)!r}) / {rec_id + ".h5"!r}) as tmp:
    tmp.write_bytes(b"half a recording")
    os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    left = sorted(catalog.glob(f".{rec_id}.h5.*.tmp"))
    assert len(left) == 1
    return left[0]


def test_temp_file_of_a_killed_writer_is_reported_then_removed(reaching_raw, reaching_catalog):
    left = _killed_writer(reaching_catalog, "sub-S0_ses-x")
    stage = Path(tempfile.mkdtemp(prefix=".neurofm-stage-", dir=reaching_catalog))
    (stage / "spikes.h5").write_bytes(b"staged")

    code, out, err = run_main("verify", str(reaching_catalog))
    assert code == 0  # the recordings are healthy; the leftovers are reported
    assert f"leftover  {left.name} (left by an interrupted writer" in out
    assert f"leftover  {stage.name}/" in out
    code, out, err = run_main("info", str(reaching_catalog))
    assert code == 0
    assert f"{left.name}" in err and "interrupted writer" in err

    report = ingest(reaching_raw / "sub-S0", reaching_catalog, progress=False)
    assert report.ok and len(report.skipped) == 4
    assert not left.exists() and not stage.exists()
    code, out, _ = run_main("verify", str(reaching_catalog))
    assert code == 0 and "leftover" not in out


def test_temp_file_of_a_live_writer_is_kept(reaching_raw, reaching_catalog):
    with Catalog(reaching_catalog, writer=True):
        fd, name = tempfile.mkstemp(prefix=".sub-S0_ses-y.h5.", suffix=".tmp", dir=reaching_catalog)
        os.close(fd)
        report = ingest(reaching_raw / "sub-S0", reaching_catalog, progress=False)
        assert report.ok
        assert Path(name).exists()  # another writer is alive: its file is not touched
        code, out, _ = run_main("verify", str(reaching_catalog))
        assert f"leftover  {Path(name).name} (being written" in out
    report = ingest(reaching_raw / "sub-S0", reaching_catalog, progress=False)
    assert not Path(name).exists()
