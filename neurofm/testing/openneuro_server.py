"""A local, offline stand-in for the OpenNeuro endpoints a download uses.

:class:`LocalOpenNeuroServer` serves local folders (BIDS roots) as OpenNeuro datasets over the
two things a client needs to pull one (what ``openneuro-py`` and
:mod:`neurofm.sources.openneuro` use):

* ``POST /crn/graphql``: the ``dataset(id: ...)`` query (its ``snapshots``, its
  ``latestSnapshot`` with its files) and the ``snapshot(datasetId: ..., tag: ...)`` query (``id``
  and ``files(recursive: true)`` with ``id``, ``key``, ``filename``, ``size``, ``annexed``,
  ``urls``, ``directory``). Arguments may be literals or ``$variables``.
* ``GET``/``HEAD /crn/datasets/<id>/objects/<file id>?filename=<path>`` (the URL form the
  OpenNeuro server gives files that are not exported to S3): the bytes, honouring ``Range``,
  with ``Content-Length``, ``Accept-Ranges`` and an S3-like ``ETag`` (the MD5 of the bytes).
  Each request reads the file whole (test data is small).

It is not a GraphQL server: it finds those two fields in the query text and answers with every
field it knows whatever the selection set asks for (a real server returns only the fields
selected; clients ignore the others). File ids follow the OpenNeuro server: a git-annex key
``SHA256E-s<size>--<sha256><ext>`` for annexed files, the git blob id (SHA-1 over
``b"blob <size>\\0"`` and the bytes) for files kept in git; here text metadata (``.json``,
``.tsv``, ``.bval``, ``.bvec``, ``README``, ``CHANGES``...) is "in git" and everything else
annexed, as OpenNeuro's recommended ``.gitattributes`` does for large and binary files. Every
snapshot tag serves the same folder. ``openneuro-py`` 2026.9.1, its private
``openneuro._download.gql_url`` pointed here, downloads a served dataset whole and by
``include`` (checked once by hand; it is not installed in neurofm's environment).

Faults: :meth:`LocalOpenNeuroServer.corrupt` serves a flipped byte under the original id,
:meth:`LocalOpenNeuroServer.drop_connection_after` cuts downloads mid-file, and
:meth:`LocalOpenNeuroServer.add_listing_entry` lists an extra file under any path (e.g. a
hostile ``../x``). It runs on a background thread (stdlib ``http.server``) bound to 127.0.0.1.

Example
-------
>>> with serve_openneuro("replica/ds002336", "ds002336", tags=("2.0.2",)) as server:
...     pull("openneuro:ds002336@2.0.2", "raw", url=server.url)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from neurofm.testing.http import TrackingHTTPServer

__all__ = ["LocalOpenNeuroServer", "OpenNeuroDatasetSpec", "serve_openneuro"]

logger = logging.getLogger(__name__)

_DATASET_ID = re.compile(r"^ds\d{6}$")
_IN_GIT_SUFFIXES = {".json", ".tsv", ".bval", ".bvec", ".txt", ".md", ".rst"}
_IN_GIT_NAMES = {"README", "CHANGES", "LICENSE", ".bidsignore", ".gitattributes"}
_CHUNK = 1 << 16


@dataclass
class OpenNeuroDatasetSpec:
    """What to serve as one dataset: a folder and its published snapshot tags (oldest first;
    the last is ``latestSnapshot``)."""

    folder: str | os.PathLike[str]
    tags: Sequence[str] = ("1.0.0",)


@dataclass
class _File:
    path: str
    data: Path | bytes  # a file on disk, or bytes (extra listing entries)
    size: int
    file_id: str
    annexed: bool
    md5: str


@dataclass
class _Dataset:
    identifier: str
    folder: Path
    tags: list[str]
    files: dict[str, _File] = field(default_factory=dict)  # path -> file


def _digests(data: bytes | Path, size: int) -> tuple[str, str, str]:
    """(sha256, git blob sha1, md5) of a file's bytes."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    git = hashlib.sha1(b"blob %d\0" % size)
    if isinstance(data, bytes):
        blocks: Any = [data]
    else:
        fh = open(data, "rb")
        blocks = iter(lambda: fh.read(1 << 20), b"")
    try:
        for block in blocks:
            sha.update(block)
            git.update(block)
            md5.update(block)
    finally:
        if not isinstance(data, bytes):
            fh.close()
    return sha.hexdigest(), git.hexdigest(), md5.hexdigest()


def _make_file(path: str, data: Path | bytes) -> _File:
    size = len(data) if isinstance(data, bytes) else data.stat().st_size
    sha, git, md5 = _digests(data, size)
    name = path.rsplit("/", 1)[-1]
    in_git = name in _IN_GIT_NAMES or Path(name).suffix.lower() in _IN_GIT_SUFFIXES
    if in_git:
        return _File(path, data, size, git, False, md5)
    suffixes = "".join(Path(name).suffixes[-2:])
    return _File(path, data, size, f"SHA256E-s{size}--{sha}{suffixes}", True, md5)


def _scan(identifier: str, spec: OpenNeuroDatasetSpec) -> _Dataset:
    folder = Path(spec.folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset {identifier}: folder {folder} does not exist")
    tags = list(spec.tags)
    if not tags or len(set(tags)) != len(tags):
        raise ValueError(f"dataset {identifier}: tags must be non-empty and distinct, got {tags}")
    dataset = _Dataset(identifier, folder, tags)
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            full = Path(root) / name
            if name.startswith(".") or not full.is_file():
                continue
            rel = full.relative_to(folder).as_posix()
            dataset.files[rel] = _make_file(rel, full)
    return dataset


class LocalOpenNeuroServer:
    """Serve local folders as OpenNeuro datasets (GraphQL listing + file downloads), offline.

    Parameters
    ----------
    datasets : mapping of str to path-like or OpenNeuroDatasetSpec
        Dataset id (``ds`` and six digits) to the folder to serve (published as snapshot
        ``1.0.0``), or to an :class:`OpenNeuroDatasetSpec` naming its snapshot tags.
    host : str
        IPv4 address to bind (default loopback only).
    port : int
        Port to bind; 0 picks a free one.

    Attributes
    ----------
    url : str
        ``"http://HOST:PORT"``, once started: the server URL to give a client (its GraphQL
        endpoint is ``url + "/crn/graphql"``).
    """

    def __init__(
        self,
        datasets: Mapping[str, str | os.PathLike[str] | OpenNeuroDatasetSpec],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not datasets:
            raise ValueError("LocalOpenNeuroServer needs at least one dataset to serve")
        self._specs: dict[str, OpenNeuroDatasetSpec] = {}
        for key, value in datasets.items():
            if not _DATASET_ID.match(key):
                raise ValueError(f"dataset id {key!r}: expected 'ds' and six digits")
            spec = value if isinstance(value, OpenNeuroDatasetSpec) else OpenNeuroDatasetSpec(value)
            self._specs[key] = spec
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._datasets: dict[str, _Dataset] = {}
        self._httpd: TrackingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._requests: list[tuple[str, str, int]] = []  # (method, path, bytes sent)
        self._served: dict[tuple[str, str], int] = {}
        self._corrupt: set[tuple[str, str]] = set()
        self._drops: dict[tuple[str, str], list[int]] = {}

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalOpenNeuroServer:
        """Scan the folders (hashing every file), bind and serve on a background thread."""
        if self._httpd is not None:
            return self
        self._datasets = {k: _scan(k, s) for k, s in self._specs.items()}
        httpd = TrackingHTTPServer((self.host, self.port), _Handler, self)
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"LocalOpenNeuroServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port. Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> LocalOpenNeuroServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- information -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``"http://HOST:PORT"`` of the running server."""
        if self._httpd is None:
            raise RuntimeError("LocalOpenNeuroServer is not started: call start() or use `with`")
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """``(method, path, body bytes sent)`` of every request answered so far."""
        with self._lock:
            return list(self._requests)

    def bytes_served(self, path: str | None = None) -> int:
        """File bytes sent so far: of ``path`` (a dataset path), or of every file."""
        with self._lock:
            return sum(n for (_, p), n in self._served.items() if path in (None, p))

    def file_id(self, path: str, dataset_id: str | None = None) -> str:
        """The id the listing gives ``path`` (a git-annex key or a git blob id)."""
        return self._find(path, dataset_id)[1].file_id

    # ---- faults ----------------------------------------------------------------------------

    def corrupt(self, path: str, dataset_id: str | None = None) -> None:
        """Serve ``path`` with its middle byte inverted, under its original id and size."""
        ds, f = self._find(path, dataset_id)
        if f.size == 0:
            raise ValueError(f"{path}: an empty file cannot be corrupted")
        with self._lock:
            self._corrupt.add((ds.identifier, path))

    def drop_connection_after(
        self, path: str, n_bytes: int, times: int = 1, dataset_id: str | None = None
    ) -> None:
        """Close the connection after ``n_bytes`` of a download of ``path``, ``times`` times
        (the response still announces the full length, so the client sees a short body)."""
        if n_bytes < 0 or times < 1:
            raise ValueError(f"n_bytes must be >= 0 and times >= 1, got {n_bytes}, {times}")
        ds, _ = self._find(path, dataset_id)
        with self._lock:
            self._drops[(ds.identifier, path)] = [n_bytes, times]

    def add_listing_entry(
        self, path: str, content: bytes = b"x", dataset_id: str | None = None
    ) -> None:
        """List (and serve) one more file under ``path``, taken as given: ``../escape.txt``,
        ``/etc/x``... for testing that clients refuse hostile paths."""
        ds = self._dataset(dataset_id)
        with self._lock:
            ds.files[path] = _make_file(path, content)

    def clear_faults(self) -> None:
        """Undo every :meth:`corrupt` and :meth:`drop_connection_after`."""
        with self._lock:
            self._corrupt.clear()
            self._drops.clear()

    # ---- internals -------------------------------------------------------------------------

    def _dataset(self, dataset_id: str | None) -> _Dataset:
        if not self._datasets:
            self._datasets = {k: _scan(k, s) for k, s in self._specs.items()}
        if dataset_id is None:
            if len(self._datasets) != 1:
                served = list(self._datasets)
                raise ValueError(f"several datasets are served: pass dataset_id (one of {served})")
            return next(iter(self._datasets.values()))
        if dataset_id not in self._datasets:
            raise KeyError(f"no dataset {dataset_id!r} is served")
        return self._datasets[dataset_id]

    def _find(self, path: str, dataset_id: str | None) -> tuple[_Dataset, _File]:
        ds = self._dataset(dataset_id)
        if path not in ds.files:
            raise KeyError(f"dataset {ds.identifier} has no file {path!r}")
        return ds, ds.files[path]

    def _record(self, method: str, path: str, sent: int, key: tuple[str, str] | None) -> None:
        with self._lock:
            self._requests.append((method, path, sent))
            if key is not None and sent:
                self._served[key] = self._served.get(key, 0) + sent

    def _faults(self, key: tuple[str, str], length: int) -> tuple[bool, int | None]:
        with self._lock:
            drop = self._drops.get(key)
            cut = None
            if drop is not None and drop[0] < length:
                cut = drop[0]
                drop[1] -= 1
                if drop[1] <= 0:
                    del self._drops[key]
            return key in self._corrupt, cut

    # ---- GraphQL ---------------------------------------------------------------------------

    def _file_json(self, ds: _Dataset, f: _File) -> dict[str, Any]:
        url = (
            f"{self.url}/crn/datasets/{ds.identifier}/objects/{quote(f.file_id, safe='')}"
            f"?filename={quote(f.path, safe='')}"
        )
        return {
            "id": f.file_id,
            "key": f.file_id,
            "filename": f.path,
            "size": f.size,
            "annexed": f.annexed,
            "urls": [url],
            "directory": False,
        }

    def _snapshot_json(self, ds: _Dataset, tag: str) -> dict[str, Any]:
        with self._lock:
            files = list(ds.files.values())
        return {
            "id": f"{ds.identifier}:{tag}",
            "tag": tag,
            "files": [self._file_json(ds, f) for f in sorted(files, key=lambda f: f.path)],
        }

    def _graphql(self, body: dict[str, Any]) -> dict[str, Any]:
        query = str(body.get("query") or "")
        variables = body.get("variables") or {}

        def arg(name: str, field_name: str) -> str | None:
            m = re.search(
                rf"(?<![A-Za-z_]){field_name}\s*\([^)]*?\b{name}\s*:\s*"
                r"(?:\"(?P<lit>[^\"]*)\"|\$(?P<var>\w+))",
                query,
            )
            if m is None:
                return None
            return m["lit"] if m["lit"] is not None else variables.get(m["var"])

        data: dict[str, Any] = {}
        errors: list[dict[str, str]] = []
        if re.search(r"(?<![A-Za-z_])snapshot\s*\(", query):
            ds = self._datasets.get(str(arg("datasetId", "snapshot")))
            tag = arg("tag", "snapshot")
            if ds is None or tag not in ds.tags:
                data["snapshot"] = None
                what = f"snapshot {tag!r} of dataset {arg('datasetId', 'snapshot')!r}"
                errors.append({"message": f"{what} not found"})
            else:
                data["snapshot"] = self._snapshot_json(ds, str(tag))
        if re.search(r"(?<![A-Za-z_])dataset\s*\(", query):
            ds = self._datasets.get(str(arg("id", "dataset")))
            if ds is None:
                data["dataset"] = None
            else:
                data["dataset"] = {
                    "id": ds.identifier,
                    "snapshots": [{"id": f"{ds.identifier}:{t}", "tag": t} for t in ds.tags],
                    "latestSnapshot": self._snapshot_json(ds, ds.tags[-1]),
                }
        if not data:
            errors.append({"message": "this stand-in answers only dataset(id:) and snapshot()"})
        return {"data": data, **({"errors": errors} if errors else {})}


def serve_openneuro(
    folder: str | os.PathLike[str],
    dataset_id: str = "ds000001",
    tags: Sequence[str] = ("1.0.0",),
    host: str = "127.0.0.1",
    port: int = 0,
) -> LocalOpenNeuroServer:
    """Start a :class:`LocalOpenNeuroServer` serving one folder as one dataset.

    Returns
    -------
    LocalOpenNeuroServer
        Already started; stop it with :meth:`LocalOpenNeuroServer.stop` or use it in ``with``.
    """
    spec = OpenNeuroDatasetSpec(folder, tuple(tags))
    return LocalOpenNeuroServer({dataset_id: spec}, host=host, port=port).start()


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


_OBJECT = re.compile(r"^/crn/datasets/(?P<ds>[^/]+)/objects/(?P<id>[^/]+)/?$")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """Inclusive range asked for; None for the whole file; ``"416"`` if unsatisfiable."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*", header or "")
    if m is None:
        return None
    start = int(m[1])
    if start >= size:
        return "416"
    end = min(int(m[2]), size - 1) if m[2] else size - 1
    return (start, end) if end >= start else None


class _Handler(BaseHTTPRequestHandler):
    server: TrackingHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "neurofm-LocalOpenNeuroServer"
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path.rstrip("/") != "/crn/graphql":
            self._json(404, {"error": "not found"})
        else:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._json(400, {"errors": [{"message": "the body is not JSON"}]})
            else:
                self._json(200, self.server.owner._graphql(body if isinstance(body, dict) else {}))
        self.server.owner._record("POST", path, 0, None)

    def do_GET(self) -> None:
        self._object(head=False)

    def do_HEAD(self) -> None:
        self._object(head=True)

    def _object(self, head: bool) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        m = _OBJECT.match(split.path)
        ds = owner._datasets.get(m["ds"]) if m else None
        filename = (parse_qs(split.query).get("filename") or [""])[0]
        f = ds.files.get(filename) if ds is not None else None
        if ds is None or f is None or unquote(m["id"]) != f.file_id:
            self._send(404, b'{"error": "not found"}', "application/json", head)
            owner._record(self.command, split.path, 0, None)
            return
        key = (ds.identifier, f.path)
        rng = _parse_range(self.headers.get("Range"), f.size)
        if rng == "416":
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{f.size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            owner._record(self.command, split.path, 0, key)
            return
        start, end = rng if isinstance(rng, tuple) else (0, f.size - 1)
        length = max(0, end - start + 1)
        corrupted, cut = owner._faults(key, length) if not head and length else (False, None)
        self.send_response(206 if isinstance(rng, tuple) else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{f.md5}"')
        if isinstance(rng, tuple):
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.end_headers()
        sent = 0
        if not head and length:
            data = f.data if isinstance(f.data, bytes) else f.data.read_bytes()
            body = bytearray(data[start : end + 1])
            bad = f.size // 2
            if corrupted and start <= bad <= end:
                body[bad - start] ^= 0xFF
            limit = length if cut is None else cut
            try:
                while sent < limit:
                    block = bytes(body[sent : min(limit, sent + _CHUNK)])
                    self.wfile.write(block)
                    sent += len(block)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                self.close_connection = True
            if cut is not None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        owner._record(self.command, split.path, sent, key)
