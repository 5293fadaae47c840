"""Pipelines: source files -> readers -> catalog, with progress and a per-file report."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from neurofm.data.catalog import Catalog
from neurofm.errors import CatalogError, NeuroFMError
from neurofm.sources.local import find_files, sha256_file

log = logging.getLogger(__name__)

__all__ = ["IngestReport", "ingest"]


@dataclass
class IngestReport:
    """What an ingest did, file by file."""

    catalog: Path
    ingested: list[tuple[Path, str]] = field(default_factory=list)  # (source, recording id)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # up to date
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (source, reason)

    @property
    def ok(self) -> bool:
        return not self.failed


def ingest(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: bool = True,
) -> IngestReport:
    """Ingest an NWB file, or every NWB file below a folder, into a catalog.

    Parameters
    ----------
    src : str or Path
        An ``.nwb`` file or a folder (searched recursively, e.g. a DANDI-layout dandiset).
    out : str or Path
        The catalog folder; created on the first successful file.
    force : bool
        Re-ingest files whose output is up to date (same source sha256).
    progress : bool
        Show a progress bar (spikes processed, per file).

    Returns
    -------
    IngestReport
        A bad file is reported there, by name and reason, and does not stop the others.

    Raises
    ------
    ReaderError
        If ``src`` does not exist or is a folder without NWB files.
    """
    from tqdm.auto import tqdm

    from neurofm.readers.nwb import read_nwb

    files = find_files(src, ".nwb")
    catalog = Catalog(out, create=True)
    report = IngestReport(Path(out))
    bar = tqdm(files, desc="ingest", unit="file", disable=not progress)
    for path in bar:
        bar.set_postfix_str(path.name)
        try:
            digest = sha256_file(path)
            done = None if force else catalog.up_to_date(digest)
            if done is not None:
                report.skipped.append((path, done["id"]))
                log.info("%s: up to date (%s)", path, done["id"])
                continue
            with tqdm(
                desc=f"  {path.name}",
                unit=" spikes",
                unit_scale=True,
                leave=False,
                disable=not progress,
            ) as spikes_bar:
                rec = read_nwb(
                    path, sha256=digest, tmp_dir=_staging_dir(out), progress=spikes_bar.update
                )
                try:
                    _check_id_is_free(catalog, rec.id, rec.provenance.source_path, path)
                    catalog.add(rec)
                finally:
                    rec.close()
            report.ingested.append((path, rec.id))
        except NeuroFMError as exc:
            report.failed.append((path, _one_line(exc, path)))
        except Exception as exc:  # a bad file must not stop the others
            log.debug("unexpected error on %s", path, exc_info=True)
            report.failed.append((path, f"{path}: {type(exc).__name__}: {_one_line(exc, path)}"))
    return report


def _check_id_is_free(catalog: Catalog, rec_id: str, source: str, path: Path) -> None:
    """Two sources must not share a recording id: the second would silently replace the first."""
    if rec_id in catalog:
        other = catalog.entry(rec_id).get("source_path", "")
        if other and other != source:
            raise CatalogError(
                f"{path}: recording id {rec_id!r} is already taken in {catalog.path} by {other}; "
                "rename one of the files"
            )


def _staging_dir(out: str | os.PathLike[str]) -> Path | None:
    """Stage large spike streams next to the catalog when its folder exists (same disk)."""
    out = Path(out)
    return out if out.is_dir() else None


def _one_line(exc: BaseException, path: Path) -> str:
    text = " ".join(str(exc).split())
    return text if str(path) in text else f"{path}: {text}"
