"""KEY=VALUE overrides of a pipeline spec and its card (`neurofm train/run ... key=value`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurofm.errors import SpecError
from neurofm.specs import apply_overrides, load_pipeline

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "pipelines" / "demo.yaml"
SPEC = {
    "name": "x",
    "dataset": "card.yaml",
    "steps": [{"pull": None}, {"ingest": {"out": "catalog"}}, {"train": {"epochs": 80}}],
}


def test_paths_by_key_kind_and_position():
    out = apply_overrides(
        SPEC,
        [
            "steps.train.epochs=5",
            "steps[1].ingest.force=true",
            "steps.0.pull.to=downloads",
            "workdir=out/run",
            "steps.train.unit_dropout=[10, 20, 30]",
            "steps.train.lr=1e-3",
            "description=",
        ],
    )
    assert out["steps"][2]["train"] == {"epochs": 5, "unit_dropout": [10, 20, 30], "lr": 1e-3}
    assert out["steps"][1]["ingest"] == {"out": "catalog", "force": True}
    assert out["steps"][0]["pull"] == {"to": "downloads"}  # `- pull:` had no options
    assert out["workdir"] == "out/run" and out["description"] == ""
    assert SPEC["steps"][2]["train"] == {"epochs": 80} and SPEC["steps"][0]["pull"] is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochs", "override 'epochs': expected KEY=VALUE, e.g. steps.train.epochs=5"),
        ("=5", "override '=5': expected KEY=VALUE"),
        ("steps.train.epochs=[1", "override 'steps.train.epochs=[1': the value is not valid YAML"),
        ("name.first=a", "override 'name.first=a': name is 'x', not a mapping of keys"),
        ("steps.evaluate.split=valid", "steps has no 'evaluate' step (steps: pull, ingest, train"),
        ("steps.7.train.epochs=1", "override 'steps.7.train.epochs=1': steps has 3 items"),
        ("steps.train=3", "override 'steps.train=3': name a key inside the step"),
    ],
)
def test_malformed_overrides(override, message):
    with pytest.raises(SpecError) as err:
        apply_overrides(SPEC, [override], "p.yaml")
    assert str(err.value).startswith("p.yaml: ") and message in str(err.value)


def test_overrides_are_validated_with_the_file(tmp_path):
    spec, card, work = load_pipeline(
        DEMO, ["steps.train.epochs=3", "card.splits.fractions=[0.5, 0.25, 0.25]", "workdir=w"]
    )
    assert spec.steps[2].train.epochs == 3 and work == Path("w")
    assert card.splits.fractions == (0.5, 0.25, 0.25)
    with pytest.raises(SpecError) as err:
        load_pipeline(DEMO, ["card.splits.by=trials"])
    assert str(err.value).startswith(
        f"{REPO / 'pipelines' / '../datasets/synthetic_reaching.yaml'} (with card.splits.by=trials)"
        ": splits.by: Input should be 'column', 'random' or 'time'"
    )
    with pytest.raises(SpecError, match=r"\(with stepz.train.epochs=1\): stepz: unknown key"):
        load_pipeline(DEMO, ["stepz.train.epochs=1"])


def test_a_card_given_as_a_pipeline_is_named_as_such():
    card = REPO / "datasets" / "mc_rtt.yaml"
    with pytest.raises(SpecError) as err:
        load_pipeline(card)
    assert str(err.value) == (
        f"{card}: a dataset card, not a pipeline (it has source: and no steps:); a pipeline "
        "names its card under dataset: (see pipelines/demo.yaml), and `neurofm datasets show "
        "NAME` shows a card"
    )


def test_a_missing_model_config_is_named_before_anything_runs(tmp_path):
    from neurofm.pipeline import run_pipeline

    with pytest.raises(SpecError) as err:
        run_pipeline(DEMO, overrides=["steps.train.model=nosuch.yaml"], workdir=tmp_path / "w")
    assert not (tmp_path / "w").exists()  # nothing pulled, nothing ingested
    assert str(err.value) == (
        f"{DEMO} (with steps.train.model=nosuch.yaml): steps[2].train.model: no model config "
        f"'nosuch.yaml' (looked for {DEMO.parent / 'nosuch.yaml'}; a path relative to the "
        "pipeline file)"
    )
