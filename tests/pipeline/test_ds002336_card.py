"""The OpenNeuro ds002336 (XP1 EEG-fMRI) card: what it promises, and its pipeline end to end
on a replica of the dataset's BIDS layout pulled from a local OpenNeuro stand-in.

The real dataset cannot be fetched here, so the replica (``neurofm.testing.replicas.ds002336``)
is neurofm's synthetic EEG-fMRI BIDS dataset in ds002336's layout: subjects ``sub-xp101`` and
``sub-xp110``, no session, no run entity, tasks ``motorloc`` and ``eegNF``, BrainVision files
copied with mne-bids so their internal links follow the names, root-level events, an atlas
under ``derivatives/``. ``neurofm.testing.openneuro_server`` serves it as ds002336, snapshot
2.0.2, and ``pipelines/ds002336.yaml`` runs as written with ``--openneuro-url`` pointing there:
pull (the card's ``source: {openneuro: ds002336, version: "2.0.2"}``) -> ingest -> SAMBA ->
evaluate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from neurofm.specs import load_card, load_pipeline

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "datasets" / "ds002336.yaml"
PIPELINE = REPO / "pipelines" / "ds002336.yaml"
IDS = [
    "sub-xp101_task-eegNF",
    "sub-xp101_task-motorloc",
    "sub-xp110_task-eegNF",
    "sub-xp110_task-motorloc",
]


def test_card_promises():
    card = load_card(CARD)
    assert card.name == "ds002336"
    assert card.reader == "bids"
    assert card.source.openneuro == "ds002336" and card.source.version == "2.0.2"
    assert card.source.ref == "openneuro:ds002336@2.0.2"
    assert card.source.local is None and card.source.dandi is None
    assert card.source.url == "https://openneuro.org/datasets/ds002336"
    assert card.fields.target == "bold"
    assert card.splits.by == "time"
    assert card.splits.held_out_subjects == ["xp110"]
    pre = card.preprocessing
    assert pre is not None and pre.notch == [50.0] and pre.resample == 128
    assert pre.l_freq is not None and pre.h_freq is not None and pre.h_freq < pre.resample / 2
    notes = " ".join(card.notes.split())
    for must in ("openneuro-py", "datalad", "gradient", "ballistocardiogram", "eeg_pp", "atlas"):
        assert must in notes.lower(), must
    assert "unverified" in notes
    assert "10.18112/openneuro.ds002336.v2.0.2" in notes  # how the snapshot was chosen


def test_a_prepared_local_copy_replaces_the_source_as_the_notes_say(tmp_path):
    _, card, _ = load_pipeline(PIPELINE, [f"card.source={{local: {tmp_path}}}"])
    assert card.source.local == str(tmp_path) and card.source.openneuro is None


@pytest.fixture(scope="module")
def ran(replica, tmp_path_factory):
    """The card's pipeline, run once as written on the replica served by the local OpenNeuro
    stand-in, with one training epoch (one torch thread): ``(catalog, work folder, replica
    truth)``; the stand-in's request log is in ``work.requests``."""
    import contextlib
    import io

    import torch

    from neurofm.cli import main
    from neurofm.data.catalog import Catalog
    from neurofm.testing.openneuro_server import LocalOpenNeuroServer, OpenNeuroDatasetSpec

    truth = replica("ds002336")
    work = tmp_path_factory.mktemp("ds002336-run") / "work"
    options = ["--epochs", "1", "steps.evaluate.plot=false"]
    err = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spec = OpenNeuroDatasetSpec(truth.folder, tags=("1.0.0", "2.0.2", "2.0.3"))
    try:
        with (
            pytest.MonkeyPatch.context() as mp,
            LocalOpenNeuroServer({"ds002336": spec}) as server,
            contextlib.redirect_stderr(err),
        ):
            mp.setenv("NO_PROXY", "127.0.0.1,localhost")
            mp.setenv("no_proxy", "127.0.0.1,localhost")
            url = ["--openneuro-url", server.url]
            code = main(["run", str(PIPELINE), "--workdir", str(work), *url, *options])
            requests = server.requests
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err.getvalue()[-3000:]
    return Catalog(work / "catalog"), work, truth, requests


def test_pipeline_pulls_the_pinned_snapshot_from_openneuro(ran):
    _, work, truth, requests = ran
    raw = work / "raw"
    served = sorted(
        p.relative_to(truth.folder).as_posix()
        for p in truth.folder.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    pulled = sorted(
        p.relative_to(raw).as_posix()
        for p in raw.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    assert pulled == served and any(p.endswith("_bold.nii.gz") for p in pulled)
    for rel in served:
        assert (raw / rel).read_bytes() == (truth.folder / rel).read_bytes(), rel
    manifest = json.loads((raw / ".neurofm-openneuro.json").read_text())
    # the card pins 2.0.2 although the stand-in also has a later snapshot
    assert {e["snapshot"] for e in manifest.values()} == {"openneuro:ds002336@2.0.2"}
    assert {e["checked"] for e in manifest.values()} == {"sha256", "git-sha1"}
    assert [r[1] for r in requests if r[0] == "POST"] == ["/crn/graphql"] * 2
    downloads = [r for r in requests if r[0] == "GET"]
    assert len(downloads) == len(served)


def test_standin_runs_through_samba_and_scores(ran):
    catalog, work, truth, _ = ran
    results = json.loads((work / "results_test.json").read_text())
    assert results["split"] == "test"
    # the held-out subject is the test split: every one of its runs is scored
    assert sorted(results["samba"]) == [i for i in IDS if i.startswith("sub-xp110")]
    for rid, scores in results["samba"].items():
        assert math.isfinite(scores["r_mean"]) and math.isfinite(scores["r2"]), rid
        assert len(scores["r_per_parcel"]) == 20
    assert (work / "samba" / "last.ckpt").is_file()


def test_standin_ingests_with_the_card(ran):
    ingested, _, truth, _ = ran
    assert ingested.ids == IDS
    for rid in ingested.ids:
        with ingested.open(rid) as rec:
            eeg, bold = rec["eeg"].load(), rec["bold"].load()
            assert eeg.rate == 128.0  # the card's resample
            # 90 s at TR 2 s, one volume per R128 marker of the replica's .vmrk
            vhdr = f"sub-{rid.split('_')[0][4:]}/eeg/{rid}_eeg.vhdr"
            assert bold.data.shape[1] == 20 and len(bold) == 45
            assert len(bold) == truth.files[vhdr].behaviour["bold"]
            domains = {s: rec[f"{s}_domain"].load() for s in ("train", "valid", "test")}
            held_out = rec.metadata.subject_id == "xp110"
            assert rec.metadata.subject_id == ("xp110" if held_out else "xp101")
            n_train = domains["train"].contains(bold.timestamps).sum()
            n_test = domains["test"].contains(bold.timestamps).sum()
            if held_out:  # test data from start to end
                assert n_train == 0 and n_test == len(bold)
            else:  # 70 / 10 / 20 % in time, train first
                assert n_train == pytest.approx(0.7 * len(bold), abs=1)
                assert domains["train"].end.max() <= domains["test"].start.min()
            # the BOLD is z-scored per parcel (fmri_cleaning.standardize: zscore_sample)
            np.testing.assert_allclose(bold.data.mean(axis=0), 0, atol=1e-5)
            np.testing.assert_allclose(bold.data.std(axis=0, ddof=1), 1, atol=1e-3)


def test_a_corrupt_download_stops_the_pipeline_before_ingest(replica, tmp_path, capsys):
    from neurofm.cli import main
    from neurofm.testing.openneuro_server import LocalOpenNeuroServer, OpenNeuroDatasetSpec

    truth = replica("ds002336")
    bold = "sub-xp101/func/sub-xp101_task-eegNF_bold.nii.gz"
    assert (truth.folder / bold).is_file()
    spec = OpenNeuroDatasetSpec(truth.folder, tags=("2.0.2",))
    with pytest.MonkeyPatch.context() as mp, LocalOpenNeuroServer({"ds002336": spec}) as server:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        server.corrupt(bold)
        code = main(
            ["run", str(PIPELINE), "--workdir", str(tmp_path), "--openneuro-url", server.url]
        )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    n = sum(p.is_file() and not p.name.startswith(".") for p in truth.folder.rglob("*"))
    assert (
        f"neurofm: error: pull: 1 of {n} files of "
        f"openneuro:ds002336@2.0.2 failed (openneuro:ds002336@2.0.2: {bold}: downloaded bytes "
        "do not match the snapshot's listing (sha256 "
    ) in err
    assert "the verified files are kept, re-run to fetch the others" in err
    assert not (tmp_path / "raw" / bold).exists() and not (tmp_path / "catalog").exists()
