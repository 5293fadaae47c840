"""Tests of neurofm.testing.dandi_server: the real ``dandi`` client against the local server."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from neurofm.synthetic import generate_reaching_dataset
from neurofm.testing.dandi_server import (
    DandisetSpec,
    LocalDandiServer,
    RequestRecord,
    serve_dandiset,
)

DANDISET = "000000"
PUBLISHED = ["0.240101.0000", "0.240601.1200"]
NESTED = "notes/deep/read me.txt"

# No proxy, even if the environment names one: every URL here is on the loopback interface.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(autouse=True)
def _offline_dandi(monkeypatch):
    monkeypatch.setenv("DANDI_NO_ET", "1")  # no etelemetry call from every DandiAPIClient()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # the client raises, instead of following `next` links one by one, if page 1's `next` is
    # not page 1's URL with page=2 (the contract that lets it fetch pages 2..N concurrently)
    monkeypatch.setenv("DANDI_PAGINATION_DISABLE_FALLBACK", "1")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dandiset")
    generate_reaching_dataset(
        out, n_subjects=1, n_sessions=2, n_trials=4, n_units_range=(50, 52), progress=False
    )
    nested = out / NESTED
    nested.parent.mkdir(parents=True)
    nested.write_text("a nested asset whose name has a space\n" * 50)
    (out / ".hidden").write_text("not an asset")
    (out / ".git").mkdir()
    (out / ".git" / "config").write_text("not an asset either")
    return out


@pytest.fixture(scope="module")
def asset_paths(folder) -> list[str]:
    """What the server should list: every file but dandiset.yaml and hidden ones."""
    rels = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return sorted(
        r.as_posix()
        for r in rels
        if r.as_posix() != "dandiset.yaml" and not any(part.startswith(".") for part in r.parts)
    )


@pytest.fixture
def server(folder):
    spec = DandisetSpec(folder=folder, published_versions=list(PUBLISHED))
    with LocalDandiServer({DANDISET: spec}) as srv:
        yield srv


def _client(srv: LocalDandiServer):
    from dandi.consts import DandiInstance
    from dandi.dandiapi import DandiAPIClient

    return DandiAPIClient(dandi_instance=DandiInstance(name="local", gui=None, api=srv.api_url))


def _nwb_path(asset_paths: list[str]) -> str:
    return next(p for p in asset_paths if p.endswith(".nwb"))


def _blob_url(srv: LocalDandiServer, path: str) -> str:
    """Where the API's ``/download/`` URL redirects to (a HEAD, without following)."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    try:
        conn.request("HEAD", f"/api/assets/{srv.asset_id(path)}/download/")
        resp = conn.getresponse()
        assert resp.status == 302
        return resp.headers["Location"]
    finally:
        conn.close()


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET"):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    return _OPENER.open(req)


def _error(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """Status, headers and body of a request that must fail with an HTTP error."""
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(url, headers)
    with err.value as resp:
        return resp.code, resp.headers, resp.read()


# --------------------------------------------------------------------------------------------


def test_client_lists_dandiset_versions_and_pages_concurrently(server, asset_paths):
    from dandi.dandiapi import DandiAPIClient

    client = DandiAPIClient(api_url=server.api_url)  # probes /server-info for ServerInfo
    client.page_size = 2
    dandiset = client.get_dandiset(DANDISET, lazy=False)
    assert dandiset.identifier == DANDISET
    assert dandiset.most_recent_published_version.identifier == PUBLISHED[-1]
    assert dandiset.version_id == PUBLISHED[-1]  # the client's default version
    assert dandiset.draft_version.identifier == "draft"
    assert dandiset.draft_version.asset_count == len(asset_paths)
    assert dandiset.embargo_status.value == "OPEN"
    assert [v.identifier for v in dandiset.get_versions()] == ["draft", *PUBLISHED]
    assert dandiset.get_raw_metadata()["name"] == "neurofm synthetic centre-out reaching"

    draft = client.get_dandiset(DANDISET, "draft")
    assert draft.get_version("draft").status.value == "Valid"
    server.clear_requests()
    assets = list(draft.get_assets())
    assert [a.path for a in assets] == asset_paths  # dandiset.yaml and hidden files excluded
    pages = [r for r in server.requests if r.path.endswith("/versions/draft/assets/")]
    n_pages = -(-len(asset_paths) // 2)
    # page 1, then pages 2..N by number (concurrently: the fallback is disabled above)
    assert sorted(r.query.get("page", "1") for r in pages) == [
        str(k) for k in range(1, n_pages + 1)
    ]
    assert all(r.query["page_size"] == "2" and r.status == 200 for r in pages)

    published = client.get_dandiset(DANDISET, PUBLISHED[0])
    old = {a.path: a.identifier for a in published.get_assets()}
    assert sorted(old) == asset_paths
    assert set(old.values()).isdisjoint(a.identifier for a in assets)  # ids are per version

    globbed = [a.path for a in draft.get_assets_by_glob("ground_truth/*.json")]
    assert globbed == [p for p in asset_paths if p.startswith("ground_truth/")]
    prefixed = [a.path for a in draft.get_assets_with_path_prefix("notes/")]
    assert prefixed == [NESTED]


def test_asset_metadata_digests_and_download(server, folder, asset_paths, tmp_path):
    from dandi.support.digests import get_digest

    client = _client(server)
    draft = client.get_dandiset(DANDISET, "draft")
    for path in (_nwb_path(asset_paths), NESTED):
        asset = draft.get_asset_by_path(path)
        assert asset.identifier == server.asset_id(path)  # deterministic ids
        local = folder / path
        assert asset.get_raw_digest() == get_digest(local, "dandi-etag")
        assert asset.get_raw_digest("dandi:sha2-256") == get_digest(local, "sha256")
        meta = asset.get_raw_metadata()
        assert meta["contentSize"] == local.stat().st_size == asset.size
        assert meta["path"] == path
        assert "blobDateModified" in meta
        if path.endswith(".nwb"):
            assert meta["encodingFormat"] == "application/x-nwb"
        assert asset.get_content_url(regex="/download/").endswith(
            f"/assets/{asset.identifier}/download/"
        )
        assert "/blobs/" in asset.get_content_url(regex="/download/", follow_redirects=1)
        # the by-id endpoints agree
        assert client.get_asset(asset.identifier).path == path
        assert draft.get_asset(asset.identifier).get_raw_metadata()["digest"] == meta["digest"]

        dest = tmp_path / Path(path).name
        asset.download(dest)
        assert dest.read_bytes() == local.read_bytes()
    # no /info probe with an explicit DandiInstance
    assert not any(r.path in ("/server-info", "/api/info/") for r in server.requests)
    assert server.bytes_served(NESTED) == (folder / NESTED).stat().st_size


def test_dandi_download_of_the_dandiset_url_verifies(server, folder, asset_paths, tmp_path, capsys):
    import yaml
    from dandi.download import DownloadFormat, download

    download(
        f"{server.api_url}/dandisets/{DANDISET}/versions/draft/",
        tmp_path,
        format=DownloadFormat.DEBUG,
    )
    # DEBUG format prints one dict per event: every asset's dandi-etag was checked
    assert capsys.readouterr().out.count("'checksum': 'ok'") == len(asset_paths)
    out = tmp_path / DANDISET
    for path in asset_paths:
        assert (out / path).read_bytes() == (folder / path).read_bytes(), path
    meta = yaml.safe_load((out / "dandiset.yaml").read_text())
    assert meta["identifier"] == f"DANDI:{DANDISET}"
    assert meta["version"] == "draft"
    assert server.bytes_served() == sum((folder / p).stat().st_size for p in asset_paths)


def test_range_requests_and_head(server, folder, asset_paths):
    path = _nwb_path(asset_paths)
    data = (folder / path).read_bytes()
    url = _blob_url(server, path)

    with _get(url, method="HEAD") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(data))
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert resp.read() == b""
    n = len(data)
    for header, (start, end) in [
        ("bytes=0-7", (0, 7)),  # the HDF5 signature
        ("bytes=1000-1999", (1000, 1999)),
        (f"bytes={n - 10}-", (n - 10, n - 1)),  # open-ended, as in dandi's resume
        ("bytes=-25", (n - 25, n - 1)),  # suffix
        (f"bytes=100-{n + 50}", (100, n - 1)),  # clipped to the end
    ]:
        with _get(url, {"Range": header}) as resp:
            assert resp.status == 206, header
            assert resp.read() == data[start : end + 1], header
            assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{n}"
    # a Range through the API's /download/ URL follows the redirect
    aid = server.asset_id(path)
    with _get(f"{server.api_url}/assets/{aid}/download/", {"Range": "bytes=8-15"}) as resp:
        assert resp.status == 206 and resp.read() == data[8:16]
    status, headers, _ = _error(url, {"Range": f"bytes={len(data)}-"})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(data)}"
    ranged = [r for r in server.requests if r.range is not None and r.path.startswith("/blobs/")]
    assert [r.status for r in ranged] == [206] * 6 + [416]


def test_client_closing_early_is_tolerated(server, folder, asset_paths, capfd):
    path = _nwb_path(asset_paths)
    data = (folder / path).read_bytes()
    blob = urllib.parse.urlsplit(_blob_url(server, path)).path
    # remfile's first request: a GET with no Range, of which it reads a little and hangs up
    for _ in range(3):
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(f"GET {blob} HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
            head = sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200")
    with _get(_blob_url(server, path), {"Range": "bytes=0-99"}) as resp:
        assert resp.read() == data[:100]
    with _get(server.api_url + "/info/") as resp:
        assert json.load(resp)["services"]["api"]["url"] == server.api_url
    assert capfd.readouterr().err == ""  # nothing on stderr from the server's threads


def test_h5py_streams_an_nwb_asset_over_http_with_remfile(server, folder, asset_paths):
    remfile = pytest.importorskip("remfile")
    import h5py

    path = _nwb_path(asset_paths)
    aid = server.asset_id(path)
    with h5py.File(folder / path, "r") as local:
        expected = local["units/spike_times"][:20]
    with h5py.File(remfile.File(f"{server.api_url}/assets/{aid}/download/"), "r") as remote:
        assert (remote["units/spike_times"][:20] == expected).all()
    blobs = [r for r in server.requests if r.path.startswith("/blobs/")]
    assert any(r.range and r.status == 206 for r in blobs)  # streamed with Range requests


def test_corrupt_asset_fails_dandi_checksum(server, folder, asset_paths, tmp_path, capsys):
    from dandi.download import DownloadFormat, download
    from dandi.support.digests import get_digest

    path = _nwb_path(asset_paths)
    good = (folder / path).read_bytes()
    server.corrupt(path)
    with _get(_blob_url(server, path)) as resp:
        served = resp.read()
    assert len(served) == len(good) and served != good

    url = f"{server.api_url}/dandisets/{DANDISET}/versions/draft/assets/?path={path}"
    with pytest.raises(RuntimeError, match="1 error"):
        download(url, tmp_path, format=DownloadFormat.DEBUG)
    assert "'checksum': 'differs'" in capsys.readouterr().out
    # the advertised digest is still the original one, so the bad copy is detectable
    asset = _client(server).get_dandiset(DANDISET, "draft").get_asset_by_path(path)
    assert asset.get_raw_digest() == get_digest(folder / path, "dandi-etag")

    server.clear_faults()
    with _get(_blob_url(server, path)) as resp:
        assert resp.read() == good


def test_dropped_connection_fails_once_then_serves(server, folder, asset_paths):
    path = NESTED
    data = (folder / path).read_bytes()
    url = _blob_url(server, path)
    server.drop_connection_after(path, 300, times=1)
    with pytest.raises(http.client.IncompleteRead) as err, _get(url) as resp:
        resp.read()
    assert len(err.value.partial) == 300
    with _get(url) as resp:
        assert resp.read() == data
    blob = [r for r in server.requests if r.path.startswith("/blobs/") and r.method == "GET"]
    assert [r.bytes_sent for r in blob[-2:]] == [300, len(data)]
    assert isinstance(blob[-1], RequestRecord)


def test_dandi_download_retries_and_resumes_after_dropped_connections(
    server, folder, asset_paths, tmp_path, monkeypatch
):
    import dandi.download
    from dandi.dandiapi import BaseRemoteAsset
    from dandi.download import DownloadFormat, download

    # dandi sleeps random() * 5 * attempt seconds between attempts: make that 0
    monkeypatch.setattr(dandi.download.random, "random", lambda: 0.0)
    # dandi resumes from the bytes it has written, in chunks of 8 MiB by default: use 4 KiB
    # chunks so that a drop in this small file leaves some written and the retry sends Range
    monkeypatch.setattr(BaseRemoteAsset.get_download_file_iter, "__defaults__", (4096,))
    path = _nwb_path(asset_paths)
    size = (folder / path).stat().st_size
    server.drop_connection_after(path, size // 3, times=2)
    url = f"{server.api_url}/dandisets/{DANDISET}/versions/draft/assets/?path={path}"
    download(url, tmp_path, format=DownloadFormat.DEBUG)

    got = next(tmp_path.rglob(Path(path).name))
    assert got.read_bytes() == (folder / path).read_bytes()
    blobs = [r for r in server.requests if r.path.startswith("/blobs/")]
    assert [r.bytes_sent for r in blobs[:2]] == [size // 3] * 2  # two cut responses
    assert blobs[0].range is None and blobs[0].status == 200
    offsets = [int(r.range[len("bytes=") : -1]) for r in blobs[1:]]  # "bytes=N-"
    assert 0 < offsets[0] < offsets[1] < size
    assert [r.status for r in blobs[1:]] == [206, 206]
    assert blobs[-1].bytes_sent == size - offsets[1]


def test_unknown_ids_answer_404_json(server, asset_paths):
    from dandi.dandiapi import NotFoundError

    base = server.api_url
    aid = server.asset_id(asset_paths[0])
    for url in [
        f"{base}/dandisets/999999/",
        f"{base}/dandisets/999999/versions/draft/assets/",
        f"{base}/dandisets/{DANDISET}/versions/9.999999.9999/",
        f"{base}/dandisets/{DANDISET}/versions/{PUBLISHED[0]}/assets/{aid}/",  # draft's id
        f"{base}/assets/00000000-0000-0000-0000-000000000000/download/",
        f"{server.base_url}/blobs/nope",
        f"{base}/no/such/endpoint/",
    ]:
        status, _, body = _error(url)
        assert status == 404, url
        assert json.loads(body) == {"detail": "Not found."}
    with pytest.raises(NotFoundError):
        _client(server).get_dandiset("999999", lazy=False)
    assert _error(f"{base}/dandisets/{DANDISET}/versions/draft/assets/?page=99")[0] == 404


def test_serve_dandiset_lifecycle_and_validation(folder, asset_paths, tmp_path):
    srv = serve_dandiset(folder, versions=("draft", "0.250102.0304"))
    try:
        url = srv.api_url
        with _get(f"{url}/dandisets/{DANDISET}/") as resp:
            info = json.load(resp)
        assert info["most_recent_published_version"]["version"] == "0.250102.0304"
        assert info["most_recent_published_version"]["created"].startswith("2025-01-02T03:04")
        with srv:  # entering a started server keeps it running; leaving stops it
            pass
        with pytest.raises(RuntimeError, match="not started"):
            _ = srv.api_url
        with pytest.raises(urllib.error.URLError):
            _get(f"{url}/info/")
    finally:
        srv.stop()

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with LocalDandiServer({"000123": copy}, page_size=1) as one:
        with _get(f"{one.api_url}/dandisets/000123/versions/draft/assets/") as resp:
            page = json.load(resp)
        assert len(page["results"]) == 1 and page["next"].endswith("page=2")
        assert page["count"] == len(asset_paths)
        (copy / "added.txt").write_text("new")
        one.refresh()
        with _get(f"{one.api_url}/dandisets/000123/versions/draft/assets/?path=added") as resp:
            assert [a["path"] for a in json.load(resp)["results"]] == ["added.txt"]

    with pytest.raises(ValueError, match="six digits"):
        LocalDandiServer({"abc": folder})
    with pytest.raises(ValueError, match="MAJOR"):
        LocalDandiServer({DANDISET: DandisetSpec(folder, published_versions=["v1"])})
    with pytest.raises(ValueError, match="identifier"):
        LocalDandiServer({DANDISET: DandisetSpec(folder, identifier="000001")})
    with pytest.raises(FileNotFoundError):
        LocalDandiServer({DANDISET: tmp_path / "missing"})
