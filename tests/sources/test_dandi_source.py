"""neurofm's DANDI source, pull, streaming and pipeline runs against the local DANDI server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from neurofm.cli import main
from neurofm.data import Catalog, Recording
from neurofm.errors import DigestMismatchError, SourceError
from neurofm.pipeline import ingest, ingest_dandi, run_pipeline
from neurofm.sources import dandi
from neurofm.synthetic import generate_reaching_dataset
from neurofm.testing.dandi_server import DandisetSpec, LocalDandiServer

DANDISET = "000000"
PUBLISHED = "0.240101.0000"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DANDI_NO_ET", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("NEUROFM_DANDI_API", raising=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dandiset")
    generate_reaching_dataset(
        out, n_subjects=2, n_sessions=1, n_trials=6, n_units_range=(50, 55), progress=False
    )
    return out


@pytest.fixture
def server(folder):
    spec = DandisetSpec(folder=folder, published_versions=[PUBLISHED])
    with LocalDandiServer({DANDISET: spec}, page_size=1) as srv:
        yield srv


def nwb_assets(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.nwb"))


def test_parse_ref():
    assert dandi.parse_ref("dandi:000128") == dandi.DandiRef("000128", None)
    assert dandi.parse_ref("DANDI:000128/0.220113.0400").version == "0.220113.0400"
    assert dandi.parse_ref("dandi:000128@draft").version == "draft"
    with pytest.raises(SourceError, match="expected dandi:<6-digit id>"):
        dandi.parse_ref("dandi:12")


def test_resolve_defaults_to_latest_published_version(server):
    assert dandi.resolve("dandi:000000", server.api_url).version == PUBLISHED
    assert dandi.resolve("dandi:000000@draft", server.api_url).version == "draft"
    with pytest.raises(SourceError, match="no dandiset 000123 on http://127.0.0.1"):
        dandi.resolve("dandi:000123", server.api_url)
    with pytest.raises(SourceError, match="no version '9.999999.9999' of dandiset 000000"):
        dandi.resolve("dandi:000000@9.999999.9999", server.api_url)


def test_pull_verifies_every_asset_and_a_second_run_transfers_nothing(server, folder, tmp_path):
    report = dandi.pull("dandi:000000", tmp_path / "raw", api_url=server.api_url, progress=False)
    assert report.ok and report.version == PUBLISHED
    assert sorted(p.relative_to(tmp_path / "raw").as_posix() for p in report.downloaded) == (
        nwb_assets(folder)
    )
    for rel in nwb_assets(folder):
        assert (tmp_path / "raw" / rel).read_bytes() == (folder / rel).read_bytes()
    assert not list((tmp_path / "raw").rglob("*.partial"))
    served = server.bytes_served()
    again = dandi.pull("dandi:000000", tmp_path / "raw", api_url=server.api_url, progress=False)
    assert again.downloaded == [] and len(again.skipped) == len(nwb_assets(folder))
    assert again.bytes_transferred == 0 and server.bytes_served() == served


def test_include_glob_and_env_api_url(server, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROFM_DANDI_API", server.api_url)
    report = dandi.pull("dandi:000000@draft", tmp_path, include="sub-S1/*", progress=False)
    assert [p.relative_to(tmp_path).as_posix() for p in report.downloaded] == [
        a for a in nwb_assets(folder) if a.startswith("sub-S1/")
    ]
    with pytest.raises(SourceError, match="no NWB assets .* match 'sub-X/\\*'"):
        dandi.pull("dandi:000000", tmp_path, include="sub-X/*", progress=False)


def test_corrupted_bytes_are_deleted_and_named(server, folder, tmp_path):
    bad = nwb_assets(folder)[0]
    server.corrupt(bad)
    report = dandi.pull("dandi:000000", tmp_path, api_url=server.api_url, progress=False)
    assert [path for path, _ in report.failed] == [bad]
    reason = report.failed[0][1]
    assert bad in reason and "do not match the asset's dandi-etag" in reason
    assert not (tmp_path / bad).exists()
    assert not list(tmp_path.rglob(".*.partial"))
    assert len(report.downloaded) == len(nwb_assets(folder)) - 1
    # the error type for callers who download one asset
    with pytest.raises(DigestMismatchError):
        raise DigestMismatchError(reason)


def test_dropped_connection_resumes_on_the_next_run(server, folder, tmp_path):
    target = nwb_assets(folder)[0]
    size = (folder / target).stat().st_size
    server.drop_connection_after(target, size // 3, times=1)
    first = dandi.pull("dandi:000000", tmp_path, api_url=server.api_url, retries=0, progress=False)
    assert [path for path, _ in first.failed] == [target]
    assert "re-run to resume" in first.failed[0][1]
    partial = tmp_path / Path(target).parent / f".{Path(target).name}.partial"
    assert 0 < partial.stat().st_size < size
    have = partial.stat().st_size
    server.clear_requests()
    second = dandi.pull("dandi:000000", tmp_path, api_url=server.api_url, progress=False)
    assert second.ok and [p.relative_to(tmp_path).as_posix() for p in second.downloaded] == [target]
    assert second.bytes_transferred == size - have  # only the missing bytes were fetched
    assert any(r.range == f"bytes={have}-" for r in server.requests)
    assert (tmp_path / target).read_bytes() == (folder / target).read_bytes()
    assert not partial.exists()


def test_hostile_asset_paths_are_refused():
    hostile = SimpleNamespace(path="../../x.nwb", size=1, identifier="a")
    fake = SimpleNamespace(
        ref=dandi.DandiRef("000001"),
        version="draft",
        remote=SimpleNamespace(get_assets=lambda order=None: iter([hostile])),
    )
    with pytest.raises(SourceError, match=r"refusing asset path '\.\./\.\./x\.nwb'"):
        dandi.list_assets(fake)
    for bad in ("/etc/x.nwb", "a/../../b.nwb"):
        with pytest.raises(SourceError, match="outside the target folder"):
            dandi._safe_relpath(bad, dandi.DandiRef("000001"))


def recordings(catalog: Path) -> dict[str, Recording]:
    cat = Catalog(catalog)
    return {rid: cat.open(rid).load() for rid in cat.ids}


def test_stream_ingest_equals_download_then_ingest(server, tmp_path):
    _, streamed = ingest_dandi(
        "dandi:000000",
        tmp_path / "streamed",
        stream=True,
        api_url=server.api_url,
        progress=False,
    )
    pulled, downloaded = ingest_dandi(
        "dandi:000000", tmp_path / "downloaded", api_url=server.api_url, progress=False
    )
    assert streamed.ok and downloaded.ok and len(streamed.ingested) == 2
    a, b = recordings(tmp_path / "streamed"), recordings(tmp_path / "downloaded")
    assert sorted(a) == sorted(b)
    for rid in a:
        assert sorted(a[rid].signals) == sorted(b[rid].signals)
        np.testing.assert_array_equal(a[rid].spikes.timestamps, b[rid].spikes.timestamps)
        np.testing.assert_array_equal(a[rid].spikes.unit_index, b[rid].spikes.unit_index)
        np.testing.assert_array_equal(a[rid].hand_vel.data, b[rid].hand_vel.data)
        np.testing.assert_array_equal(a[rid].trials.start, b[rid].trials.start)
        pa, pb = a[rid].provenance, b[rid].provenance
        assert pa.sha256 == pb.sha256 and pa.sha256  # from the archive's sha2-256 digest
        assert (pa.dandiset_id, pa.dandiset_version) == ("000000", PUBLISHED)
        assert pa.asset_path == pb.asset_path and pa.extra["streamed"] is True
    # streaming fetched a fraction of the bytes... of these small files, at least not more
    assert not (tmp_path / "streamed" / "_raw").exists()


def test_cli_pull_ingest_and_errors(server, folder, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert main(["pull", "dandi:000000", "--to", str(raw), "--api-url", server.api_url]) == 0
    out = capsys.readouterr().out
    assert f"dandi:000000@{PUBLISHED}: 2 downloaded" in out
    assert main(["pull", "dandi:000000", "--to", str(raw), "--api-url", server.api_url]) == 0
    assert "0 downloaded, 2 already present and verified" in capsys.readouterr().out
    assert (
        main(
            [
                "ingest",
                "dandi:000000",
                "--out",
                str(tmp_path / "cat"),
                "--to",
                str(raw),
                "--api-url",
                server.api_url,
            ]
        )
        == 0
    )
    assert len(Catalog(tmp_path / "cat")) == 2
    capsys.readouterr()
    assert (
        main(["pull", "dandi:000999", "--to", str(tmp_path / "x"), "--api-url", server.api_url])
        == 1
    )
    err = capsys.readouterr().err
    assert err == f"neurofm: error: dandi:000999: no dandiset 000999 on {server.api_url}\n"
    assert not (tmp_path / "x").exists()


def test_demo_pipeline_pulls_and_ingests_with_splits(server, tmp_path):
    # the pull and ingest steps of the demo (its train/evaluate steps are tested elsewhere)
    result = run_pipeline(
        REPO / "pipelines" / "demo.yaml",
        api_url=server.api_url,
        workdir=tmp_path,
        progress=False,
        only=("pull", "ingest"),
    )
    assert result.ok, result.summary
    assert result.summary[0].startswith("pull: 2 downloaded")
    cat = Catalog(tmp_path / "catalog")
    with cat.open(cat.ids[0]) as rec:
        trials = rec.trials.load()
        domains = {k: rec[f"{k}_domain"].load() for k in ("train", "valid", "test")}
    valid = trials.columns["is_success"].astype(bool)
    for split, dom in domains.items():
        expected = trials.start[valid & (trials.columns["split"] == split)]
        np.testing.assert_array_equal(dom.start, expected)
    again = run_pipeline(
        REPO / "pipelines" / "demo.yaml",
        api_url=server.api_url,
        workdir=tmp_path,
        progress=False,
        only=("pull", "ingest"),
    )
    assert again.summary == [
        f"pull: 0 downloaded, 2 up to date, 0 failed (0 bytes transferred) -> {tmp_path / 'raw'}",
        f"ingest: 0 ingested, 2 up to date, 0 failed -> {tmp_path / 'catalog'}",
    ]


def test_local_ingest_is_unaffected_by_dandi_options(folder, tmp_path):
    shutil.copytree(folder, tmp_path / "copy")
    report = ingest(tmp_path / "copy", tmp_path / "cat", progress=False)
    assert report.ok and len(report.ingested) == 2
    assert os.path.isdir(tmp_path / "cat")
