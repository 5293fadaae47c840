"""OpenNeuro as a source: pull a dataset snapshot's files into a folder, verified, resumable.

* :func:`parse_ref` turns ``openneuro:ds002336[@2.0.2]`` into a dataset and snapshot tag.
* :func:`resolve` asks the server for the snapshot (default: the latest) and its file listing.
* :func:`pull` downloads the files (optionally only those matching glob patterns) with a progress
  bar. It resumes partial files, skips files already present and verified, checks every file
  against the size and the hash the listing gives, deletes a file that fails the check (raising
  :class:`~neurofm.errors.DigestMismatchError` into the report) and refuses listings whose paths
  would write outside the target folder: the guarantees of :func:`neurofm.sources.dandi.pull`.

The protocol is the one OpenNeuro's own client (``openneuro-py``) speaks, and the one the
OpenNeuro server implements:

1. ``POST <server>/crn/graphql`` with ``dataset(id) { snapshots { id } latestSnapshot { id } }``
   for the published snapshots (ids are ``"ds002336:2.0.2"``), then
   ``snapshot(datasetId, tag) { id files(recursive: true) { id filename size urls } }`` for the
   snapshot's files, with their full paths.
2. ``GET`` of each file's first URL (on the archive, a versioned S3 object that honours ``Range``).

A file's ``id`` is what its git tree holds: a git-annex key (``SHA256E-s<size>--<sha256>.nii.gz``)
for annexed files and the git blob id (SHA-1 over ``b"blob <size>\\0"`` and the bytes) for files
kept in git (so the OpenNeuro server's source reads; not checked against the live archive from
here, which this machine cannot reach). That is what the download is checked against; a file
whose id carries neither is checked by size only (logged).

Why not ``openneuro-py`` itself (2026.9.1, read before writing this): its GraphQL endpoint is a
constant of a private module (``openneuro._download.gql_url``, ``https://openneuro.org/crn/
graphql``) with no argument or environment variable to change it (``OPENNEURO_SOURCE`` only
picks between two fixed hosts), so it cannot be pointed at a local stand-in for tests without
patching private state; it writes each file in place under its final name, so an interrupted or
corrupt transfer leaves wrong bytes there until a later run; it verifies against the S3 ``ETag``
(an MD5 of single-part uploads) or, for files of 1 GiB and more, checksums it asks the NEMAR
mirror for (another fixed host), never the hashes the listing itself carries; and it needs
``niquests``, whose ``urllib3-future`` may shadow the ``urllib3`` that ``requests`` and ``dandi``
use in the same environment. So the two requests above are made here with ``requests`` (already
installed by ``dandi``). DataLad was the other ordinary client; it needs git-annex, a system
package, and the same local stand-in would have to be a git server.

The server URL comes from ``url=``, else ``$NEUROFM_OPENNEURO_URL``, else ``https://openneuro.org``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from neurofm.atomic import atomic_path
from neurofm.errors import DigestMismatchError, SourceError

log = logging.getLogger(__name__)

PUBLIC_URL = "https://openneuro.org"
ENV_URL = "NEUROFM_OPENNEURO_URL"
GRAPHQL_PATH = "/crn/graphql"
MANIFEST = ".neurofm-openneuro.json"
PARTIAL_SUFFIX = ".partial"
CHUNK = 1 << 20  # hashing block
DOWNLOAD_CHUNK = 1 << 16  # what a dropped connection can lose at most
TIMEOUT = (10.0, 60.0)  # (connect, read) seconds
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504, 522, 524})

__all__ = [
    "FileInfo",
    "OpenNeuroRef",
    "PullReport",
    "Snapshot",
    "expected_digest",
    "is_openneuro_ref",
    "parse_ref",
    "pull",
    "resolve",
    "select",
    "url_from",
]

_REF = re.compile(
    r"^(?:openneuro:)?(?P<id>ds\d{6})(?:[@/](?P<version>[0-9A-Za-z][0-9A-Za-z._+-]*))?/?$", re.I
)

# The two queries. Variables (not text substitution) carry the values; the types are the
# server schema's: dataset(id: ID!), snapshot(datasetId: ID!, tag: String!).
SNAPSHOTS_QUERY = """
query neurofmSnapshots($datasetId: ID!) {
  dataset(id: $datasetId) {
    id
    snapshots { id }
    latestSnapshot { id }
  }
}
"""
FILES_QUERY = """
query neurofmSnapshotFiles($datasetId: ID!, $tag: String!) {
  snapshot(datasetId: $datasetId, tag: $tag) {
    id
    files(recursive: true) { id filename size urls }
  }
}
"""


@dataclass(frozen=True)
class OpenNeuroRef:
    """An OpenNeuro dataset and, optionally, a snapshot tag (``None``: the latest)."""

    dataset_id: str
    version: str | None = None

    def __str__(self) -> str:
        return f"openneuro:{self.dataset_id}" + (f"@{self.version}" if self.version else "")


def parse_ref(text: str) -> OpenNeuroRef:
    """Parse ``openneuro:ds002336``, ``openneuro:ds002336@2.0.2`` or ``ds002336/2.0.2``.

    Raises
    ------
    SourceError
        If ``text`` is not an OpenNeuro dataset reference.
    """
    match = _REF.match(text.strip())
    if not match:
        raise SourceError(
            f"{text!r} is not an OpenNeuro reference; expected openneuro:ds<6 digits>[@<tag>], "
            "e.g. openneuro:ds002336 or openneuro:ds002336@2.0.2"
        )
    return OpenNeuroRef(match["id"].lower(), match["version"])


def is_openneuro_ref(text: str) -> bool:
    """True if ``text`` looks like ``openneuro:...`` (a path never starts that way)."""
    return str(text).lower().startswith("openneuro:")


def url_from(url: str | None) -> str:
    """The server URL to use: ``url``, else ``$NEUROFM_OPENNEURO_URL``, else the archive."""
    return (url or os.environ.get(ENV_URL) or PUBLIC_URL).rstrip("/")


# --------------------------------------------------------------------------------------------
# listing
# --------------------------------------------------------------------------------------------

# git-annex keys: BACKEND-sSIZE[-mMTIME][-Sn-Cn]--HASH[.ext]
_ANNEX_KEY = re.compile(r"^(?P<backend>[A-Z0-9]+)-s(?P<size>\d+)(?:-[^-]+)*--(?P<hash>[0-9a-f]+)")
_ANNEX_HASHES = {"SHA256": "sha256", "SHA512": "sha512", "SHA384": "sha384", "SHA224": "sha224"}
_ANNEX_HASHES |= {"SHA1": "sha1", "MD5": "md5"}
_GIT_BLOB = re.compile(r"^[0-9a-f]{40}$")


def expected_digest(file_id: str) -> tuple[str, str] | None:
    """The ``(algorithm, hex digest)`` a file's listing id promises, if it carries one.

    ``"SHA256E-s12--<64 hex>.tsv"`` (a git-annex key) gives ``("sha256", <hex>)`` (likewise
    MD5, SHA-1, SHA-512... backends, with or without the ``E``); a 40-hex id gives
    ``("git-sha1", <hex>)``, the git blob id of the bytes. Any other id gives ``None``.
    """
    file_id = str(file_id)
    match = _ANNEX_KEY.match(file_id)
    if match:
        algorithm = _ANNEX_HASHES.get(match["backend"].removesuffix("E"))
        if algorithm and len(match["hash"]) == 2 * hashlib.new(algorithm).digest_size:
            return algorithm, match["hash"]
        return None
    if _GIT_BLOB.match(file_id):
        return "git-sha1", file_id
    return None


@dataclass(frozen=True)
class FileInfo:
    """One file of a snapshot, with what verification and provenance need."""

    path: str
    size: int | None
    file_id: str
    url: str | None
    digest: tuple[str, str] | None  # (algorithm, hex), see expected_digest

    @property
    def check(self) -> str:
        """How the download is verified: the digest's algorithm, or ``"size"``."""
        return self.digest[0] if self.digest else "size"


@dataclass
class Snapshot:
    """A resolved snapshot: its tag, the server it came from and every file it lists."""

    ref: OpenNeuroRef
    url: str
    tag: str
    files: list[FileInfo]

    @property
    def label(self) -> str:
        return f"openneuro:{self.ref.dataset_id}@{self.tag}"


def _session() -> Any:
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "neurofm (OpenNeuro source)"
    return session


def _graphql(
    session: Any,
    url: str,
    query: str,
    variables: dict[str, str],
    what: str,
    retries: int = 2,
) -> dict[str, Any]:
    """POST one GraphQL query; return its ``data`` or raise a SourceError naming ``what``."""
    import requests

    endpoint = url + GRAPHQL_PATH
    for attempt in range(retries + 1):
        try:
            response = session.post(
                endpoint, json={"query": query, "variables": variables}, timeout=TIMEOUT
            )
        except requests.RequestException as exc:
            if attempt < retries:
                time.sleep(0.5 * 2**attempt)
                continue
            raise SourceError(
                f"{what}: cannot reach the OpenNeuro API at {endpoint} ({type(exc).__name__})"
            ) from None
        if response.status_code in RETRY_STATUS and attempt < retries:
            time.sleep(0.5 * 2**attempt)
            continue
        break
    try:
        body = response.json()
    except ValueError:
        raise SourceError(
            f"{what}: {endpoint} answered HTTP {response.status_code} without JSON; is it an "
            "OpenNeuro server?"
        ) from None
    if not isinstance(body, dict):
        raise SourceError(f"{what}: {endpoint} answered {type(body).__name__}, not a JSON object")
    errors = body.get("errors")
    if errors:
        messages = "; ".join(
            str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors
        )
        raise SourceError(f"{what}: the OpenNeuro API at {endpoint} refused the query: {messages}")
    if response.status_code >= 400:
        raise SourceError(f"{what}: {endpoint} answered HTTP {response.status_code}")
    data = body.get("data")
    return data if isinstance(data, dict) else {}


def _tag_of(snapshot_id: Any) -> str:
    # snapshot ids are "<dataset>:<tag>"
    return str(snapshot_id).split(":", 1)[-1]


def resolve(ref: OpenNeuroRef | str, url: str | None = None, retries: int = 2) -> Snapshot:
    """Find the snapshot ``ref`` names on the server and list its files.

    Parameters
    ----------
    ref : OpenNeuroRef or str
        ``openneuro:ds<id>[@<tag>]``; without a tag, the dataset's latest snapshot.
    url : str, optional
        Server URL (default ``$NEUROFM_OPENNEURO_URL`` or https://openneuro.org).
    retries : int
        How many times a query that timed out or met a 5xx answer is sent again.

    Returns
    -------
    Snapshot
        The tag and every file the snapshot lists (directories left out).

    Raises
    ------
    SourceError
        Unknown dataset or tag, a dataset without a published snapshot, an unreachable server,
        or a listing that is not what the OpenNeuro API returns.
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    url = url_from(url)
    session = _session()
    data = _graphql(session, url, SNAPSHOTS_QUERY, {"datasetId": ref.dataset_id}, str(ref), retries)
    dataset = data.get("dataset")
    if not isinstance(dataset, dict):
        raise SourceError(f"{ref}: no dataset {ref.dataset_id} on {url}")
    snapshots = [s for s in dataset.get("snapshots") or [] if isinstance(s, dict)]
    tags = [_tag_of(s.get("id")) for s in snapshots]
    if ref.version is None:
        latest = dataset.get("latestSnapshot") or {}
        if not latest.get("id"):
            raise SourceError(f"{ref}: dataset {ref.dataset_id} has no published snapshot")
        tag = _tag_of(latest["id"])
    elif ref.version not in tags:
        raise SourceError(
            f"{ref}: no snapshot {ref.version!r} of dataset {ref.dataset_id} on {url} "
            f"(its snapshots: {', '.join(tags) or 'none'})"
        )
    else:
        tag = ref.version
    variables = {"datasetId": ref.dataset_id, "tag": tag}
    data = _graphql(session, url, FILES_QUERY, variables, str(ref), retries)
    snapshot = data.get("snapshot")
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("files"), list):
        raise SourceError(f"{ref}: the API at {url} returned no file listing for snapshot {tag}")
    files = [_file_info(entry, ref, tag) for entry in snapshot["files"]]
    return Snapshot(ref, url, tag, [f for f in files if f is not None])


def _file_info(entry: Any, ref: OpenNeuroRef, tag: str) -> FileInfo | None:
    label = f"openneuro:{ref.dataset_id}@{tag}"
    if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
        raise SourceError(f"{label}: a file listing entry has no filename: {entry!r}")
    if entry.get("directory"):
        return None
    size = entry.get("size")
    if isinstance(size, str) and size.isdigit():  # a BigInt scalar may travel as a string
        size = int(size)
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise SourceError(f"{label}: {entry['filename']!r}: size {size!r} is not a byte count")
    urls = [u for u in entry.get("urls") or [] if isinstance(u, str) and u]
    file_id = str(entry.get("id") or "")
    url = urls[0] if urls else None
    return FileInfo(entry["filename"], size, file_id, url, expected_digest(file_id))


def _safe_relpath(path: str, label: str) -> PurePosixPath:
    """Refuse listing paths that could write outside the target folder."""
    windows, posix = PureWindowsPath(path), PurePosixPath(path)
    why = None
    if not path or not posix.parts:
        why = "it is empty"
    elif windows.anchor or posix.anchor:  # /x, C:x, \\server\x
        why = "it is absolute"
    elif ".." in posix.parts or ".." in windows.parts:
        why = "it contains a '..' part"
    elif "\\" in path or "\x00" in path:
        why = "it contains a backslash or a NUL byte"
    if why is not None:
        raise SourceError(
            f"{label}: refusing file path {path!r}: {why}, so it could write outside the "
            "target folder"
        )
    return posix


def select(snapshot: Snapshot, include: str | Sequence[str] | None = None) -> list[FileInfo]:
    """The files of ``snapshot`` to pull: every one, or those matching glob ``include`` patterns.

    Patterns match the whole path (``fnmatch``: ``*`` crosses ``/``, so ``sub-xp101/*`` is a
    subject's folder). Files at the dataset's root (``dataset_description.json``,
    ``participants.tsv``, ``task-*_events.tsv``...) always come along: BIDS readers need them
    and sidecars there are inherited by every run. Hidden files (a path part starting with
    ``.``) are skipped, as BIDS reserves them. Every selected path is checked first, so a
    hostile listing is refused before anything is written.

    Raises
    ------
    SourceError
        A hostile path, or patterns that match nothing.
    """
    patterns = [include] if isinstance(include, str) else list(include or [])
    chosen, matched = [], False
    for info in snapshot.files:
        rel = _safe_relpath(info.path, snapshot.label)
        if any(part.startswith(".") for part in rel.parts):
            continue
        hit = any(fnmatch.fnmatchcase(info.path, p) for p in patterns)
        matched |= hit
        if not patterns or hit or len(rel.parts) == 1:
            chosen.append(info)
    if patterns and not matched:
        raise SourceError(f"{snapshot.label}: no file matches {patterns!r}")
    if not chosen:
        raise SourceError(f"{snapshot.label}: the snapshot lists no files")
    return chosen


# --------------------------------------------------------------------------------------------
# pull
# --------------------------------------------------------------------------------------------


@dataclass
class PullReport:
    """What a pull did, file by file."""

    dataset: str
    version: str
    to: Path
    downloaded: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # present and verified
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file path, reason)
    bytes_transferred: int = 0
    files: dict[str, FileInfo] = field(default_factory=dict)  # local path -> file

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def label(self) -> str:
        return f"openneuro:{self.dataset}@{self.version}"


def _hashers(info: FileInfo) -> dict[str, Any]:
    hashers: dict[str, Any] = {"sha256": hashlib.sha256()}
    if info.digest is not None:
        algorithm = info.digest[0]
        if algorithm == "git-sha1":
            if info.size is None:
                return hashers
            hashers[algorithm] = hashlib.sha1(b"blob %d\0" % info.size)
        elif algorithm not in hashers:
            hashers[algorithm] = hashlib.new(algorithm)
    return hashers


def _digests(path: Path, info: FileInfo) -> dict[str, str]:
    """sha256 and the listing's digest of a file, in one pass."""
    hashers = _hashers(info)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            for h in hashers.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashers.items()}


def _matches(info: FileInfo, size: int, digests: dict[str, str]) -> bool:
    if info.size is not None and size != info.size:
        return False
    if info.digest is None:
        return True
    algorithm, expected = info.digest
    return digests.get(algorithm, expected) == expected


class _Manifest:
    """Per-folder record of verified files (size, mtime, id), so re-runs skip re-hashing."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST
        try:
            self.entries: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def verified(self, rel: str, info: FileInfo, local: Path) -> bool:
        entry = self.entries.get(rel)
        if not local.is_file() or not isinstance(entry, dict):
            return False
        stat = local.stat()
        return (
            entry.get("id") == info.file_id
            and entry.get("size") == stat.st_size
            and (info.size is None or info.size == stat.st_size)
            and entry.get("mtime_ns") == stat.st_mtime_ns
        )

    def record(self, rel: str, info: FileInfo, local: Path, sha256: str, label: str) -> None:
        stat = local.stat()
        self.entries[rel] = {
            "id": info.file_id,
            "sha256": sha256,
            "checked": info.check,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "snapshot": label,
        }
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))


def pull(
    ref: OpenNeuroRef | str,
    to: str | os.PathLike[str],
    *,
    include: str | Sequence[str] | None = None,
    url: str | None = None,
    retries: int = 2,
    progress: bool = True,
) -> PullReport:
    """Download an OpenNeuro snapshot's files into ``to``, verified, resuming partial files.

    Parameters
    ----------
    ref : OpenNeuroRef or str
        ``openneuro:ds<id>[@<tag>]``; without a tag, the latest snapshot.
    to : str or Path
        Target folder; files keep their dataset paths below it (it becomes the BIDS root).
    include : str or sequence of str, optional
        Glob pattern(s) on file paths, e.g. ``"sub-xp101/*"`` (root-level files always come).
    url : str, optional
        OpenNeuro server URL (default ``$NEUROFM_OPENNEURO_URL`` or https://openneuro.org).
    retries : int
        How many times a dropped transfer is resumed within this call.
    progress : bool
        Show a byte progress bar.

    Returns
    -------
    PullReport
        Failed files are listed there with their reason (a digest mismatch deletes the file);
        every other file is complete and verified.

    Raises
    ------
    SourceError
        Unknown dataset or tag, a hostile file path, patterns that match nothing, an
        unreachable server.
    """
    from neurofm.progress import progress_bar

    snapshot = resolve(ref, url, retries)
    files = select(snapshot, include)
    to = Path(to)
    report = PullReport(snapshot.ref.dataset_id, snapshot.tag, to)
    to.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(to)
    session = _session()
    unchecked = [f.path for f in files if f.digest is None]
    if unchecked:
        log.info(
            "%s: %d file(s) have no hash in the listing and are checked by size only: %s",
            snapshot.label,
            len(unchecked),
            ", ".join(unchecked[:5]),
        )
    with progress_bar(
        total=sum(f.size or 0 for f in files),
        unit="B",
        unit_scale=True,
        desc=f"pull {snapshot.ref.dataset_id}@{snapshot.tag}",
        disable=not progress,
    ) as bar:
        for info in files:
            rel = info.path
            local = to / rel
            report.files[str(local)] = info
            if manifest.verified(rel, info, local):
                report.skipped.append(local)
                bar.update(info.size or 0)
                continue
            try:
                sent = _download(
                    session, snapshot.label, info, local, manifest, retries, bar.update
                )
            except SourceError as exc:
                report.failed.append((info.path, str(exc)))
                continue
            if sent is None:
                report.skipped.append(local)
            else:
                report.bytes_transferred += sent
                report.downloaded.append(local)
    return report


def _download(
    session: Any,
    label: str,
    info: FileInfo,
    local: Path,
    manifest: _Manifest,
    retries: int,
    advance: Callable[[int], Any],
) -> int | None:
    """Fetch one file into ``local`` (via ``.<name>.partial``), verify it and return the bytes
    sent, or ``None`` when the file was already there and right."""
    import requests

    where = f"{label}: {info.path}"
    if info.url is None:
        raise SourceError(f"{where}: the listing gives no download URL (removed from the dataset?)")
    local.parent.mkdir(parents=True, exist_ok=True)
    if local.is_file() and (info.size is None or local.stat().st_size == info.size):
        # Present but not in the manifest (copied in, or a manifest lost): verify, don't fetch.
        digests = _digests(local, info)
        checkable = info.size is not None or info.digest is not None
        if checkable and _matches(info, local.stat().st_size, digests):
            manifest.record(info.path, info, local, digests["sha256"], label)
            advance(local.stat().st_size)
            return None
    partial = local.with_name(f".{local.name}{PARTIAL_SUFFIX}")
    have = partial.stat().st_size if partial.is_file() else 0
    if info.size is not None and have > info.size:
        partial.unlink()
        have = 0
    advance(have)
    sent = 0
    for attempt in range(retries + 1):
        complete = info.size is not None and have == info.size
        if complete:
            break
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with session.get(info.url, headers=headers, stream=True, timeout=TIMEOUT) as response:
                if response.status_code == 416 and have:  # the partial is not a prefix
                    partial.unlink()
                    advance(-have)
                    have = 0
                    raise requests.HTTPError("HTTP 416 on resume: starting over")
                if response.status_code in RETRY_STATUS:
                    raise requests.HTTPError(f"HTTP {response.status_code}")
                if response.status_code >= 400:
                    raise SourceError(f"{where}: HTTP {response.status_code} from {info.url}")
                mode = "ab"
                if have and response.status_code != 206:  # the server ignored the range
                    advance(-have)
                    have, mode = 0, "wb"
                with open(partial, mode) as fh:
                    for chunk in response.iter_content(DOWNLOAD_CHUNK):
                        fh.write(chunk)
                        have += len(chunk)
                        sent += len(chunk)
                        advance(len(chunk))
            if info.size is None or have == info.size:
                break
            if have > info.size:
                break  # the check below names it
            raise requests.ConnectionError(f"connection closed after {have} bytes")
        except requests.RequestException as exc:  # a dropped link, a timeout, a 5xx
            log.info("%s: transfer interrupted at %d bytes (%s)", where, have, exc)
            if attempt == retries:
                of = f" of {info.size}" if info.size is not None else ""
                raise SourceError(
                    f"{where}: transfer interrupted at {have}{of} bytes ({type(exc).__name__}); "
                    "the partial file is kept, re-run to resume"
                ) from None
            time.sleep(0.2 * 2**attempt)
    if not partial.is_file():
        partial.touch()  # an empty file has no bytes to fetch
    size = partial.stat().st_size
    digests = _digests(partial, info)
    if not _matches(info, size, digests):
        partial.unlink(missing_ok=True)
        if info.size is not None and size != info.size:
            what = f"{size} bytes arrived, the listing says {info.size}"
        else:
            algorithm, expected = info.digest or ("", "")
            what = f"{algorithm} {digests.get(algorithm)} != {expected} from the listing"
        raise DigestMismatchError(
            f"{where}: downloaded bytes do not match the snapshot's listing ({what}); the file "
            "was deleted, re-run to fetch it again"
        )
    os.replace(partial, local)
    manifest.record(info.path, info, local, digests["sha256"], label)
    return sent
