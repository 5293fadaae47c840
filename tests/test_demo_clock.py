"""The demo's per-stage timing table (``neurofm.demo.StageClock``), on fake clocks."""

from __future__ import annotations

from neurofm.demo import StageClock


def fake(values: list[float]):
    it = iter(values)
    return lambda: next(it)


def test_stage_clock_table_shares_and_totals():
    # wall: start a 0, a->b at 10, b stops at 40; cpu: 0, 5, 35
    clock = StageClock(wall=fake([0.0, 10.0, 10.0, 40.0]), cpu=fake([0.0, 5.0, 5.0, 35.0]))
    clock.start("a")
    clock.start("b")
    lines = clock.table().splitlines()
    assert clock.stages == [("a", 10.0, 5.0), ("b", 30.0, 30.0)]
    assert lines[0].split() == ["stage", "wall", "s", "share", "cpu", "s"]
    assert lines[1].split() == ["a", "10.0", "25.0%", "5.0"]
    assert lines[2].split() == ["b", "30.0", "75.0%", "30.0"]
    assert lines[3].split() == ["total", "40.0", "100.0%", "35.0"]
    assert clock.table() == "\n".join(lines)  # closing twice adds nothing
