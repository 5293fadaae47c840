"""Model configs, training options and analysis configs are validated like cards and
pipelines: types and ranges, checked when a config is made; every mistake in a file is one
:class:`SpecError` naming the file and the key; a file that is not UTF-8 is one clear line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydantic
import pytest
import yaml

from neurofm.cli import main
from neurofm.errors import SpecError
from neurofm.models.poyo import POYOConfig
from neurofm.models.samba import SambaConfig
from neurofm.specs import load_pipeline, load_yaml
from neurofm.training.poyo import TrainConfig
from neurofm.training.samba import SambaTrainConfig

REPO = Path(__file__).resolve().parents[2]


def _yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"dim": "big"}, r"dim: Input should be a valid integer.*\(got 'big'\)"),
        (
            {"dim": 0, "depth": -1},
            r"dim: Input should be greater than 0 \(got 0\); .*depth: Input should be greater",
        ),
        ({"latent_step": 0}, r"latent_step: Input should be greater than 0"),
        ({"latent_step": 2.0}, r"latent_step: must not exceed window_length \(1 s\)"),
        ({"window_length": -1}, r"window_length: Input should be greater than 0"),
        ({"self_heads": 0}, r"self_heads: Input should be greater than 0"),
        ({"dim_head": 30}, r"dim_head: Input should be a multiple of 4"),
        ({"ffn_dropout": 1.0}, r"ffn_dropout: Input should be less than 1"),
        ({"atn_dropout": -0.1}, r"atn_dropout: Input should be greater than or equal to 0"),
        ({"t_min": 3.0}, r"t_max: must be greater than t_min"),
        ({"dims": 3}, r"dims: unknown key \(expected one of: atn_dropout, cross_heads, depth"),
    ],
)
def test_poyo_config_files_are_validated(tmp_path, values, expected):
    """Each of these used to train (dim 0, depth -1), divide by zero (latent_step 0) or fail
    with a TypeError traceback (dim: big)."""
    path = _yaml(tmp_path / "poyo_bad.yaml", {"model": "poyo", **values})
    with pytest.raises(SpecError, match=r"poyo_bad\.yaml: " + expected):
        POYOConfig.from_yaml(path)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"dim": "big"}, r"dim: Input should be a valid integer"),
        ({"hidden": 0}, r"hidden: Input should be greater than 0"),
        ({"dropout": 1.5}, r"dropout: Input should be less than 1"),
        ({"window_trs": 1}, r"window_trs: Input should be greater than or equal to 2"),
        ({"tr": 0}, r"tr: Input should be greater than 0"),
        ({"wavelet": "nope"}, r"wavelet: not a discrete wavelet PyWavelets knows"),
        ({"loss": "l1"}, r"loss: Input should be 'corr', 'mse' or 'corr\+mse'"),
        ({"teacher_forcing": 1.5}, r"teacher_forcing: Input should be less than or equal to 1"),
    ],
)
def test_samba_config_files_are_validated(tmp_path, values, expected):
    path = _yaml(tmp_path / "samba_bad.yaml", {"model": "samba", **values})
    with pytest.raises(SpecError, match=r"samba_bad\.yaml: " + expected):
        SambaConfig.from_yaml(path)


def test_configs_made_in_python_are_checked_too():
    with pytest.raises(pydantic.ValidationError, match="depth"):
        POYOConfig(depth=0)
    with pytest.raises(pydantic.ValidationError, match="dropout"):
        SambaConfig(dropout=1.0)
    with pytest.raises(pydantic.ValidationError, match="dim_out"):
        dataclasses.replace(POYOConfig(), dim_out=0)
    with pytest.raises(SpecError, match=r"TrainConfig: epochs: .*greater than or equal to 1"):
        TrainConfig(epochs=0)
    with pytest.raises(SpecError, match=r"TrainConfig: unit_dropout: must be \(min, mode, max\)"):
        TrainConfig(unit_dropout=(30, 10, 100))
    with pytest.raises(SpecError, match=r"TrainConfig: flat_fraction: .*less than or equal to 1"):
        TrainConfig(flat_fraction=1.5)
    with pytest.raises(SpecError, match=r"SambaTrainConfig: batch_size: .*greater than or equal"):
        SambaTrainConfig(batch_size=0)
    # the shipped configs are valid, and values are coerced as the files give them
    for path in sorted((REPO / "models").glob("poyo_*.yaml")):
        assert POYOConfig.from_yaml(path).dim > 0
    assert SambaConfig.from_yaml(REPO / "models" / "samba.yaml").dim > 0
    assert TrainConfig(unit_dropout=[1, 2, 3], epochs="4").unit_dropout == (1, 2, 3)


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ({"epochs": 0}, r"train\.epochs: Input should be greater than or equal to 1"),
        ({"unit_dropout": [30, 10, 100]}, r"train\.unit_dropout: must be \(min, mode, max\)"),
        ({"accelerator": "tpu"}, r"train\.accelerator: Input should be 'auto', 'cpu', 'gpu'"),
        ({"devices": 0}, r"train\.devices: Input should be greater than or equal to 1"),
        ({"precision": 17}, r"train\.precision: Input should be '32-true'"),
        ({"checkpoint_every_n_steps": -5}, r"train\.checkpoint_every_n_steps: Input should be"),
        ({"resume": "maybe"}, r"train\.resume: Input should be a valid boolean"),
    ],
)
def test_train_step_options_are_validated(tmp_path, train, expected):
    path = _yaml(
        tmp_path / "pipe.yaml",
        {
            "name": "p",
            "dataset": str(REPO / "datasets" / "synthetic_reaching.yaml"),
            "steps": [{"ingest": {}}, {"train": train}],
        },
    )
    with pytest.raises(SpecError, match=r"pipe\.yaml: steps\[1\]\." + expected):
        load_pipeline(path)


def test_non_utf8_files_are_one_clear_line(tmp_path, capsys):
    latin1 = "name: caf\u00e9\n".encode("latin-1")
    for name in ("pipeline.yaml", "poyo.yaml", "prep.yaml", "analysis.yaml"):
        (tmp_path / name).write_bytes(latin1)
    with pytest.raises(SpecError, match=r"poyo\.yaml: not UTF-8 text \(byte 9"):
        POYOConfig.from_yaml(tmp_path / "poyo.yaml")
    with pytest.raises(SpecError, match=r"poyo\.yaml: not UTF-8 text"):
        SambaConfig.from_yaml(tmp_path / "poyo.yaml")
    from neurofm.analysis.learning_regime import LearningRegimeConfig

    with pytest.raises(SpecError, match=r"analysis\.yaml: not UTF-8 text"):
        load_yaml(tmp_path / "analysis.yaml", LearningRegimeConfig)
    # through the command line: exit 1 and one line naming the file
    for args, name in [
        (["train", str(tmp_path / "pipeline.yaml")], "pipeline.yaml"),
        (["run", str(tmp_path / "pipeline.yaml")], "pipeline.yaml"),
        (
            [
                "ingest",
                str(tmp_path),
                "--out",
                str(tmp_path / "c"),
                "--eeg-preprocessing",
                str(tmp_path / "prep.yaml"),
            ],
            "prep.yaml",
        ),
        (["analyze", "learning-regime", str(tmp_path / "analysis.yaml")], "analysis.yaml"),
    ]:
        assert main(args) == 1, args
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"neurofm: error: {tmp_path / name}: not UTF-8 text (byte 9: invalid continuation byte)"
        ], err


def test_analysis_configs_have_ranges(tmp_path):
    from neurofm.analysis.bias_only import BiasOnlyConfig
    from neurofm.analysis.learning_regime import LearningRegimeConfig

    bad = _yaml(tmp_path / "lr.yaml", {"n_hidden": 1, "train": {"steps": 0, "lr": -1}})
    with pytest.raises(SpecError) as err:
        load_yaml(bad, LearningRegimeConfig)
    for key in ("n_hidden: Input should be greater than or equal to 2", "train.steps", "train.lr"):
        assert f"lr.yaml: {key}" in str(err.value)
    bad = _yaml(tmp_path / "bo.yaml", {"width_sweep": {"epochs": 0}})
    with pytest.raises(SpecError, match=r"bo\.yaml: width_sweep\.epochs: Input should be"):
        load_yaml(bad, BiasOnlyConfig)
