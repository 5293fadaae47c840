"""`neurofm ingest` options: --card and --splits give a catalog train/valid/test domains, --id
names a recording, and a BIDS run's EEG and BOLD read one by one get distinct ids."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from neurofm.cli import main
from neurofm.data import Catalog
from neurofm.data.catalog import split_domains
from neurofm.errors import InvalidDataError
from neurofm.readers.nwb import read_nwb

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "datasets" / "synthetic_reaching.yaml"
SPLITS = ("train", "valid", "test")


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def nwb(tmp_path_factory) -> Path:
    """One synthetic reaching session (30 trials) as NWB."""
    from neurofm.synthetic import generate_reaching_dataset

    root = tmp_path_factory.mktemp("reach")
    generate_reaching_dataset(
        root, n_subjects=1, n_sessions=1, n_trials=30, n_units_range=(20, 25), progress=False
    )
    return next(root.rglob("*.nwb"))


def _domains(catalog: Path) -> tuple[dict, object]:
    cat = Catalog(catalog)
    assert len(cat) == 1
    with cat.open(cat.ids[0]) as rec:
        return {s: rec[f"{s}_domain"].load() for s in SPLITS}, rec.load()


def _no_overlap(domains: dict) -> None:
    spans = sorted((s, e) for d in domains.values() for s, e in zip(d.start, d.end, strict=True))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_splits_random_are_the_trials_at_random(nwb, tmp_path):
    code, out, err = run_main("ingest", nwb, "--out", tmp_path / "c", "--splits", "random")
    assert code == 0, err
    domains, rec = _domains(tmp_path / "c")
    expected = split_domains(rec["trials"], (0.7, 0.1, 0.2), seed=0)  # the rule it documents
    for split in SPLITS:
        np.testing.assert_array_equal(domains[split].start, expected[split].start)
        np.testing.assert_array_equal(domains[split].end, expected[split].end)
    assert sum(len(d) for d in domains.values()) == len(rec["trials"]) == 30
    _no_overlap(domains)
    assert rec.metadata.extra["splits"] == "random"


def test_splits_column_follow_the_split_column(nwb, tmp_path):
    code, _, err = run_main("ingest", nwb, "--out", tmp_path / "c", "--splits", "column")
    assert code == 0, err
    domains, rec = _domains(tmp_path / "c")
    trials = rec["trials"]
    labels = [str(v) for v in trials.columns["split"]]
    for split in SPLITS:
        starts = [s for s, lab in zip(trials.start, labels, strict=True) if lab == split]
        np.testing.assert_array_equal(domains[split].start, starts)
    _no_overlap(domains)


def test_splits_time_cut_the_recording_in_blocks(nwb, tmp_path):
    code, _, err = run_main("ingest", nwb, "--out", tmp_path / "c", "--splits", "time")
    assert code == 0, err
    domains, rec = _domains(tmp_path / "c")
    edges = rec.duration * np.cumsum([0.0, 0.7, 0.1, 0.2])
    for split, lo, hi in zip(SPLITS, edges[:-1], edges[1:], strict=True):
        assert len(domains[split]) == 1
        assert domains[split].start[0] == pytest.approx(lo)
        assert domains[split].end[0] == pytest.approx(hi)


def test_card_gives_the_card_splits(nwb, tmp_path):
    code, _, err = run_main("ingest", nwb, "--out", tmp_path / "c", "--card", CARD)
    assert code == 0, err
    domains, rec = _domains(tmp_path / "c")
    assert rec.metadata.extra["dataset_card"] == "synthetic_reaching"
    trials = rec["trials"]
    valid = np.asarray(trials.columns["is_success"], dtype=bool)
    labels = np.asarray([str(v) for v in trials.columns["split"]])
    for split in SPLITS:  # the card: successful trials, by the split column
        np.testing.assert_array_equal(domains[split].start, trials.start[valid & (labels == split)])


def test_ingesting_again_with_other_rules_writes_the_recording_again(nwb, tmp_path, caplog):
    out = tmp_path / "c"
    assert run_main("ingest", nwb, "--out", out, "--splits", "random")[0] == 0
    random_domains, _ = _domains(out)
    code, stdout, _ = run_main("ingest", nwb, "--out", out, "--card", CARD)
    assert code == 0 and "1 ingested, 0 up to date" in stdout
    (said,) = [r.getMessage() for r in caplog.records if "ingesting it again" in r.getMessage()]
    assert "was ingested with other settings (dataset card, splits, reader options or id)" in said
    card_domains, rec = _domains(out)  # the card's domains now, not the random ones
    assert rec.metadata.extra["dataset_card"] == "synthetic_reaching"
    assert not np.array_equal(card_domains["train"].start, random_domains["train"].start)
    # the same rules again: up to date; only a real change counts
    assert "0 ingested, 1 up to date" in run_main("ingest", nwb, "--out", out, "--card", CARD)[1]


def test_eeg_preprocessing_is_part_of_what_is_up_to_date(bids, tmp_path):
    out, eeg = tmp_path / "c", bids["eeg"]
    assert run_main("ingest", eeg, "--out", out)[0] == 0
    assert "0 ingested, 1 up to date" in run_main("ingest", eeg, "--out", out)[1]
    prep = tmp_path / "prep.yaml"
    prep.write_text("resample: 100\n")
    code, stdout, _ = run_main("ingest", eeg, "--out", out, "--eeg-preprocessing", prep)
    assert code == 0 and "1 ingested, 0 up to date" in stdout
    cat = Catalog(out)
    with cat.open(cat.ids[0]) as rec:
        assert rec["eeg"].rate == 100.0


def test_card_and_splits_together_is_a_usage_error(nwb, tmp_path):
    code, _, err = run_main(
        "ingest", nwb, "--out", tmp_path / "c", "--card", CARD, "--splits", "time"
    )
    assert code == 2
    assert "argument --splits: not allowed with argument --card" in err
    assert not (tmp_path / "c").exists()


def test_a_bad_card_is_one_clear_error(nwb, tmp_path):
    card = tmp_path / "card.yaml"
    card.write_text(CARD.read_text().replace("splits:\n  by: column", "splits:\n  bye: column"))
    code, out, err = run_main("ingest", nwb, "--out", tmp_path / "c", "--card", card)
    assert code == 1 and out == ""
    assert err.startswith(f"neurofm: error: {card}: splits.bye: unknown key")


def test_splits_on_a_recording_without_trials(tmp_path):
    from nwb_factory import with_spike_trains

    path = with_spike_trains(tmp_path / "x.nwb", [[0.1, 0.5], [0.2]])
    code, out, err = run_main("ingest", path, "--out", tmp_path / "c", "--splits", "random")
    assert code == 1
    assert "--splits random: splits the 'trials' intervals, but the file has none" in err
    assert "--splits time cuts a continuous recording instead" in err
    code, _, err = run_main("ingest", path, "--out", tmp_path / "c", "--splits", "time")
    assert code == 0, err


def test_training_on_a_catalog_without_splits_says_how_to_add_them(nwb, tmp_path):
    from neurofm.training.datasets import split_domains_of

    assert run_main("ingest", nwb, "--out", tmp_path / "c")[0] == 0
    with pytest.raises(InvalidDataError) as err:
        split_domains_of(Catalog(tmp_path / "c"), "train")
    message = str(err.value)
    assert "has no 'train_domain' (it was ingested without train/valid/test splits)" in message
    assert f"neurofm ingest SRC --out {tmp_path / 'c'} --force --splits random" in message
    assert "--card datasets/<card>.yaml" in message


def test_id_names_the_recording(nwb, tmp_path):
    code, out, err = run_main("ingest", nwb, "--out", tmp_path / "c", "--id", "monkey-day1")
    assert code == 0, err
    assert f"ingested  {nwb} -> monkey-day1" in out
    assert Catalog(tmp_path / "c").ids == ["monkey-day1"]
    with Catalog(tmp_path / "c").open("monkey-day1") as rec:
        assert rec.id == "monkey-day1"
        assert len(rec["spikes"]) == len(read_nwb(nwb)["spikes"])
    code, _, err = run_main("ingest", nwb.parent, "--out", tmp_path / "d", "--id", "a/b")
    assert code == 1 and "id: must be a non-empty name without '/'" in err


def test_id_needs_a_single_source(nwb, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a.nwb", "b.nwb"):
        (folder / name).write_bytes(nwb.read_bytes())
    code, _, err = run_main("ingest", folder, "--out", tmp_path / "c", "--id", "x")
    assert code == 1
    assert "an id names one recording, but this source holds 2" in err


# --------------------------------------------------------------------------------------------
# BIDS: a run's EEG and BOLD read one by one
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> dict:
    from neurofm.synthetic.eeg_fmri import generate_eeg_fmri_dataset

    root = tmp_path_factory.mktemp("bids")
    generate_eeg_fmri_dataset(root, n_subjects=1, duration=40.0, n_parcels=6, progress=False)
    run = root / "sub-01" / "ses-01"
    return {
        "root": root,
        "eeg": run / "eeg" / "sub-01_ses-01_task-stim_run-1_eeg.vhdr",
        "bold": run / "func" / "sub-01_ses-01_task-stim_run-1_bold.nii.gz",
        "atlas": next((root / "derivatives").rglob("*_dseg.nii.gz")),
    }


def test_eeg_and_bold_of_a_run_get_distinct_ids_in_one_ingest(bids, tmp_path):
    code, out, err = run_main(
        "ingest", bids["root"] / "sub-01", "--out", tmp_path / "c", "--atlas", bids["atlas"]
    )
    assert code == 0, err
    assert f"ingested  {bids['eeg']} -> sub-01_ses-01_task-stim_run-1_eeg" in out
    assert f"ingested  {bids['bold']} -> sub-01_ses-01_task-stim_run-1_bold" in out
    cat = Catalog(tmp_path / "c")
    with cat.open("sub-01_ses-01_task-stim_run-1_eeg") as rec:
        assert "eeg" in rec and "bold" not in rec
    with cat.open("sub-01_ses-01_task-stim_run-1_bold") as rec:
        assert "bold" in rec and "eeg" not in rec


def test_a_run_id_taken_by_the_other_modality(bids, tmp_path):
    out_dir = tmp_path / "c"
    assert run_main("ingest", bids["eeg"], "--out", out_dir)[0] == 0
    code, out, err = run_main("ingest", bids["bold"], "--out", out_dir, "--atlas", bids["atlas"])
    assert code == 0, err
    assert "-> sub-01_ses-01_task-stim_run-1_bold" in out
    assert sorted(Catalog(out_dir).ids) == [
        "sub-01_ses-01_task-stim_run-1",
        "sub-01_ses-01_task-stim_run-1_bold",
    ]
    # --id wins
    code, out, err = run_main(
        "ingest", bids["bold"], "--out", out_dir, "--atlas", bids["atlas"], "--id", "bold-1",
        "--force",
    )  # fmt: skip
    assert code == 0, err
    assert "bold-1" in Catalog(out_dir).ids


def test_a_real_clash_says_how_to_give_an_id(bids, tmp_path):
    out_dir = tmp_path / "c"
    assert run_main("ingest", bids["eeg"], "--out", out_dir)[0] == 0
    other = tmp_path / "copy" / bids["eeg"].relative_to(bids["root"])
    # the same run's EEG from another copy of the dataset, changed: same id, same suffix
    import shutil

    shutil.copytree(bids["root"], tmp_path / "copy")
    with open(other.with_suffix(".vmrk"), "a") as fh:
        fh.write("\n")
    code, _, err = run_main("ingest", other, "--out", out_dir)
    assert code == 1
    assert "recording id 'sub-01_ses-01_task-stim_run-1' is already taken" in err
    assert f"give this one its own id (neurofm ingest {other} --id NEW_ID)" in err
