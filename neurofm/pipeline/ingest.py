"""Ingestion: sources -> readers -> catalog, with progress and a per-file report.

* :func:`ingest` reads local files into a catalog: NWB files, EEG files (any format MNE reads),
  4-D NIfTI BOLD files (reduced to parcels with an atlas), a folder of them, or a BIDS dataset
  (EEG and BOLD of one run paired into one simultaneous EEG-fMRI recording);
* :func:`ingest_dandi` pulls a dandiset (or streams it) and ingests it in one go;
* :func:`ingest_pulled` ingests what :func:`neurofm.sources.dandi.pull` downloaded;
* :func:`apply_card` applies a dataset card's field mapping, repairs and splits to a recording.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from neurofm.data.catalog import Catalog, split_domains, time_domains
from neurofm.data.recording import Recording
from neurofm.data.signals import Intervals
from neurofm.errors import CatalogError, InvalidDataError, NeuroFMError, ReaderError
from neurofm.readers import READERS, format_of
from neurofm.readers.nwb import default_recording_id
from neurofm.sources import bids
from neurofm.sources.bids import files_sha256
from neurofm.sources.local import find_files

log = logging.getLogger(__name__)

__all__ = ["IngestReport", "apply_card", "ingest", "ingest_dandi", "ingest_pulled"]


@dataclass
class IngestReport:
    """What an ingest did, source by source."""

    catalog: Path
    ingested: list[tuple[str, str]] = field(default_factory=list)  # (source, recording id)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # up to date
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Source:
    """One thing to ingest, and which reader of :data:`neurofm.readers.READERS` reads it.

    The read is ``READERS[reader](target, sha256=..., **options)``; NWB sources also get the
    staging folder, the spikes progress bar, the recording id and the provenance.
    """

    name: str
    location: str  # a local path or an http(s) URL (streamed)
    reader: str = "nwb"
    target: Any = None  # what the reader reads: a path, a URL or a BIDS run (default location)
    options: dict[str, Any] = field(default_factory=dict)
    files: tuple[Path, ...] = ()  # fingerprinted together when the sha256 is not known
    sha256: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    recording_id: str | None = None  # default: derived from the file name

    def digest(self) -> str:
        """The source's sha256 (of its files together), "" when it cannot be known."""
        if self.sha256 is not None:
            return self.sha256
        return files_sha256(self.files) if self.files else ""


def ingest(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: bool = True,
    card: Any = None,
    atlas: str | os.PathLike[str] | None = None,
    subjects: str | list[str] | None = None,
    eeg_options: dict[str, Any] | None = None,
    fmri_options: dict[str, Any] | None = None,
) -> IngestReport:
    """Ingest NWB, EEG or NIfTI files, a folder of them, or a BIDS dataset into a catalog.

    Parameters
    ----------
    src : str or Path
        An ``.nwb`` file, an EEG file (``.vhdr``, ``.edf``, ``.bdf``, ``.set``, ``.fif``...),
        a 4-D ``.nii[.gz]``, a folder (searched recursively, e.g. a DANDI-layout dandiset), or
        a BIDS dataset (a folder with ``dataset_description.json``): one recording per run,
        EEG and BOLD of the same sub/ses/task/run together.
    out : str or Path
        The catalog folder; created on the first successful file.
    force : bool
        Re-ingest files whose output is up to date (same source sha256).
    progress : bool
        Show progress bars (files, and spikes within a file).
    card : DatasetCard, optional
        Apply its field mapping and split rules to NWB recordings (see :func:`apply_card`);
        its ``preprocessing`` (if it has one) is the EEG preprocessing chain, its
        ``fmri_cleaning`` the BOLD cleaning.
    atlas : str or Path, optional
        Parcellation for NIfTI files (see :func:`neurofm.readers.fmri.read_fmri`); for a BIDS
        dataset, default the one atlas under ``derivatives/``.
    subjects : str or list of str, optional
        BIDS subjects to ingest (default all); a missing one is an error.
    eeg_options, fmri_options : dict, optional
        Keyword arguments of ``read_eeg`` (e.g. ``preprocessing``) and ``read_fmri``
        (e.g. ``standardize``, ``confounds``).

    Returns
    -------
    IngestReport
        A bad file is reported there, by name and reason, and does not stop the others.

    Raises
    ------
    ReaderError
        If ``src`` does not exist or is a folder without NWB files.
    """
    eeg_options = dict(eeg_options or {})
    fmri_options = dict(fmri_options or {})
    if getattr(card, "preprocessing", None) is not None:
        eeg_options.setdefault("preprocessing", card.preprocessing)
    if getattr(card, "fmri_cleaning", None) is not None:
        for key, value in card.fmri_cleaning.model_dump().items():
            fmri_options.setdefault(key, value)
    sources = _local_sources(Path(src), atlas, subjects, eeg_options, fmri_options)
    return _ingest_sources(sources, Path(out), force=force, progress=progress, card=card)


def _local_sources(
    src: Path,
    atlas: str | os.PathLike[str] | None,
    subjects: str | list[str] | None,
    eeg_options: dict[str, Any],
    fmri_options: dict[str, Any],
) -> list[_Source]:
    """Dispatch by file type (:func:`neurofm.readers.format_of`): NWB, EEG, NIfTI, or a BIDS
    dataset -> one ``bids-run`` source per run (EEG and BOLD paired)."""
    if src.is_dir() and bids.is_bids_root(src):
        atlas = atlas if atlas is not None else bids.find_atlas(src)
        options = {"atlas": atlas, "eeg_options": eeg_options, "fmri_options": fmri_options}
        return [
            _Source(
                str(run.eeg or run.bold),
                str(src),
                reader="bids-run",
                target=run,
                options=options,
                files=tuple(run.files()),
            )
            for run in bids.find_runs(src, subject=subjects)
        ]
    if subjects:
        raise ReaderError(
            f"{src}: subjects apply to BIDS datasets only (no dataset_description.json)"
        )
    if src.is_file() or not src.exists():
        files = [src] if src.exists() else find_files(src, ".nwb")
    else:
        skip = {Path(atlas).resolve()} if atlas is not None else set()
        files = sorted(
            p
            for p in src.rglob("*")
            if p.is_file()
            and bids.has_suffix(p, (".nwb", *bids.EEG_EXTENSIONS, *bids.NIFTI_EXTENSIONS))
            and p.resolve() not in skip
            and not any(part.startswith(".") for part in p.relative_to(src).parts)
        )
        if not files:
            find_files(src, ".nwb")  # raises the usual "folder contains no .nwb files"
    out = []
    for path in files:
        # Any other file given explicitly goes to the NWB reader, which says what is wrong.
        reader = format_of(path)
        if reader == "eeg":
            options, hashed = eeg_options, tuple(bids.eeg_companions(path))
        elif reader == "fmri":  # read_fmri names the file when the atlas is missing
            options, hashed = {"atlas": atlas, **fmri_options}, (path,)
        else:
            options, hashed = {}, (path,)
        out.append(_Source(str(path), str(path), reader, path, options, hashed))
    return out


def ingest_dandi(
    ref: str,
    out: str | os.PathLike[str],
    *,
    to: str | os.PathLike[str] | None = None,
    include: str | list[str] | None = None,
    stream: bool = False,
    api_url: str | None = None,
    force: bool = False,
    progress: bool = True,
    card: Any = None,
) -> tuple[Any, IngestReport]:
    """Pull a dandiset (or stream it) and ingest its NWB assets into a catalog.

    Parameters
    ----------
    ref : str
        ``dandi:<id>[@<version>]``.
    out : str or Path
        Catalog folder.
    to : str or Path, optional
        Download folder (default ``<out>/_raw/<id>``); unused with ``stream``.
    include : str or list of str, optional
        Glob pattern(s) on asset paths.
    stream : bool
        Read assets over HTTP range requests instead of downloading them.
    api_url : str, optional
        DANDI API URL (default ``$NEUROFM_DANDI_API`` or the public archive).
    force, progress, card
        As in :func:`ingest`.

    Returns
    -------
    (PullReport or None, IngestReport)
        The pull report is None when streaming.
    """
    from neurofm.sources import dandi

    out = Path(out)
    if stream:
        dandiset = dandi.resolve(ref, api_url)
        assets = dandi.list_assets(dandiset, include)
        sources = [
            _Source(
                a.path,
                a.download_url,
                sha256=a.sha256 or "",
                provenance=_dandi_provenance(a, stream=True),
                recording_id=default_recording_id(PurePosixPath(a.path)),
            )
            for a in assets
        ]
        return None, _ingest_sources(sources, out, force=force, progress=progress, card=card)
    parsed = dandi.parse_ref(ref)
    to = Path(to) if to is not None else out / "_raw" / parsed.dandiset_id
    pulled = dandi.pull(parsed, to, include=include, api_url=api_url, progress=progress)
    return pulled, ingest_pulled(pulled, out, force=force, progress=progress, card=card)


def ingest_pulled(
    pulled: Any, out: Path, *, force: bool, progress: bool, card: Any
) -> IngestReport:
    """Ingest what a pull put on disk, reusing the sha256 it recorded while verifying."""
    from neurofm.sources import dandi

    sources = []
    for local in sorted(pulled.downloaded + pulled.skipped):
        asset = pulled.assets[str(local)]
        sha = dandi.local_sha256(pulled.to, local)
        sources.append(
            _Source(
                str(local),
                str(local),
                files=(Path(local),),
                sha256=sha or None,
                provenance=_dandi_provenance(asset, stream=False),
            )
        )
    report = _ingest_sources(sources, out, force=force, progress=progress, card=card)
    report.failed = [(path, f"pull: {reason}") for path, reason in pulled.failed] + report.failed
    return report


def _dandi_provenance(asset: Any, stream: bool) -> dict[str, Any]:
    return {
        "dandiset_id": asset.dandiset_id,
        "dandiset_version": asset.version,
        "asset_path": asset.path,
        "source_url": asset.download_url,
        "dandi_etag": asset.dandi_etag,
        "streamed": stream,
    }


def _ingest_sources(
    sources: Iterable[_Source], out: Path, *, force: bool, progress: bool, card: Any
) -> IngestReport:
    from tqdm.auto import tqdm

    sources = list(sources)
    catalog = Catalog(out, create=True)
    report = IngestReport(out)
    bar = tqdm(sources, desc="ingest", unit="file", disable=not progress)
    for source in bar:
        bar.set_postfix_str(Path(source.name).name)
        try:
            digest = source.digest()
            done = None if force or not digest else catalog.up_to_date(digest)
            if done is not None:
                report.skipped.append((source.name, done["id"]))
                log.info("%s: up to date (%s)", source.name, done["id"])
                continue
            with tqdm(
                desc=f"  {Path(source.name).name}",
                unit=" spikes",
                unit_scale=True,
                leave=False,
                disable=not progress or source.reader != "nwb",
            ) as spikes_bar:
                options = dict(source.options)
                if source.reader == "nwb":  # spikes staged beside the catalog, with progress
                    options.update(
                        recording_id=source.recording_id,
                        tmp_dir=out if out.is_dir() else None,
                        progress=spikes_bar.update,
                        provenance=source.provenance,
                    )
                target = source.location if source.target is None else source.target
                rec = READERS[source.reader](target, sha256=digest or None, **options)
                try:
                    if card is not None and card.fields.target is not None:
                        rec = apply_card(rec, card, source.name)
                    _check_id_is_free(catalog, rec, source.name)
                    catalog.add(rec)
                finally:
                    rec.close()
            report.ingested.append((source.name, rec.id))
        except NeuroFMError as exc:
            report.failed.append((source.name, _one_line(exc, source.name)))
        except Exception as exc:  # a bad file must not stop the others
            log.debug("unexpected error on %s", source.name, exc_info=True)
            reason = f"{type(exc).__name__}: {_one_line(exc, source.name)}"
            report.failed.append((source.name, reason))
    return report


def _check_id_is_free(catalog: Catalog, rec: Recording, name: str) -> None:
    """Two sources must not share a recording id: the second would silently replace the first."""
    if rec.id not in catalog:
        return
    entry = catalog.entry(rec.id)
    mine = rec.provenance.source_path or rec.provenance.source_url
    theirs = entry.get("source_path") or entry.get("source_url", "")
    if theirs and mine and theirs != mine:
        raise CatalogError(
            f"{name}: recording id {rec.id!r} is already taken in {catalog.path} by {theirs}; "
            "rename one of the files"
        )


def _one_line(exc: BaseException, name: str) -> str:
    text = " ".join(str(exc).split())
    return text if name in text else f"{name}: {text}"


# --------------------------------------------------------------------------------------------
# dataset cards
# --------------------------------------------------------------------------------------------


def apply_card(rec: Recording, card: Any, name: str = "") -> Recording:
    """Check a recording against a dataset card and add its train/valid/test domains.

    The card's field mapping must match the file (the target series and the trials table
    exist; the validity and split columns exist). Trials marked invalid are dropped, the rest
    split by the card's rules into ``train_domain``, ``valid_domain`` and ``test_domain``
    (:class:`Intervals` that never overlap in time). With ``splits.by: time`` the span of the
    target is cut into contiguous blocks instead (no trials needed); a subject listed in
    ``splits.held_out_subjects`` is test data from start to end.
    """
    fields, splits = card.fields, card.splits
    where = f"{name or rec.id}: dataset card {card.name!r}"
    needed = ("target",) if splits.by == "time" else ("target", "trials")
    for key in needed:
        signal = getattr(fields, key)
        if signal not in rec:
            raise InvalidDataError(
                f"{where}: fields.{key} is {signal!r} but the file has no such signal "
                f"(has {sorted(rec.signals)})"
            )
    if rec.metadata.subject_id in splits.held_out_subjects or splits.by == "time":
        target = rec[fields.target]
        times = target.load().timestamps
        # The span of the target's samples, with the last sample's own period included.
        span_end = float(times[-1]) + (1.0 / target.rate if target.kind == "regular" else 0.0)
        held_out = rec.metadata.subject_id in splits.held_out_subjects
        fractions = (0.0, 0.0, 1.0) if held_out else splits.fractions
        domains = time_domains(float(times[0]), span_end, fractions)
    else:
        domains = _trial_domains(rec, card, where)
    # The new recording takes over what backs rec's lazy signals (e.g. staged spikes).
    out = rec.with_signals(
        {
            f"{split}_domain": Intervals(dom.start, dom.end, name=f"{split}_domain", validate=False)
            for split, dom in domains.items()
        }
    )
    out.metadata.extra["dataset_card"] = card.name
    return out


def _trial_domains(rec: Recording, card: Any, where: str) -> dict[str, Intervals]:
    """Train/valid/test domains from the card's trial rules (validity, split column)."""
    fields, splits = card.fields, card.splits
    trials = rec[fields.trials].load()
    keep = np.ones(len(trials), dtype=bool)
    if fields.valid_trials is not None:
        if fields.valid_trials not in trials.columns:
            raise InvalidDataError(
                f"{where}: fields.valid_trials {fields.valid_trials!r} is not a column of "
                f"{fields.trials!r} (has {sorted(trials.columns)})"
            )
        keep &= trials.columns[fields.valid_trials].astype(bool)
    if splits.by == "column":
        column = fields.split_column
        if column is None or column not in trials.columns:
            raise InvalidDataError(
                f"{where}: splits.by is 'column' but fields.split_column {column!r} is not a "
                f"column of {fields.trials!r} (has {sorted(trials.columns)})"
            )
        labels = np.asarray(
            [splits.values.get(str(v), str(v)) for v in trials.columns[column]], dtype=object
        )
        keep &= labels != "drop"
        kept = trials.take(np.flatnonzero(keep))
        kept.columns["_split"] = labels[keep]
        return split_domains(kept, column="_split")
    return split_domains(trials.take(np.flatnonzero(keep)), splits.fractions, seed=splits.seed)
