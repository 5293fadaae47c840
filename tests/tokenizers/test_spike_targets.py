"""The tokenizer's outputs: series samples (NaN gaps weigh 0), per-trial values at event times,
class indices; and the class encoder saved in checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from target_factory import gap_recording, trial_recording

from neurofm.data.targets import TrialTarget
from neurofm.errors import InvalidDataError
from neurofm.tokenizers.spikes import (
    ClassEncoder,
    SpikeTokenizer,
    TargetScaler,
    collate,
    encoding_from_dict,
)


def tokenizer(target, scaler) -> SpikeTokenizer:
    def index(keys):
        return np.arange(len(keys))

    return SpikeTokenizer(index, index, 1.0, 0.125, 4, target=target, scaler=scaler)


SCALER = TargetScaler(np.array([1.0, -3.0]), np.array([2.0, 0.5]))


def test_nan_gaps_weigh_zero_and_leave_no_nan():
    rec = gap_recording()
    window = rec.window(2.5, 3.5)  # rows 250-349: 50 whole rows of NaN at the end
    out = tokenizer("hand_vel", SCALER).outputs(window)
    raw = window["hand_vel"].data
    ok = np.isfinite(raw).all(axis=1)
    assert ok.sum() == 50
    np.testing.assert_array_equal(out["output_weights"], ok.astype(np.float32))
    assert np.isfinite(out["output_values"]).all()
    np.testing.assert_array_equal(out["output_values"][~ok], 0.0)
    expected = ((raw[ok] - SCALER.mean) / SCALER.std).astype(np.float32)
    np.testing.assert_array_equal(out["output_values"][ok], expected)
    # a NaN in one channel masks the whole sample
    part = tokenizer("hand_vel", SCALER).outputs(rec.window(12.0, 13.0))
    np.testing.assert_array_equal(np.flatnonzero(part["output_weights"] == 0), np.arange(50, 60))


def test_finite_series_is_unchanged():
    rec = gap_recording()
    window = rec.window(5.0, 6.0)
    out = tokenizer("hand_vel", SCALER).outputs(window)
    raw = window["hand_vel"].data
    np.testing.assert_array_equal(out["output_values"], SCALER.forward(raw).astype(np.float32))
    np.testing.assert_array_equal(out["output_weights"], np.ones(100, np.float32))
    np.testing.assert_array_equal(out["output_timestamps"], window["hand_vel"].timestamps)


def test_trial_values_come_at_their_event_times_inside_the_window():
    rec = trial_recording()
    trials = rec["trials"]
    target = TrialTarget("tp", "set_time")
    scaler = TargetScaler(np.array([0.8]), np.array([0.2]))
    # [13.5, 17.5): trial 6 (set 13.0, before the window) overlaps it but is not an output;
    # trial 7 has no set; trial 8 (set 17.0) is inside.
    out = tokenizer(target, scaler).outputs(rec.window(13.5, 17.5))
    np.testing.assert_allclose(out["output_timestamps"], [17.0 - 13.5])
    np.testing.assert_allclose(out["output_values"], [[(trials.columns["tp"][8] - 0.8) / 0.2]])
    np.testing.assert_array_equal(out["output_weights"], [1.0])
    # two events in one window, in time order
    out = tokenizer(target, scaler).outputs(rec.window(0.5, 3.5))
    np.testing.assert_allclose(out["output_timestamps"], [0.5, 2.5])


def test_class_targets_are_indices_and_unknown_classes_weigh_zero():
    rec = trial_recording()
    short = rec["trials"].columns["is_short"]
    encoder = ClassEncoder(("False", "True"))
    out = tokenizer(TrialTarget("is_short", "set_time", "class"), encoder).outputs(
        rec.window(0.0, 4.0)
    )
    np.testing.assert_array_equal(out["output_values"][:, 0], short[:2].astype(np.float32))
    np.testing.assert_array_equal(out["output_weights"], [1.0, 1.0])
    only_true = ClassEncoder(("True",))
    out = tokenizer(TrialTarget("is_short", "set_time", "class"), only_true).outputs(
        rec.window(0.0, 4.0)
    )
    np.testing.assert_array_equal(out["output_weights"], short[:2].astype(np.float32))
    batch = collate(
        [
            tokenizer(
                TrialTarget("eye", "set_time", "class"), ClassEncoder(("left", "right"))
            ).outputs(rec.window(0.0, 4.0))
            | _inputs()
        ]
    )
    assert batch["output_values"].shape == (1, 8, 1)


def _inputs() -> dict:
    return {
        "input_unit_index": np.zeros(1, np.int64),
        "input_timestamps": np.zeros(1),
        "input_token_type": np.zeros(1, np.int64),
        "latent_index": np.zeros(4, np.int64),
        "latent_timestamps": np.zeros(4),
        "session_index": 0,
        "recording_id": "rsg",
        "absolute_start": 0.0,
    }


def test_a_class_target_needs_its_classes():
    with pytest.raises(InvalidDataError, match=r"is_short@set_time \(class\) needs its classes"):
        tokenizer(TrialTarget("is_short", "set_time", "class"), SCALER)


def test_a_missing_column_is_named_with_the_ones_there_are():
    rec = trial_recording()
    tok = tokenizer(TrialTarget("t_p", "set_time"), SCALER)
    with pytest.raises(InvalidDataError, match=r"no column 't_p' .*columns: eye, is_short"):
        tok.outputs(rec.window(0.0, 1.0))


def test_encodings_round_trip_through_plain_dicts():
    encoder = ClassEncoder(("A", "F", "R"))
    back = encoding_from_dict(encoder.to_dict())
    assert back == encoder and back.width == 3
    np.testing.assert_array_equal(back.encode(np.array(["R", "X", "A"])), [2, -1, 0])
    np.testing.assert_array_equal(back.decode(np.array([1, 2])), ["F", "R"])
    scaler = encoding_from_dict(SCALER.to_dict())
    assert isinstance(scaler, TargetScaler) and scaler.width == 2
