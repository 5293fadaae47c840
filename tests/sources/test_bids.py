"""BIDS sidecars: every unreadable sidecar is one ReaderError naming the file."""

from __future__ import annotations

import pytest

from neurofm.errors import ReaderError
from neurofm.sources.bids import read_json


def test_reads_a_sidecar(tmp_path):
    path = tmp_path / "sub-01_task-rest_bold.json"
    path.write_text('{"RepetitionTime": 2.0, "TaskName": "rest"}')
    assert read_json(path) == {"RepetitionTime": 2.0, "TaskName": "rest"}


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"RepetitionTime": \xff}', "not a readable JSON sidecar"),  # not UTF-8
        (b'{"RepetitionTime": ', "not a readable JSON sidecar"),  # truncated
        (b"[1, 2]", "must hold an object"),
    ],
)
def test_bad_sidecars_name_the_file(tmp_path, content, message):
    path = tmp_path / "sub-01_task-rest_bold.json"
    path.write_bytes(content)
    with pytest.raises(ReaderError, match=message) as info:
        read_json(path)
    assert str(path) in str(info.value)


def test_missing_sidecar_names_the_file(tmp_path):
    with pytest.raises(ReaderError, match="nothing.json"):
        read_json(tmp_path / "nothing.json")
