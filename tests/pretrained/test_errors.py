"""Clear errors, naming the file and the field: another model's checkpoint, a foreign file, a
target of another dimension, a recording with no units or spikes; and the name registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import neurofm
from neurofm.cli import main as cli
from neurofm.data import Catalog, Recording
from neurofm.data.signals import RegularSeries, Spikes
from neurofm.errors import NeuroFMError
from neurofm.pretrained import (
    CheckpointError,
    NoUnitsError,
    TargetMismatchError,
    load_pretrained,
    register,
    unregister,
)
from neurofm.training.checkpoints import seal


@pytest.fixture(scope="module")
def pretrained(pretrained_poyo):
    return load_pretrained(pretrained_poyo[1])


@pytest.fixture(scope="module")
def new_recording(pretrained_poyo):
    return neurofm.read(next((pretrained_poyo[0] / "new").glob("*.nwb")))


def test_samba_checkpoint(tmp_path):
    from tests.samba_factory import small_config, small_model

    config = small_config()
    model = small_model(config)
    ckpt = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "neurofm": {"format": "neurofm.samba", "model_config": dataclasses.asdict(config)},
    }
    path = tmp_path / "samba.ckpt"
    torch.save(seal(ckpt), path)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(path)
    assert str(err.value) == (
        f"{path}: neurofm.format is 'neurofm.samba': the checkpoint of another model, not a "
        "POYO ('neurofm.poyo'); load_pretrained, adapt and predict need a POYO checkpoint"
    )


@pytest.mark.parametrize("kind", ["text", "h5", "no-neurofm-section"])
def test_foreign_file(kind, pretrained_poyo, tmp_path, capsys):
    root, _ = pretrained_poyo
    if kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("not a checkpoint\n")
        expected = f"{path}: not a loadable checkpoint (not a PyTorch checkpoint, or damaged"
    elif kind == "h5":
        cat = Catalog(root / "cat_new")
        path = cat.file_of(cat.ids[0])
        expected = f"{path}: not a loadable checkpoint (not a PyTorch checkpoint, or damaged"
    else:
        path = tmp_path / "other.ckpt"
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
        expected = f"{path}: not a neurofm checkpoint (no 'neurofm' section with a format"
    with pytest.raises(CheckpointError, match="^" + expected.replace("(", r"\(")):
        load_pretrained(path)
    # the CLI: one line, exit 1, nothing written
    out = tmp_path / "preds.csv"
    assert cli(["predict", str(path), str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"neurofm: error: {expected}") and err.count("\n") == 1
    assert not out.exists()


def test_target_dimension_mismatch(pretrained, new_recording):
    rec = new_recording
    vel = rec["hand_vel"]
    three = RegularSeries(
        np.column_stack([vel.data, vel.data[:, 0]]),
        vel.rate,
        vel.start,
        [*vel.channels, "z"],
        name="hand_vel",
    )
    wrong = rec.with_signals({"hand_vel": three})
    with pytest.raises(TargetMismatchError) as err:
        pretrained.adapt(wrong, trials=20, epochs=1)
    assert str(err.value) == (
        f"recording {rec.id!r}: hand_vel.channels: 3 dimension(s) "
        f"{[*vel.channels, 'z']} but the checkpoint's readout predicts 2 "
        f"({list(vel.channels)})"
    )
    missing = Recording(rec.id, {k: v for k, v in rec.signals.items() if k != "hand_vel"})
    with pytest.raises(TargetMismatchError, match="no target signal 'hand_vel'"):
        pretrained.adapt(missing, trials=20, epochs=1)


def test_no_units_or_no_spikes(pretrained, new_recording):
    rec = new_recording
    ids = list(rec["spikes"].units.ids)
    silent = rec.with_signals({"spikes": Spikes(np.zeros(0), np.zeros(0, dtype=int), ids)})
    with pytest.raises(NoUnitsError) as err:
        pretrained.adapt(silent, trials=20, epochs=1)
    assert str(err.value) == (
        f"recording {rec.id!r}: spikes: no unit fired a spike in [0, {rec.duration:g}) s; "
        "there is nothing to decode from"
    )
    with pytest.raises(NoUnitsError, match=r"spikes.units: the recording has no units"):
        pretrained.predict(rec.with_signals({"spikes": Spikes(np.zeros(0), [], [])}))
    # spikes only after the adaptation trials: nothing to adapt on
    trials = rec["trials"]
    late = np.sort(trials.end)[19] + 1.0
    sp = rec["spikes"]
    keep = sp.timestamps >= late
    tail = Spikes(sp.timestamps[keep], sp.unit_index[keep], sp.units)
    with pytest.raises(NoUnitsError, match="no unit fired a spike during the first 20 trials"):
        pretrained.adapt(rec.with_signals({"spikes": tail}), trials=20, epochs=1)


def test_unknown_session_and_too_many_trials(pretrained, new_recording):
    with pytest.raises(NeuroFMError, match="is not in the model's vocabulary .* adapt the model"):
        pretrained.predict(new_recording)
    n = len(new_recording["trials"])
    with pytest.raises(NeuroFMError, match=f"asked to adapt on {n} trials but the recording has"):
        pretrained.adapt(new_recording, trials=n, epochs=1)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"trials": 0}, "adapt: trials must be a whole number >= 1, got 0"),
        ({"epochs": 0}, "adapt: epochs must be a whole number >= 1, got 0"),
        ({"epochs": 2.5}, "adapt: epochs must be a whole number >= 1, got 2.5"),
        ({"batch_size": True}, "adapt: batch_size must be a whole number >= 1, got True"),
    ],
)
def test_counts_are_checked_before_the_recording_is_read(pretrained, tmp_path, bad, message):
    # a file that does not exist: the count is what is wrong, whatever the file would hold
    with pytest.raises(NeuroFMError, match="^" + message + "$"):
        pretrained.adapt(tmp_path / "missing.nwb", **bad)


def test_cli_adapt_counts_name_the_option(pretrained_poyo, tmp_path, capsys):
    for option in ("--trials", "--epochs"):
        with pytest.raises(SystemExit) as exit_info:
            cli(["adapt", "x.ckpt", "x.nwb", option, "0", "--out", str(tmp_path / "o")])
        assert exit_info.value.code == 2
        assert f"argument {option}: expected a positive integer, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_registry(pretrained_poyo, tmp_path):
    _, ckpt = pretrained_poyo
    register("test-tiny", ckpt, "the test fixture")
    register("test-unbuilt", tmp_path / "nope.ckpt", rebuild="python scripts/build_it.py")
    try:
        model = load_pretrained("test-tiny")
        assert model.path == ckpt and model.card.sessions
        with pytest.raises(CheckpointError) as err:
            load_pretrained("test-unbuilt")
        assert str(err.value) == (
            f"pretrained model 'test-unbuilt' is not built yet (its checkpoint "
            f"{tmp_path / 'nope.ckpt'} is missing): run python scripts/build_it.py"
        )
        with pytest.raises(CheckpointError, match="no pretrained model of that name"):
            load_pretrained("no-such-model")
    finally:
        unregister("test-tiny")
        unregister("test-unbuilt")
