"""Progress for log files: whole lines, every tenth of the way, never a carriage return."""

from __future__ import annotations

import io
import re

import pytest

from neurofm.progress import LineProgress, format_duration, progress_bar, progress_note


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_per_tenth_and_a_closing_line():
    out = io.StringIO()
    with progress_bar(total=300, desc="GRU s1", unit="step", file=out) as bar:
        assert isinstance(bar, LineProgress)
        for i in range(300):
            bar.update(1)
            if i == 100:
                bar.set_postfix(loss="0.123", valid_r2=0.5)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    counts = [int(re.match(r"GRU s1: (\d+)/300 step", line).group(1)) for line in lines]
    assert counts == [30, 60, 90, 120, 150, 180, 210, 240, 270, 300]  # the last on close
    assert lines[-1].startswith("GRU s1: 300/300 step (100%), ")
    assert lines[-1].endswith(", loss=0.123, valid_r2=0.5")


def test_iterating_counts_items_and_closes():
    out = io.StringIO()
    items = list(progress_bar(["a", "b", "c"], desc="ingest", unit="file", file=out))
    assert items == ["a", "b", "c"]
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "ingest: 1/3 file (33%)",
        "ingest: 2/3 file (67%)",
        "ingest: 3/3 file (100%)",
    ]


def test_without_a_total_one_line_on_close():
    out = io.StringIO()
    with progress_bar(desc="  a.nwb", unit=" spikes", file=out) as bar:
        bar.update(1000)
        bar.update(234)
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(r"  a.nwb: 1234 spikes, \d+\.\d s", line)


def test_a_run_cut_short_says_so():
    out = io.StringIO()
    with pytest.raises(OSError), progress_bar(desc="  bad.nwb", unit=" spikes", file=out):
        raise OSError("not an HDF5 file")
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(r"  bad.nwb: 0 spikes, \d+\.\d s, stopped by an error", line)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt), progress_bar(total=4, unit="file", file=out) as bar:
        bar.update(1)
        raise KeyboardInterrupt
    assert out.getvalue().splitlines()[-1].endswith(", interrupted")

    def files():  # an iterable that fails while producing its second item
        yield "a.nwb"
        raise OSError("b.nwb: truncated")

    out = io.StringIO()
    with pytest.raises(OSError):
        list(progress_bar(files(), total=3, desc="ingest", unit="file", file=out))
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("ingest: 1/3 file (33%)") and last.endswith(", stopped by an error")


def test_leaving_a_loop_early_is_not_an_error():
    out = io.StringIO()
    bar = progress_bar(range(10), desc="windows", unit="window", file=out)
    for i in bar:
        if i == 2:
            break
    del bar  # the generator is closed (GeneratorExit): a plain closing line
    import gc

    gc.collect()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("windows: 2/10 window (20%)") and "error" not in last


def test_disabled_writes_nothing():
    out = io.StringIO()
    with progress_bar(total=5, file=out, disable=True) as bar:
        bar.update(5)
    progress_note("[1/2] ingest", disable=True, file=out)
    assert out.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm.auto import tqdm

    bar = progress_bar(total=3, file=_Tty())
    assert isinstance(bar, tqdm)
    bar.close()


def test_progress_note_is_one_line():
    out = io.StringIO()
    progress_note("[2/4] ingest", file=out)
    assert out.getvalue() == "[2/4] ingest\n"


@pytest.mark.parametrize(
    ("seconds", "text"), [(4.25, "4.2 s"), (125, "2 min 05 s"), (3725, "1 h 02 min")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
