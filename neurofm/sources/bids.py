"""BIDS datasets as a source: find the EEG and BOLD runs, pair them, find atlases and sidecars.

A BIDS folder is recognised by its ``dataset_description.json``. Runs are found with mne-bids
(``get_entity_vals``, ``find_matching_paths``), which knows the entity grammar; an EEG recording
(``eeg/..._eeg.vhdr|.edf|.bdf|.set|.fif``) and a BOLD series (``func/..._bold.nii[.gz]``) with
the same ``sub``/``ses``/``task``/``run`` (and ``acq``) are one simultaneous EEG-fMRI run.

Layout this module reads (see ``reference/samba.md`` 3.2)::

    ROOT/dataset_description.json
    ROOT/sub-01/[ses-01/]eeg/sub-01_[ses-01_]task-T_run-1_eeg.vhdr (+ .eeg .vmrk, _events.tsv,
                                  _channels.tsv, _electrodes.tsv, _eeg.json)
    ROOT/sub-01/[ses-01/]func/sub-01_[ses-01_]task-T_run-1_bold.nii.gz (+ _bold.json, _events.tsv)
    ROOT/sub-01/[ses-01/]sub-01_[ses-01_]scans.tsv        (acq_time of each file)
    ROOT/derivatives/<pipeline>/**/atlas-<label>_..._dseg.nii.gz (+ _dseg.tsv)  (optional)

Nothing here reads signal data: readers (``neurofm.readers.eeg`` / ``.fmri``) do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofm.errors import ReaderError
from neurofm.sources.local import sha256_file

log = logging.getLogger(__name__)

__all__ = [
    "BIDSRun",
    "EEG_EXTENSIONS",
    "NIFTI_EXTENSIONS",
    "acquisition_time",
    "bids_root_of",
    "eeg_companions",
    "entities_of",
    "entity_string",
    "files_sha256",
    "find_atlas",
    "find_runs",
    "is_bids_root",
    "sidecar",
]

#: Extensions of EEG files that MNE reads and that name one recording (a BrainVision recording is
#: named by its ``.vhdr``; its ``.eeg``/``.vmrk`` are companions).
EEG_EXTENSIONS = (".vhdr", ".edf", ".bdf", ".set", ".fif", ".fif.gz", ".gdf", ".cnt")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
_PAIR_KEYS = ("subject", "session", "task", "acquisition", "run")
_SHORT = {"subject": "sub", "session": "ses", "task": "task", "acquisition": "acq", "run": "run"}


def has_suffix(path: str | os.PathLike[str], suffixes: Sequence[str]) -> bool:
    """Whether a file name ends with one of ``suffixes`` (case-insensitive; ``.nii.gz`` works)."""
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in suffixes)


def is_bids_root(path: str | os.PathLike[str]) -> bool:
    """A folder holding ``dataset_description.json``."""
    return (Path(path) / "dataset_description.json").is_file()


def bids_root_of(path: str | os.PathLike[str], max_up: int = 5) -> Path | None:
    """The BIDS root above a file named ``sub-...`` (up to ``max_up`` folders up), or None."""
    path = Path(path).resolve()
    if not path.name.startswith("sub-"):
        return None
    for parent in list(path.parents)[:max_up]:
        if is_bids_root(parent):
            return parent
    return None


def entities_of(path: str | os.PathLike[str]) -> dict[str, str]:
    """BIDS entities of a file name: ``{"subject": "01", "task": "rest", ...}``.

    Parsed with mne-bids' own parser so the grammar is BIDS', not ours.
    """
    from mne_bids import get_bids_path_from_fname

    try:
        bp = get_bids_path_from_fname(Path(path).name, check=False, verbose=False)
    except Exception as exc:  # mne-bids raises plain ValueError/RuntimeError on odd names
        raise ReaderError(f"{path}: not a BIDS file name ({exc})") from None
    return {k: str(v) for k, v in bp.entities.items() if v is not None}


def entity_string(entities: dict[str, str]) -> str:
    """``sub-01_ses-01_task-rest_run-1``: the pairing entities present, in BIDS order."""
    return "_".join(
        f"{_SHORT[k]}-{entities[k]}" for k in _PAIR_KEYS if entities.get(k) not in (None, "")
    )


@dataclass(frozen=True)
class BIDSRun:
    """One run of a BIDS dataset: EEG, BOLD or both, paired by their entities.

    Attributes
    ----------
    root : Path
        The dataset's root folder.
    entities : dict of str to str
        ``subject``, and where present ``session``, ``task``, ``acquisition``, ``run``.
    eeg, bold : Path or None
        The EEG recording (its ``.vhdr``/``.edf``/...) and the BOLD NIfTI of this run.
    """

    root: Path
    entities: dict[str, str]
    eeg: Path | None = None
    bold: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def recording_id(self) -> str:
        """``sub-01_ses-01_task-rest_run-1``: the entities, which are unique in a dataset."""
        return entity_string(self.entities)

    @property
    def kind(self) -> str:
        """``"eeg+fmri"``, ``"eeg"`` or ``"fmri"``."""
        return "+".join(k for k, p in (("eeg", self.eeg), ("fmri", self.bold)) if p is not None)

    def files(self) -> list[Path]:
        """Every file whose bytes make up the run (data files, companions and sidecars)."""
        out: list[Path] = []
        if self.eeg is not None:
            out += eeg_companions(self.eeg)
            out += _existing(sidecar(self.eeg, s) for s in ("_events.tsv", "_channels.tsv"))
        if self.bold is not None:
            out += [self.bold]
            out += _existing(sidecar(self.bold, s) for s in (".json", "_events.tsv"))
        return out


def _existing(paths: Iterable[Path | None]) -> list[Path]:
    return [p for p in paths if p is not None and p.is_file()]


def sidecar(path: str | os.PathLike[str], suffix: str) -> Path:
    """A BIDS sidecar of a data file: ``..._bold.nii.gz`` + ``".json"`` -> ``..._bold.json``;
    ``..._bold.nii.gz`` + ``"_events.tsv"`` -> ``..._events.tsv`` (the modality suffix goes)."""
    path = Path(path)
    name = path.name
    for ext in (*NIFTI_EXTENSIONS, *EEG_EXTENSIONS):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    if suffix.startswith("_"):  # another BIDS suffix replaces the modality suffix
        name = name.rsplit("_", 1)[0] if "_" in name else name
    return path.with_name(name + suffix)


def eeg_companions(path: str | os.PathLike[str]) -> list[Path]:
    """The files an EEG recording is made of: a BrainVision header names its data and marker
    files; an EEGLAB ``.set`` may keep its data in a ``.fdt``. Used for fingerprints."""
    path = Path(path)
    out = [path]
    low = path.name.lower()
    if low.endswith(".vhdr") and path.is_file():
        text = path.read_text(errors="replace")
        for key in ("DataFile", "MarkerFile"):
            match = re.search(rf"^{key}=(.+)$", text, flags=re.MULTILINE)
            if match:
                out.append(path.with_name(match.group(1).strip()))
    elif low.endswith(".set"):
        out.append(path.with_suffix(".fdt"))
    return [out[0], *[p for p in out[1:] if p.is_file()]]


def files_sha256(paths: Sequence[str | os.PathLike[str]]) -> str:
    """One fingerprint for a recording made of several files.

    A single file gives its plain sha256 (as for NWB); several give the sha256 of their
    ``name  sha256`` lines, so changing any byte of any of them changes the fingerprint.
    """
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        return sha256_file(paths[0])
    lines = "".join(f"{p.name}  {sha256_file(p)}\n" for p in sorted(paths, key=lambda p: p.name))
    return hashlib.sha256(lines.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


def find_runs(
    root: str | os.PathLike[str],
    *,
    subject: str | Sequence[str] | None = None,
    session: str | Sequence[str] | None = None,
    task: str | Sequence[str] | None = None,
    run: str | Sequence[str] | None = None,
) -> list[BIDSRun]:
    """EEG and BOLD runs of a BIDS dataset, paired by ``sub``/``ses``/``task``/``acq``/``run``.

    Parameters
    ----------
    root : str or Path
        The dataset's root folder (holding ``dataset_description.json``).
    subject, session, task, run : str or sequence of str, optional
        Keep only these (labels without the ``sub-`` prefix). A requested subject that the
        dataset does not have is an error, not an empty result.

    Returns
    -------
    list of BIDSRun
        Sorted by recording id. ``derivatives/`` and ``sourcedata/`` are not searched.

    Raises
    ------
    ReaderError
        ``root`` is not a BIDS dataset, has no requested subject, or holds no EEG/BOLD run.
    """
    from mne_bids import find_matching_paths, get_entity_vals

    root = Path(root)
    if not root.is_dir():
        raise ReaderError(f"{root}: no such BIDS folder")
    if not is_bids_root(root):
        raise ReaderError(f"{root}: not a BIDS dataset (no dataset_description.json)")
    subjects = sorted(get_entity_vals(root, "subject"))
    wanted = _as_list(subject)
    if wanted is not None:
        wanted = [s.removeprefix("sub-") for s in wanted]
        missing = [s for s in wanted if s not in subjects]
        if missing:
            raise ReaderError(
                f"{root}: subject: no sub-{missing[0]} in this BIDS dataset "
                f"(subjects: {', '.join(subjects) or 'none'})"
            )
    exts = [*EEG_EXTENSIONS, *NIFTI_EXTENSIONS]
    found = find_matching_paths(
        root,
        subjects=wanted,
        sessions=_as_list(session),
        tasks=_as_list(task),
        runs=_as_list(run),
        datatypes=["eeg", "func"],
        suffixes=["eeg", "bold"],
        extensions=[e for e in exts if e != ".fif.gz"],
    )
    runs: dict[tuple[str, ...], dict[str, Any]] = {}
    for bp in found:
        path = Path(bp.fpath)
        if any(part in ("derivatives", "sourcedata") for part in path.relative_to(root).parts):
            continue
        entities = {k: str(getattr(bp, k)) for k in _PAIR_KEYS if getattr(bp, k) is not None}
        key = tuple(entities.get(k, "") for k in _PAIR_KEYS)
        slot = runs.setdefault(key, {"entities": entities})
        kind = "eeg" if bp.suffix == "eeg" else "bold"
        if kind in slot:
            # Two EEG files for one run (e.g. .vhdr and .edf): keep the first, say so.
            log.warning("%s: run %s has two %s files; using %s", root, key, kind, slot[kind])
            continue
        slot[kind] = path
    if not runs:
        raise ReaderError(
            f"{root}: no EEG (eeg/*_eeg.*) or BOLD (func/*_bold.nii[.gz]) files"
            + (f" for sub-{', sub-'.join(wanted)}" if wanted else "")
        )
    out = [
        BIDSRun(root, slot["entities"], slot.get("eeg"), slot.get("bold")) for slot in runs.values()
    ]
    if any(r.eeg is not None and r.bold is not None for r in out):
        # A dataset of EEG-fMRI pairs: a run missing one of them is more likely a file lost
        # than a run recorded alone. It is read as what it has; the user hears why.
        for r in out:
            if r.eeg is None or r.bold is None:
                has, lacks = ("EEG", "BOLD") if r.bold is None else ("BOLD", "EEG")
                log.warning(
                    "%s: %s has %s but no %s file, unlike the other runs; it is read as a run "
                    "of %s only",
                    root,
                    r.recording_id,
                    has,
                    lacks,
                    has,
                )
    return sorted(out, key=lambda r: r.recording_id)


def find_atlas(root: str | os.PathLike[str]) -> Path | None:
    """A parcellation shipped with the dataset: ``derivatives/**/*_dseg.nii[.gz]`` (or a
    ``.nii[.gz]`` whose name starts with ``atlas-``, as proposed for BIDS atlases).

    Returns None when there is none.

    Raises
    ------
    ReaderError
        When there are several: the caller must choose one (``--atlas``).
    """
    deriv = Path(root) / "derivatives"
    if not deriv.is_dir():
        return None
    found = sorted(
        p
        for p in deriv.rglob("*.nii*")
        if has_suffix(p, NIFTI_EXTENSIONS)
        and (p.name.startswith("atlas-") or re.search(r"_dseg\.nii(\.gz)?$", p.name))
    )
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in found)
        raise ReaderError(
            f"{root}: several atlases in derivatives/ ({names}); choose one (--atlas)"
        )
    return found[0] if found else None


def acquisition_time(path: str | os.PathLike[str]) -> dt.datetime | None:
    """The ``acq_time`` of a data file from its subject's (or session's) ``_scans.tsv``, or None.

    BIDS keeps when each file's acquisition started there; EEG and BOLD of one run recorded
    without scanner markers are aligned on these.
    """
    import pandas as pd

    path = Path(path).resolve()
    for folder in (path.parent.parent, path.parent.parent.parent):
        for scans in sorted(folder.glob("sub-*_scans.tsv")):
            try:
                table = pd.read_csv(scans, sep="\t", dtype=str)
            except Exception as exc:
                log.warning("%s: unreadable scans table (%s)", scans, exc)
                continue
            if "filename" not in table or "acq_time" not in table:
                continue
            rel = path.relative_to(scans.parent).as_posix()
            rows = table[table["filename"] == rel]
            if len(rows) and isinstance(rows["acq_time"].iloc[0], str):
                text = rows["acq_time"].iloc[0].strip()
                if text in ("", "n/a"):
                    return None
                try:
                    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
                except ValueError:
                    log.warning("%s: acq_time %r of %s is not ISO 8601", scans, text, rel)
                    return None
                return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    return None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON sidecar, with a clear error when it is not valid JSON."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReaderError(f"{path}: not a readable JSON sidecar ({exc})") from None
    if not isinstance(value, dict):
        raise ReaderError(f"{path}: a JSON sidecar must hold an object")
    return value
