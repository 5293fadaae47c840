"""Small NWB files for the reader and CLI tests, and an independent pynwb view of a file.

Every helper writes with pynwb (or edits the written file with h5py where pynwb would refuse),
so the tests check neurofm against what pynwb itself reads, never against neurofm.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

START = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def new_nwbfile(identifier: str = "test-file") -> Any:
    """A minimal NWBFile with a subject."""
    from pynwb import NWBFile
    from pynwb.file import Subject

    nwb = NWBFile(
        session_description="a test session",
        identifier=identifier,
        session_start_time=START,
        session_id="ses1",
    )
    nwb.subject = Subject(subject_id="T0", species="Mus musculus", sex="M", age="P90D")
    return nwb


def write(path: Path, nwb: Any) -> Path:
    """Write ``nwb`` to ``path`` with pynwb."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def add_behavior(nwb: Any, n: int = 20) -> None:
    """A rate-based hand velocity in ``processing/behavior``."""
    from pynwb import TimeSeries

    module = nwb.create_processing_module(name="behavior", description="behaviour")
    module.add(
        TimeSeries(
            name="hand_vel",
            data=np.linspace(0, 1, 2 * n).reshape(n, 2),
            unit="m/s",
            rate=100.0,
            starting_time=0.0,
        )
    )


def behavior_only(path: Path) -> Path:
    """An NWB file with behaviour and no Units table."""
    nwb = new_nwbfile()
    add_behavior(nwb)
    return write(path, nwb)


def with_spike_trains(path: Path, trains: list[list[float]]) -> Path:
    """An NWB file whose Units table holds ``trains`` as given (pynwb does not check values)."""
    nwb = new_nwbfile()
    for train in trains:
        nwb.add_unit(spike_times=np.asarray(train, dtype=np.float64))
    add_behavior(nwb)
    return write(path, nwb)


def replace_dataset(path: Path, name: str, data: np.ndarray) -> None:
    """Replace dataset ``name`` of an HDF5 file by ``data``, keeping its attributes."""
    with h5py.File(path, "a") as f:
        attrs = dict(f[name].attrs)
        del f[name]
        ds = f.create_dataset(name, data=data)
        ds.attrs.update(attrs)


def truncated_copy(src: Path, dst: Path, n_bytes: int) -> Path:
    """The first ``n_bytes`` bytes of ``src``, as ``dst``."""
    with open(src, "rb") as fh:
        dst.write_bytes(fh.read(n_bytes))
    return dst


def copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def read_with_pynwb(path: Path) -> dict[str, Any]:
    """What pynwb reads from a (synthetic reaching) NWB file, as plain numpy values."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        units = nwb.units
        n = len(units.id)
        electrodes = [units["electrodes"][u] for u in range(n)]  # one DataFrame row per unit
        behavior = nwb.processing["behavior"]
        series = {}
        for name, ts in (
            ("hand_pos", behavior["Position"]["hand_pos"]),
            ("hand_vel", behavior["hand_vel"]),
            ("cursor_pos", behavior["cursor_pos"]),
        ):
            series[name] = {
                "data": np.asarray(ts.data[:]),
                "rate": ts.rate,
                "starting_time": ts.starting_time,
                "timestamps": None if ts.timestamps is None else np.asarray(ts.timestamps[:]),
                "unit": ts.unit,
            }
        trials = {c: np.asarray(nwb.trials[c][:]) for c in nwb.trials.colnames}
        subject = nwb.subject
        return {
            "identifier": nwb.identifier,
            "unit_ids": np.asarray(units.id[:]),
            "spike_times": [np.asarray(units["spike_times"][u]) for u in range(n)],
            "obs_intervals": [np.asarray(units["obs_intervals"][u]) for u in range(n)],
            "electrode": np.asarray([int(e.index[0]) for e in electrodes]),
            "location": np.asarray([str(e["location"].iloc[0]) for e in electrodes]),
            "group_name": np.asarray([str(e["group_name"].iloc[0]) for e in electrodes]),
            "series": series,
            "trials": trials,
            "subject_id": subject.subject_id,
            "species": subject.species,
            "sex": subject.sex,
            "age": subject.age,
            "session_id": nwb.session_id,
            "session_start_time": nwb.session_start_time,
            "institution": nwb.institution,
            "lab": nwb.lab,
            "session_description": nwb.session_description,
        }


def count_spikes(path: Path) -> int:
    """Spikes in an NWB file, counted with h5py from the raw Units datasets."""
    with h5py.File(path, "r") as f:
        n_flat = f["units/spike_times"].shape[0]
        ends = f["units/spike_times_index"][()]
        assert int(ends[-1]) == n_flat
        return int(n_flat)
