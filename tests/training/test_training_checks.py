"""A run that would train zero steps is an error before it starts, naming the window and the
recording (it used to exit 0 and print the path of a last.ckpt that was never written)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from neurofm.cli import main
from neurofm.errors import InvalidDataError
from neurofm.models.poyo import POYOConfig
from neurofm.training.poyo import TrainConfig, train_poyo
from neurofm.training.samba import SambaTrainConfig, train_samba

REPO = Path(__file__).resolve().parents[2]
SMALL = dataclasses.replace(POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml"), depth=1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pipeline(tmp: Path, catalog: Path, window: float) -> Path:
    model = tmp / "poyo_window.yaml"
    config = dataclasses.asdict(dataclasses.replace(SMALL, window_length=window))
    model.write_text(yaml.safe_dump({"model": "poyo", **config}))
    spec = {
        "name": "zero",
        "dataset": str(REPO / "datasets" / "synthetic_reaching.yaml"),
        "steps": [
            {"ingest": {"out": str(catalog)}},
            {"train": {"model": str(model), "epochs": 1, "batch_size": 8}},
        ],
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_window_longer_than_the_recordings_stops_before_training(
    pretrained_poyo, tmp_path, capsys
):
    root, _ = pretrained_poyo
    pipe = _pipeline(tmp_path, root / "cat_pre", window=100000)
    assert main(["train", str(pipe), "--workdir", str(tmp_path / "w")]) == 1
    out, err = capsys.readouterr()
    assert "last.ckpt" not in out
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("neurofm: error:")]
    assert len(lines) == 1, err
    assert "window_length 100000 s is not shorter than recording 'sub-S0_ses-" in lines[0]
    assert "whose train domain spans" in lines[0] and "(the shortest of 2)" in lines[0]
    assert not (tmp_path / "w" / "poyo").exists()  # nothing written


def test_a_window_no_trial_can_hold_stops_before_training(pretrained_poyo, tmp_path):
    root, _ = pretrained_poyo
    cfg = TrainConfig(epochs=1, batch_size=8, unit_dropout=None)
    small = dataclasses.replace(SMALL, window_length=5.0)  # trials last 1-3 s
    with pytest.raises(
        InvalidDataError,
        match=r"cat_pre: no train interval holds a whole window of 5 s \(the longest is [\d.]+ s, "
        r"in recording 'sub-S0_ses-\d+'\): training would run zero steps",
    ):
        train_poyo(root / "cat_pre", small, cfg, tmp_path, progress=False)
    with pytest.raises(InvalidDataError, match="max_steps is 0"):
        train_poyo(root / "cat_pre", SMALL, cfg, tmp_path, progress=False, max_steps=0)
    assert not list(tmp_path.iterdir())


def test_samba_batches_larger_than_the_training_windows_are_an_error(tiny_samba_catalog, tmp_path):
    from samba_factory import small_config

    with pytest.raises(
        InvalidDataError,
        match=r"\d+ training window\(s\) of 6 volumes fill no batch of 1000: training would run "
        "zero steps",
    ):
        train_samba(
            tiny_samba_catalog,
            small_config(),
            SambaTrainConfig(epochs=1, batch_size=1000),
            tmp_path / "run",
            progress=False,
        )
    assert not (tmp_path / "run").exists()


def test_samba_without_a_whole_validation_window_says_why_in_the_datas_terms(
    tiny_samba_catalog, tmp_path, caplog, recwarn, one_torch_thread
):
    from samba_factory import small_config

    # the tiny runs' valid blocks hold 12 volumes: no window of 14 fits, 36 train volumes do
    train_samba(
        tiny_samba_catalog,
        small_config(window_trs=14),
        SambaTrainConfig(epochs=1, batch_size=4),
        tmp_path / "run",
        progress=False,
    )
    (message,) = [r.getMessage() for r in caplog.records if "valid_domain" in r.getMessage()]
    assert "no valid_domain holds a whole window of 14 volumes" in message
    assert "the longest stretch of valid volumes in a run is 12" in message
    assert not [w for w in recwarn if "val_dataloader" in str(w.message)]
    assert (tmp_path / "run" / "last.ckpt").is_file()
