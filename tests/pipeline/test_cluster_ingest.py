"""Ingestion on a Dask LocalCluster (2 worker processes) against the local DANDI server."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from neurofm.cli import main
from neurofm.data import Catalog, Recording
from neurofm.pipeline import ingest, ingest_dandi, run_pipeline
from neurofm.pipeline.cluster import ClusterError, dask_client
from neurofm.synthetic import generate_reaching_dataset
from neurofm.testing.dandi_server import DandisetSpec, LocalDandiServer

pytest.importorskip("distributed")

DANDISET = "000000"
BAD = "sub-X/sub-X_ses-1_ecephys.nwb"  # not HDF5: the one asset that fails


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("DANDI_NO_ET", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("NEUROFM_DANDI_API", raising=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dandiset")
    generate_reaching_dataset(
        folder, n_subjects=2, n_sessions=4, n_trials=6, n_units_range=(30, 40), progress=False
    )
    (folder / BAD).parent.mkdir()
    (folder / BAD).write_bytes(b"not an HDF5 file, though named .nwb" * 10)
    return folder


@pytest.fixture(scope="module")
def server(folder):
    with LocalDandiServer({DANDISET: DandisetSpec(folder=folder)}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client():
    # One cluster for the module: starting one costs a few seconds.
    with dask_client(workers=2) as c:
        yield c


def _normalised(catalog: Path) -> tuple[list[dict], dict[str, dict]]:
    """Index entries and recordings' contents, with paths made relative to their raw folder."""
    cat = Catalog(catalog)
    entries = []
    for e in cat.entries:
        e["source_path"] = Path(e["source_path"]).relative_to(catalog / "_raw").as_posix()
        entries.append(e)
    contents = {}
    for rid in cat.ids:
        with Recording.open(cat.file_of(rid)) as rec:
            prov = {**vars(rec.provenance)}
            prov["source_path"] = Path(prov["source_path"]).relative_to(catalog / "_raw")
            signals = {}
            for name, sig in rec.signals.items():
                loaded = sig.load()
                signals[name] = {
                    k: np.asarray(v) for k, v in vars(loaded).items() if isinstance(v, np.ndarray)
                }
            contents[rid] = {"meta": vars(rec.metadata), "prov": prov, "signals": signals}
    return entries, contents


def _leftovers(catalog: Path) -> list[str]:
    """Staging folders and temporary files of writers (the index's own files aside)."""
    return sorted(
        p.name
        for p in catalog.iterdir()
        if p.name.startswith(".neurofm-stage") or p.name.endswith((".tmp", ".partial"))
    )


def test_two_workers_give_the_serial_catalog_and_list_the_failure(server, client, tmp_path):
    serial_pull, serial = ingest_dandi(
        "dandi:000000", tmp_path / "serial", api_url=server.api_url, progress=False
    )
    assert len(serial.ingested) == 8 and len(serial.failed) == 1
    # Half first (as if the job had been killed halfway), then everything: the rerun does
    # only the missing assets.
    _, half = ingest_dandi(
        "dandi:000000",
        tmp_path / "dask",
        api_url=server.api_url,
        include="sub-S0/*",
        progress=False,
        client=client,
    )
    assert len(half.ingested) == 4 and not half.failed
    pulled, report = ingest_dandi(
        "dandi:000000", tmp_path / "dask", api_url=server.api_url, progress=False, client=client
    )
    assert pulled is None
    assert sorted(report.skipped) == sorted(half.ingested) and len(report.ingested) == 4
    report.ingested += report.skipped
    assert sorted(rid for _, rid in report.ingested) == sorted(rid for _, rid in serial.ingested)
    # The bad asset is listed with its one-line reason; the eight others went through.
    [(name, reason)] = report.failed
    assert name.endswith(BAD) and "not an HDF5 file" in reason and "\n" not in reason
    entries, contents = _normalised(tmp_path / "dask")
    serial_entries, serial_contents = _normalised(tmp_path / "serial")
    assert entries == serial_entries
    assert contents.keys() == serial_contents.keys()
    for rid, want in serial_contents.items():
        got = contents[rid]
        assert got["meta"] == want["meta"] and got["prov"] == want["prov"], rid
        assert got["signals"].keys() == want["signals"].keys()
        for name, arrays in want["signals"].items():
            for key, value in arrays.items():
                np.testing.assert_array_equal(got["signals"][name][key], value, f"{rid}/{name}")
    assert not _leftovers(tmp_path / "dask") and not Catalog(tmp_path / "dask").leftovers()
    # A rerun does only what is missing: everything is up to date.
    _, again = ingest_dandi(
        "dandi:000000", tmp_path / "dask", api_url=server.api_url, progress=False, client=client
    )
    assert not again.ingested and len(again.skipped) == 8 and len(again.failed) == 1


def test_a_worker_killed_mid_task_is_retried_without_duplicate_or_partial_file(
    server, client, tmp_path
):
    out = tmp_path / "catalog"
    pids = client.run(os.getpid)
    killed: list[int] = []

    def kill_one_mid_task() -> None:
        # As soon as a task has staged something in the catalog, kill the worker running it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            if out.is_dir() and any(
                p.name.startswith(".neurofm-stage-task_") for p in out.iterdir()
            ):
                busy = [w for w, keys in client.processing().items() if keys]
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(pids[busy[0]])
                    return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_one_mid_task)
    killer.start()
    _, report = ingest_dandi(
        "dandi:000000",
        out,
        api_url=server.api_url,
        include="sub-S1/*",
        progress=False,
        client=client,
    )
    killer.join()
    assert killed, "no task was caught mid-way"
    assert killed[0] not in client.run(os.getpid).values()  # the nanny started a new one
    assert len(report.ingested) == 4 and not report.failed
    cat = Catalog(out)
    assert len(cat.ids) == len(set(cat.ids)) == 4
    assert sorted(p.name for p in out.glob("*.h5")) == sorted(f"{rid}.h5" for rid in cat.ids)
    assert cat.verify().ok
    assert not _leftovers(out)
    assert not cat.leftovers()


def test_stream_on_workers_with_one_bar_over_assets(server, client, tmp_path, capsys):
    _, report = ingest_dandi(
        "dandi:000000",
        tmp_path / "streamed",
        api_url=server.api_url,
        stream=True,
        include="sub-S0/*",
        progress=True,  # stderr is not a terminal here: whole lines
        client=client,
    )
    assert len(report.ingested) == 4 and not report.failed
    assert not (tmp_path / "streamed" / "_raw").exists()  # nothing downloaded
    cat = Catalog(tmp_path / "streamed")
    assert all(e["source_url"].startswith(server.base_url) for e in cat.entries)
    err = capsys.readouterr().err
    assert err.startswith("ingest: 1/4 file (25%)") and "ingest: 4/4 file (100%)" in err


def test_workers_and_scheduler_are_exclusive():
    with pytest.raises(ClusterError, match="not both"):
        with dask_client(workers=2, scheduler="tcp://127.0.0.1:1"):
            pass
    with dask_client() as none:
        assert none is None


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("nonsense", "missing port number in address 'nonsense'"),
        ("http://host:8786", "unknown address scheme 'http'"),
    ],
)
def test_a_malformed_scheduler_address_is_a_clear_error(address, why, tmp_path, capsys):
    began = time.monotonic()
    code = main(["ingest", str(tmp_path), "--out", str(tmp_path / "cat"), "--scheduler", address])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"neurofm: error: --scheduler {address}: not a scheduler address ({why}" in err
    assert "e.g. tcp://10.0.0.5:8786" in err and time.monotonic() - began < 10
    assert not (tmp_path / "cat").exists()


def test_cli_pull_and_ingest_on_a_running_scheduler(server, client, tmp_path, capsys):
    address = client.scheduler.address
    raw, out = tmp_path / "raw", tmp_path / "catalog"
    args = ["--api-url", server.api_url, "--include", "sub-S0/*", "--scheduler", address]
    assert main(["pull", "dandi:000000", "--to", str(raw), *args]) == 0
    assert "4 downloaded, 0 already present and verified, 0 failed" in capsys.readouterr().out
    assert len(list(raw.rglob("*.nwb"))) == 4
    # The pulled files are there: every task skips its download, then reads and writes.
    code = main(["ingest", "dandi:000000", "--out", str(out), "--to", str(raw), *args])
    assert code == 0 and "4 ingested, 0 up to date, 0 failed" in capsys.readouterr().out
    assert len(Catalog(out)) == 4
    with pytest.raises(SystemExit):
        main(["ingest", "dandi:000000", "--out", str(out), "--workers", "2", *args])
    assert "not allowed with argument" in capsys.readouterr().err
    # A failed asset: listed with its reason, and the exit status says so.
    args[3] = "sub-X/*"
    assert main(["ingest", "dandi:000000", "--out", str(out), *args]) == 1
    out_err = capsys.readouterr()
    assert "0 ingested, 0 up to date, 1 failed" in out_err.out
    assert out_err.err.endswith(
        f"neurofm: error: {out / '_raw' / DANDISET / BAD}: not an HDF5 file (NWB files must use "
        "the HDF5 backend)\n"
    )


def test_relative_folders_are_this_process_s_not_the_workers(
    folder, server, client, tmp_path, monkeypatch
):
    # --out as a user types it: relative to the working directory, which the workers do not
    # share (nor does the catalog, which keeps its files' paths relative to itself)
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    shutil.copytree(folder / "sub-S0", src)
    ids = sorted(p.name.removesuffix("_ecephys.nwb") for p in src.glob("*.nwb"))
    report = ingest("src", "cat", progress=False, client=client)
    assert len(report.ingested) == 4 and not report.failed
    assert sorted(Catalog(tmp_path / "cat").ids) == ids
    _, report = ingest_dandi(
        "dandi:000000", "dcat", include="sub-S0/*", api_url=server.api_url, progress=False,
        client=client,
    )  # fmt: skip
    assert len(report.ingested) == 4 and not report.failed
    assert sorted(Catalog(tmp_path / "dcat").ids) == ids
    assert not (tmp_path / "cat" / "cat").exists() and not (tmp_path / "dcat" / "dcat").exists()


def test_two_sources_with_one_id_do_not_overwrite_each_other(folder, client, tmp_path):
    # The same session in two folders: the same file name, so the same recording id.
    first = next(folder.glob("sub-S0/*.nwb"))
    for name in ("a", "b"):
        (tmp_path / "src" / name).mkdir(parents=True)
        shutil.copy(first, tmp_path / "src" / name / first.name)
    report = ingest(tmp_path / "src", tmp_path / "cat", progress=False, client=client)
    assert [name for name, _ in report.ingested] == [str(tmp_path / "src" / "a" / first.name)]
    [(name, reason)] = report.failed
    assert name == str(tmp_path / "src" / "b" / first.name) and "is also the id of" in reason
    assert len(Catalog(tmp_path / "cat")) == 1


def test_pipeline_spec_cluster_section(tmp_path):
    from neurofm.errors import SpecError
    from neurofm.specs import PipelineSpec, load_yaml

    spec = tmp_path / "p.yaml"
    spec.write_text("name: p\ndataset: d\ncluster: {workers: 2}\nsteps: [{ingest: {}}]\n")
    assert load_yaml(spec, PipelineSpec).cluster.workers == 2
    spec.write_text(
        "name: p\ndataset: d\nsteps: [{ingest: {}}]\n"
        "cluster: {workers: 2, scheduler: 'tcp://x:1'}\n"
    )
    with pytest.raises(SpecError, match="cluster.*not both"):
        load_yaml(spec, PipelineSpec)


def test_pipeline_spec_runs_its_pull_and_ingest_on_its_cluster(server, client, tmp_path):
    card = Path(__file__).resolve().parents[2] / "datasets" / "synthetic_reaching.yaml"
    spec = tmp_path / "p.yaml"
    spec.write_text(
        f"name: p\ndataset: {card}\ncluster: {{scheduler: '{client.scheduler.address}'}}\n"
        "steps: [{pull: {include: ['sub-S1/*']}}, {ingest: {}}]\n"
    )
    result = run_pipeline(spec, api_url=server.api_url, workdir=tmp_path / "w", progress=False)
    assert result.ok, result.summary
    assert result.summary[0].startswith("pull: 4 downloaded, 0 up to date, 0 failed")
    assert (
        result.summary[1]
        == f"ingest: 4 ingested, 0 up to date, 0 failed -> {tmp_path / 'w' / 'catalog'}"
    )
    cat = Catalog(tmp_path / "w" / "catalog")
    assert all(e["source_path"].startswith(str(tmp_path / "w" / "raw")) for e in cat.entries)
    with cat.open(cat.ids[0]) as rec:  # the card's splits were applied on the workers
        assert len(rec["test_domain"].load()) > 0


def _slurm_script():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "docs" / "howto" / "dask_slurm_ingest.py"
    spec = importlib.util.spec_from_file_location("dask_slurm_ingest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_slurm_how_to_script_rehearses_locally_and_says_what_slurm_needs(
    server, tmp_path, capsys
):
    script = _slurm_script()
    out = tmp_path / "cat"
    args = ["dandi:000000", "--out", str(out), "--api-url", server.api_url]
    assert script.main([*args, "--include", "sub-S0/*", "--local", "2"]) == 0
    assert "4 ingested, 0 up to date, 0 failed" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a rehearsal has no job script to print
        script.main([*args, "--local", "2", "--dry-run"])
    assert "not allowed with argument" in capsys.readouterr().err
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit):
            script.main([*args, "--dry-run"])
        assert "SLURM workers need dask-jobqueue: pip install 'neurofm[slurm]'" in (
            capsys.readouterr().err
        )
