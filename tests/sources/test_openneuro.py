"""neurofm's OpenNeuro source against the local OpenNeuro stand-in: listing, verified pulls,
re-runs that transfer nothing, resumes, corrupt files and hostile paths."""

from __future__ import annotations

import hashlib
import json
import random
import socket
from pathlib import Path

import pytest
import requests

from neurofm.cli import main
from neurofm.errors import SourceError
from neurofm.sources import openneuro
from neurofm.testing.openneuro_server import LocalOpenNeuroServer, OpenNeuroDatasetSpec

DATASET = "ds000001"
TAGS = ("1.0.0", "2.0.2")
BIG = "sub-01/eeg/sub-01_task-rest_eeg.eeg"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv(openneuro.ENV_URL, raising=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A small BIDS-like dataset: git-kept metadata (one empty file), annexed binaries."""
    root = tmp_path_factory.mktemp("openneuro-src")
    rng = random.Random(0)
    files = {
        "dataset_description.json": b'{"Name": "stand-in", "BIDSVersion": "1.8.0"}\n',
        "participants.tsv": b"participant_id\tage\nsub-01\t30\nsub-02\t31\n",
        "CHANGES": b"",
        "task-rest_events.tsv": b"onset\tduration\ttrial_type\n0\t20\trest\n",
        BIG: rng.randbytes(300_000),
        "sub-01/eeg/sub-01_task-rest_eeg.vhdr": b"Brain Vision Data Exchange Header File\n",
        "sub-02/eeg/sub-02_task-rest_eeg.eeg": rng.randbytes(5000),
        "sub-02/func/sub-02_task-rest_bold.json": b'{"RepetitionTime": 2.0}\n',
        ".bidsignore": b"extra/\n",  # hidden: neither listed by the stand-in nor pulled
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def server(folder):
    with LocalOpenNeuroServer({DATASET: OpenNeuroDatasetSpec(folder, TAGS)}) as srv:
        yield srv


def visible_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


# --------------------------------------------------------------------------------------------
# references and digests
# --------------------------------------------------------------------------------------------


def test_parse_ref():
    assert openneuro.parse_ref("openneuro:ds002336") == openneuro.OpenNeuroRef("ds002336")
    assert openneuro.parse_ref("openneuro:ds002336@2.0.2").version == "2.0.2"
    assert openneuro.parse_ref("DS002336/1.0.0") == openneuro.OpenNeuroRef("ds002336", "1.0.0")
    assert str(openneuro.parse_ref("ds002336@2.0.2")) == "openneuro:ds002336@2.0.2"
    with pytest.raises(SourceError, match=r"expected openneuro:ds<6 digits>\[@<tag>\]"):
        openneuro.parse_ref("openneuro:002336")


def test_expected_digest_reads_annex_keys_and_git_blob_ids():
    sha = hashlib.sha256(b"x").hexdigest()
    assert openneuro.expected_digest(f"SHA256E-s1--{sha}.nii.gz") == ("sha256", sha)
    md5 = hashlib.md5(b"x").hexdigest()
    assert openneuro.expected_digest(f"MD5E-s1--{md5}.eeg") == ("md5", md5)
    assert openneuro.expected_digest(f"SHA256-s1-m1700000000--{sha}") == ("sha256", sha)
    # `git hash-object` of b"hello\n" and of the empty file: known values
    blob = "ce013625030ba8dba906f756967f9e9ca394464a"
    assert openneuro.expected_digest(blob) == ("git-sha1", blob)
    assert hashlib.sha1(b"blob 6\0hello\n").hexdigest() == blob
    for opaque in ("", "WORM-s1-m2--name", f"SHA256E-s1--{sha[:10]}.x", "not-a-hash"):
        assert openneuro.expected_digest(opaque) is None, opaque


def test_standin_ids_follow_the_server(server, folder):
    empty_blob = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's id of the empty file
    assert server.file_id("CHANGES") == empty_blob
    sha = hashlib.sha256((folder / BIG).read_bytes()).hexdigest()
    assert server.file_id(BIG) == f"SHA256E-s300000--{sha}.eeg"


def test_standin_answers_the_queries_openneuro_py_sends(server):
    """The literal-argument queries of openneuro-py 2026.9.1, verbatim in shape."""
    gql = server.url + "/crn/graphql"
    query = 'query { dataset(id: "DS") { snapshots { id } } }'.replace("DS", DATASET)
    snapshots = requests.post(gql, json={"query": query}, timeout=10).json()
    assert snapshots["data"]["dataset"]["snapshots"] == [
        {"id": f"{DATASET}:{t}", "tag": t} for t in TAGS
    ]
    query = (
        'query { snapshot(datasetId: "DS", tag: "1.0.0") { id files(recursive: true) '
        "{ filename urls size id } } }"
    ).replace("DS", DATASET)
    snapshot = requests.post(gql, json={"query": query}, timeout=10).json()["data"]["snapshot"]
    assert snapshot["id"] == f"{DATASET}:1.0.0"
    by_name = {f["filename"]: f for f in snapshot["files"]}
    assert sorted(by_name) == [p for p in sorted(by_name) if not p.startswith(".")]
    assert by_name[BIG]["size"] == 300_000
    response = requests.get(by_name[BIG]["urls"][0], headers={"Range": "bytes=10-19"}, timeout=10)
    assert response.status_code == 206 and len(response.content) == 10
    full = requests.get(by_name[BIG]["urls"][0], timeout=10)
    assert response.content == full.content[10:20]
    assert full.headers["ETag"] == f'"{hashlib.md5(full.content).hexdigest()}"'


# --------------------------------------------------------------------------------------------
# listing
# --------------------------------------------------------------------------------------------


def test_resolve_defaults_to_the_latest_snapshot(server, folder):
    snap = openneuro.resolve(f"openneuro:{DATASET}", server.url)
    assert snap.tag == "2.0.2" and snap.label == f"openneuro:{DATASET}@2.0.2"
    assert sorted(f.path for f in snap.files) == visible_files(folder)
    checks = {f.path: f.check for f in snap.files}
    assert checks["participants.tsv"] == "git-sha1" and checks[BIG] == "sha256"
    assert openneuro.resolve(f"openneuro:{DATASET}@1.0.0", server.url).tag == "1.0.0"


def test_resolve_errors_name_the_dataset_and_what_exists(server):
    with pytest.raises(SourceError) as info:
        openneuro.resolve(f"openneuro:{DATASET}@9.9.9", server.url)
    assert str(info.value) == (
        f"openneuro:{DATASET}@9.9.9: no snapshot '9.9.9' of dataset {DATASET} on {server.url} "
        "(its snapshots: 1.0.0, 2.0.2)"
    )
    with pytest.raises(SourceError, match="^openneuro:ds000999: no dataset ds000999 on "):
        openneuro.resolve("openneuro:ds000999", server.url)


def test_unreachable_server_is_one_clear_error(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(SourceError, match=rf"cannot reach the OpenNeuro API at {url}/crn/graphql"):
        openneuro.pull(f"openneuro:{DATASET}", tmp_path, url=url, retries=0, progress=False)


# --------------------------------------------------------------------------------------------
# pull
# --------------------------------------------------------------------------------------------


def test_pull_is_verified_and_a_second_run_transfers_nothing(server, folder, tmp_path):
    raw = tmp_path / "raw"
    report = openneuro.pull(f"openneuro:{DATASET}@1.0.0", raw, url=server.url, progress=False)
    assert report.ok and report.version == "1.0.0"
    assert sorted(p.relative_to(raw).as_posix() for p in report.downloaded) == (
        visible_files(folder)
    )
    for rel in visible_files(folder):
        assert (raw / rel).read_bytes() == (folder / rel).read_bytes(), rel
    assert not (raw / ".bidsignore").exists()
    assert not list(raw.rglob("*.partial"))
    total = sum((folder / rel).stat().st_size for rel in visible_files(folder))
    assert report.bytes_transferred == total == server.bytes_served()
    manifest = json.loads((raw / openneuro.MANIFEST).read_text())
    assert manifest[BIG]["checked"] == "sha256" and manifest["CHANGES"]["checked"] == "git-sha1"
    assert manifest[BIG]["sha256"] == hashlib.sha256((folder / BIG).read_bytes()).hexdigest()

    again = openneuro.pull(f"openneuro:{DATASET}@1.0.0", raw, url=server.url, progress=False)
    assert again.ok and again.downloaded == [] and again.bytes_transferred == 0
    assert len(again.skipped) == len(visible_files(folder))
    assert server.bytes_served() == total  # nothing was fetched again


def test_files_already_there_are_checked_not_fetched(server, folder, tmp_path):
    raw = tmp_path / "raw"
    for rel in visible_files(folder):  # copied in by hand: no manifest
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes((folder / rel).read_bytes())
    wrong = bytearray((folder / BIG).read_bytes())
    wrong[0] ^= 0xFF  # same size, other bytes: must be replaced
    (raw / BIG).write_bytes(bytes(wrong))
    report = openneuro.pull(f"openneuro:{DATASET}", raw, url=server.url, progress=False)
    assert report.ok and [p.relative_to(raw).as_posix() for p in report.downloaded] == [BIG]
    assert server.bytes_served() == 300_000
    assert (raw / BIG).read_bytes() == (folder / BIG).read_bytes()


def test_include_selects_paths_and_keeps_the_root_files(server, tmp_path):
    raw = tmp_path / "raw"
    report = openneuro.pull(
        f"openneuro:{DATASET}", raw, include="sub-02/*", url=server.url, progress=False
    )
    assert sorted(p.relative_to(raw).as_posix() for p in report.downloaded) == [
        "CHANGES",
        "dataset_description.json",
        "participants.tsv",
        "sub-02/eeg/sub-02_task-rest_eeg.eeg",
        "sub-02/func/sub-02_task-rest_bold.json",
        "task-rest_events.tsv",
    ]
    with pytest.raises(SourceError, match=r"no file matches \['sub-09/\*'\]"):
        openneuro.pull(f"openneuro:{DATASET}", raw, include=["sub-09/*"], url=server.url)


def test_corrupt_file_is_a_clear_error_and_leaves_no_file(server, folder, tmp_path):
    raw = tmp_path / "raw"
    server.corrupt(BIG)
    report = openneuro.pull(f"openneuro:{DATASET}", raw, url=server.url, progress=False)
    assert not report.ok and [path for path, _ in report.failed] == [BIG]
    reason = report.failed[0][1]
    assert reason.startswith(
        f"openneuro:{DATASET}@2.0.2: {BIG}: downloaded bytes do not match the snapshot's listing "
        "(sha256 "
    )
    assert reason.endswith("; the file was deleted, re-run to fetch it again")
    assert not (raw / BIG).exists() and not list(raw.rglob("*.partial"))
    assert len(report.downloaded) == len(visible_files(folder)) - 1  # the others are fine

    server.clear_faults()  # the archive serves the right bytes again: a re-run fetches only it
    again = openneuro.pull(f"openneuro:{DATASET}", raw, url=server.url, progress=False)
    assert again.ok and [p.relative_to(raw).as_posix() for p in again.downloaded] == [BIG]
    assert (raw / BIG).read_bytes() == (folder / BIG).read_bytes()


def test_a_cut_transfer_resumes_where_it_stopped(server, folder, tmp_path):
    raw = tmp_path / "raw"
    server.drop_connection_after(BIG, 150_000)
    report = openneuro.pull(
        f"openneuro:{DATASET}", raw, include=BIG, url=server.url, retries=0, progress=False
    )
    assert [p for p, _ in report.failed] == [BIG]
    assert "transfer interrupted at" in report.failed[0][1]
    assert "the partial file is kept, re-run to resume" in report.failed[0][1]
    partial = raw / "sub-01/eeg/.sub-01_task-rest_eeg.eeg.partial"
    kept = partial.stat().st_size
    assert 0 < kept <= 150_000 and not (raw / BIG).exists()

    again = openneuro.pull(f"openneuro:{DATASET}", raw, include=BIG, url=server.url, progress=False)
    assert again.ok and again.bytes_transferred == 300_000 - kept  # only the rest
    assert (raw / BIG).read_bytes() == (folder / BIG).read_bytes() and not partial.exists()
    ranges = [r for r in server.requests if r[0] == "GET" and "objects" in r[1]]
    assert ranges  # the downloads went to the object URLs the listing gave


@pytest.mark.parametrize(
    "hostile, why",
    [
        ("../escape.txt", "it contains a '..' part"),
        ("sub-01/../../escape.txt", "it contains a '..' part"),
        ("/tmp/escape.txt", "it is absolute"),
        ("C:/escape.txt", "it is absolute"),
        ("sub-01\\..\\..\\escape.txt", "it contains a '..' part"),
    ],
)
def test_hostile_paths_are_refused_before_anything_is_written(server, tmp_path, hostile, why):
    server.add_listing_entry(hostile)
    raw = tmp_path / "deep" / "raw"
    with pytest.raises(SourceError) as info:
        openneuro.pull(f"openneuro:{DATASET}", raw, url=server.url, progress=False)
    assert str(info.value) == (
        f"openneuro:{DATASET}@2.0.2: refusing file path {hostile!r}: {why}, so it could write "
        "outside the target folder"
    )
    assert not raw.exists() and server.bytes_served() == 0
    assert not list(tmp_path.rglob("escape.txt"))


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def test_cli_pull_with_the_url_option_and_the_environment(server, folder, tmp_path, capsys):
    out = tmp_path / "cli"
    ref = f"openneuro:{DATASET}@1.0.0"
    assert main(["pull", ref, "--to", str(out), "--openneuro-url", server.url]) == 0
    n = len(visible_files(folder))
    assert f"{ref}: {n} downloaded, 0 already present and verified, 0 failed" in (
        capsys.readouterr().out
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(openneuro.ENV_URL, server.url)
        assert main(["pull", ref, "--to", str(out)]) == 0
    assert f"{ref}: 0 downloaded, {n} already present and verified" in capsys.readouterr().out
    server.corrupt(BIG)
    (out / BIG).unlink()
    assert main(["pull", ref, "--to", str(out), "--openneuro-url", server.url]) == 1
    err = capsys.readouterr().err
    assert f"neurofm: error: {ref}: {BIG}: downloaded bytes do not match" in err
    assert "Traceback" not in err
