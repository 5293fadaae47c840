"""The OpenNeuro ds002336 (XP1 EEG-fMRI) card: what it promises, and its pipeline end to end
on a replica of the dataset's BIDS layout.

The real dataset cannot be fetched here, so the replica (``neurofm.testing.replicas.ds002336``)
is neurofm's synthetic EEG-fMRI BIDS dataset in ds002336's layout: subjects ``sub-xp101`` and
``sub-xp110``, no session, no run entity, tasks ``motorloc`` and ``eegNF``, BrainVision files
copied with mne-bids so their internal links follow the names, root-level events, an atlas
under ``derivatives/``. ``pipelines/ds002336.yaml`` runs on it with the card's source pointed
there (``card.source.local=...``, as the card's notes tell users to do): ingest -> SAMBA ->
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
    assert card.source.local and card.source.dandi is None and card.source.synthetic is None
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


@pytest.fixture(scope="module")
def ran(replica, tmp_path_factory):
    """The card's pipeline, run once on the replica with one training epoch (one torch
    thread): ``(catalog, work folder, replica truth)``."""
    import contextlib
    import io

    import torch

    from neurofm.cli import main
    from neurofm.data.catalog import Catalog

    truth = replica("ds002336")
    work = tmp_path_factory.mktemp("ds002336-run") / "work"
    options = [f"card.source.local={truth.folder}", "--epochs", "1", "steps.evaluate.plot=false"]
    load_pipeline(PIPELINE, options[:1])  # the override is what the card's notes describe
    err = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stderr(err):
            code = main(["run", str(PIPELINE), "--workdir", str(work), *options])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err.getvalue()[-3000:]
    return Catalog(work / "catalog"), work, truth


def test_standin_runs_through_samba_and_scores(ran):
    catalog, work, truth = ran
    results = json.loads((work / "results_test.json").read_text())
    assert results["split"] == "test"
    # the held-out subject is the test split: every one of its runs is scored
    assert sorted(results["samba"]) == [i for i in IDS if i.startswith("sub-xp110")]
    for rid, scores in results["samba"].items():
        assert math.isfinite(scores["r_mean"]) and math.isfinite(scores["r2"]), rid
        assert len(scores["r_per_parcel"]) == 20
    assert (work / "samba" / "last.ckpt").is_file()


def test_standin_ingests_with_the_card(ran):
    ingested, _, truth = ran
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
