"""The tokenizer's input path: only the signals it reads are windowed, and a recording's unit
rows are looked up once, again when its units table or the vocabulary changes."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.data import Catalog, Intervals, Recording, RegularSeries, Spikes
from neurofm.data.sampling import Window
from neurofm.data.targets import TrialTarget
from neurofm.models.layers.vocab import VocabEmbedding
from neurofm.tokenizers.spikes import SpikeTokenizer, unit_keys
from neurofm.training.datasets import OpenRecordings, WindowDataset


def _recording(rid: str = "rec-a") -> Recording:
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0, 20, 800))
    hz = np.arange(2000) / 100.0
    return Recording(
        rid,
        {
            "spikes": Spikes(times, rng.integers(0, 4, len(times)), ["u0", "u1", "u2", "u3"]),
            "hand_vel": RegularSeries(np.c_[np.sin(hz), np.cos(hz)], rate=100.0),
            "eye": RegularSeries(rng.standard_normal((2000, 2)), rate=100.0),
            "trials": Intervals(
                np.arange(0.0, 20.0, 2.0),
                np.arange(1.5, 20.0, 2.0),
                columns={"go": np.arange(0.5, 20.0, 2.0)},
            ),
            "train_domain": Intervals([0.0], [20.0]),
        },
        duration=20.0,
    )


def _tokenizer(vocab: VocabEmbedding, target="hand_vel") -> SpikeTokenizer:
    sessions = VocabEmbedding(4, ["rec-a"], name="session")
    return SpikeTokenizer(vocab.index, sessions.index, 1.0, 0.25, 2, target=target)


def test_window_picks_signals_and_names_a_missing_one():
    rec = _recording()
    win = rec.window(2.0, 3.0, signals=["hand_vel", "spikes", "spikes"])
    assert list(win.signals) == ["hand_vel", "spikes"]
    full = rec.window(2.0, 3.0)
    np.testing.assert_array_equal(win["spikes"].timestamps, full["spikes"].timestamps)
    np.testing.assert_array_equal(win["hand_vel"].data, full["hand_vel"].data)
    assert win.absolute_start == 2.0 and win.duration == 1.0
    with pytest.raises(KeyError, match=r"'rec-a' has no signal 'lfp' \(has \['eye', 'hand_vel'"):
        rec.window(2.0, 3.0, signals=["spikes", "lfp"])


@pytest.mark.parametrize(
    "target, needs",
    [("hand_vel", ("spikes", "hand_vel")), (TrialTarget("go", "go"), ("spikes", "trials"))],
)
def test_window_dataset_windows_only_what_the_tokenizer_reads(tmp_path, target, needs):
    cat = Catalog(tmp_path / "cat", create=True)
    cat.add(_recording())
    vocab = VocabEmbedding(4, unit_keys("rec-a", ["u0", "u1", "u2", "u3"]), name="unit")
    tok = _tokenizer(vocab, target)
    assert tok.signals == needs
    seen = []

    class Spy:
        signals = tok.signals

        def __call__(self, win):
            seen.append(list(win.signals))
            return tok(win)

    with OpenRecordings(cat) as recs:
        item = WindowDataset(recs, Spy())[Window("rec-a", 4.0, 5.0)]
        expected = tok(recs.get("rec-a").window(4.0, 5.0))
    assert seen == [list(needs)]
    assert item.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(item[key], value)


def test_a_missing_target_is_reported_with_every_signal_there_is(tmp_path):
    cat = Catalog(tmp_path / "cat", create=True)
    cat.add(_recording())
    vocab = VocabEmbedding(4, unit_keys("rec-a", ["u0", "u1", "u2", "u3"]), name="unit")
    with OpenRecordings(cat) as recs:
        dataset = WindowDataset(recs, _tokenizer(vocab, "cursor_vel"))
        with pytest.raises(Exception, match=r"no target signal 'cursor_vel' \(has \['eye', "):
            dataset[Window("rec-a", 0.0, 1.0)]


def test_unit_rows_follow_the_vocabulary():
    rec = _recording()
    keys = unit_keys("rec-a", ["u0", "u1", "u2", "u3"])
    vocab = VocabEmbedding(4, ["other/x", *keys], name="unit")
    tok = _tokenizer(vocab)
    first = tok(rec.window(0.0, 1.0))
    spikes = rec.window(0.0, 1.0)["spikes"]
    np.testing.assert_array_equal(
        first["input_unit_index"][: len(spikes)], vocab.index(keys)[spikes.unit_index]
    )
    vocab.subset(keys[::-1])  # same words, other rows: looked up again
    again = tok(rec.window(0.0, 1.0))
    np.testing.assert_array_equal(
        again["input_unit_index"][: len(spikes)], vocab.index(keys)[spikes.unit_index]
    )
    assert not np.array_equal(first["input_unit_index"], again["input_unit_index"])


def test_a_plain_index_function_is_asked_every_window():
    calls = []

    def index(keys):
        calls.append(len(keys))
        return np.arange(len(keys))

    tok = SpikeTokenizer(index, index, 1.0, 0.25, 2, target="hand_vel")
    rec = _recording()
    tok(rec.window(0.0, 1.0))
    tok(rec.window(1.0, 2.0))
    assert calls == [4, 1, 4, 1]  # units, then the session, per window
