"""Per-channel metadata of RegularSeries (``channel_info``): validation, windows, HDF5 round
trips, and files written before it existed."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from neurofm.data import Recording, RegularSeries
from neurofm.data.storage import LazyRegularSeries
from neurofm.errors import InvalidDataError


def _eeg() -> RegularSeries:
    rng = np.random.default_rng(0)
    return RegularSeries(
        rng.standard_normal((500, 3)).astype(np.float32),
        250.0,
        0.5,
        ["Fp1", "Cz", "ECG"],
        "eeg",
        "V",
        channel_info={
            "type": ["eeg", "eeg", "ecg"],
            "x": [0.03, 0.0, np.nan],
            "y": [0.08, 0.01, np.nan],
            "z": [0.02, 0.1, np.nan],
            "bad": [False, True, False],
            "label": [1, 2, 3],
        },
    )


def test_channel_info_must_have_one_value_per_channel():
    with pytest.raises(InvalidDataError) as err:
        RegularSeries(np.zeros((4, 2)), 10.0, channels=["a", "b"], name="eeg",
                      channel_info={"type": ["eeg"]})  # fmt: skip
    assert str(err.value) == ("eeg.channel_info.type: length 1 does not match channels (2)")
    with pytest.raises(InvalidDataError, match=r"eeg\.channel_info\.x: expected one value"):
        RegularSeries(np.zeros((4, 2)), 10.0, name="eeg", channel_info={"x": 1.0})


def test_default_is_empty_and_windows_share_it():
    plain = RegularSeries(np.zeros((10, 2)), 10.0)
    assert plain.channel_info == {}
    eeg = _eeg()
    win = eeg.window(0.6, 1.0)
    assert win.channel_info is eeg.channel_info
    assert len(win) == 100 and win.start == pytest.approx(0.0)


def test_hdf5_round_trip_lazy_and_loaded(tmp_path):
    eeg = _eeg()
    path = Recording("r", {"eeg": eeg}).save(tmp_path / "r.h5")
    with Recording.open(path) as rec:
        lazy = rec["eeg"]
        assert isinstance(lazy, LazyRegularSeries)
        for series in (lazy, lazy.load(), lazy.window(0.5, 1.5)):
            info = series.channel_info
            assert sorted(info) == sorted(eeg.channel_info)
            assert list(info["type"]) == ["eeg", "eeg", "ecg"]
            np.testing.assert_array_equal(info["x"], eeg.channel_info["x"])  # NaN kept
            assert info["bad"].dtype == bool and list(info["bad"]) == [False, True, False]
            assert info["label"].dtype.kind == "i"
        # a window of the lazy series shares the table read once at open
        assert lazy.window(0.5, 0.7).channel_info is lazy.channel_info
        np.testing.assert_array_equal(lazy.window(0.5, 1.5).data, eeg.window(0.5, 1.5).data)


def test_files_without_channel_info_still_open(tmp_path):
    """Recordings written before channel_info existed have no such group: they read as {}."""
    path = Recording("r", {"eeg": _eeg()}).save(tmp_path / "r.h5")
    with h5py.File(path, "a") as f:
        del f["signals/eeg/channel_info"]
    with Recording.open(path) as rec:
        assert rec["eeg"].channel_info == {}
        assert rec["eeg"].load().channel_info == {}
        assert rec.window(0.5, 1.0)["eeg"].data.shape == (125, 3)


def test_series_without_channel_info_write_no_group(tmp_path):
    path = Recording("r", {"x": RegularSeries(np.zeros((5, 1)), 1.0)}).save(tmp_path / "r.h5")
    with h5py.File(path, "r") as f:
        assert "channel_info" not in f["signals/x"]
