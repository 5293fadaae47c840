"""The DANDI archive as a source, through the official ``dandi`` client.

* :func:`parse_ref` / :func:`resolve` turn ``dandi:000128[@version]`` into a dandiset version
  (default: the most recent published version, else the draft).
* :func:`list_assets` lists NWB assets, optionally filtered by glob patterns.
* :func:`pull` downloads them with a progress bar. It resumes partial files, skips files already
  present and verified, checks every file against the asset's dandi-etag (and records its
  sha256), deletes a file that fails the check and raises :class:`DigestMismatchError`.
  ``dandi``'s own ``download()`` verifies too, but leaves a bad file on disk and cannot be told
  where to stage partial files; so the transfer loop is ours, while every request goes through
  ``dandi.dandiapi`` (``RemoteAsset.get_download_file_iter``), never hand-rolled HTTP.
* :func:`open_remote` streams an asset over HTTP (remfile + h5py): only the bytes the NWB
  reader touches are fetched.

The API URL comes from ``api_url=``, else ``$NEUROFM_DANDI_API``, else the public archive.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from neurofm.atomic import atomic_path
from neurofm.errors import DigestMismatchError, SourceError

log = logging.getLogger(__name__)

PUBLIC_API = "https://api.dandiarchive.org/api"
ENV_API = "NEUROFM_DANDI_API"
MANIFEST = ".neurofm-pull.json"
MANIFEST_LOCK = ".neurofm-pull.lock"
PARTIAL_SUFFIX = ".partial"
CHUNK = 1 << 20  # hashing block
# requests buffers a whole chunk before yielding it, so a dropped connection loses at most this
# much of what was received: small enough that a resume restarts close to where it broke.
DOWNLOAD_CHUNK = 1 << 16

__all__ = [
    "AssetInfo",
    "DandiRef",
    "PullReport",
    "list_assets",
    "open_remote",
    "parse_ref",
    "pull",
    "pull_asset",
    "resolve",
]

_REF = re.compile(r"^(?:dandi:)?(?P<id>\d{6})(?:[@/](?P<version>draft|\d+\.\d+\.\d+))?/?$", re.I)


@dataclass(frozen=True)
class DandiRef:
    """A dandiset and, optionally, a version (``None``: the latest published, else draft)."""

    dandiset_id: str
    version: str | None = None

    def __str__(self) -> str:
        return f"dandi:{self.dandiset_id}" + (f"@{self.version}" if self.version else "")


def parse_ref(text: str) -> DandiRef:
    """Parse ``dandi:000128``, ``dandi:000128@draft``, ``DANDI:000128/0.220113.0400``.

    Raises
    ------
    SourceError
        If ``text`` is not a dandiset reference.
    """
    match = _REF.match(text.strip())
    if not match:
        raise SourceError(
            f"{text!r} is not a DANDI reference; expected dandi:<6-digit id>[@<version>], "
            "e.g. dandi:000128 or dandi:000128@draft"
        )
    return DandiRef(match["id"], match["version"])


def is_dandi_ref(text: str) -> bool:
    """True if ``text`` looks like ``dandi:...`` (a path never starts that way)."""
    return str(text).lower().startswith("dandi:")


def api_url_from(api_url: str | None) -> str:
    return (api_url or os.environ.get(ENV_API) or PUBLIC_API).rstrip("/")


def _client(api_url: str | None) -> Any:
    # The client calls etelemetry on start-up unless told not to: a network call per run.
    os.environ.setdefault("DANDI_NO_ET", "1")
    # It also logs every transfer at INFO unless told otherwise; neurofm reports its own.
    os.environ.setdefault("DANDI_LOG_LEVEL", "WARNING")
    from dandi.consts import DandiInstance, known_instances
    from dandi.dandiapi import DandiAPIClient

    url = api_url_from(api_url)
    for instance in known_instances.values():
        if instance.api.rstrip("/") == url:
            return DandiAPIClient(dandi_instance=instance)
    # An explicit instance skips the client's /server-info probe of unknown URLs.
    return DandiAPIClient(dandi_instance=DandiInstance(name="neurofm", gui=None, api=url))


@dataclass(frozen=True)
class AssetInfo:
    """One asset of a dandiset version, with what verification and provenance need."""

    path: str
    size: int
    asset_id: str
    dandi_etag: str
    sha256: str
    download_url: str
    dandiset_id: str
    version: str
    remote: Any = field(default=None, compare=False, repr=False)


@dataclass
class ResolvedDandiset:
    ref: DandiRef
    api_url: str
    client: Any
    remote: Any  # dandi.dandiapi.RemoteDandiset

    @property
    def version(self) -> str:
        return str(self.remote.version_id)


def resolve(ref: DandiRef | str, api_url: str | None = None) -> ResolvedDandiset:
    """Find the dandiset version ``ref`` names on the server.

    Raises
    ------
    SourceError
        Unknown dandiset or version, or an unreachable server.
    """
    from dandi.exceptions import NotFoundError

    ref = parse_ref(ref) if isinstance(ref, str) else ref
    url = api_url_from(api_url)
    client = _client(url)
    try:
        remote = client.get_dandiset(ref.dandiset_id, ref.version, lazy=False)
        if ref.version is not None:
            remote.get_version(ref.version)  # fetched now so an unknown version fails here
    except NotFoundError:
        what = f"version {ref.version!r} of " if ref.version else ""
        raise SourceError(f"{ref}: no {what}dandiset {ref.dandiset_id} on {url}") from None
    except Exception as exc:
        if "404" in str(exc):
            what = f"version {ref.version!r} of " if ref.version else ""
            raise SourceError(f"{ref}: no {what}dandiset {ref.dandiset_id} on {url}") from None
        raise SourceError(f"{ref}: cannot reach the DANDI API at {url} ({exc})") from None
    return ResolvedDandiset(ref, url, client, remote)


def _safe_relpath(asset_path: str, ref: DandiRef) -> PurePosixPath:
    """Refuse asset paths that could write outside the target folder."""
    rel = PurePosixPath(asset_path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or asset_path.startswith("\\"):
        raise SourceError(
            f"{ref}: refusing asset path {asset_path!r}: it is absolute or contains '..', so it "
            "could write outside the target folder"
        )
    return rel


def list_assets(
    dandiset: ResolvedDandiset,
    include: str | Sequence[str] | None = None,
    suffix: str = ".nwb",
) -> list[AssetInfo]:
    """NWB assets of a resolved dandiset version, filtered by glob pattern(s) on their path."""
    patterns = [include] if isinstance(include, str) else list(include or [])
    assets = []
    for asset in dandiset.remote.get_assets(order="path"):
        if not asset.path.endswith(suffix):
            continue
        if patterns and not any(fnmatch.fnmatch(asset.path, p) for p in patterns):
            continue
        _safe_relpath(asset.path, dandiset.ref)
        meta = asset.get_raw_metadata()
        digest = meta.get("digest", {})
        etag = digest.get("dandi:dandi-etag")
        if not etag:
            raise SourceError(f"{dandiset.ref}: asset {asset.path!r} has no dandi-etag digest")
        assets.append(
            AssetInfo(
                path=asset.path,
                size=int(asset.size),
                asset_id=asset.identifier,
                dandi_etag=etag,
                sha256=digest.get("dandi:sha2-256", ""),
                download_url=asset.download_url,
                dandiset_id=dandiset.ref.dandiset_id,
                version=dandiset.version,
                remote=asset,
            )
        )
    return assets


# --------------------------------------------------------------------------------------------
# pull
# --------------------------------------------------------------------------------------------


@dataclass
class PullReport:
    """What a pull did, asset by asset."""

    dandiset: str
    version: str
    to: Path
    downloaded: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # present and verified
    failed: list[tuple[str, str]] = field(default_factory=list)  # (asset path, reason)
    bytes_transferred: int = 0
    assets: dict[str, AssetInfo] = field(default_factory=dict)  # local path -> asset

    @property
    def ok(self) -> bool:
        return not self.failed


def _digests(path: Path, size: int) -> tuple[str, str]:
    """(dandi-etag, sha256) of a file, in one pass."""
    from dandischema.digests.dandietag import ETagHashlike

    etag = ETagHashlike(size)
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            etag.update(block)
            sha.update(block)
    return etag.hexdigest(), sha.hexdigest()


@contextmanager
def _folder_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) while the block runs."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: one pull per folder at a time
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _Manifest:
    """Per-folder record of verified files (size, mtime, digests), so re-runs skip re-hashing."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST
        try:
            self.entries: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def verified(self, rel: str, asset: AssetInfo, local: Path) -> bool:
        entry = self.entries.get(rel)
        if not local.is_file() or entry is None:
            return False
        stat = local.stat()
        return (
            entry.get("dandi_etag") == asset.dandi_etag
            and entry.get("size") == stat.st_size == asset.size
            and entry.get("mtime_ns") == stat.st_mtime_ns
        )

    def record(self, rel: str, asset: AssetInfo, local: Path, sha256: str) -> None:
        stat = local.stat()
        entry = {
            "dandi_etag": asset.dandi_etag,
            "sha256": sha256,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "asset_id": asset.asset_id,
            "dandiset": asset.dandiset_id,
            "version": asset.version,
        }
        # Several pulls may fill one folder at once (Dask workers, one asset each): re-read
        # the manifest under a lock, so that no one's entries are lost.
        with _folder_lock(self.path.with_name(MANIFEST_LOCK)):
            try:
                on_disk = json.loads(self.path.read_text())
            except (OSError, ValueError):
                on_disk = {}
            self.entries = {**self.entries, **on_disk, rel: entry}
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))

    def sha256(self, rel: str) -> str:
        return str(self.entries.get(rel, {}).get("sha256", ""))


def pull(
    ref: DandiRef | str,
    to: str | os.PathLike[str],
    *,
    include: str | Sequence[str] | None = None,
    api_url: str | None = None,
    retries: int = 2,
    progress: bool = True,
) -> PullReport:
    """Download a dandiset's NWB assets into ``to``, verified, resuming partial files.

    Parameters
    ----------
    ref : DandiRef or str
        ``dandi:<id>[@<version>]``.
    to : str or Path
        Target folder; assets keep their dandiset paths below it.
    include : str or sequence of str, optional
        Glob pattern(s) on asset paths, e.g. ``"sub-Jenkins/*"``.
    api_url : str, optional
        DANDI API URL (default ``$NEUROFM_DANDI_API`` or the public archive).
    retries : int
        How many times a dropped transfer is resumed within this call.
    progress : bool
        Show a byte progress bar.

    Returns
    -------
    PullReport
        Failed assets are listed there; the others are complete and verified.

    Raises
    ------
    SourceError
        Unknown dandiset or version, a hostile asset path, an unreachable server.
    """
    from neurofm.progress import progress_bar

    dandiset = resolve(ref, api_url)
    assets = list_assets(dandiset, include)
    to = Path(to)
    report = PullReport(dandiset.ref.dandiset_id, dandiset.version, to)
    if not assets:
        raise SourceError(
            f"{dandiset.ref}: no NWB assets in version {dandiset.version}"
            + (f" match {include!r}" if include else "")
        )
    to.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(to)
    total = sum(a.size for a in assets)
    with progress_bar(
        total=total,
        unit="B",
        unit_scale=True,
        desc=f"pull {dandiset.ref.dandiset_id}",
        disable=not progress,
    ) as bar:
        for asset in assets:
            rel = str(_safe_relpath(asset.path, dandiset.ref))
            local = to / rel
            report.assets[str(local)] = asset
            if manifest.verified(rel, asset, local):
                report.skipped.append(local)
                bar.update(asset.size)
                continue
            try:
                sent = _download(asset, local, manifest, rel, retries, bar.update)
            except SourceError as exc:
                report.failed.append((asset.path, str(exc)))
                continue
            report.bytes_transferred += sent
            report.downloaded.append(local)
    return report


def pull_asset(
    asset: AssetInfo,
    to: str | os.PathLike[str],
    *,
    api_url: str | None = None,
    retries: int = 2,
) -> PullReport:
    """Download one asset listed by :func:`list_assets` into ``to``, as :func:`pull` does.

    For a Dask task, one per asset: the asset travels without its client
    (``dataclasses.replace(asset, remote=None)``) and the task asks the server for nothing
    but the asset itself (one request) and its bytes; the folder's manifest is shared with
    the other tasks. Verified, resumed, skipped when present and verified.

    Returns
    -------
    PullReport
        With this one asset downloaded, skipped or failed.
    """
    to = Path(to)
    rel = str(_safe_relpath(asset.path, DandiRef(asset.dandiset_id, asset.version)))
    local = to / rel
    report = PullReport(asset.dandiset_id, asset.version, to, assets={str(local): asset})
    to.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(to)
    if manifest.verified(rel, asset, local):
        report.skipped.append(local)
        return report
    if asset.remote is None:
        try:
            remote = _client(api_url).get_asset(asset.asset_id)
        except Exception as exc:
            raise SourceError(
                f"{asset.path}: cannot reach asset {asset.asset_id} at {api_url_from(api_url)} "
                f"({exc})"
            ) from None
        asset = dataclasses.replace(asset, remote=remote)
    try:
        report.bytes_transferred = _download(asset, local, manifest, rel, retries, lambda n: None)
    except SourceError as exc:
        report.failed.append((asset.path, str(exc)))
        return report
    report.downloaded.append(local)
    return report


def _download(
    asset: AssetInfo,
    local: Path,
    manifest: _Manifest,
    rel: str,
    retries: int,
    advance: Callable[[int], Any],
) -> int:
    """Fetch one asset into ``local`` (via ``<name>.partial``), verify it, return bytes sent."""
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(f".{local.name}{PARTIAL_SUFFIX}")
    if local.is_file() and local.stat().st_size == asset.size:
        # Present but not in the manifest (e.g. copied in): verify instead of downloading.
        etag, sha = _digests(local, asset.size)
        if etag == asset.dandi_etag:
            manifest.record(rel, asset, local, sha)
            advance(asset.size)
            return 0
    have = partial.stat().st_size if partial.is_file() else 0
    if have > asset.size:
        partial.unlink()
        have = 0
    advance(have)
    sent = 0
    fetch = asset.remote.get_download_file_iter(DOWNLOAD_CHUNK)
    for attempt in range(retries + 1):
        try:
            with open(partial, "ab") as fh:
                for chunk in fetch(have) if have < asset.size else ():
                    fh.write(chunk)
                    have += len(chunk)
                    sent += len(chunk)
                    advance(len(chunk))
            break
        except Exception as exc:  # requests/urllib3 raise several types for a dropped link
            log.info("%s: transfer interrupted at %d bytes (%s)", asset.path, have, exc)
            if attempt == retries:
                raise SourceError(
                    f"{asset.path}: transfer interrupted at {have} of {asset.size} bytes "
                    f"({type(exc).__name__}); the partial file is kept, re-run to resume"
                ) from None
    etag, sha = _digests(partial, partial.stat().st_size)
    if etag != asset.dandi_etag:
        partial.unlink(missing_ok=True)
        raise DigestMismatchError(
            f"{asset.path}: downloaded bytes do not match the asset's dandi-etag "
            f"(got {etag}, expected {asset.dandi_etag}); the file was deleted"
        )
    os.replace(partial, local)
    manifest.record(rel, asset, local, sha)
    return sent


def local_sha256(to: str | os.PathLike[str], local: Path) -> str:
    """The sha256 recorded for a pulled file (empty if unknown)."""
    to = Path(to)
    return _Manifest(to).sha256(str(local.relative_to(to).as_posix()))


# --------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------


def open_remote(url: str) -> Any:
    """An h5py.File reading ``url`` over HTTP range requests (remfile), for ``read_nwb``."""
    import h5py
    import remfile

    try:
        return h5py.File(remfile.File(url), "r")
    except Exception as exc:
        raise SourceError(f"{url}: cannot stream as HDF5 ({exc})") from None
