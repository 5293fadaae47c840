"""Catalog: a folder of recordings plus one index file, queried without opening recordings.

Layout::

    CATALOG/
      catalog.json          {"format": "neurofm.catalog", "version": 1, "recordings": [...]}
      <recording id>.h5     one file per recording (see neurofm.data.recording)

Each index entry holds what queries and ``neurofm info`` need (subject, session, species, task,
modality, brain areas, duration, unit and spike counts, signal kinds) and the source file's
sha256, so re-ingesting an unchanged source is skipped. The index is rewritten atomically after
every change, so an interrupted ingest leaves a consistent catalog.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.atomic import atomic_path
from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals
from neurofm.errors import CatalogError, InvalidDataError

INDEX_NAME = "catalog.json"
FORMAT_NAME = "neurofm.catalog"
FORMAT_VERSION = 1

__all__ = ["Catalog", "split_domains", "time_domains"]


def _index_entry(rec: Recording, file_name: str) -> dict[str, Any]:
    meta, prov = rec.metadata, rec.provenance
    signals = {name: sig.kind for name, sig in rec.signals.items()}
    n_units = n_spikes = 0
    areas: set[str] = set()
    for sig in rec.signals.values():
        if sig.kind == "spikes":
            n_units += len(sig.units)
            n_spikes += len(sig)
            if "area" in sig.units.columns:
                areas.update(str(a) for a in sig.units.columns["area"])
    return {
        "id": rec.id,
        "file": file_name,
        "subject_id": meta.subject_id,
        "session_id": meta.session_id,
        "species": meta.species,
        "task": meta.task,
        "modality": meta.modality,
        "areas": sorted(areas),
        "duration_s": rec.duration,
        "n_units": n_units,
        "n_spikes": n_spikes,
        "signals": signals,
        "source_path": prov.source_path,
        "source_url": prov.source_url,
        "source_sha256": prov.sha256,
        "dandiset_id": prov.dandiset_id,
    }


class Catalog:
    """A folder of recordings with an index.

    Parameters
    ----------
    path : str or Path
        The catalog folder.
    create : bool
        If True, a missing folder is a new, empty catalog (created on the first ``add``);
        otherwise a missing index raises :class:`~neurofm.errors.CatalogError`.

    Examples
    --------
    >>> cat = Catalog("catalog")
    >>> [e["id"] for e in cat.select(subject_id="S0", area="M1")]
    >>> rec = cat.open(cat.ids[0])      # lazy Recording
    """

    def __init__(self, path: str | os.PathLike[str], create: bool = False) -> None:
        self.path = Path(path)
        index = self.path / INDEX_NAME
        if index.is_file():
            self._entries = self._read_index(index)
        elif create:
            if self.path.exists() and not self.path.is_dir():
                raise CatalogError(f"{self.path}: exists and is not a folder")
            self._entries = []
        else:
            raise CatalogError(
                f"{self.path}: not a neurofm catalog (no {INDEX_NAME}); "
                "create one with `neurofm ingest SRC --out DIR`"
            )

    @staticmethod
    def _read_index(index: Path) -> list[dict[str, Any]]:
        try:
            doc = json.loads(index.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CatalogError(f"{index}: cannot read the catalog index ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise CatalogError(f"{index}: field 'format' must be {FORMAT_NAME!r}")
        if int(doc.get("version", -1)) > FORMAT_VERSION:
            raise CatalogError(f"{index}: version {doc.get('version')} is newer than supported")
        entries = doc.get("recordings")
        if not isinstance(entries, list):
            raise CatalogError(f"{index}: field 'recordings' must be a list")
        return entries

    def _write_index(self) -> None:
        doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "recordings": self._entries}
        with atomic_path(self.path / INDEX_NAME) as tmp:
            tmp.write_text(json.dumps(doc, indent=1))

    # ---- queries --------------------------------------------------------------------------

    @property
    def entries(self) -> list[dict[str, Any]]:
        """Index entries, one dict per recording (a copy)."""
        return [dict(e) for e in self._entries]

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __contains__(self, recording_id: object) -> bool:
        return recording_id in self.ids

    def __repr__(self) -> str:
        return f"<Catalog {str(self.path)!r}: {len(self)} recordings>"

    def entry(self, recording_id: str) -> dict[str, Any]:
        for e in self._entries:
            if e["id"] == recording_id:
                return dict(e)
        raise CatalogError(f"{self.path}: no recording {recording_id!r} (has {self.ids})")

    def select(self, **criteria: Any) -> list[dict[str, Any]]:
        """Entries matching every criterion.

        A criterion matches a field equal to it, or a list field containing it
        (``area="M1"`` matches entries whose ``areas`` contain M1). A sequence value matches
        any of its items: ``subject_id=["S0", "S1"]``.
        """
        out = []
        for e in self._entries:
            if all(self._matches(e, key, want) for key, want in criteria.items()):
                out.append(dict(e))
        return out

    @staticmethod
    def _matches(entry: dict[str, Any], key: str, want: Any) -> bool:
        if key not in entry and key + "s" in entry:  # area -> areas
            key += "s"
        if key not in entry:
            raise CatalogError(f"select: unknown field {key!r} (fields: {sorted(entry)})")
        have = entry[key]
        wants = list(want) if isinstance(want, list | tuple | set) else [want]
        if isinstance(have, list):
            return any(w in have for w in wants)
        return have in wants

    def open(self, recording_id: str) -> Recording:
        """Open one recording lazily."""
        return Recording.open(self.path / self.entry(recording_id)["file"])

    def up_to_date(self, source_sha256: str) -> dict[str, Any] | None:
        """The entry ingested from a source with this sha256 whose file still exists, if any."""
        for e in self._entries:
            if e.get("source_sha256") == source_sha256 and (self.path / e["file"]).is_file():
                return dict(e)
        return None

    # ---- changes --------------------------------------------------------------------------

    def add(self, recording: Recording, overwrite: bool = True) -> dict[str, Any]:
        """Save ``recording`` into the catalog and index it (both atomically)."""
        existing = [e for e in self._entries if e["id"] == recording.id]
        if existing and not overwrite:
            raise CatalogError(f"{self.path}: recording {recording.id!r} already exists")
        self.path.mkdir(parents=True, exist_ok=True)
        file_name = f"{recording.id}.h5"
        recording.save(self.path / file_name)
        entry = _index_entry(recording, file_name)
        self._entries = [e for e in self._entries if e["id"] != recording.id] + [entry]
        self._entries.sort(key=lambda e: e["id"])
        self._write_index()
        return dict(entry)


def split_domains(
    trials: Intervals,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    names: Sequence[str] = ("train", "valid", "test"),
    column: str | None = None,
) -> dict[str, Intervals]:
    """Split a recording's trials into train/valid/test domains that never overlap in time.

    Parameters
    ----------
    trials : Intervals
        The trials; they must not overlap each other (otherwise a moment could belong to two
        splits).
    fractions : sequence of float
        Share of trials per split, summing to 1 (ignored when ``column`` is given).
    seed : int
        Seed of the random assignment.
    names : sequence of str
        Names of the splits.
    column : str, optional
        Use an existing per-trial column (e.g. NWB's ``split``) instead of a random draw; its
        values must be among ``names``.

    Returns
    -------
    dict of str to Intervals
        One Intervals per split, sorted by start.
    """
    n = len(trials)
    if n and (trials.start[1:] < trials.end[:-1]).any():
        i = int(np.flatnonzero(trials.start[1:] < trials.end[:-1])[0]) + 1
        raise InvalidDataError(
            f"{trials.name}: trials {i - 1} and {i} overlap, so trial-based splits could overlap "
            "in time"
        )
    if column is not None:
        if column not in trials.columns:
            raise InvalidDataError(f"{trials.name}: no column {column!r} to split by")
        assignment = np.asarray([str(v) for v in trials.columns[column]], dtype=object)
        unknown = sorted(set(assignment) - set(names))
        if unknown:
            raise InvalidDataError(
                f"{trials.name}.{column}: values {unknown} are not split names {list(names)}"
            )
    else:
        if len(fractions) != len(names) or not np.isclose(sum(fractions), 1.0):
            raise InvalidDataError(
                f"split fractions {list(fractions)} must have one value per split "
                f"{list(names)} and sum to 1"
            )
        order = np.random.default_rng(seed).permutation(n)
        bounds = np.round(np.cumsum([0.0, *fractions]) * n).astype(int)
        assignment = np.empty(n, dtype=object)
        for name, lo, hi in zip(names, bounds[:-1], bounds[1:], strict=True):
            assignment[order[lo:hi]] = name
    return {name: trials.take(np.flatnonzero(assignment == name)) for name in names}


def time_domains(
    start: float,
    end: float,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    names: Sequence[str] = ("train", "valid", "test"),
) -> dict[str, Intervals]:
    """Cut ``[start, end)`` into contiguous train/valid/test blocks, in that order.

    For continuous recordings without trials (EEG-fMRI runs, resting state) a held-out block
    at the end is the honest split: random short blocks would leak through the slow
    autocorrelation of BOLD and of the hemodynamic response.

    Parameters
    ----------
    start, end : float
        The span to split, seconds.
    fractions : sequence of float
        Share of the span per split, summing to 1; a zero share gives an empty domain.
    names : sequence of str
        Names of the splits, in time order.

    Returns
    -------
    dict of str to Intervals
        One Intervals (one block, or none) per split.
    """
    if len(fractions) != len(names) or not np.isclose(sum(fractions), 1.0):
        raise InvalidDataError(
            f"split fractions {list(fractions)} must have one value per split {list(names)} "
            "and sum to 1"
        )
    if not end > start:
        raise InvalidDataError(f"time_domains: empty span [{start}, {end})")
    edges = start + (end - start) * np.cumsum([0.0, *fractions])
    edges[-1] = end
    out = {}
    for name, lo, hi in zip(names, edges[:-1], edges[1:], strict=True):
        keep = hi > lo
        out[name] = Intervals(
            np.array([lo] if keep else [], dtype=np.float64),
            np.array([hi] if keep else [], dtype=np.float64),
            name=f"{name}_domain",
        )
    return out
