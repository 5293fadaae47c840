"""A local, offline stand-in for the DANDI archive's REST API.

:class:`LocalDandiServer` serves one or more local folders as dandisets over the subset of the
DANDI REST API that the official client (``dandi.dandiapi.DandiAPIClient`` and ``dandi
download``) uses: server info, dandisets, versions, paginated asset listings with ``path`` and
``glob`` filters, asset metadata with digests, and downloads through a 302 redirect to a blob URL
that honours HTTP ``Range`` requests. It runs on a background thread (stdlib
``http.server``), binds 127.0.0.1 on a free port by default, and never touches the network
otherwise.

It exists so that neurofm's DANDI source can be tested offline and the demo can "pull" a
synthetic dandiset. It can also inject faults: :meth:`LocalDandiServer.corrupt` serves wrong bytes
under the original digest and :meth:`LocalDandiServer.drop_connection_after` cuts downloads
mid-file.

Example
-------
>>> from dandi.dandiapi import DandiAPIClient  # doctest: +SKIP
>>> with serve_dandiset("data/synthetic", versions=("draft", "0.240101.0000")) as server:
...     client = DandiAPIClient(api_url=server.api_url)
...     dandiset = client.get_dandiset("000000", "draft")
...     paths = [a.path for a in dandiset.get_assets()]  # doctest: +SKIP

Every regular file under a dandiset's folder is an asset, except the top-level
``dandiset.yaml`` (whose content, if present, seeds the dandiset's metadata) and hidden files or
folders (names starting with ``.``). Every version (the draft and each published version) is a
snapshot of the same folder. Zarr assets are not supported: a ``.zarr`` folder is served as
individual files.
"""

from __future__ import annotations

import copy
import datetime as dt
import fnmatch
import hashlib
import json
import logging
import mimetypes
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from neurofm.testing.http import TrackingHTTPServer

__all__ = [
    "DandisetSpec",
    "LocalDandiServer",
    "RequestRecord",
    "serve_dandiset",
]

logger = logging.getLogger(__name__)

#: Page size used when neither the server nor the request sets one (as on the real archive).
DEFAULT_PAGE_SIZE = 100
#: Largest ``page_size`` a request may ask for.
MAX_PAGE_SIZE = 1000

_NAMESPACE = uuid.UUID("3b0c56a4-8f55-4e0e-9f3d-6a1f1f6b2d7e")
_DANDISET_ID_RE = re.compile(r"^[0-9]{6}$")
_PUBLISHED_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
_VERSION_DATE_RE = re.compile(r"^[0-9]+\.([0-9]{6})\.([0-9]{4})$")
_CHUNK = 1 << 20
_SERVER_VERSION = "0.0.0+neurofm.local"
_ENCODINGS = {
    ".nwb": "application/x-nwb",
    ".json": "application/json",
    ".yaml": "application/x-yaml",
    ".yml": "application/x-yaml",
    ".tsv": "text/tab-separated-values",
    ".h5": "application/x-hdf5",
    ".hdf5": "application/x-hdf5",
}
_NOT_FOUND = {"detail": "Not found."}


# --------------------------------------------------------------------------------------------
# public records
# --------------------------------------------------------------------------------------------


@dataclass
class DandisetSpec:
    """What to serve as one dandiset.

    Parameters
    ----------
    folder : path-like
        Folder whose files are the assets (see the module docstring for what is skipped).
    identifier : str, optional
        Six-digit dandiset id, e.g. ``"000000"``. ``None`` takes the key the spec is given under
        in :class:`LocalDandiServer`'s mapping.
    published_versions : list of str
        Published version ids besides the always-present ``"draft"``, in DANDI's
        ``MAJOR.YYMMDD.HHMM`` form (e.g. ``"0.240101.0000"``; the date and time become the
        version's creation time). Each is a snapshot of the same folder.
    name : str, optional
        Title of the dandiset; defaults to ``name`` in ``folder/dandiset.yaml``, else a generic
        title.
    description : str, optional
        Description; defaults to ``description`` in ``folder/dandiset.yaml``.
    contact_person : str, optional
        The dandiset's contact person (``"Last, First"``); defaults to the first contributor of
        ``dandiset.yaml`` with the ``dcite:ContactPerson`` role.
    """

    folder: str | os.PathLike[str]
    identifier: str | None = None
    published_versions: list[str] = field(default_factory=list)
    name: str | None = None
    description: str | None = None
    contact_person: str | None = None


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered.

    Attributes
    ----------
    method : str
        ``"GET"``, ``"HEAD"``, ...
    path : str
        URL path without the query string, as received (e.g. ``"/api/info/"``).
    query : dict of str to str
        Decoded query parameters (the last value wins when a name repeats).
    range : str or None
        The raw ``Range`` header, if any.
    status : int
        HTTP status sent.
    bytes_sent : int
        Body bytes actually written (less than the advertised length when the connection was
        dropped or the client closed early).
    """

    method: str
    path: str
    query: dict[str, str]
    range: str | None
    status: int
    bytes_sent: int


# --------------------------------------------------------------------------------------------
# the served content
# --------------------------------------------------------------------------------------------

_DIGEST_CACHE: dict[tuple[str, int, int], tuple[str, str]] = {}
_DIGEST_LOCK = threading.Lock()


def _file_digests(path: Path, size: int, mtime_ns: int) -> tuple[str, str]:
    """Return ``(dandi_etag, sha256)`` of a file, cached by path, size and mtime."""
    from dandischema.digests.dandietag import DandiETag

    key = (str(path), size, mtime_ns)
    with _DIGEST_LOCK:
        cached = _DIGEST_CACHE.get(key)
    if cached is not None:
        return cached
    etag = DandiETag(size)
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for part in etag.get_parts():
            block = f.read(part.size)
            if len(block) != part.size:
                raise OSError(f"{path}: changed size while its digest was computed")
            etag.update(block)
            sha.update(block)
    result = (etag.as_str(), sha.hexdigest())
    with _DIGEST_LOCK:
        _DIGEST_CACHE[key] = result
    return result


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _from_ns(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc)


def _encoding_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in _ENCODINGS:
        return _ENCODINGS[suffix]
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


@dataclass
class _Asset:
    path: str
    file: Path
    size: int
    mtime: dt.datetime
    etag: str
    sha256: str
    blob_id: str


@dataclass
class _Version:
    identifier: str
    created: dt.datetime
    modified: dt.datetime
    published: bool


@dataclass
class _Dandiset:
    identifier: str
    folder: Path
    name: str
    description: str
    contact_person: str
    yaml_metadata: dict[str, Any]
    assets: list[_Asset]
    by_path: dict[str, _Asset]
    created: dt.datetime
    modified: dt.datetime
    versions: dict[str, _Version]  # draft first, then published by creation time
    most_recent_published: str | None

    @property
    def size(self) -> int:
        return sum(a.size for a in self.assets)


def _asset_id(dandiset_id: str, version: str, path: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"asset:{dandiset_id}:{version}:{path}"))


def _walk_assets(folder: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            full = Path(root) / name
            rel = full.relative_to(folder).as_posix()
            if rel == "dandiset.yaml" or not full.is_file():
                continue
            found.append((rel, full))
    return found


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        logger.warning("%s: not readable as YAML (%s); ignoring it", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _yaml_contact(meta: Mapping[str, Any]) -> str | None:
    for person in meta.get("contributor") or []:
        if isinstance(person, dict) and "dcite:ContactPerson" in (person.get("roleName") or []):
            name = person.get("name")
            if isinstance(name, str):
                return name
    return None


def _version_time(version: str, fallback: dt.datetime) -> dt.datetime:
    m = _VERSION_DATE_RE.match(version)
    if m:
        try:
            return dt.datetime.strptime(m.group(1) + m.group(2), "%y%m%d%H%M").replace(
                tzinfo=dt.timezone.utc
            )
        except ValueError:
            pass
    return fallback


def _resolve_spec(key: str, value: str | os.PathLike[str] | DandisetSpec) -> DandisetSpec:
    spec = value if isinstance(value, DandisetSpec) else DandisetSpec(folder=value)
    identifier = spec.identifier if spec.identifier is not None else key
    if identifier != key:
        raise ValueError(f"dandiset {key!r}: its DandisetSpec.identifier is {identifier!r}")
    if not _DANDISET_ID_RE.match(identifier):
        raise ValueError(f"dandiset id {identifier!r}: expected six digits, e.g. '000000'")
    published = list(spec.published_versions)
    for v in published:
        if not _PUBLISHED_VERSION_RE.match(v):
            raise ValueError(
                f"dandiset {identifier}: published version {v!r}: expected "
                "MAJOR.YYMMDD.HHMM, e.g. '0.240101.0000'"
            )
    if len(set(published)) != len(published):
        raise ValueError(f"dandiset {identifier}: published_versions has duplicates")
    folder = Path(spec.folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dandiset {identifier}: folder {folder} does not exist")
    return DandisetSpec(
        folder=folder.resolve(),
        identifier=identifier,
        published_versions=published,
        name=spec.name,
        description=spec.description,
        contact_person=spec.contact_person,
    )


def _scan(spec: DandisetSpec) -> _Dandiset:
    folder = Path(spec.folder)
    identifier = str(spec.identifier)
    meta = _load_yaml(folder / "dandiset.yaml")
    assets: list[_Asset] = []
    for rel, full in _walk_assets(folder):
        st = full.stat()
        etag, sha = _file_digests(full, st.st_size, st.st_mtime_ns)
        blob = str(uuid.uuid5(_NAMESPACE, f"blob:{identifier}:{rel}:{etag}"))
        assets.append(_Asset(rel, full, st.st_size, _from_ns(st.st_mtime_ns), etag, sha, blob))
    file_times = [a.mtime for a in assets] or [_from_ns(folder.stat().st_mtime_ns)]
    published = []
    for v in spec.published_versions:
        when = _version_time(v, max(file_times))
        published.append(_Version(v, when, when, published=True))
    published.sort(key=lambda v: (v.created, v.identifier))
    # The draft exists from the dandiset's creation (the earliest time known) and was last
    # modified when its newest file was.
    created = min(file_times + [v.created for v in published])
    modified = max(file_times + [v.created for v in published])
    versions = {"draft": _Version("draft", created, max(file_times), published=False)}
    for v in published:
        versions[v.identifier] = v
    name = spec.name or meta.get("name") or f"Local dandiset {identifier}"
    description = (
        spec.description
        or meta.get("description")
        or (f"Files of the local folder {folder.name!r}, served by neurofm's LocalDandiServer.")
    )
    contact = spec.contact_person or _yaml_contact(meta) or "Server, Local"
    return _Dandiset(
        identifier=identifier,
        folder=folder,
        name=str(name),
        description=str(description),
        contact_person=contact,
        yaml_metadata=meta,
        assets=assets,
        by_path={a.path: a for a in assets},
        created=created,
        modified=modified,
        versions=versions,
        most_recent_published=published[-1].identifier if published else None,
    )


@dataclass
class _Index:
    dandisets: dict[str, _Dandiset]
    assets: dict[str, tuple[_Dandiset, str, _Asset]]  # asset id -> (dandiset, version, asset)
    blobs: dict[str, tuple[_Dandiset, _Asset]]


def _build_index(specs: Iterable[DandisetSpec]) -> _Index:
    dandisets = {str(s.identifier): _scan(s) for s in specs}
    assets: dict[str, tuple[_Dandiset, str, _Asset]] = {}
    blobs: dict[str, tuple[_Dandiset, _Asset]] = {}
    for d in dandisets.values():
        for a in d.assets:
            blobs[a.blob_id] = (d, a)
            for v in d.versions:
                assets[_asset_id(d.identifier, v, a.path)] = (d, v, a)
    return _Index(dandisets, assets, blobs)


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


class LocalDandiServer:
    """Serve local folders as dandisets over the DANDI REST API (offline, thread-based).

    Parameters
    ----------
    dandisets : mapping of str to path-like or DandisetSpec
        Dandiset id (six digits) to the folder to serve, or to a :class:`DandisetSpec` for
        published versions and names.
    host : str
        IPv4 address to bind (default loopback only).
    port : int
        Port to bind; 0 picks a free one.
    page_size : int, optional
        Page size of paginated listings when the request gives none (default 100, as on the
        archive).

    Attributes
    ----------
    api_url : str
        ``"http://HOST:PORT/api"``, once started. Pass it as
        ``DandiAPIClient(api_url=...)`` or as ``DandiInstance(name=..., gui=None, api=...)``.
    requests : list of RequestRecord
        Every request answered so far, oldest first (a copy).

    Notes
    -----
    Digests (``dandi:dandi-etag`` and ``dandi:sha2-256``) are computed once per file when the
    server starts (cached across servers by path, size and mtime). Call :meth:`refresh` after
    changing the folders to rescan them. Files are read from disk on every download, so editing
    a file after start serves the new bytes under the old digest.

    Examples
    --------
    >>> with LocalDandiServer({"000000": "data/synthetic"}) as server:  # doctest: +SKIP
    ...     print(server.api_url)
    http://127.0.0.1:54321/api
    """

    def __init__(
        self,
        dandisets: Mapping[str, str | os.PathLike[str] | DandisetSpec],
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int | None = None,
    ) -> None:
        if not dandisets:
            raise ValueError("LocalDandiServer needs at least one dandiset to serve")
        if page_size is not None and not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size: expected 1..{MAX_PAGE_SIZE}, got {page_size}")
        self._specs = [_resolve_spec(str(k), v) for k, v in dandisets.items()]
        self.host = host
        self.port = port
        self._requested_port = port
        self.page_size = page_size or DEFAULT_PAGE_SIZE
        # one lock for all mutable state; a Condition so readers can wait for requests in flight
        self._lock = threading.Condition()
        self._inflight = 0
        self._index: _Index | None = None
        self._httpd: TrackingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._requests: list[RequestRecord] = []
        self._served: dict[tuple[str, str], int] = {}
        self._corrupt: set[tuple[str, str]] = set()
        self._drops: dict[tuple[str, str], list[int]] = {}  # key -> [n_bytes, times left]

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalDandiServer:
        """Scan the folders, compute digests, bind and serve on a background thread.

        Returns
        -------
        LocalDandiServer
            ``self``. Starting a running server does nothing.
        """
        if self._httpd is not None:
            return self
        self._index = _build_index(self._specs)
        httpd = TrackingHTTPServer((self.host, self._requested_port), _Handler, self)
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"LocalDandiServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.debug("LocalDandiServer serving %s at %s", list(self._index.dandisets), self.api_url)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and free the port. Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def refresh(self) -> None:
        """Rescan the folders (new, removed or changed files) while running."""
        index = _build_index(self._specs)
        with self._lock:
            self._index = index

    def __enter__(self) -> LocalDandiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.api_url if self._httpd is not None else "stopped"
        ids = [s.identifier for s in self._specs]
        return f"LocalDandiServer({ids}, {state})"

    # ---- information -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``"http://HOST:PORT"`` of the running server."""
        if self._httpd is None:
            raise RuntimeError("LocalDandiServer is not started: call start() or use `with`")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``"http://HOST:PORT/api"`` of the running server."""
        return self.base_url + "/api"

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, oldest first (a copy).

        Requests being answered are waited for (up to 5 s), so a response the caller has just
        read is always in the list.
        """
        with self._lock:
            self._settle()
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests (byte counters are kept)."""
        with self._lock:
            self._settle()
            self._requests.clear()

    def bytes_served(self, asset_path: str | None = None) -> int:
        """Body bytes of asset content sent so far.

        Parameters
        ----------
        asset_path : str, optional
            Only this asset's bytes (in any dandiset and version); all assets when omitted.

        Returns
        -------
        int
            Bytes written to clients (HEAD requests send none).
        """
        with self._lock:
            self._settle()
            return sum(n for (_, p), n in self._served.items() if asset_path in (None, p))

    def asset_id(
        self, asset_path: str, version: str = "draft", dandiset_id: str | None = None
    ) -> str:
        """Return the (deterministic) asset id of ``asset_path`` in a version.

        Raises
        ------
        KeyError
            If there is no such asset or version.
        """
        key = self._key(asset_path, dandiset_id)
        d = self._get_index().dandisets[key[0]]
        if version not in d.versions:
            raise KeyError(f"dandiset {d.identifier} has no version {version!r}")
        return _asset_id(d.identifier, version, asset_path)

    # ---- faults ----------------------------------------------------------------------------

    def corrupt(self, asset_path: str, dandiset_id: str | None = None) -> None:
        """Serve wrong bytes for an asset while its advertised digests stay the original ones.

        The content keeps its size; the byte at offset ``size // 2`` is inverted, in every
        version and for every (range) request that covers it, until :meth:`clear_faults`.

        Parameters
        ----------
        asset_path : str
            Asset path, relative and POSIX (e.g. ``"sub-S0/sub-S0_ses-1_ecephys.nwb"``).
        dandiset_id : str, optional
            Needed only when several dandisets have an asset at this path.

        Raises
        ------
        KeyError
            If no served dandiset has this asset.
        ValueError
            If the asset is empty (there is no byte to change).
        """
        key = self._key(asset_path, dandiset_id)
        if self._get_index().dandisets[key[0]].by_path[asset_path].size == 0:
            raise ValueError(f"{asset_path}: an empty asset cannot be corrupted")
        with self._lock:
            self._corrupt.add(key)

    def drop_connection_after(
        self, asset_path: str, n_bytes: int, times: int = 1, dandiset_id: str | None = None
    ) -> None:
        """Close the connection mid-download after ``n_bytes`` body bytes, ``times`` times.

        The response still advertises the full ``Content-Length``, so the client sees a
        truncated body. Each response of the asset's content longer than ``n_bytes`` is cut
        (and uses up one time); shorter responses and HEAD requests are served whole. After
        ``times`` cuts the asset is served normally again.

        Parameters
        ----------
        asset_path : str
            Asset path, relative and POSIX.
        n_bytes : int
            Body bytes sent before the connection is closed (>= 0), counted from the start of
            each response (so a resumed ``Range`` request is cut ``n_bytes`` after its start).
        times : int
            How many responses to cut (>= 1).
        dandiset_id : str, optional
            Needed only when several dandisets have an asset at this path.
        """
        if n_bytes < 0 or times < 1:
            raise ValueError(f"n_bytes must be >= 0 and times >= 1, got {n_bytes}, {times}")
        key = self._key(asset_path, dandiset_id)
        with self._lock:
            self._drops[key] = [int(n_bytes), int(times)]

    def clear_faults(self) -> None:
        """Undo every :meth:`corrupt` and :meth:`drop_connection_after`."""
        with self._lock:
            self._corrupt.clear()
            self._drops.clear()

    # ---- internals -------------------------------------------------------------------------

    def _get_index(self) -> _Index:
        with self._lock:
            index = self._index
        if index is None:
            index = _build_index(self._specs)
            with self._lock:
                self._index = self._index or index
                index = self._index
        return index

    def _key(self, asset_path: str, dandiset_id: str | None) -> tuple[str, str]:
        index = self._get_index()
        if dandiset_id is not None:
            d = index.dandisets.get(dandiset_id)
            if d is None:
                raise KeyError(f"no dandiset {dandiset_id!r} is served")
            if asset_path not in d.by_path:
                raise KeyError(f"dandiset {dandiset_id} has no asset {asset_path!r}")
            return (dandiset_id, asset_path)
        owners = [d.identifier for d in index.dandisets.values() if asset_path in d.by_path]
        if not owners:
            raise KeyError(f"no served dandiset has an asset {asset_path!r}")
        if len(owners) > 1:
            raise ValueError(f"{asset_path!r} is in dandisets {owners}: pass dandiset_id")
        return (owners[0], asset_path)

    def _settle(self, timeout: float = 5.0) -> None:
        """Wait (holding ``_lock``) until no request is being answered, or ``timeout``."""
        self._lock.wait_for(lambda: self._inflight == 0, timeout=timeout)

    def _begin(self) -> None:
        with self._lock:
            self._inflight += 1

    def _record(self, rec: RequestRecord, served_key: tuple[str, str] | None) -> None:
        with self._lock:
            self._inflight -= 1
            self._lock.notify_all()
            self._requests.append(rec)
            if served_key is not None and rec.bytes_sent:
                self._served[served_key] = self._served.get(served_key, 0) + rec.bytes_sent

    def _faults_for(self, key: tuple[str, str], length: int) -> tuple[bool, int | None]:
        """Return (corrupted?, cut after n bytes or None) for one response of ``length``."""
        with self._lock:
            corrupted = key in self._corrupt
            drop = self._drops.get(key)
            cut = None
            if drop is not None and drop[0] < length:
                cut = drop[0]
                drop[1] -= 1
                if drop[1] <= 0:
                    del self._drops[key]
        return corrupted, cut


def serve_dandiset(
    folder: str | os.PathLike[str],
    dandiset_id: str = "000000",
    versions: Sequence[str] = ("draft",),
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    page_size: int | None = None,
) -> LocalDandiServer:
    """Start a :class:`LocalDandiServer` serving one folder as one dandiset.

    Parameters
    ----------
    folder : path-like
        The dandiset's folder.
    dandiset_id : str
        Six-digit id.
    versions : sequence of str
        Versions to serve; ``"draft"`` is always served, other entries are published versions
        (``"0.240101.0000"``).
    name : str, optional
        Title; defaults to the one in ``folder/dandiset.yaml``.
    host, port, page_size
        As for :class:`LocalDandiServer`.

    Returns
    -------
    LocalDandiServer
        Already started; stop it with :meth:`LocalDandiServer.stop` or use it in ``with``.
    """
    spec = DandisetSpec(
        folder=folder,
        identifier=dandiset_id,
        published_versions=[v for v in versions if v != "draft"],
        name=name,
    )
    server = LocalDandiServer({dandiset_id: spec}, host=host, port=port, page_size=page_size)
    return server.start()


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _HTTPError(Exception):
    def __init__(self, status: int, detail: str = "Not found.") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), name)
    for p, name in [
        (r"^/server-info/?$", "info"),
        (r"^/api/info/?$", "info"),
        (r"^/api/dandisets/?$", "dandisets"),
        (r"^/api/dandisets/(?P<d>[^/]+)/?$", "dandiset"),
        (r"^/api/dandisets/(?P<d>[^/]+)/versions/?$", "versions"),
        (r"^/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/?$", "version"),
        (r"^/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/info/?$", "version_info"),
        (r"^/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/assets/?$", "assets"),
        (r"^/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/assets/(?P<a>[^/]+)/?$", "asset"),
        (
            r"^/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/assets/(?P<a>[^/]+)/info/?$",
            "asset_info",
        ),
        (
            r"^/api/dandisets/(?P<d>[^/]+)/versions/(?P<v>[^/]+)/assets/(?P<a>[^/]+)/download/?$",
            "download",
        ),
        (r"^/api/assets/(?P<a>[^/]+)/?$", "asset"),
        (r"^/api/assets/(?P<a>[^/]+)/info/?$", "asset_info"),
        (r"^/api/assets/(?P<a>[^/]+)/download/?$", "download"),
        (r"^/blobs/(?P<b>[^/]+)/?$", "blob"),
    ]
]


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the inclusive byte range asked for, None for the whole file.

    Raises ``_HTTPError(416)`` when the range is well-formed but unsatisfiable. Malformed or
    multi-range headers are ignored (the whole file is sent), as RFC 9110 allows.
    """
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise _HTTPError(416, "Requested range not satisfiable.")
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size:
        raise _HTTPError(416, "Requested range not satisfiable.")
    if end < start:
        return None
    return start, min(end, size - 1)


class _Handler(BaseHTTPRequestHandler):
    server: TrackingHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "neurofm-LocalDandiServer"
    timeout = 60

    # ---- logging: never stderr -------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    # ---- entry points ----------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _not_allowed(self) -> None:
        self.server.owner._begin()
        self.close_connection = True
        self._status, self._sent = 405, 0
        try:
            self._send_json(405, {"detail": f'Method "{self.command}" not allowed.'}, head=False)
        except OSError:
            pass
        finally:
            self._finish_record(None)

    do_POST = do_PUT = do_PATCH = do_DELETE = _not_allowed

    # ---- routing ---------------------------------------------------------------------------

    def _dispatch(self, head: bool) -> None:
        self.server.owner._begin()  # before any byte of the answer is sent
        self._status, self._sent = 0, 0
        served_key: tuple[str, str] | None = None
        try:
            split = urlsplit(self.path)
            self._url_path = split.path
            self._query_items = parse_qsl(split.query, keep_blank_values=True)
            self._query = dict(self._query_items)
            for pattern, name in _ROUTES:
                m = pattern.match(split.path)
                if m:
                    served_key = getattr(self, f"_route_{name}")(head=head, **m.groupdict())
                    break
            else:
                raise _HTTPError(404)
        except _HTTPError as exc:
            self._send_json(exc.status, {"detail": exc.detail}, head=head)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
        except Exception:
            logger.exception("LocalDandiServer: error answering %s %s", self.command, self.path)
            self.close_connection = True
            if not self._status:
                self._send_json(500, {"detail": "Internal server error."}, head=head)
        finally:
            self._finish_record(served_key)

    def _finish_record(self, served_key: tuple[str, str] | None) -> None:
        rec = RequestRecord(
            method=self.command,
            path=getattr(self, "_url_path", urlsplit(self.path).path),
            query=dict(getattr(self, "_query", {})),
            range=self.headers.get("Range"),
            status=self._status,
            bytes_sent=self._sent,
        )
        self.server.owner._record(rec, served_key)

    # ---- helpers ---------------------------------------------------------------------------

    @property
    def _index(self) -> _Index:
        return self.server.owner._get_index()

    def _base(self) -> str:
        host = self.headers.get("Host") or f"{self.server.owner.host}:{self.server.owner.port}"
        return f"http://{host}"

    def _send_json(self, status: int, obj: Any, head: bool) -> None:
        body = json.dumps(obj).encode("utf-8")
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self._sent = len(body)

    def _dandiset(self, d: str) -> _Dandiset:
        found = self._index.dandisets.get(d)
        if found is None:
            raise _HTTPError(404)
        return found

    def _version(self, d: str, v: str) -> tuple[_Dandiset, _Version]:
        ds = self._dandiset(d)
        ver = ds.versions.get(v)
        if ver is None:
            raise _HTTPError(404)
        return ds, ver

    def _lookup_asset(self, a: str, d: str | None, v: str | None) -> tuple[_Dandiset, str, _Asset]:
        if d is not None and v is not None:
            self._version(d, v)
        found = self._index.assets.get(a)
        if found is None or (d is not None and (found[0].identifier, found[1]) != (d, v)):
            raise _HTTPError(404)
        return found

    def _page(self, items: list[Any]) -> dict[str, Any]:
        q = self._query
        try:
            size = int(q.get("page_size") or self.server.owner.page_size)
        except ValueError:
            raise _HTTPError(400, "page_size: expected an integer.") from None
        size = max(1, min(size, MAX_PAGE_SIZE))
        try:
            page = int(q.get("page") or 1)
        except ValueError:
            raise _HTTPError(404, "Invalid page.") from None
        pages = max(1, -(-len(items) // size))
        if not 1 <= page <= pages:
            raise _HTTPError(404, "Invalid page.")

        def link(k: int) -> str:
            params = [(n, val) for n, val in self._query_items if n != "page"] + [("page", str(k))]
            return f"{self._base()}{self._url_path}?{urlencode(params)}"

        return {
            "count": len(items),
            "next": link(page + 1) if page < pages else None,
            "previous": link(page - 1) if page > 1 else None,
            "results": items[(page - 1) * size : page * size],
        }

    # ---- JSON documents --------------------------------------------------------------------

    def _version_json(self, d: _Dandiset, v: _Version) -> dict[str, Any]:
        return {
            "version": v.identifier,
            "name": d.name,
            "asset_count": len(d.assets),
            "size": d.size,
            "status": "Published" if v.published else "Valid",
            "created": _iso(v.created),
            "modified": _iso(v.modified),
            "dandiset": self._dandiset_core(d),
        }

    @staticmethod
    def _dandiset_core(d: _Dandiset) -> dict[str, Any]:
        return {
            "identifier": d.identifier,
            "created": _iso(d.created),
            "modified": _iso(d.modified),
            "contact_person": d.contact_person,
            "embargo_status": "OPEN",
        }

    def _dandiset_json(self, d: _Dandiset) -> dict[str, Any]:
        out = self._dandiset_core(d)
        mrp = d.most_recent_published
        out["draft_version"] = self._version_json(d, d.versions["draft"])
        out["most_recent_published_version"] = (
            self._version_json(d, d.versions[mrp]) if mrp is not None else None
        )
        return out

    def _version_metadata(self, d: _Dandiset, v: _Version) -> dict[str, Any]:
        from dandischema.consts import DANDI_SCHEMA_VERSION

        meta = copy.deepcopy(d.yaml_metadata)
        meta.update(
            {
                "schemaKey": "Dandiset",
                "schemaVersion": DANDI_SCHEMA_VERSION,
                "identifier": f"DANDI:{d.identifier}",
                "id": f"DANDI:{d.identifier}/{v.identifier}",
                "version": v.identifier,
                "name": d.name,
                "description": d.description,
                "dateCreated": _iso(d.created),
                "assetsSummary": {
                    "schemaKey": "AssetsSummary",
                    "numberOfBytes": d.size,
                    "numberOfFiles": len(d.assets),
                },
            }
        )
        if v.published:
            meta["datePublished"] = _iso(v.created)
        return meta

    @staticmethod
    def _asset_item(d: _Dandiset, version: str, a: _Asset) -> dict[str, Any]:
        return {
            "asset_id": _asset_id(d.identifier, version, a.path),
            "blob": a.blob_id,
            "zarr": None,
            "path": a.path,
            "size": a.size,
            "created": _iso(a.mtime),
            "modified": _iso(a.mtime),
        }

    def _asset_metadata(self, d: _Dandiset, version: str, a: _Asset) -> dict[str, Any]:
        from dandischema.consts import DANDI_SCHEMA_VERSION

        aid = _asset_id(d.identifier, version, a.path)
        base = self._base()
        return {
            "schemaKey": "Asset",
            "schemaVersion": DANDI_SCHEMA_VERSION,
            "id": f"dandiasset:{aid}",
            "identifier": aid,
            "path": a.path,
            "contentSize": a.size,
            "encodingFormat": _encoding_format(a.path),
            "digest": {"dandi:dandi-etag": a.etag, "dandi:sha2-256": a.sha256},
            "blobDateModified": _iso(a.mtime),
            "dateModified": _iso(a.mtime),
            "contentUrl": [f"{base}/api/assets/{aid}/download/", f"{base}/blobs/{a.blob_id}"],
            "access": [{"schemaKey": "AccessRequirements", "status": "dandi:OpenAccess"}],
        }

    # ---- routes (each returns the (dandiset, path) key when it served asset bytes) ----------

    def _route_info(self, head: bool) -> None:
        from dandischema.consts import DANDI_SCHEMA_VERSION

        api = f"{self._base()}/api"
        info = {
            "version": _SERVER_VERSION,
            "schema_version": DANDI_SCHEMA_VERSION,
            "cli-minimal-version": "0.0.0",
            "cli-bad-versions": [],
            "services": {"api": {"url": api}},
        }
        self._send_json(200, info, head)

    def _route_dandisets(self, head: bool) -> None:
        items = [self._dandiset_json(d) for _, d in sorted(self._index.dandisets.items())]
        self._send_json(200, self._page(items), head)

    def _route_dandiset(self, head: bool, d: str) -> None:
        self._send_json(200, self._dandiset_json(self._dandiset(d)), head)

    def _route_versions(self, head: bool, d: str) -> None:
        ds = self._dandiset(d)
        versions = sorted(ds.versions.values(), key=lambda v: (v.created, v.published))
        if self._query.get("order") == "-created":
            versions.reverse()
        self._send_json(200, self._page([self._version_json(ds, v) for v in versions]), head)

    def _route_version(self, head: bool, d: str, v: str) -> None:
        ds, ver = self._version(d, v)
        self._send_json(200, self._version_metadata(ds, ver), head)

    def _route_version_info(self, head: bool, d: str, v: str) -> None:
        ds, ver = self._version(d, v)
        info = self._version_json(ds, ver)
        info.update(
            {
                "asset_validation_errors": [],
                "version_validation_errors": [],
                "metadata": self._version_metadata(ds, ver),
                "contact_person": ds.contact_person,
            }
        )
        self._send_json(200, info, head)

    def _route_assets(self, head: bool, d: str, v: str) -> None:
        ds, ver = self._version(d, v)
        assets = ds.assets
        prefix = self._query.get("path")
        if prefix:
            assets = [a for a in assets if a.path.startswith(prefix)]
        pattern = self._query.get("glob")
        if pattern:
            assets = [a for a in assets if fnmatch.fnmatchcase(a.path, pattern)]
        order = self._query.get("order") or "path"
        field_name = order.lstrip("-")
        if field_name in ("created", "modified"):
            assets = sorted(assets, key=lambda a: (a.mtime, a.path))
        elif field_name == "path":
            assets = sorted(assets, key=lambda a: a.path)
        if order.startswith("-"):
            assets = list(reversed(assets))
        items = [self._asset_item(ds, ver.identifier, a) for a in assets]
        self._send_json(200, self._page(items), head)

    def _route_asset(self, head: bool, a: str, d: str | None = None, v: str | None = None) -> None:
        ds, version, asset = self._lookup_asset(a, d, v)
        self._send_json(200, self._asset_metadata(ds, version, asset), head)

    def _route_asset_info(
        self, head: bool, a: str, d: str | None = None, v: str | None = None
    ) -> None:
        ds, version, asset = self._lookup_asset(a, d, v)
        info = self._asset_item(ds, version, asset)
        info["metadata"] = self._asset_metadata(ds, version, asset)
        self._send_json(200, info, head)

    def _route_download(
        self, head: bool, a: str, d: str | None = None, v: str | None = None
    ) -> None:
        _, _, asset = self._lookup_asset(a, d, v)
        self._status = 302
        self.send_response(302)
        self.send_header("Location", f"{self._base()}/blobs/{asset.blob_id}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route_blob(self, head: bool, b: str) -> tuple[str, str]:
        found = self._index.blobs.get(b)
        if found is None:
            raise _HTTPError(404)
        ds, asset = found
        key = (ds.identifier, asset.path)
        try:
            f = open(asset.file, "rb")  # closed by the `with` below
        except FileNotFoundError:
            raise _HTTPError(404) from None
        with f:
            size = os.fstat(f.fileno()).st_size
            try:
                rng = _parse_range(self.headers.get("Range"), size)
            except _HTTPError:
                self._status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return key
            start, end = rng if rng is not None else (0, size - 1)
            length = max(0, end - start + 1)
            corrupted, cut = (False, None)
            if not head and length:  # decided before answering, so a fault set later waits
                corrupted, cut = self.server.owner._faults_for(key, length)
            self._status = 206 if rng is not None else 200
            self.send_response(self._status)
            self.send_header("Content-Type", _encoding_format(asset.path))
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{asset.etag}"')
            self.send_header("Last-Modified", self.date_time_string(asset.mtime.timestamp()))
            if rng is not None:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if head or length == 0:
                return key
            bad_offset = asset.size // 2 if corrupted else -1
            limit = length if cut is None else cut
            f.seek(start)
            pos = start
            try:
                while self._sent < limit:
                    block = f.read(min(_CHUNK, limit - self._sent))
                    if not block:
                        break
                    if pos <= bad_offset < pos + len(block):
                        i = bad_offset - pos
                        block = block[:i] + bytes([block[i] ^ 0xFF]) + block[i + 1 :]
                    self.wfile.write(block)
                    self._sent += len(block)
                    pos += len(block)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                # The client closed early (e.g. remfile's first, open-ended GET): not an error.
                self.close_connection = True
                return key
            if cut is not None:
                logger.debug("LocalDandiServer: dropping %s after %d bytes", asset.path, cut)
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return key
