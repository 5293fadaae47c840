"""Reading neurofm checkpoints: format detection, clear errors, only weights unpickled."""

from __future__ import annotations

import pathlib

import pytest
import torch

from neurofm.errors import NeuroFMError
from neurofm.training.checkpoints import checkpoint_format, read_checkpoint


def _ckpt(fmt: str | None = "neurofm.poyo") -> dict:
    ckpt = {
        "epoch": 3,
        "global_step": 120,
        "state_dict": {
            "model.readout.weight": torch.arange(6.0).reshape(2, 3),
            "model.readout.bias": torch.zeros(2),
            "head.model.x": torch.ones(1),  # only the leading "model." goes
        },
    }
    if fmt is not None:
        ckpt["neurofm"] = {"format": fmt, "config": {"dim": 3, "depth": 1}, "units": ["a", "b"]}
    return ckpt


@pytest.fixture
def poyo_ckpt(tmp_path) -> pathlib.Path:
    path = tmp_path / "last.ckpt"
    torch.save(_ckpt(), path)
    return path


class Payload:
    """Unpickling this runs code: it creates ``sentinel`` (a stand-in for anything worse)."""

    def __init__(self, sentinel: pathlib.Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (pathlib.Path.touch, (self.sentinel,))


def test_read_a_neurofm_checkpoint(poyo_ckpt):
    meta, state = read_checkpoint(poyo_ckpt, "neurofm.poyo", "POYO")
    assert meta == {"format": "neurofm.poyo", "config": {"dim": 3, "depth": 1}, "units": ["a", "b"]}
    assert sorted(state) == ["head.model.x", "readout.bias", "readout.weight"]
    torch.testing.assert_close(state["readout.weight"], torch.arange(6.0).reshape(2, 3))
    assert read_checkpoint(str(poyo_ckpt), "neurofm.poyo", "POYO")[0] == meta


def test_format_detection(tmp_path, poyo_ckpt):
    assert checkpoint_format(poyo_ckpt) == "neurofm.poyo"
    samba = tmp_path / "samba.ckpt"
    torch.save(_ckpt("neurofm.samba"), samba)
    assert checkpoint_format(str(samba)) == "neurofm.samba"
    # another tool's checkpoint, a bare tensor, a 'neurofm' key that is not a section
    for name, obj in {
        "lightning": _ckpt(None),
        "tensor": torch.zeros(3),
        "odd": {**_ckpt(None), "neurofm": "neurofm.poyo"},
    }.items():
        torch.save(obj, tmp_path / name)
        assert checkpoint_format(tmp_path / name) is None, name
    # missing, a folder, not a checkpoint at all
    assert checkpoint_format(tmp_path / "missing.ckpt") is None
    assert checkpoint_format(tmp_path) is None
    (tmp_path / "notes.ckpt").write_text("hello")
    assert checkpoint_format(tmp_path / "notes.ckpt") is None


def test_missing_checkpoint(tmp_path):
    with pytest.raises(NeuroFMError, match=r"missing\.ckpt: no such checkpoint"):
        read_checkpoint(tmp_path / "missing.ckpt", "neurofm.poyo", "POYO")


def test_foreign_checkpoints_name_the_expected_format(tmp_path):
    samba = tmp_path / "samba.ckpt"
    torch.save(_ckpt("neurofm.samba"), samba)
    match = r"samba\.ckpt: not a neurofm POYO checkpoint \(no 'neurofm' section with format "
    with pytest.raises(NeuroFMError, match=match + "'neurofm.poyo'"):
        read_checkpoint(samba, "neurofm.poyo", "POYO")
    other = tmp_path / "other.ckpt"
    torch.save(_ckpt(None), other)  # e.g. a plain Lightning checkpoint
    with pytest.raises(NeuroFMError, match="not a neurofm SAMBA checkpoint"):
        read_checkpoint(other, "neurofm.samba", "SAMBA")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(NeuroFMError, match="not a neurofm POYO checkpoint"):
        read_checkpoint(tensor, "neurofm.poyo", "POYO")


def test_truncated_or_garbage_files_are_clear_errors(tmp_path, poyo_ckpt):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(poyo_ckpt.read_bytes()[: poyo_ckpt.stat().st_size // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    for path in (cut, garbage):
        with pytest.raises(NeuroFMError, match=rf"{path.name}: not a loadable checkpoint \("):
            read_checkpoint(path, "neurofm.poyo", "POYO")
        assert checkpoint_format(path) is None
    # what the file is, when it is plainly not one
    notes, empty = tmp_path / "notes.ckpt", tmp_path / "empty.ckpt"
    notes.write_text("my notes")
    empty.write_bytes(b"")
    for path, why in [
        (notes, "torch.save writes a zip archive; this is a file that starts with b'my n'"),
        (garbage, "this is a file that starts with b'\\x00not'"),
        (empty, "the file is empty"),
    ]:
        with pytest.raises(NeuroFMError) as err:
            read_checkpoint(path, "neurofm.poyo", "POYO")
        assert why in str(err.value), str(err.value)


def test_loading_never_runs_pickled_code(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    evil = _ckpt()
    evil["neurofm"]["callback"] = Payload(sentinel)
    torch.save(evil, path)

    assert checkpoint_format(path) is None
    with pytest.raises(NeuroFMError, match="evil.ckpt: not a loadable checkpoint"):
        read_checkpoint(path, "neurofm.poyo", "POYO")
    assert not sentinel.exists()
    # the payload is real: a full unpickle would have run it
    torch.load(path, weights_only=False)
    assert sentinel.exists()
