"""What every replica shares: the ground truth it returns, and the pynwb building blocks.

A replica writes small NWB files with pynwb in the layout of a public dandiset (asset paths,
group paths, container types, column names and dtypes, and the dandiset's known quirks) and
returns a :class:`ReplicaTruth`: what each file holds (units, spikes, trials, behaviour
samples) and which quirks it carries, so a test can say exactly what an ingest must keep and
what a card's repairs must drop.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FileTruth",
    "ReplicaTruth",
    "Units",
    "add_electrodes",
    "minimum_jerk_reach",
    "new_nwbfile",
    "poisson_spikes",
    "set_column_dtype",
    "write_dandiset_yaml",
    "write_nwb",
]

#: A behaviour series samples at 1 kHz in every NLB file (nlb_tools' NWBDataset bins at 1 ms
#: and drops any series whose timestamps are off that grid).
NLB_RATE = 1000.0


@dataclass
class FileTruth:
    """What one replica file holds, as written.

    Attributes
    ----------
    path : str
        Asset path inside the dandiset (POSIX), e.g. ``sub-Han/sub-Han_desc-train_...nwb``.
    unit_spikes : dict of str to int
        Spikes per unit id (the ids neurofm reads: ``str(units.id)``).
    n_trials : int
        Rows of the trials table.
    behaviour : dict of str to int
        Samples per behaviour series (by series name), NaN samples included.
    nan_samples : dict of str to int
        Samples that are NaN (in any channel), per series.
    split_counts : dict of str to int
        Trials per value of the ``split`` column (NLB files), else empty.
    test_only : bool
        A held-out NLB test file: spikes and test trials, no behaviour.
    quirks : dict
        The file's known quirks, machine-readable: ``unsorted_units`` (unit ids whose spike
        times go back in time), ``overlapping_trials`` (pairs of trial rows that overlap by more
        than float noise), ``float_noise_overlaps`` (pairs whose boundaries overlap by a few
        ULPs), ``conversion`` (series -> NWB conversion factor), ...
    trials : dict of str to numpy array
        The trials table's plain columns, as written (start_time, stop_time, and the rest).
    """

    path: str
    unit_spikes: dict[str, int] = field(default_factory=dict)
    n_trials: int = 0
    behaviour: dict[str, int] = field(default_factory=dict)
    nan_samples: dict[str, int] = field(default_factory=dict)
    split_counts: dict[str, int] = field(default_factory=dict)
    test_only: bool = False
    quirks: dict[str, Any] = field(default_factory=dict)
    trials: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return len(self.unit_spikes)

    @property
    def n_spikes(self) -> int:
        return int(sum(self.unit_spikes.values()))


@dataclass
class ReplicaTruth:
    """A replica dandiset on disk and what it holds.

    Attributes
    ----------
    card : str
        The dataset card it replicates (``datasets/<card>.yaml``).
    dandiset_id : str
        The dandiset it stands in for (served under this id).
    folder : Path
        The dandiset folder (asset paths are relative to it).
    published_versions : list of str
        Versions to publish when serving it (the card's pin, when it has one).
    files : dict of str to FileTruth
        By asset path.
    seed : int
        The seed it was built with.
    """

    card: str
    dandiset_id: str
    folder: Path
    published_versions: list[str] = field(default_factory=list)
    files: dict[str, FileTruth] = field(default_factory=dict)
    seed: int = 0

    def selected(self, include: list[str]) -> list[FileTruth]:
        """The files whose asset path matches any of the glob patterns (a card's ``include``)."""
        if not include:
            return list(self.files.values())
        return [f for p, f in self.files.items() if any(fnmatch.fnmatch(p, g) for g in include)]

    @property
    def size_bytes(self) -> int:
        return sum((self.folder / p).stat().st_size for p in self.files)


# --------------------------------------------------------------------------------------------
# pynwb building blocks
# --------------------------------------------------------------------------------------------


def new_nwbfile(
    identifier: str,
    start: dt.datetime,
    subject_id: str,
    *,
    species: str = "Macaca mulatta",
    sex: str = "M",
    session_id: str = "",
    description: str = "",
    **kwargs: Any,
) -> Any:
    """An NWBFile with a subject; the creation date is fixed so a rebuild writes the same
    content (object ids are pynwb's own random UUIDs)."""
    from pynwb import NWBFile
    from pynwb.file import Subject

    nwb = NWBFile(
        session_description=description or f"replica of {identifier}",
        identifier=identifier,
        session_start_time=start,
        timestamps_reference_time=start,
        file_create_date=[start],
        session_id=session_id or None,
        **kwargs,
    )
    nwb.subject = Subject(subject_id=subject_id, species=species, sex=sex, age="P8Y")
    return nwb


def add_electrodes(
    nwb: Any,
    groups: list[tuple[str, str, str, str, int]],
    *,
    extra: tuple[str, ...] = (),
    coordinates: bool = True,
    labels: bool = False,
) -> dict[str, Any]:
    """Add electrode groups and their electrodes.

    Parameters
    ----------
    groups : list of (group name, device name, device description, location, n electrodes)
    extra : tuple of str
        Extra float columns of the electrodes table (e.g. ``gain``, ``offset``).
    coordinates : bool
        Write the x, y, z and imp columns (NaN: the arrays' geometry is not known here).
    labels : bool
        Write ``bank`` (str), ``label`` (str) and ``pin`` (int) columns instead, as the
        Perich / Miller files do.

    Returns
    -------
    dict
        Group name -> ElectrodeGroup.
    """
    for name in extra:
        nwb.add_electrode_column(name=name, description=name)
    if labels:
        nwb.add_electrode_column(name="bank", description="bank of the electrode")
        nwb.add_electrode_column(name="label", description="label of the electrode")
        nwb.add_electrode_column(name="pin", description="pin of the electrode")
    out = {}
    count = 0
    for group_name, device_name, device_desc, location, n in groups:
        device = nwb.create_device(name=device_name, description=device_desc)
        group = nwb.create_electrode_group(
            name=group_name, description=device_desc, location=location, device=device
        )
        out[group_name] = group
        for k in range(n):
            row: dict[str, Any] = {c: 1.0 for c in extra}
            if coordinates:
                row.update(x=np.nan, y=np.nan, z=np.nan, imp=np.nan)
            if labels:
                row.update(bank="ABC"[k // 32], label=f"elec{k + 1}", pin=np.int64(k % 32 + 1))
            nwb.add_electrode(group=group, location=location, filtering="unknown", **row)
            count += 1
    return out


def set_column_dtype(path: Path, dataset: str, dtype: Any) -> None:
    """Rewrite one dataset of a written NWB file with another dtype (h5py), where pynwb
    always writes int64 (e.g. a Units table whose ids are int32, as DMFC_RSG's are)."""
    import h5py

    with h5py.File(path, "r+") as f:
        old = f[dataset]
        values, attrs = old[()], dict(old.attrs)
        del f[dataset]
        new = f.create_dataset(dataset, data=values.astype(dtype))
        for key, value in attrs.items():
            new.attrs[key] = value


def write_nwb(path: Path, nwb: Any) -> None:
    """Write with pynwb (the DANDI layout's subject folder is created)."""
    from pynwb import NWBHDF5IO

    path.parent.mkdir(parents=True, exist_ok=True)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def write_dandiset_yaml(folder: Path, name: str, description: str) -> None:
    """The dandiset's metadata (its title and description), read by the local DANDI server."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"name": name, "description": description}, sort_keys=False)
    (folder / "dandiset.yaml").write_text(text)


# --------------------------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------------------------


def minimum_jerk_reach(
    t: np.ndarray, onset: float, duration: float, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Position and velocity of a minimum-jerk reach from the origin to ``target``.

    Returns
    -------
    (pos, vel) : arrays of shape (len(t), 2), in the target's unit (and per second)
    """
    tau = np.clip((t - onset) / duration, 0.0, 1.0)
    shape = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    speed = (30 * tau**2 - 60 * tau**3 + 30 * tau**4) / duration
    speed[(t < onset) | (t > onset + duration)] = 0.0
    return shape[:, None] * target[None, :], speed[:, None] * target[None, :]


@dataclass
class Units:
    """Cosine-tuned units: rate = baseline + gain * (velocity . preferred direction) / v_scale."""

    baseline: np.ndarray  # Hz
    gain: np.ndarray  # Hz
    direction: np.ndarray  # (n, 2) unit vectors

    @classmethod
    def random(cls, rng: np.random.Generator, n: int) -> Units:
        angle = rng.uniform(0, 2 * np.pi, n)
        return cls(
            baseline=rng.uniform(8.0, 25.0, n),
            gain=rng.uniform(10.0, 30.0, n),
            direction=np.c_[np.cos(angle), np.sin(angle)],
        )

    def __len__(self) -> int:
        return len(self.baseline)

    def rates(self, vel: np.ndarray, v_scale: float) -> np.ndarray:
        """(samples, units) firing rates for a (samples, 2) velocity."""
        drive = np.nan_to_num(vel) @ self.direction.T / v_scale
        return np.clip(self.baseline[None, :] + self.gain[None, :] * drive, 0.0, None)


def poisson_spikes(
    rng: np.random.Generator, t: np.ndarray, rates: np.ndarray, dt_s: float
) -> list[np.ndarray]:
    """Sorted spike times per unit: a Poisson count per bin ``[t, t + dt)`` and uniform
    times within it (bins need not be contiguous: spikes only fall where ``t`` has bins)."""
    counts = rng.poisson(rates * dt_s)
    out = []
    for u in range(rates.shape[1]):
        n = counts[:, u]
        times = np.repeat(t, n) + rng.uniform(0.0, dt_s, int(n.sum()))
        out.append(np.sort(times))
    return out
