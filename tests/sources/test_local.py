"""Local files as a source: which files a folder offers, and their sha256."""

from __future__ import annotations

import hashlib
import os

import pytest

from neurofm.errors import NeuroFMError, ReaderError
from neurofm.sources.local import find_files, sha256_file


def _touch(path, data: bytes = b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_find_files_in_a_folder_sorted_recursive_and_without_hidden(tmp_path):
    wanted = [
        _touch(tmp_path / "sub-2" / "b.nwb"),
        _touch(tmp_path / "a.nwb"),
        _touch(tmp_path / "sub-1" / "deep" / "c.nwb"),
    ]
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / ".hidden.nwb")  # a hidden file
    _touch(tmp_path / ".cache" / "d.nwb")  # inside a hidden folder
    _touch(tmp_path / "sub-1" / ".tmp" / "partial.nwb")  # a download in progress
    (tmp_path / "folder.nwb").mkdir()  # a folder named like a file is not a file
    assert find_files(tmp_path) == sorted(wanted)


def test_hidden_parents_above_the_source_do_not_count(tmp_path):
    src = tmp_path / ".work" / "raw"
    f = _touch(src / "a.nwb")
    assert find_files(src) == [f]


def test_find_files_other_suffix(tmp_path):
    a = _touch(tmp_path / "x" / "sub-01_task-rest_eeg.edf")
    _touch(tmp_path / "x" / "sub-01.nwb")
    assert find_files(tmp_path, suffix=".edf") == [a]


def test_a_file_is_its_own_list_whatever_its_suffix(tmp_path):
    f = _touch(tmp_path / "session.h5")
    assert find_files(f) == [f]
    assert find_files(str(f)) == [f]


def test_missing_source_and_empty_folder_are_reader_errors(tmp_path):
    with pytest.raises(ReaderError, match="nope: no such file or folder"):
        find_files(tmp_path / "nope")
    _touch(tmp_path / "only.txt")
    _touch(tmp_path / ".hidden" / "a.nwb")
    with pytest.raises(ReaderError, match=r"folder contains no \.nwb files"):
        find_files(tmp_path)
    assert issubclass(ReaderError, NeuroFMError)  # the CLI prints these on one line


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 1024 + 7])
def test_sha256_matches_hashlib_across_block_boundaries(tmp_path, size):
    data = os.urandom(size)
    f = _touch(tmp_path / "f.bin", data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_file(f) == expected
    assert sha256_file(str(f), block_size=1024) == expected  # several blocks and a tail
    assert sha256_file(f, block_size=1) == expected


def test_sha256_of_a_missing_file(tmp_path):
    # Not wrapped: the caller (which knows what the file is) reports it.
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing.nwb")
