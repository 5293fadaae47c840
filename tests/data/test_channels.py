"""One EEG channel selection: the wanted types, bad channels left out."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.data.channels import eeg_channels
from neurofm.data.signals import RegularSeries
from neurofm.errors import InvalidDataError


def _series(info=None) -> RegularSeries:
    names = ["Fz", "Cz", "EOG", "Pz"]
    return RegularSeries(np.zeros((10, 4)), 100.0, 0.0, names, name="eeg", channel_info=info)


def test_keeps_the_wanted_types_and_drops_bad_channels():
    types = np.array(["eeg", "eeg", "eog", "eeg"], dtype=object)
    bad = np.array([False, True, False, False])
    np.testing.assert_array_equal(eeg_channels(_series({"type": types, "bad": bad})), [0, 3])
    np.testing.assert_array_equal(eeg_channels(_series({"type": types})), [0, 1, 3])
    both = eeg_channels(_series({"type": types, "bad": bad}), ("eeg", "eog"))
    np.testing.assert_array_equal(both, [0, 2, 3])


def test_without_types_every_channel_is_eeg_unless_bad():
    np.testing.assert_array_equal(eeg_channels(_series()), [0, 1, 2, 3])
    bad = np.array([True, False, False, False])
    np.testing.assert_array_equal(eeg_channels(_series({"bad": bad})), [1, 2, 3])


def test_nothing_left_is_a_clear_error():
    types = np.array(["eog", "eeg", "eog", "eog"], dtype=object)
    bad = np.array([False, True, False, False])
    with pytest.raises(InvalidDataError, match=r"rec 'x': eeg: no channel of type \['eeg'\]"):
        eeg_channels(_series({"type": types, "bad": bad}), where="rec 'x': eeg")
