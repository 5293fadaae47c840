"""What dataset cards say about real data: valid_trials expressions, repairs, per-trial targets,
evaluate_on; each checked where the card is loaded (file and key named) and where it is applied
(apply_card, ingest, ``neurofm info``)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import nwb_factory as fac
import pytest

from neurofm.cli import main
from neurofm.data import Catalog, Intervals, Recording, RegularSeries, Spikes
from neurofm.errors import InvalidDataError, SpecError
from neurofm.pipeline import ingest
from neurofm.pipeline.ingest import apply_card
from neurofm.specs import DatasetCard, load_card, load_pipeline, validate

BASE = {"name": "toy", "source": {"dandi": "000001"}, "fields": {"target": "hand_vel"}}


def card(**changes) -> DatasetCard:
    data = {**BASE, **changes}
    data["fields"] = {**BASE["fields"], **changes.get("fields", {})}
    return validate(DatasetCard, data, "toy.yaml")


def recording(start, end, columns=None, time_columns=()) -> Recording:
    """Ten units, hand velocity at 100 Hz over [0, 20 s), and the given trials."""
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 20, 500))
    return Recording(
        "rec",
        {
            "spikes": Spikes(t, rng.integers(0, 10, 500), [f"u{i}" for i in range(10)]),
            "hand_vel": RegularSeries(rng.normal(size=(2000, 2)), 100.0),
            "trials": Intervals(start, end, columns=columns or {}, time_columns=time_columns),
        },
    )


def covered(out: Recording) -> list[tuple[float, float]]:
    """Every (start, end) of the train/valid/test domains, sorted."""
    spans = []
    for split in ("train", "valid", "test"):
        dom = out[f"{split}_domain"].load()
        spans += list(zip(dom.start.tolist(), dom.end.tolist(), strict=True))
    return sorted(spans)


START = np.arange(8) * 2.0
END = START + 1.5


# --------------------------------------------------------------------------------------------
# valid_trials
# --------------------------------------------------------------------------------------------


def test_string_result_column_keeps_only_what_the_expression_says():
    result = np.array(["R", "A", "R", "I", "F", "R", "R", "A"], dtype=object)
    rec = recording(START, END, {"result": result})
    out = apply_card(rec, card(fields={"valid_trials": 'result == "R"'}), "toy.nwb")
    kept = np.flatnonzero(result == "R")
    assert covered(out) == [(START[i], END[i]) for i in kept]


def test_bare_string_column_is_an_error_not_a_silent_keep_all():
    result = np.array(["R", "A", "R", "I", "F", "R", "R", "A"], dtype=object)
    rec = recording(START, END, {"result": result})
    with pytest.raises(InvalidDataError) as err:
        apply_card(rec, card(fields={"valid_trials": "result"}), "toy.nwb")
    assert str(err.value).startswith(
        "toy.nwb: dataset card 'toy': fields.valid_trials 'result': column 'result' holds "
        "strings ('R', 'A', 'I', 'F')"
    )


def test_uint8_flags_combine():
    success = np.array([1, 1, 0, 1, 1, 0, 1, 1], dtype=np.uint8)
    discard = np.array([0, 1, 0, 0, 0, 0, 1, 0], dtype=np.uint8)
    rec = recording(START, END, {"task_success": success, "discard_trial": discard})
    rule = "task_success == 1 and discard_trial == 0"
    out = apply_card(rec, card(fields={"valid_trials": rule}), "toy.nwb")
    kept = np.flatnonzero((success == 1) & (discard == 0))
    assert covered(out) == [(START[i], END[i]) for i in kept]


def test_a_missing_column_names_the_ones_there_are():
    rec = recording(START, END, {"task_success": np.ones(8, np.uint8)})
    with pytest.raises(InvalidDataError, match=r"no column 'success' \(columns: task_success\)"):
        apply_card(rec, card(fields={"valid_trials": "success == 1"}), "toy.nwb")


# --------------------------------------------------------------------------------------------
# repairs of trials
# --------------------------------------------------------------------------------------------

# Back-to-back trials whose ends pass the next start by float noise (MC_RTT), and one real
# overlap of 0.3 s between trials 5 and 6.
RTT_START = np.arange(8) * 0.6
RTT_END = RTT_START + 0.6 + np.array([1e-9, 0, 2e-7, 0, 0, 0.3, 0, 0])


def test_overlap_without_repairs_says_what_the_card_can_do():
    rec = recording(RTT_START, RTT_END)
    with pytest.raises(InvalidDataError) as err:
        apply_card(rec, card(splits={"by": "random"}), "rtt.nwb")
    text = str(err.value)
    assert (
        "trials 0 and 1 overlap by 1e-09 s (3 overlapping neighbours, largest overlap 0.3 s)"
        in (text)
    )
    assert "repairs: trial_overlap: {tolerance_s: ...}" in text
    assert "repairs: overlapping_trials: drop" in text


def test_trial_overlap_clips_float_noise_only(caplog):
    rec = recording(RTT_START, RTT_END)
    tolerance = card(splits={"by": "random"}, repairs={"trial_overlap": {"tolerance_s": 0.001}})
    # The 0.3 s overlap is not noise: still refused.
    with pytest.raises(InvalidDataError, match="trials 5 and 6 overlap by 0.3 s"):
        apply_card(rec, tolerance, "rtt.nwb")
    both = card(
        splits={"by": "random"},
        repairs={"trial_overlap": {"tolerance_s": 0.001}, "overlapping_trials": "drop"},
    )
    out = apply_card(recording(RTT_START, RTT_END), both, "rtt.nwb")
    trials = out["trials"].load()
    # ends of trials 0 and 2 clipped to the next start; 5 and 6 dropped
    kept = [0, 1, 2, 3, 4, 7]
    np.testing.assert_array_equal(trials.start, RTT_START[kept])
    np.testing.assert_array_equal(trials.end[[0, 2]], RTT_START[[1, 3]])
    np.testing.assert_array_equal(trials.end[[1, 3, 4, 5]], RTT_END[[1, 3, 4, 7]])
    assert sorted(s for s, _ in covered(out)) == RTT_START[kept].tolist()
    repairs = out.provenance.extra["repairs"]
    assert repairs["trial_overlap"] == {
        "tolerance_s": 0.001,
        "n_trials": 2,
        "trials": [0, 2],
        "max_clipped_s": pytest.approx(2e-7),
    }
    assert repairs["overlapping_trials"] == {"policy": "drop", "n_trials": 2, "trials": [5, 6]}
    assert "2 trial end(s) overlapping the next start" in caplog.text
    assert "2 of 8 trials overlapped another trial and were dropped (5, 6)" in caplog.text


def test_nested_trials_are_dropped_both_ways():
    start, end = np.array([0.0, 1.0, 2.0, 6.0]), np.array([5.0, 1.5, 2.5, 7.0])
    out = apply_card(
        recording(start, end), card(splits={"by": "random"}, repairs={"overlapping_trials": "drop"})
    )
    np.testing.assert_array_equal(out["trials"].start, [6.0])
    assert out.provenance.extra["repairs"]["overlapping_trials"]["trials"] == [0, 1, 2]


# --------------------------------------------------------------------------------------------
# per-trial targets and evaluate_on
# --------------------------------------------------------------------------------------------


def test_a_trial_target_is_checked_against_the_table():
    columns = {"tp": np.linspace(0.5, 1.0, 8), "set_time": START + 1.0, "set_at": START + 1.0}
    rec = recording(START, END, columns, time_columns=["set_time"])
    good = card(fields={"target": {"trials": "tp", "at": "set_time"}}, splits={"by": "random"})
    assert len(apply_card(rec, good)["train_domain"]) > 0
    missing = card(fields={"target": {"trials": "t_p", "at": "set_time"}})
    with pytest.raises(InvalidDataError, match=r"fields.target.trials 't_p' is not a column of"):
        apply_card(rec, missing)
    not_time = card(fields={"target": {"trials": "tp", "at": "set_at"}})
    with pytest.raises(InvalidDataError, match=r"fields.target.at 'set_at' is not a time column"):
        apply_card(rec, not_time)
    held_out = card(
        fields={"target": {"trials": "tp", "at": "set_time"}},
        splits={"by": "random", "held_out_subjects": ["T0"]},
    )
    rec.metadata.subject_id = "T0"  # all of it is test data: the trials' whole span
    assert covered(apply_card(rec, held_out)) == [(0.0, END[-1])]


def test_an_interval_table_as_target_is_a_clear_error_at_ingest():
    # DMFC_RSG's first card said `target: trials`: training then failed with an AttributeError.
    rec = recording(START, END)
    with pytest.raises(InvalidDataError) as err:
        apply_card(rec, card(fields={"target": "trials"}), "rsg.nwb")
    assert str(err.value) == (
        "rsg.nwb: dataset card 'toy': fields.target 'trials' is intervals, not a behaviour "
        "series; to decode a per-trial value give {trials: <column>, at: <time column>}"
    )


def test_evaluate_on_is_stored_for_neurofm_evaluate():
    nlb = {"by": "column", "values": {"val": "valid", "test": "drop"}, "evaluate_on": "valid"}
    split = np.array(["train", "val", "train", "test", "train", "val", "train", "train"])
    out = apply_card(
        recording(START, END, {"split": split}), card(splits=nlb, fields={"split_column": "split"})
    )
    assert out.metadata.extra["evaluate_on"] == "valid"
    assert len(out["test_domain"]) == 0 and len(out["valid_domain"]) == 2


# --------------------------------------------------------------------------------------------
# the cards: errors name the file and the key
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"fields": {"valid_trials": "open('x')"}},
            "toy.yaml: fields.valid_trials: function calls: not allowed in an expression",
        ),
        (
            {"fields": {"target": {"trials": "tp"}}},
            "toy.yaml: fields.target.at: required key is missing",
        ),
        (
            {"fields": {"target": {"trials": "tp", "at": "set_time", "kind": "label"}}},
            "toy.yaml: fields.target.kind: Input should be 'regression' or 'class'",
        ),
        (
            {"fields": {"target": {"trials": "tp", "at": "set_time", "col": "x"}}},
            "toy.yaml: fields.target.col: unknown key (expected one of: at, kind, table, trials)",
        ),
        (
            {"repairs": {"unsorted_spikes": "delete"}},
            "toy.yaml: repairs.unsorted_spikes: Input should be 'drop_units' or 'sort'",
        ),
        (
            {"repairs": {"trial_overlap": {"tolerance": 0.001}}},
            "toy.yaml: repairs.trial_overlap.tolerance: unknown key (expected one of: tolerance_s)",
        ),
        (
            {"repairs": {"sort_spikes": True}},
            "toy.yaml: repairs.sort_spikes: unknown key (expected one of: overlapping_trials, "
            "trial_overlap, unsorted_spikes)",
        ),
        (
            {"splits": {"by": "column", "values": {"test": "drop"}, "evaluate_on": "test"}},
            "toy.yaml: splits.evaluate_on: 'test' is a split no trial can land in",
        ),
        (
            {"fields": {"target": {"trials": "tp", "at": "set_time"}}, "splits": {"by": "time"}},
            "toy.yaml: (top level): a per-trial target",
        ),
    ],
)
def test_card_mistakes_name_file_and_key(changes, expected):
    with pytest.raises(SpecError) as err:
        card(**changes)
    assert expected in str(err.value)


def test_trial_target_reads_the_cards_trials_table():
    got = card(fields={"trials": "epochs", "target": {"trials": "tp", "at": "set_time"}})
    assert got.fields.target.table == "epochs"
    assert got.fields.target_label == "tp@set_time"


NLB_CARD = """\
name: nlb_like
source: {dandi: "000001"}
fields: {target: hand_vel, split_column: split}
splits:
  by: column
  values: {val: valid, test: drop}
"""


def test_a_pipeline_evaluating_an_empty_split_fails_when_loaded(tmp_path):
    datasets, pipelines = tmp_path / "datasets", tmp_path / "pipelines"
    datasets.mkdir()
    pipelines.mkdir()
    (datasets / "nlb_like.yaml").write_text(NLB_CARD)
    pipe = pipelines / "p.yaml"
    steps = "  - pull: {}\n  - ingest: {}\n  - train: {}\n  - evaluate: {}\n"
    pipe.write_text(f"name: p\ndataset: nlb_like\nsteps:\n{steps}")
    with pytest.raises(SpecError) as err:
        load_pipeline(pipe)
    assert str(err.value).startswith(f"{datasets / 'nlb_like.yaml'}: splits.evaluate_on: ")
    assert "evaluates the 'test' split (the default)" in str(err.value)
    explicit = steps.replace("evaluate: {}", "evaluate: {split: test}")
    pipe.write_text(f"name: p\ndataset: nlb_like\nsteps:\n{explicit}")
    with pytest.raises(SpecError, match=r"p.yaml: steps\[3\].evaluate.split: 'test' is empty"):
        load_pipeline(pipe)
    (datasets / "nlb_like.yaml").write_text(NLB_CARD + "  evaluate_on: valid\n")
    pipe.write_text(f"name: p\ndataset: nlb_like\nsteps:\n{steps}")
    spec, loaded, _ = load_pipeline(pipe)
    assert loaded.splits.evaluate_on == "valid" and spec.steps[3].evaluate.split is None


# --------------------------------------------------------------------------------------------
# ingest from NWB and `neurofm info`
# --------------------------------------------------------------------------------------------


def churchland_like(path: Path) -> Path:
    """Unit '1' goes back in time; trials 1 and 2 overlap by 0.5 s; uint8 flags."""
    nwb = fac.new_nwbfile()
    rng = np.random.default_rng(1)
    for u in range(4):
        train = np.sort(rng.uniform(0, 9.9, 50))
        if u == 1:
            train[[10, 11]] = train[[11, 10]]
        nwb.add_unit(spike_times=train)
    fac.add_behavior(nwb, n=1000)  # hand_vel at 100 Hz for 10 s
    nwb.add_trial_column("task_success", "success flag")
    nwb.add_trial_column("discard_trial", "discard flag")
    bounds = [(0.5, 2.0), (2.5, 4.5), (4.0, 5.5), (6.0, 7.5), (8.0, 9.5)]
    for i, (s, e) in enumerate(bounds):
        nwb.add_trial(
            start_time=s,
            stop_time=e,
            task_success=np.uint8(i != 3),
            discard_trial=np.uint8(0),
        )
    fac.write(path, nwb)
    fac.replace_dataset(path, "intervals/trials/task_success", np.array([1, 1, 1, 0, 1], "u1"))
    fac.replace_dataset(path, "intervals/trials/discard_trial", np.zeros(5, "u1"))
    return path


CHURCHLAND_CARD = """\
name: churchland_like
source: {dandi: "000070"}
fields:
  target: hand_vel
  valid_trials: task_success == 1 and discard_trial == 0
repairs:
  unsorted_spikes: drop_units
  overlapping_trials: drop
splits: {by: random, fractions: [0.5, 0.0, 0.5]}
"""


def test_ingest_repairs_and_info_shows_them(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    nwb = churchland_like(tmp_path / "raw" / "sub-J_ses-1_ecephys.nwb")
    (tmp_path / "card.yaml").write_text(CHURCHLAND_CARD)
    report = ingest(
        nwb, tmp_path / "catalog", card=load_card(tmp_path / "card.yaml"), progress=False
    )
    assert report.ok, report.failed
    catalog = Catalog(tmp_path / "catalog")
    with catalog.open(catalog.ids[0]) as rec:
        assert list(rec["spikes"].units.ids) == ["0", "2", "3"]
        assert len(rec["spikes"]) == 150
        assert len(rec["trials"]) == 3  # 1 and 2 dropped
        repairs = rec.provenance.extra["repairs"]
        assert repairs["unsorted_spikes"]["units"] == ["1"]
        assert repairs["overlapping_trials"]["trials"] == [1, 2]
        # valid trials that survived: 0 and 4 (3 failed)
        assert covered(rec) == [(0.5, 2.0), (8.0, 9.5)]
    h5 = next((tmp_path / "catalog").glob("*.h5"))
    assert main(["info", str(h5)]) == 0
    out = capsys.readouterr().out
    assert "repairs          unsorted_spikes drop_units: 1 unit(s) dropped (1), 50 spikes" in out
    assert "repairs          overlapping_trials drop: 2 trial(s) dropped (1, 2)" in out
    assert main(["info", str(h5), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["provenance"]["extra"]["repairs"]["overlapping_trials"]["n_trials"] == 2


# --------------------------------------------------------------------------------------------
# neurofm datasets
# --------------------------------------------------------------------------------------------


def test_datasets_lists_the_cards_and_their_replicas(capsys):
    from neurofm.testing.replicas import REPLICAS

    assert main(["datasets", "--json"]) in (0, 1)
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    repo = Path(__file__).resolve().parents[2]
    assert set(rows) == {p.stem for p in (repo / "datasets").glob("*.yaml")}
    for name, row in rows.items():
        if "error" in row:
            continue
        assert row["replica"] == (name in REPLICAS), name
        cardfile = load_card(repo / "datasets" / f"{name}.yaml")
        assert row["target"] == (cardfile.fields.target_label or "-")
        if cardfile.source.dandi:
            assert row["source"] == f"dandi:{cardfile.source.dandi}"
            assert row["version"] == (cardfile.source.version or "latest")


def test_datasets_table_and_show(tmp_path, capsys):
    (tmp_path / "nlb_like.yaml").write_text(
        NLB_CARD.replace('source: {dandi: "000001"}', 'source: {dandi: "000001", size: "2.1 GB"}')
        + "  evaluate_on: valid\nrepairs: {trial_overlap: {tolerance_s: 0.001}}\n"
    )
    (tmp_path / "dmfc_like.yaml").write_text(
        textwrap.dedent(
            """\
            name: dmfc_like
            source: {dandi: "000130", version: "0.220113.0407"}
            fields: {target: {trials: is_short, at: set_time, kind: class}}
            """
        )
    )
    assert main(["datasets", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["card", "source", "version", "target", "size", "replica", "repairs"]
    assert lines[3].split() == [
        "dmfc_like", "dandi:000130", "0.220113.0407", "is_short@set_time", "(class)", "?", "-",
        "-",
    ]  # fmt: skip
    assert lines[4].split() == [
        "nlb_like", "dandi:000001", "latest", "hand_vel", "2.1", "GB", "-", "trial_overlap",
    ]  # fmt: skip
    assert main(["datasets", "--dir", str(tmp_path), "show", "dmfc_like"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"# {tmp_path / 'dmfc_like.yaml'}\nname: dmfc_like\n")
    assert main(["datasets", "--dir", str(tmp_path), "show", "dmfc"]) == 1
    assert "no dataset card 'dmfc' in" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("name: broken\nsource: {dandi: 130}\n")
    assert main(["datasets", "--dir", str(tmp_path)]) == 1
    assert "broken: invalid card: " in capsys.readouterr().out
    assert main(["datasets", "--dir", str(tmp_path), "show", "broken"]) == 1
    assert "source.dandi: must be a quoted 6-digit string" in capsys.readouterr().err
