"""Column names of NWB behaviour series: x, y(, z) for every kinematic series, numbers else."""

from __future__ import annotations

import numpy as np
import pytest
from nwb_factory import new_nwbfile, write

from neurofm.readers.nwb import read_nwb


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    from pynwb import TimeSeries
    from pynwb.behavior import Position, SpatialSeries

    nwb = new_nwbfile()
    nwb.add_unit(spike_times=np.array([0.1, 0.2]))
    module = nwb.create_processing_module(name="behavior", description="behaviour")

    def series(name: str, n: int, cls: type = TimeSeries) -> None:
        data = np.arange(10.0 * n).reshape(10, n)
        extra = {"reference_frame": "origin"} if cls is SpatialSeries else {}
        ts = cls(name=name, data=data, unit="m", rate=10.0, starting_time=0.0, **extra)
        if cls is SpatialSeries:
            module.add(Position(name=f"Position_{name}", spatial_series=[ts]))
        else:
            module.add(ts)

    series("hand_vel", 2)  # NLB's TimeSeries of (x, y) velocity
    series("cursor_pos", 2)
    series("finger_acceleration", 3)
    series("eye_position", 2, SpatialSeries)
    series("joint_pos", 7)  # 7 joints: not coordinates
    series("emg", 2)  # two muscles: not coordinates
    series("velocity", 1)
    path = write(tmp_path_factory.mktemp("nwb") / "kinematics.nwb", nwb)
    return read_nwb(path)


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("hand_vel", ["x", "y"]),
        ("cursor_pos", ["x", "y"]),
        ("finger_acceleration", ["x", "y", "z"]),
        ("eye_position", ["x", "y"]),
        ("joint_pos", [str(i) for i in range(7)]),
        ("emg", ["0", "1"]),
        ("velocity", ["0"]),
    ],
)
def test_channel_names(rec, name, channels):
    assert list(rec[name].channels) == channels
