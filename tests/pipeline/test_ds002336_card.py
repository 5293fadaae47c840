"""The OpenNeuro ds002336 (XP1 EEG-fMRI) card: what it promises, and that it ingests a stand-in.

The real dataset cannot be fetched here, so the stand-in is neurofm's synthetic EEG-fMRI BIDS
dataset renamed into ds002336's layout (subjects ``sub-xp1NN``, no session, no run entity, task
``eegNF``; BrainVision files copied with mne-bids so their internal links follow the names).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from neurofm.specs import load_card

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "datasets" / "ds002336.yaml"
SUBJECTS = {"01": "xp101", "02": "xp110"}  # synthetic subject -> ds002336 subject


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


def _standin(synthetic: Path, out: Path) -> None:
    """Copy the synthetic BIDS dataset into ds002336's layout."""
    from mne_bids.copyfiles import copyfile_brainvision

    out.mkdir(parents=True)
    for name in ("dataset_description.json", "README", "participants.json"):
        shutil.copy(synthetic / name, out / name)
    participants = (synthetic / "participants.tsv").read_text()
    for old, new in SUBJECTS.items():
        participants = participants.replace(f"sub-{old}\t", f"sub-{new}\t")
        src = synthetic / f"sub-{old}" / "ses-01"
        dst = out / f"sub-{new}"

        def rename(name: str, old: str = old, new: str = new) -> str:
            name = name.replace(f"sub-{old}_ses-01_task-stim_run-1", f"sub-{new}_task-eegNF")
            return name.replace(f"sub-{old}_ses-01_", f"sub-{new}_")

        for path in sorted(src.rglob("*")):
            if path.is_dir() or path.suffix in (".eeg", ".vmrk"):
                continue  # BrainVision companions travel with their .vhdr
            target = dst / path.parent.relative_to(src) / rename(path.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".vhdr":
                copyfile_brainvision(path, target, verbose=False)
            elif path.name.endswith("_scans.tsv"):
                target.write_text(rename(path.read_text()))
            else:
                shutil.copy(path, target)
    (out / "participants.tsv").write_text(participants)
    atlas = synthetic / "derivatives" / "neurofm-synth" / "atlas"
    shutil.copytree(atlas, out / "derivatives" / "atlas")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from neurofm.data.catalog import Catalog
    from neurofm.pipeline import run_pipeline
    from neurofm.synthetic.eeg_fmri import generate_eeg_fmri_dataset

    root = tmp_path_factory.mktemp("ds002336")
    generate_eeg_fmri_dataset(root / "synthetic", n_subjects=2, duration=120.0, progress=False)
    _standin(root / "synthetic", root / "ds002336")
    # The shipped card, with its placeholder source replaced as its notes tell users to.
    text = CARD.read_text().replace("local: openneuro/ds002336", f"local: {root / 'ds002336'}")
    assert str(root) in text
    card = root / "ds002336.yaml"
    card.write_text(text)
    spec = root / "pipeline.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            name: ds002336-standin
            dataset: {card}
            workdir: {root / "work"}
            steps:
              - pull: {{}}
              - ingest: {{out: catalog}}
            """
        )
    )
    result = run_pipeline(spec, progress=False)
    assert result.ok, result.reports["ingest"].failed
    return Catalog(root / "work" / "catalog")


def test_standin_ingests_with_the_card(ingested):
    assert ingested.ids == ["sub-xp101_task-eegNF", "sub-xp110_task-eegNF"]
    for rid in ingested.ids:
        with ingested.open(rid) as rec:
            eeg, bold = rec["eeg"].load(), rec["bold"].load()
            assert eeg.rate == 128.0  # the card's resample
            assert bold.data.shape[1] == 20 and len(bold) == 60  # 120 s at TR 2 s
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
