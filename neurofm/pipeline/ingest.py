"""Ingestion: sources -> readers -> catalog, with progress and a per-file report.

* :func:`ingest` reads local files into a catalog: NWB files, EEG files (any format MNE reads),
  4-D NIfTI BOLD files (reduced to parcels with an atlas), a folder of them, or a BIDS dataset
  (EEG and BOLD of one run paired into one simultaneous EEG-fMRI recording);
* :func:`ingest_dandi` pulls a dandiset (or streams it) and ingests it in one go;
* :func:`ingest_pulled` ingests what :func:`neurofm.sources.dandi.pull` downloaded;
* :func:`apply_card` applies a dataset card's field mapping, repairs and splits to a recording.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from neurofm import display
from neurofm.data.catalog import SETTINGS_KEY, Catalog, split_domains, time_domains
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

    def __repr__(self) -> str:
        lines = [
            f"<IngestReport {str(self.catalog)!r}: {len(self.ingested)} ingested, "
            f"{len(self.skipped)} up to date, {len(self.failed)} failed"
        ]
        lines += [f"  failed {source}: {reason}" for source, reason in self.failed]
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        rows = [(s, "ingested", rid) for s, rid in self.ingested]
        rows += [(s, "up to date", rid) for s, rid in self.skipped]
        rows += [(s, "failed", reason) for s, reason in self.failed]
        caption = repr(self).splitlines()[0].lstrip("<").rstrip(">")
        return display.html_table(caption, rows, ("source", "outcome", "recording / reason"))


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
    #: A DANDI asset a Dask task pulls before reading: {asset, to, api_url} (see
    #: :func:`_pull_source`); the source then becomes the pulled file.
    pull: dict[str, Any] | None = None

    def digest(self) -> str:
        """The source's sha256 (of its files together), "" when it cannot be known."""
        if self.sha256 is not None:
            return self.sha256
        return files_sha256(self.files) if self.files else ""

    def settings(self, card: Any) -> str:
        """SHA-256 of what, besides the source's bytes, decides the recording ingest writes:
        the reader and its options (EEG preprocessing, atlas, fMRI cleaning...), an id given
        for it, and the card's rules (fields, splits, repairs, preprocessing). A source
        ingested before with other settings is not up to date."""
        settings = {
            "reader": self.reader,
            "options": self.options,
            "id": self.recording_id,
            "card": _card_rules(card),
        }
        text = json.dumps(settings, sort_keys=True, default=_plain_setting)
        return hashlib.sha256(text.encode()).hexdigest()


#: What a dataset card says about the recordings ingest writes (not its name, notes or source).
_CARD_RULES = {"reader", "fields", "splits", "preprocessing", "fmri_cleaning", "repairs"}


def _card_rules(card: Any) -> Any:
    if card is None:
        return None
    if isinstance(card, _SplitRules):
        return {"splits": card.splits, "fields": card.fields}
    return card.model_dump(mode="json", include=_CARD_RULES)


def _plain_setting(value: Any) -> Any:
    """JSON for what reader options hold: paths, pydantic models, dataclasses, arrays."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, os.PathLike):  # the file, however its path was typed
        return str(Path(value).resolve())
    return str(value)


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
    splits: str | Any | None = None,
    recording_id: str | None = None,
    client: Any = None,
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
    splits : {"random", "column", "time"} or SplitSpec, optional
        Train/valid/test domains without a card (``neurofm ingest --splits``): the ``trials``
        at random (70/10/20 %, seed 0), by their ``split`` column, or the recording's span cut
        in contiguous blocks. Not with ``card`` (its ``splits:`` say it).
    recording_id : str, optional
        The recording's id (``neurofm ingest --id``); ``src`` must then be one recording.
    client : distributed.Client, optional
        Read the files on this Dask cluster, one task per file (see
        :mod:`neurofm.pipeline.cluster`); the index is merged here as tasks finish.

    Returns
    -------
    IngestReport
        A bad file is reported there, by name and reason, and does not stop the others.

    Raises
    ------
    ReaderError
        If ``src`` does not exist or is a folder without NWB files.
    NeuroFMError
        ``card`` and ``splits`` together, an unknown split rule, or ``recording_id`` for a
        source holding several recordings.
    """
    if splits is not None:
        if card is not None:
            raise NeuroFMError(
                "give a dataset card or split rules, not both (the card's splits: say how to split)"
            )
        card = _split_rules(splits)
    eeg_options = dict(eeg_options or {})
    fmri_options = dict(fmri_options or {})
    if getattr(card, "preprocessing", None) is not None:
        eeg_options.setdefault("preprocessing", card.preprocessing)
    if getattr(card, "fmri_cleaning", None) is not None:
        for key, value in card.fmri_cleaning.model_dump().items():
            fmri_options.setdefault(key, value)
    if client is not None:  # a worker's working directory is not this process's
        src, out = Path(src).absolute(), Path(out).absolute()
        atlas = Path(atlas).absolute() if isinstance(atlas, str | os.PathLike) else atlas
    sources = _local_sources(Path(src), atlas, subjects, eeg_options, fmri_options)
    if recording_id is not None:
        if len(sources) != 1:
            raise NeuroFMError(
                f"{src}: an id names one recording, but this source holds {len(sources)}; "
                "ingest the files one at a time"
            )
        if not recording_id or "/" in recording_id:
            raise NeuroFMError(f"id: must be a non-empty name without '/' ({recording_id!r})")
        sources[0].recording_id = recording_id
    return _ingest_sources(
        sources, Path(out), force=force, progress=progress, card=card, client=client
    )


@dataclass(frozen=True)
class _SplitRules:
    """The split part of a dataset card on its own (``neurofm ingest --splits``)."""

    splits: Any
    fields: Any
    label: str
    name: str = ""


def _split_rules(splits: str | Any) -> _SplitRules:
    from neurofm.specs import FieldMapping, SplitSpec

    if isinstance(splits, str):
        if splits not in ("random", "column", "time"):
            raise NeuroFMError(f"splits: expected random, column or time, got {splits!r}")
        splits = SplitSpec(by=splits)
    column = "split" if splits.by == "column" else None
    return _SplitRules(splits, FieldMapping(split_column=column), f"--splits {splits.by}")


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
            raise ReaderError(
                f"{src}: folder contains no recordings to ingest (.nwb, EEG "
                f"{'/'.join(bids.EEG_EXTENSIONS)}, or NIfTI; a BIDS dataset needs its "
                "dataset_description.json)"
            )
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
    _distinct_bids_ids(out)
    return out


def _bids_suffix(name: str) -> str:
    """``eeg`` for ``sub-01_task-rest_eeg.vhdr``, ``bold`` for ``..._bold.nii.gz``."""
    return Path(name).name.split(".")[0].rsplit("_", 1)[-1]


def _distinct_bids_ids(sources: list[_Source]) -> None:
    """Files of one BIDS run read one by one (not through the dataset's root, which pairs a
    run's EEG and BOLD into one recording) would all take the run's id, e.g.
    ``sub-01_task-rest``: give each its BIDS suffix instead (``sub-01_task-rest_eeg``,
    ``sub-01_task-rest_bold``)."""
    by_id: dict[str, list[_Source]] = {}
    for source in sources:
        if source.reader not in ("eeg", "fmri") or bids.bids_root_of(source.location) is None:
            continue
        try:
            base = bids.entity_string(bids.entities_of(source.location))
        except ReaderError:
            continue
        if base:
            by_id.setdefault(base, []).append(source)
    for base, group in by_id.items():
        if len({_bids_suffix(s.location) for s in group}) == len(group) > 1:
            for source in group:
                source.recording_id = f"{base}_{_bids_suffix(source.location)}"


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
    client: Any = None,
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
    client : distributed.Client, optional
        Run one Dask task per asset: pull it (verified; or stream it), read it, write its
        recording; the index is merged here as tasks finish (:mod:`neurofm.pipeline.cluster`).

    Returns
    -------
    (PullReport or None, IngestReport)
        The pull report is None when streaming or on a cluster (each task pulls its asset).
    """
    from neurofm.sources import dandi

    # a worker's working directory is not this process's: paths travel absolute
    out = Path(out).absolute() if client is not None else Path(out)
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
        return None, _ingest_sources(
            sources, out, force=force, progress=progress, card=card, client=client
        )
    parsed = dandi.parse_ref(ref)
    to = Path(to) if to is not None else out / "_raw" / parsed.dandiset_id
    if client is not None:
        to = to.absolute()
        import dataclasses

        dandiset = dandi.resolve(parsed, api_url)
        sources = []
        for a in dandi.list_assets(dandiset, include):
            local = to / a.path
            # The digest decides what is up to date before anything is pulled.
            sha = a.sha256 or (dandi.local_sha256(to, local) if local.is_file() else "")
            sources.append(
                _Source(
                    str(local),
                    str(local),
                    sha256=sha or None,
                    provenance=_dandi_provenance(a, stream=False),
                    # The asset travels without its HTTP client; the task asks for its own.
                    pull={
                        "asset": dataclasses.replace(a, remote=None),
                        "to": str(to),
                        "api_url": dandiset.api_url,
                    },
                )
            )
        report = _ingest_sources(
            sources, out, force=force, progress=progress, card=card, client=client
        )
        return None, report
    pulled = dandi.pull(parsed, to, include=include, api_url=api_url, progress=progress)
    return pulled, ingest_pulled(pulled, out, force=force, progress=progress, card=card)


def ingest_pulled(
    pulled: Any, out: Path, *, force: bool, progress: bool, card: Any, client: Any = None
) -> IngestReport:
    """Ingest what a pull put on disk, reusing the sha256 it recorded while verifying
    (on a Dask ``client``'s workers, one task per file, when one is given)."""
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
    report = _ingest_sources(sources, out, force=force, progress=progress, card=card, client=client)
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
    sources: Iterable[_Source],
    out: Path,
    *,
    force: bool,
    progress: bool,
    card: Any,
    client: Any = None,
) -> IngestReport:
    # A bar on a terminal, whole lines in a log file (neurofm.progress).
    from neurofm.progress import progress_bar

    sources = list(sources)
    if client is not None:
        return _ingest_on_client(client, sources, out, force=force, progress=progress, card=card)
    # A live writer from the start: whatever it stages in the folder is not a dead one's litter.
    catalog = Catalog(out, create=True, writer=True)
    report = IngestReport(out)
    bar = progress_bar(sources, desc="ingest", unit="file", disable=not progress)
    for source in bar:
        bar.set_postfix_str(Path(source.name).name)
        try:
            digest = source.digest()
            done = (
                None if force or not digest else catalog.up_to_date(digest, source.settings(card))
            )
            if done is not None:
                report.skipped.append((source.name, done["id"]))
                log.info("%s: up to date (%s)", source.name, done["id"])
                continue
            with progress_bar(
                desc=f"  {Path(source.name).name}",
                unit=" spikes",
                unit_scale=True,
                leave=False,
                disable=not progress or source.reader != "nwb",
            ) as spikes_bar:
                rec = _read_source(source, out, card, digest, spikes_bar.update)
                try:
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


def _read_source(
    source: _Source, out: Path, card: Any, digest: str, progress: Any = None
) -> Recording:
    """Read one source into a recording (the card applied); NWB spikes are staged in ``out``.

    ``progress`` is called with the number of spikes read so far (NWB only).
    """
    options = dict(source.options)
    if source.reader == "nwb":  # spikes staged beside the catalog, with progress
        options.update(
            recording_id=source.recording_id,
            tmp_dir=out if out.is_dir() else None,
            provenance=source.provenance,
        )
        if progress is not None:
            options["progress"] = progress
        # Unsorted spikes are repaired by the reader: merging the trains into one
        # time-sorted stream needs each train sorted, and afterwards no one can
        # tell which unit went back in time. Trial repairs wait for apply_card,
        # which knows the validity and split rules (an overlap between trials
        # the card drops anyway needs no repair).
        repairs = getattr(card, "repairs", None)
        if repairs is not None and repairs.unsorted_spikes is not None:
            options["unsorted_spikes"] = repairs.unsorted_spikes
    target = source.location if source.target is None else source.target
    rec = READERS[source.reader](target, sha256=digest or None, **options)
    try:
        if source.recording_id is not None:  # NWB: already; others: set here
            rec.id = source.recording_id
        if card is not None and (card.fields.target is not None or isinstance(card, _SplitRules)):
            rec = apply_card(rec, card, source.name)
        rec.provenance.extra[SETTINGS_KEY] = source.settings(card)
    except BaseException:
        rec.close()
        raise
    return rec


def _check_id_is_free(catalog: Catalog, rec: Recording, name: str) -> None:
    """Two sources must not share a recording id: the second would silently replace the first.

    A BIDS file whose run id is taken by another modality of the same run (the EEG ingested
    before, now the BOLD) takes its BIDS suffix instead (``sub-01_task-rest_bold``).
    """
    mine = rec.provenance.source_path or rec.provenance.source_url

    def taken_by(rec_id: str) -> str:
        if rec_id not in catalog:
            return ""
        entry = catalog.entry(rec_id)
        theirs = entry.get("source_path") or entry.get("source_url") or ""
        return theirs if theirs and mine and theirs != mine else ""

    theirs = taken_by(rec.id)
    if not theirs:
        return
    suffix = _bids_suffix(name)
    if (
        Path(name).name.startswith("sub-")
        and Path(theirs).name.startswith("sub-")
        and suffix != _bids_suffix(theirs)
        and not taken_by(f"{rec.id}_{suffix}")
    ):
        log.info("%s: id %r is taken by %s; using %s_%s", name, rec.id, theirs, rec.id, suffix)
        rec.id = f"{rec.id}_{suffix}"
        return
    raise CatalogError(
        f"{name}: recording id {rec.id!r} is already taken in {catalog.path} by {theirs}; "
        f"give this one its own id (neurofm ingest {name} --id NEW_ID)"
    )


# --------------------------------------------------------------------------------------------
# on a Dask cluster (neurofm.pipeline.cluster runs the futures)
# --------------------------------------------------------------------------------------------


def _ingest_on_client(
    client: Any, sources: list[_Source], out: Path, *, force: bool, progress: bool, card: Any
) -> IngestReport:
    """One Dask task per source (pull, read, write its recording to its final name); the
    index is merged here, one recording at a time as its task finishes."""
    from neurofm.pipeline.cluster import map_tasks

    # A live writer before any task stages in the folder: no other writer takes a running
    # task's staging folder for a dead writer's litter.
    out.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(out, create=True, writer=True)
    report = IngestReport(out)
    todo = []
    for source in sources:
        digest = source.digest()
        done = None if force or not digest else catalog.up_to_date(digest, source.settings(card))
        if done is not None:
            report.skipped.append((source.name, done["id"]))
            log.info("%s: up to date (%s)", source.name, done["id"])
        else:
            todo.append(source)
    todo = _one_source_per_id(todo, report)
    # Who holds each id now: a task refuses to overwrite another source's recording.
    taken = _Taken(
        out, {e["id"]: e.get("source_path") or e.get("source_url") or "" for e in catalog.entries}
    )
    order = {source.name: i for i, source in enumerate(sources)}

    def done(name: str, result: tuple[str, str]) -> None:
        rec_id, file_name = result
        catalog.register(file_name)  # relative to the catalog folder, as out may be
        report.ingested.append((name, rec_id))

    tasks = [(s.name, _write_source, (s, out, card, taken)) for s in todo]
    try:
        report.failed += map_tasks(
            client,
            tasks,
            done,
            desc="ingest",
            unit="file",
            progress=progress,
            already=len(report.skipped),
        )
    finally:
        catalog.close()
    report.ingested.sort(key=lambda item: order[item[0]])
    report.failed.sort(key=lambda item: order.get(item[0], len(order)))
    return report


def _one_source_per_id(sources: list[_Source], report: IngestReport) -> list[_Source]:
    """Tasks run at once cannot see each other's ids: two NWB sources that would get the same
    id (known before reading: given, or from the file name) would both write ``<id>.h5``.
    The first keeps it; the others fail, as the serial path fails them."""
    from neurofm.readers.nwb import default_recording_id

    owner: dict[str, str] = {}
    kept = []
    for source in sources:
        rec_id = source.recording_id
        if rec_id is None and source.reader == "nwb":
            rec_id = default_recording_id(PurePosixPath(str(source.location)))
        if rec_id is not None and rec_id in owner:
            report.failed.append(
                (
                    source.name,
                    f"{source.name}: recording id {rec_id!r} is also the id of "
                    f"{owner[rec_id]} in this ingest; give this one its own id "
                    f"(neurofm ingest {source.name} --id NEW_ID)",
                )
            )
            continue
        if rec_id is not None:
            owner[rec_id] = source.name
        kept.append(source)
    return kept


@dataclass(frozen=True)
class _Taken:
    """The catalog's ids and their sources when the tasks were submitted: what
    :func:`_check_id_is_free` asks of a catalog, without a task reading the index."""

    path: Path
    sources: dict[str, str]

    def __contains__(self, rec_id: object) -> bool:
        return rec_id in self.sources

    def entry(self, rec_id: str) -> dict[str, str]:
        return {"source_path": self.sources[rec_id]}


def _stage_folder(out: Path, name: str) -> Path:
    """A task's own staging folder in the catalog, the same for every attempt at ``name``
    (so a retry removes what a killed attempt left); named as the catalog knows staging
    folders, so ``neurofm verify`` lists it and the next writer removes it if left."""
    import hashlib

    return out / f".neurofm-stage-task_{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _write_source(source: _Source, out: Path, card: Any, taken: _Taken) -> tuple[str, str]:
    """A Dask task: pull (if asked), read, and write the recording to ``<out>/<id>.h5``.

    Everything partial (the pulled file's ``.partial``, staged spikes, the recording being
    written) lies in the download folder or in this task's staging folder; the recording
    appears under its final name by one rename, complete. The index is not touched.
    Returns the recording id and its file name.
    """
    import shutil

    stage = _stage_folder(out, source.name)
    shutil.rmtree(stage, ignore_errors=True)  # an earlier attempt, killed mid-task
    stage.mkdir(parents=True)
    try:
        if source.pull is not None:
            source = _pull_source(source)
        rec = _read_source(source, stage, card, source.digest())
        try:
            _check_id_is_free(taken, rec, source.name)  # type: ignore[arg-type]
            file_name = f"{rec.id}.h5"
            written = rec.save(stage / file_name)
        finally:
            rec.close()
        os.replace(written, out / file_name)
        return rec.id, file_name
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _pull_source(source: _Source) -> _Source:
    """Pull one DANDI asset (verified, resumed; skipped if present and verified) and return
    the pulled file as the source to read."""
    from neurofm.errors import SourceError
    from neurofm.sources import dandi

    want = source.pull or {}
    pulled = dandi.pull_asset(want["asset"], want["to"], api_url=want["api_url"])
    if pulled.failed:
        raise SourceError(f"pull: {pulled.failed[0][1]}")
    local = (pulled.downloaded + pulled.skipped)[0]
    sha = dandi.local_sha256(pulled.to, local)
    return _Source(
        source.name,
        str(local),
        files=(Path(local),),
        sha256=sha or None,
        provenance=source.provenance,
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

    The card's ``repairs`` act on the trials here (boundaries clipped, overlapping trials
    dropped; see :func:`_repair_trials`); the stored ``trials`` table is the repaired one, and
    what was repaired goes to the provenance under ``repairs`` (beside the reader's
    ``unsorted_spikes``).
    """
    fields, splits = card.fields, card.splits
    where = f"{name or rec.id}: " + (getattr(card, "label", "") or f"dataset card {card.name!r}")
    needed = ("target",) if splits.by == "time" else ("target", "trials")
    for key in needed:
        signal = getattr(fields, key)
        if signal is None:  # --splits alone: no target to check
            continue
        if key == "target" and not isinstance(signal, str):  # a per-trial target
            _check_trial_target(rec, signal, where)
            continue
        if signal not in rec and isinstance(card, _SplitRules):
            raise InvalidDataError(
                f"{where}: splits the {signal!r} intervals, but the file has none (has "
                f"{sorted(rec.signals)}); --splits time cuts a continuous recording instead"
            )
        if signal not in rec:
            raise InvalidDataError(
                f"{where}: fields.{key} is {signal!r} but the file has no such signal "
                f"(has {sorted(rec.signals)})"
            )
        if key == "target" and rec[signal].kind not in ("regular", "irregular"):
            raise InvalidDataError(
                f"{where}: fields.target {signal!r} is {rec[signal].kind}, not a behaviour "
                "series; to decode a per-trial value give {trials: <column>, at: <time column>}"
            )
    if rec.metadata.subject_id in splits.held_out_subjects or splits.by == "time":
        if fields.target is None:  # --splits time: the recording's whole span
            span_start, span_end = 0.0, rec.duration
        elif not isinstance(fields.target, str):  # a held-out subject's per-trial target
            table = rec[fields.target.table].load()
            span_start, span_end = float(table.start.min()), float(table.end.max())
        else:
            target = rec[fields.target]
            times = target.load().timestamps
            # The span of the target's samples, with the last sample's own period included.
            span_start = float(times[0])
            span_end = float(times[-1]) + (1.0 / target.rate if target.kind == "regular" else 0)
        held_out = rec.metadata.subject_id in splits.held_out_subjects
        fractions = (0.0, 0.0, 1.0) if held_out else splits.fractions
        domains = time_domains(span_start, span_end, fractions)
        repaired: dict[str, Any] = {}
    else:
        domains, repaired = _trial_domains(rec, card, where)
    # The new recording takes over what backs rec's lazy signals (e.g. staged spikes).
    out = rec.with_signals(
        {
            **{
                f"{split}_domain": Intervals(
                    dom.start, dom.end, name=f"{split}_domain", validate=False
                )
                for split, dom in domains.items()
            },
            **repaired.get("signals", {}),
        }
    )
    if repaired.get("entries"):
        out.provenance.extra["repairs"] = {
            **(out.provenance.extra.get("repairs") or {}),
            **repaired["entries"],
        }
    if card.name:
        out.metadata.extra["dataset_card"] = card.name
        # `neurofm evaluate` has only the catalog: it scores this split by default.
        out.metadata.extra["evaluate_on"] = splits.evaluate_on
    else:
        out.metadata.extra["splits"] = splits.by
    return out


def _check_trial_target(rec: Recording, target: Any, where: str) -> None:
    """A per-trial target's table and columns exist, and its event time is a time column."""
    if target.table not in rec:
        raise InvalidDataError(
            f"{where}: fields.target reads the {target.table!r} table but the file has no such "
            f"signal (has {sorted(rec.signals)})"
        )
    table = rec[target.table].load()
    for key, column in (("trials", target.trials), ("at", target.at)):
        if column not in table.columns:
            raise InvalidDataError(
                f"{where}: fields.target.{key} {column!r} is not a column of {target.table!r} "
                f"(columns: {', '.join(sorted(table.columns))})"
            )
    if target.at not in getattr(table, "time_columns", ()):
        raise InvalidDataError(
            f"{where}: fields.target.at {target.at!r} is not a time column of "
            f"{target.table!r} (time columns: {', '.join(table.time_columns) or 'none'})"
        )


def _trial_domains(
    rec: Recording, card: Any, where: str
) -> tuple[dict[str, Intervals], dict[str, Any]]:
    """Train/valid/test domains from the card's trial rules (repairs, validity, split column).

    The card's trial repairs come first, on the whole table (what they change does not depend
    on which trials the card keeps). Returns the domains, and what the repairs did (empty if
    the card has none): ``signals`` (the repaired trials table) and ``entries`` (provenance).
    """
    from neurofm.expressions import parse_row_filter

    fields, splits = card.fields, card.splits
    trials = rec[fields.trials].load()
    trials, entries = _repair_trials(trials, getattr(card, "repairs", None), where)
    repaired = {"signals": {fields.trials: trials}, "entries": entries} if entries else {}
    keep = np.ones(len(trials), dtype=bool)
    if fields.valid_trials is not None:
        expression = parse_row_filter(fields.valid_trials)
        keep &= expression.evaluate(
            trials.columns, len(trials), f"{where}: fields.valid_trials {expression.text!r}"
        )
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
        _refuse_overlaps(kept, where)
        kept.columns["_split"] = labels[keep]
        return split_domains(kept, column="_split"), repaired
    kept = trials.take(np.flatnonzero(keep))
    _refuse_overlaps(kept, where)
    return split_domains(kept, splits.fractions, seed=splits.seed), repaired


def _overlapping(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Which intervals (sorted by start) overlap another one (``end_i > start_j``, j after i)."""
    n = len(start)
    hit = np.zeros(n, dtype=bool)
    if n < 2:
        return hit
    # i overlaps a later interval iff it ends after the next one starts (starts are sorted);
    # j overlaps an earlier one iff it starts before the latest end so far.
    hit[:-1] |= end[:-1] > start[1:]
    hit[1:] |= start[1:] < np.maximum.accumulate(end)[:-1]
    return hit


def _refuse_overlaps(trials: Intervals, where: str) -> None:
    """Trials that overlap would put one moment in two splits: say where, and what can help."""
    hit = np.flatnonzero(trials.end[:-1] > trials.start[1:])
    if not hit.size:
        return
    sizes = trials.end[hit] - trials.start[hit + 1]
    i = int(hit[0])
    raise InvalidDataError(
        f"{where}: {trials.name}: trials {i} and {i + 1} overlap by {sizes[0]:.3g} s "
        f"({len(hit)} overlapping neighbours, largest overlap {sizes.max():.3g} s), so "
        "trial-based splits could overlap in time; the dataset card can clip boundaries "
        "that overlap by float noise (repairs: trial_overlap: {tolerance_s: ...}) or drop "
        "overlapping trials (repairs: overlapping_trials: drop)"
    )


def _repair_trials(trials: Intervals, repairs: Any, where: str) -> tuple[Intervals, dict[str, Any]]:
    """Apply the card's trial repairs; return the trials and the provenance entries.

    ``trial_overlap``: a trial ending at most ``tolerance_s`` after the next one starts ends
    where the next begins (float noise in back-to-back trials, e.g. MC_RTT). Then
    ``overlapping_trials: drop``: every trial still overlapping another is dropped, both of a
    pair (no moment may belong to two trials). Trial numbers in the entries are positions in
    the table sorted by start time, as stored.
    """
    entries: dict[str, Any] = {}
    if repairs is None:
        return trials, entries
    name = where.split(":", 1)[0]
    if repairs.trial_overlap is not None:
        tolerance = repairs.trial_overlap.tolerance_s
        end = np.array(trials.end, dtype=np.float64, copy=True)
        over = np.zeros(len(end))
        over[:-1] = end[:-1] - trials.start[1:]
        clip = np.flatnonzero((over > 0) & (over <= tolerance))
        end[clip] = trials.start[clip + 1]
        entries["trial_overlap"] = {
            "tolerance_s": tolerance,
            "n_trials": len(clip),
            "trials": clip.tolist(),
            "max_clipped_s": float(over[clip].max()) if clip.size else 0.0,
        }
        if clip.size:
            log.warning(
                "%s: repairs.trial_overlap: %d trial end(s) overlapping the next start by at "
                "most %g s (largest %.3g s) clipped to it",
                name,
                len(clip),
                tolerance,
                over[clip].max(),
            )
        trials = Intervals(
            trials.start,
            end,
            trials.labels,
            trials.columns,
            trials.time_columns,
            trials.name,
        )
    if repairs.overlapping_trials == "drop":
        hit = _overlapping(trials.start, trials.end)
        dropped = np.flatnonzero(hit)
        entries["overlapping_trials"] = {
            "policy": "drop",
            "n_trials": len(dropped),
            "trials": dropped.tolist(),
        }
        if dropped.size:
            log.warning(
                "%s: repairs.overlapping_trials drop: %d of %d trials overlapped another "
                "trial and were dropped (%s)",
                name,
                len(dropped),
                len(hit),
                ", ".join(map(str, dropped[:10])) + (" ..." if len(dropped) > 10 else ""),
            )
            trials = trials.take(np.flatnonzero(~hit))
    return trials, entries
