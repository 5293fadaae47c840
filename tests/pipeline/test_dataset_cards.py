"""Dataset cards (``datasets/*.yaml``): they validate, name the right dandisets, give clear errors,
and run end to end against a local DANDI server serving stand-in NWB files in each card's layout.

The stand-ins are tiny NWB files written with pynwb, in the layout a card documents (asset path
matching its ``include`` globs, the target series under the same name and container style,
trials with the card's split / validity columns), served with :class:`LocalDandiServer` under
the card's dandiset id (and published version when the card pins one), then pulled and
ingested by ``run_pipeline``.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import nwb_factory as fac
import pytest

from neurofm.errors import SpecError
from neurofm.specs import DatasetCard, TrialTargetSpec, load_card, load_pipeline

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / "datasets"
CARD_FILES = sorted(DATASETS.glob("*.yaml"))

# The public motor datasets users ask for: card name -> DANDI id.
EXPECTED_IDS = {
    "mc_maze": "000128",
    "mc_maze_large": "000138",
    "mc_maze_medium": "000139",
    "mc_maze_small": "000140",
    "mc_rtt": "000129",
    "area2_bump": "000127",
    "dmfc_rsg": "000130",
    "perich_miller_2018": "000688",
    "churchland_2012": "000070",
}
NLB = ["mc_maze", "mc_maze_large", "mc_maze_medium", "mc_maze_small", "mc_rtt", "area2_bump"]
NLB += ["dmfc_rsg"]
# The versions the benchmark's dandisets were published as (issue 13); MC_RTT's is the one
# published version public code cites (see its card's notes).
PINNED = {
    "mc_maze": "0.220113.0400",
    "mc_maze_large": "0.220113.0407",
    "mc_maze_medium": "0.220113.0408",
    "mc_maze_small": "0.220113.0408",
    "mc_rtt": "0.241017.1444",
    "area2_bump": "0.220113.0359",
    "dmfc_rsg": "0.220113.0407",
}


@pytest.fixture(autouse=True)
def _offline_dandi(monkeypatch):
    monkeypatch.setenv("DANDI_NO_ET", "1")  # no etelemetry call from the dandi client
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# --------------------------------------------------------------------------------------------
# the shipped cards
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda p: p.stem)
def test_card_validates(path):
    card = load_card(path)
    assert card.name == path.stem, "a card's name is its file name"
    # NWB cards decode behaviour from spikes; BIDS cards (EEG-fMRI) translate EEG to BOLD.
    assert card.reader in ("nwb", "bids")
    assert card.description.strip(), "description is empty"
    assert card.citation.strip(), "citation is empty"
    source = card.source
    if source.dandi is not None:
        assert re.fullmatch(r"\d{6}", source.dandi)
        assert source.local is None
    elif source.openneuro is not None:
        assert source.version, "OpenNeuro cards pin a snapshot"
        assert source.url == f"https://openneuro.org/datasets/{source.openneuro}"
    elif source.synthetic is None:
        assert source.local
    if card.name in EXPECTED_IDS:
        assert source.dandi == EXPECTED_IDS[card.name]
        assert source.url == f"https://dandiarchive.org/dandiset/{source.dandi}"
        assert source.include, "public cards select their files with include globs"
        assert card.notes.strip(), "public cards say what is uncertain in notes"
        notes = " ".join(card.notes.split())
        assert re.search(r"\b(mm/s|cm/s|m/s|ms|mm)\b", notes), "notes state the target's units"


def test_cards_cover_the_public_motor_datasets():
    cards = {p.stem: load_card(p) for p in CARD_FILES}
    assert set(EXPECTED_IDS) <= set(cards)
    ids = {c.source.dandi for c in cards.values()}
    assert set(EXPECTED_IDS.values()) <= ids
    # one card per dandiset
    public = [cards[name].source.dandi for name in EXPECTED_IDS]
    assert len(public) == len(set(public))


@pytest.mark.parametrize("name", NLB)
def test_nlb_cards_keep_nlb_splits_and_drop_test_trials(name):
    card = load_card(DATASETS / f"{name}.yaml")
    assert card.fields.split_column == "split"
    assert card.splits.by == "column"
    # NLB's "test" trials have no behaviour to decode: they are dropped, never a test domain.
    assert card.splits.values == {"val": "valid", "test": "drop", "none": "drop"}
    # so `evaluate` scores the val trials by default
    assert card.splits.evaluate_on == "valid"
    assert "test" in card.splits.empty_splits()
    # the train file only: the test file has no behaviour series
    assert card.source.include and all("desc-train" in g for g in card.source.include)


def test_mc_maze_small_pins_the_version_brainsets_uses():
    card = load_card(DATASETS / "mc_maze_small.yaml")
    assert card.source.version == "0.220113.0408"
    assert card.source.ref == "dandi:000140@0.220113.0408"


@pytest.mark.parametrize("name", NLB)
def test_nlb_cards_pin_the_benchmark_versions(name):
    card = load_card(DATASETS / f"{name}.yaml")
    assert card.source.version == PINNED[name]


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("mc_maze", "success"),
        ("mc_maze_small", "success"),
        ("area2_bump", 'result == "R"'),  # a string column: `result` alone would keep all
        ("dmfc_rsg", "not is_outlier"),  # nlb_tools' behavior_mask
        ("churchland_2012", "task_success == 1 and discard_trial == 0"),  # brainsets' is_valid
        ("perich_miller_2018", 'result == "R"'),
        ("mc_rtt", None),
    ],
)
def test_validity_rules_follow_public_readers(name, rule):
    assert load_card(DATASETS / f"{name}.yaml").fields.valid_trials == rule


@pytest.mark.parametrize(
    ("name", "repairs"),
    [
        ("mc_rtt", {"trial_overlap": {"tolerance_s": 0.001}}),
        ("churchland_2012", {"unsorted_spikes": "drop_units", "overlapping_trials": "drop"}),
        ("mc_maze", {}),
        ("area2_bump", {}),
        ("dmfc_rsg", {}),
        ("perich_miller_2018", {}),
    ],
)
def test_cards_repair_only_the_known_quirks(name, repairs):
    card = load_card(DATASETS / f"{name}.yaml")
    assert card.repairs.model_dump(exclude_none=True) == repairs


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("mc_maze", "hand_vel"),
        ("mc_rtt", "finger_vel"),
        ("area2_bump", "hand_vel"),
        ("perich_miller_2018", "cursor_vel"),
        ("churchland_2012", "Cursor"),
        # one value per trial: the produced interval, decoded at the Set cue
        ("dmfc_rsg", TrialTargetSpec(trials="tp", at="set_time", table="trials")),
    ],
)
def test_targets_follow_the_documented_field_names(name, target):
    card = load_card(DATASETS / f"{name}.yaml")
    assert card.fields.target == target
    if card.splits.by == "random":
        assert card.fields.split_column is None
        assert abs(sum(card.splits.fractions) - 1) < 1e-9


# --------------------------------------------------------------------------------------------
# clear schema errors
# --------------------------------------------------------------------------------------------

GOOD_CARD = """\
name: broken
source: {dandi: "000140", include: ["*train*"]}
fields: {target: hand_vel, split_column: split}
splits: {by: column, values: {val: valid}}
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "fields: {target: hand_vel, split_column: split}",
            "fields: {target: hand_vel, split_colum: split}",
            "fields.split_colum: unknown key (expected one of: spikes, split_column, target, "
            "trials, valid_trials)",
            id="unknown-key",
        ),
        pytest.param(
            "splits: {by: column, values: {val: valid}}",
            "splits: {by: random, seed: first}",
            "splits.seed: Input should be a valid integer",
            id="wrong-type",
        ),
        pytest.param(
            "splits: {by: column, values: {val: valid}}",
            "splits: {by: column, values: {val: validation}}",
            "splits.values.val: Input should be 'train', 'valid', 'test' or 'drop' "
            "(got 'validation')",
            id="wrong-split-name",
        ),
        pytest.param(
            'dandi: "000140"',
            'dandi: "140"',
            r"source.dandi: String should match pattern '^\d{6}$' (got '140')",
            id="bad-dandiset-id",
        ),
        pytest.param(
            'dandi: "000140"',
            "dandi: 000140",
            'source.dandi: must be a quoted 6-digit string, e.g. "000128"',
            id="unquoted-dandiset-id",
        ),
        pytest.param(
            "splits: {by: column, values: {val: valid}}",
            "splits: {by: random, fractions: [0.7, 0.2, 0.2]}",
            "splits: fractions [0.7, 0.2, 0.2] must sum to 1",
            id="fractions-not-summing-to-1",
        ),
        pytest.param(
            'dandi: "000140"',
            'dandi: "000140", local: /data/maze',
            "source: give exactly one of 'dandi' (a dandiset id), 'openneuro' (a dataset id), "
            "'local' (a folder) or 'synthetic' (a generator), got ['dandi', 'local']",
            id="dandi-and-local",
        ),
        pytest.param(
            "fields: {target: hand_vel, split_column: split}",
            "fields: {split_column: split}",
            "fields.target is required for NWB (decoding) datasets",
            id="missing-target",
        ),
    ],
)
def test_card_errors_name_file_key_and_expectation(tmp_path, old, new, expected):
    assert old in GOOD_CARD
    path = tmp_path / "broken.yaml"
    path.write_text(GOOD_CARD.replace(old, new))
    with pytest.raises(SpecError) as info:
        load_card(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_good_card_template_validates(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD_CARD)
    assert isinstance(load_card(path), DatasetCard)


def test_card_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- name: mc_maze\n")
    with pytest.raises(SpecError, match=r"list\.yaml: expected a mapping"):
        load_card(path)


def _pipeline(tmp_path: Path, steps: str, card: Path = DATASETS / "mc_maze_small.yaml") -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"name: typo\ndataset: {card}\nsteps: {steps}\n")
    return path


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            "[{pull: {strem: true}}]",
            "steps[0].pull.strem: unknown key (expected one of: include, stream, to)",
            id="option-typo",
        ),
        pytest.param(
            "[{pull: {}}, {ingst: {out: catalog}}]",
            "steps[1].ingst: unknown key (expected one of: evaluate, ingest, pull, train)",
            id="unknown-step",
        ),
    ],
)
def test_pipeline_typo_is_a_spec_error(tmp_path, steps, expected):
    path = _pipeline(tmp_path, steps)
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    assert str(info.value) == f"{path}: {expected}"


def test_neurofm_run_of_a_typo_exits_1_with_one_line(tmp_path, capsys):
    from neurofm.cli import main

    path = _pipeline(tmp_path, "[{pull: {strem: true}}]")
    code = main(["run", str(path), "--workdir", str(tmp_path / "work")])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err == (
        f"neurofm: error: {path}: steps[0].pull.strem: unknown key "
        "(expected one of: include, stream, to)\n"
    )
    assert not (tmp_path / "work").exists()


def test_pipeline_naming_a_missing_card(tmp_path):
    path = _pipeline(tmp_path, "[{pull: {}}]", card=tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match=r"pipeline\.yaml: dataset: no card"):
        load_pipeline(path)


# --------------------------------------------------------------------------------------------
# local stand-ins: each card's layout, served as its dandiset, pulled and ingested
# --------------------------------------------------------------------------------------------

N_TRIALS = 10
TRIAL_STARTS = 0.5 + 1.0 * np.arange(N_TRIALS)  # trials [t, t + 0.8), 1 s apart
TRIAL_LEN = 0.8
BEHAVIOUR_RATE = 100.0


@dataclass
class StandIn:
    """A fake dandiset in one card's layout."""

    card: str
    files: dict[str, Any]  # asset path -> builder(path)
    published: list[str] = field(default_factory=list)
    trials: dict[str, np.ndarray] = field(default_factory=dict)  # columns of the ingested file
    valid: np.ndarray | None = None  # trials the card's validity rule keeps (None: all)


def _nwb(identifier: str, subject: str) -> Any:
    from pynwb import NWBFile
    from pynwb.file import Subject

    nwb = NWBFile(
        session_description=f"stand-in for {identifier}",
        identifier=identifier,
        session_start_time=fac.START,
        session_id=identifier,
    )
    nwb.subject = Subject(subject_id=subject, species="Macaca mulatta", sex="M", age="P8Y")
    rng = np.random.default_rng(0)
    duration = TRIAL_STARTS[-1] + 1.0
    for _ in range(3):
        nwb.add_unit(spike_times=np.sort(rng.uniform(0, duration, 40)))
    return nwb


def _trials(nwb: Any, columns: dict[str, np.ndarray]) -> None:
    for name in columns:
        nwb.add_trial_column(name=name, description=f"stand-in {name}")
    for i, start in enumerate(TRIAL_STARTS):
        row = {k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in columns.items()}
        nwb.add_trial(start_time=float(start), stop_time=float(start + TRIAL_LEN), **row)


def _timestamps() -> np.ndarray:
    return np.arange(0.0, TRIAL_STARTS[-1] + 1.0, 1 / BEHAVIOUR_RATE)


def _write(path: Path, nwb: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # DANDI layout: sub-<subject>/<file>
    fac.write(path, nwb)


NLB_SPLITS = np.array(["train"] * 6 + ["val"] * 2 + ["none", "test"])


def _nlb_maze_train(path: Path) -> None:
    """NLB maze layout: hand_pos / hand_vel / eye_pos directly in processing/behavior, with
    timestamps; trials with a ``split`` column."""
    from pynwb import TimeSeries

    nwb = _nwb("maze-train", "Jenkins")
    module = nwb.create_processing_module(name="behavior", description="behaviour")
    t = _timestamps()
    for name in ("hand_pos", "hand_vel", "eye_pos"):
        module.add(
            TimeSeries(name=name, data=np.c_[np.sin(t), np.cos(t)], unit="a.u.", timestamps=t)
        )
    success = np.ones(N_TRIALS, dtype=bool)  # NLB's maze files keep successful trials only
    _trials(nwb, {"split": NLB_SPLITS, "move_onset_time": TRIAL_STARTS + 0.3, "success": success})
    _write(path, nwb)


def _nlb_test(path: Path) -> None:
    """NLB test file: spikes and test trials, no behaviour."""
    nwb = _nwb("maze-test", "Jenkins")
    _trials(nwb, {"split": np.array(["test"] * N_TRIALS)})
    _write(path, nwb)


def _nlb_rtt_train(path: Path) -> None:
    """NLB RTT layout: finger_vel etc. at a fixed rate directly in processing/behavior."""
    from pynwb import TimeSeries

    nwb = _nwb("rtt-train", "Indy")
    module = nwb.create_processing_module(name="behavior", description="behaviour")
    n = len(_timestamps())
    for name in ("cursor_pos", "finger_pos", "finger_vel", "target_pos"):
        data = np.linspace(0, 1, 2 * n).reshape(n, 2)
        module.add(
            TimeSeries(name=name, data=data, unit="mm", rate=BEHAVIOUR_RATE, starting_time=0.0)
        )
    _trials(nwb, {"split": NLB_SPLITS})
    _write(path, nwb)


DMFC_OUTLIER = np.array([False] * 3 + [True] + [False] * 6)


def _nlb_dmfc_train(path: Path) -> None:
    """DMFC_RSG: no behaviour series; per-trial behaviour in trials columns."""
    nwb = _nwb("dmfc-train", "Haydn")
    ts = np.linspace(480, 1200, N_TRIALS)  # ms
    columns = {
        "split": NLB_SPLITS,
        "ts": ts,
        "tp": ts * 1.05,
        "is_outlier": DMFC_OUTLIER,
        "set_time": TRIAL_STARTS + 0.3,
    }
    _trials(nwb, columns)
    _write(path, nwb)


PERICH_RESULT = np.array(["R", "R", "A", "R", "R", "F", "R", "R", "R", "R"])


def _perich(path: Path) -> None:
    """Perich layout: Position/cursor_pos, Velocity/cursor_vel, Acceleration/cursor_acc in
    containers, with timestamps; trials with a string ``result`` column."""
    from pynwb import TimeSeries
    from pynwb.behavior import BehavioralTimeSeries, Position

    nwb = _nwb("perich-C-CO", "C")
    module = nwb.create_processing_module(name="behavior", description="behaviour")
    t = _timestamps()
    xy = np.c_[np.sin(t), np.cos(t)]
    position = Position(name="Position")
    position.create_spatial_series(
        name="cursor_pos", data=xy, timestamps=t, reference_frame="screen centre"
    )
    module.add(position)
    for container, series in (("Velocity", "cursor_vel"), ("Acceleration", "cursor_acc")):
        holder = BehavioralTimeSeries(name=container)
        holder.add_timeseries(TimeSeries(name=series, data=xy * 2, unit="cm/s", timestamps=t))
        module.add(holder)
    _trials(nwb, {"result": PERICH_RESULT, "target_id": np.arange(N_TRIALS) % 8 * 1.0})
    _write(path, nwb)


CHURCHLAND_SUCCESS = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=np.uint8)
CHURCHLAND_DISCARD = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=np.uint8)


def _churchland(path: Path) -> None:
    """Churchland layout: Position/{Cursor, Hand, Eye} with timestamps; task_success column."""
    from pynwb.behavior import Position

    nwb = _nwb("churchland-jenkins", "Jenkins")
    module = nwb.create_processing_module(name="behavior", description="behaviour")
    t = _timestamps()
    position = Position(name="Position")
    for name in ("Cursor", "Hand", "Eye"):
        position.create_spatial_series(
            name=name, data=np.c_[t, -t], timestamps=t, reference_frame="screen"
        )
    module.add(position)
    _trials(nwb, {"task_success": CHURCHLAND_SUCCESS, "discard_trial": CHURCHLAND_DISCARD})
    _write(path, nwb)


STANDINS = {
    "mc_maze_small": StandIn(
        "mc_maze_small",
        {
            "sub-Jenkins/sub-Jenkins_ses-small_desc-train_behavior+ecephys.nwb": _nlb_maze_train,
            "sub-Jenkins/sub-Jenkins_ses-small_desc-test_ecephys.nwb": _nlb_test,
        },
        # the pinned version, and a later one the pin must not take
        published=["0.220113.0408", "0.240101.0000"],
        trials={"split": NLB_SPLITS},
        valid=np.ones(N_TRIALS, dtype=bool),  # success: all True
    ),
    "mc_rtt": StandIn(
        "mc_rtt",
        {
            "sub-Indy/sub-Indy_desc-train_behavior+ecephys.nwb": _nlb_rtt_train,
            "sub-Indy/sub-Indy_desc-test_ecephys.nwb": _nlb_test,
        },
        published=["0.241017.1444", "0.250101.0000"],
        trials={"split": NLB_SPLITS},
    ),
    "dmfc_rsg": StandIn(
        "dmfc_rsg",
        {
            "sub-Haydn/sub-Haydn_desc-train_ecephys.nwb": _nlb_dmfc_train,
            "sub-Haydn/sub-Haydn_desc-test_ecephys.nwb": _nlb_test,
        },
        published=["0.220113.0407", "0.240101.0000"],
        trials={"split": NLB_SPLITS},
        valid=~DMFC_OUTLIER,
    ),
    "perich_miller_2018": StandIn(
        "perich_miller_2018",
        {"sub-C/sub-C_ses-CO-20161021_behavior+ecephys.nwb": _perich},
        published=["0.240101.0000", "0.240601.1200"],
        trials={"result": PERICH_RESULT},
        valid=PERICH_RESULT == "R",
    ),
    "churchland_2012": StandIn(
        "churchland_2012",
        {"sub-Jenkins/sub-Jenkins_ses-20090916_behavior+ecephys.nwb": _churchland},
        published=["0.240101.0000"],
        trials={"task_success": CHURCHLAND_SUCCESS},
        valid=(CHURCHLAND_SUCCESS == 1) & (CHURCHLAND_DISCARD == 0),
    ),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One local DANDI server serving every stand-in under its card's dandiset id."""
    from neurofm.testing.dandi_server import DandisetSpec, LocalDandiServer

    specs = {}
    for name, standin in STANDINS.items():
        folder = tmp_path_factory.mktemp(name)
        for asset, build in standin.files.items():
            build(folder / asset)
        dandiset = load_card(DATASETS / f"{name}.yaml").source.dandi
        specs[dandiset] = DandisetSpec(folder, published_versions=standin.published)
    with LocalDandiServer(specs) as srv:
        yield srv


def _run(server: Any, tmp_path: Path, name: str) -> tuple[Any, Any, Path]:
    from neurofm.data.catalog import Catalog
    from neurofm.pipeline import run_pipeline

    card_path = DATASETS / f"{name}.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / f"{name}-pipeline.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            name: {name}-standin
            dataset: {card_path}
            steps:
              - pull: {{to: raw}}
              - ingest: {{out: catalog}}
            """
        )
    )
    result = run_pipeline(spec, api_url=server.api_url, workdir=tmp_path / "work", progress=False)
    assert result.ok, result.reports["ingest"].failed
    return result, Catalog(tmp_path / "work" / "catalog"), tmp_path / "work"


def _expected_domains(card: DatasetCard, standin: StandIn) -> dict[str, set]:
    """Trial starts per domain, from the card's rules applied to the written columns (the
    validity rule's outcome is the stand-in's own record, not neurofm's expression)."""
    columns = standin.trials
    keep = np.ones(N_TRIALS, dtype=bool)
    assert (card.fields.valid_trials is None) == (standin.valid is None)
    if standin.valid is not None:
        keep &= standin.valid
    if card.splits.by == "column":
        labels = np.array([card.splits.values.get(v, v) for v in columns[card.fields.split_column]])
        keep &= labels != "drop"
        return {s: set(TRIAL_STARTS[keep & (labels == s)]) for s in ("train", "valid", "test")}
    n = int(keep.sum())
    counts = np.diff(np.round(np.cumsum([0.0, *card.splits.fractions]) * n).astype(int))
    return {
        "kept": set(TRIAL_STARTS[keep]),
        **dict(zip(("train", "valid", "test"), counts, strict=True)),
    }


@pytest.mark.parametrize("name", list(STANDINS))
def test_standin_pull_and_ingest(server, tmp_path, name):
    standin = STANDINS[name]
    card = load_card(DATASETS / f"{name}.yaml")
    result, catalog, work = _run(server, tmp_path, name)

    # pull: only the assets the card's include globs select (never NLB test files)
    pulled = result.reports["pull"]
    wanted = [a for a in standin.files if "desc-test" not in a]
    assert sorted(Path(p).relative_to(work / "raw").as_posix() for p in pulled.downloaded) == (
        sorted(wanted)
    )
    assert not pulled.failed
    assert result.reports["ingest"].ingested and not result.reports["ingest"].failed

    # the catalog has the recording, its target and the three domains
    assert len(catalog) == 1
    entry = catalog.entries[0]
    assert entry["dandiset_id"] == card.source.dandi
    with catalog.open(entry["id"]) as rec:
        assert rec.provenance.dandiset_id == card.source.dandi
        version = card.source.version or standin.published[-1]  # pinned, else latest published
        assert rec.provenance.dandiset_version == version
        if name == "mc_maze_small":  # the pin wins over the newer published version
            assert version == "0.220113.0408" != standin.published[-1]
        assert rec.provenance.asset_path == wanted[0]
        assert rec.metadata.extra["dataset_card"] == name
        assert card.fields.trials in rec
        if isinstance(card.fields.target, TrialTargetSpec):  # one value per trial
            trials = rec[card.fields.target.table].load()
            assert {card.fields.target.trials, card.fields.target.at} <= set(trials.columns)
        else:
            assert card.fields.target in rec
            assert len(rec[card.fields.target].load()) > 0
        domains = {s: rec[f"{s}_domain"].load() for s in ("train", "valid", "test")}
    starts = {s: set(np.round(d.start, 9)) for s, d in domains.items()}
    for s, d in domains.items():
        assert np.allclose(d.end - d.start, TRIAL_LEN), s
    # never overlapping
    assert not (starts["train"] & starts["valid"] or starts["train"] & starts["test"])
    assert not starts["valid"] & starts["test"]

    expected = _expected_domains(card, standin)
    if card.splits.by == "column":
        for s in ("train", "valid", "test"):
            assert starts[s] == {round(float(x), 9) for x in expected[s]}, s
        assert not starts["test"], "NLB test trials are dropped, not a test domain"
    else:
        assert starts["train"] | starts["valid"] | starts["test"] == {
            round(float(x), 9) for x in expected["kept"]
        }
        assert [len(starts[s]) for s in ("train", "valid", "test")] == [
            expected[s] for s in ("train", "valid", "test")
        ]


def test_standin_target_series_types(server, tmp_path):
    """Container style decides nothing about the name; storage decides the signal kind."""
    from neurofm.data.signals import IrregularSeries, RegularSeries

    kinds = {
        "mc_maze_small": IrregularSeries,  # timestamps
        "perich_miller_2018": IrregularSeries,  # in a container, timestamps
        "mc_rtt": RegularSeries,  # rate + starting_time
    }
    for name, kind in kinds.items():
        card = load_card(DATASETS / f"{name}.yaml")
        _, catalog, _ = _run(server, tmp_path / name, name)
        with catalog.open(catalog.ids[0]) as rec:
            target = rec[card.fields.target].load()
            assert isinstance(target, kind), (name, type(target))
            assert len(target) == len(_timestamps())


def test_standin_rerun_is_up_to_date(server, tmp_path):
    _run(server, tmp_path, "perich_miller_2018")
    result, catalog, _ = _run(server, tmp_path, "perich_miller_2018")
    assert result.reports["pull"].skipped and not result.reports["pull"].downloaded
    assert result.reports["ingest"].skipped and not result.reports["ingest"].ingested
    assert len(catalog) == 1


def test_a_card_loads_by_name_from_any_folder(tmp_path, monkeypatch):
    from pathlib import Path

    from neurofm.errors import SpecError
    from neurofm.specs import find_card, load_card

    repo_card = Path(__file__).resolve().parents[2] / "datasets" / "mc_maze.yaml"
    monkeypatch.chdir(tmp_path)  # no ./datasets here: neurofm's own cards
    assert find_card("mc_maze") == repo_card
    assert load_card("mc_maze") == load_card(repo_card)
    (tmp_path / "datasets").mkdir()  # a lab's own folder of cards comes first
    (tmp_path / "datasets" / "mc_maze.yaml").write_text(repo_card.read_text())
    assert find_card("mc_maze") == Path("datasets") / "mc_maze.yaml"
    with pytest.raises(SpecError, match=r"mc_mazee: no such card file, and no card of that"):
        load_card("mc_mazee")
