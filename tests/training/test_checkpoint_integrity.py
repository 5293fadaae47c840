"""Checkpoints are checked, not trusted: a weight changed by one byte, a missing section, a
missing tensor or a wrong shape is one clear error naming the file and what is wrong, in
``evaluate``, ``finetune`` and resumed training alike; a file that is not a checkpoint never
earns PyTorch's advice to load it with ``weights_only=False``."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.training.checkpoints import (
    CHECKSUM_KEY,
    load_checkpoint,
    seal,
    weights_digest,
)
from neurofm.training.poyo import load_poyo, train_poyo
from neurofm.training.samba import load_samba


def _flip_a_weight_byte(src: pathlib.Path, dst: pathlib.Path, name: str) -> None:
    """Copy ``src`` to ``dst`` with one byte of tensor ``name`` flipped, in place in the file
    (torch stores each tensor's bytes as they are, uncompressed)."""
    raw = bytearray(src.read_bytes())
    values = torch.load(src, weights_only=True)["state_dict"][name]
    data = values.contiguous().numpy().tobytes()
    at = bytes(raw).find(data)
    assert at > 0 and bytes(raw).find(data, at + 1) < 0, "the tensor's bytes are not unique"
    raw[at + len(data) // 2] ^= 0x40
    dst.write_bytes(bytes(raw))


def _tampered(src: pathlib.Path, dst: pathlib.Path, change, reseal: bool = True) -> pathlib.Path:
    ckpt = torch.load(src, weights_only=True)
    change(ckpt)
    torch.save(seal(ckpt) if reseal else ckpt, dst)
    return dst


def _cli_error(capsys, *args: str) -> str:
    """Run the CLI, expect exit 1 and one error line; return it."""
    assert main(list(args)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("neurofm: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_sealed_when_written(pretrained_poyo):
    _, ckpt = pretrained_poyo
    raw = torch.load(ckpt, weights_only=True)
    assert raw["neurofm"][CHECKSUM_KEY] == weights_digest(raw["state_dict"])
    assert load_poyo(ckpt)[0] is not None  # a sound checkpoint loads


def test_a_flipped_byte_in_a_weight_is_refused_everywhere(pretrained_poyo, tmp_path, capsys):
    root, ckpt = pretrained_poyo
    bad = tmp_path / "flipped.ckpt"
    _flip_a_weight_byte(ckpt, bad, "model.readout.weight")
    # the file still unpickles, with one weight changed (it used to load silently)
    changed = torch.load(bad, weights_only=True)["state_dict"]["model.readout.weight"]
    original = torch.load(ckpt, weights_only=True)["state_dict"]["model.readout.weight"]
    assert (changed != original).sum() == 1
    msg = r"flipped\.ckpt: its weights changed after it was written"
    with pytest.raises(NeuroFMError, match=msg):
        load_poyo(bad)
    assert "its weights changed after it was written" in _cli_error(
        capsys, "evaluate", str(bad), str(root / "cat_pre")
    )
    assert "its weights changed" in _cli_error(
        capsys, "finetune", str(bad), str(root / "cat_new"), "--out", str(tmp_path / "ft")
    )
    cfg = load_poyo(ckpt)[2]
    with pytest.raises(NeuroFMError, match=msg):  # nor is a run resumed from it
        train_poyo(root / "cat_pre", load_poyo(ckpt)[0].config, cfg, tmp_path, resume=bad)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda c: c["neurofm"].pop("model_config"),
            r"lacks 'model_config' \(has 'card', 'format'",
        ),
        (lambda c: c["neurofm"].pop("scaler"), r"lacks 'scaler'"),
        (
            lambda c: c["neurofm"]["model_config"].update(dim="big"),
            r"model_config: dim: Input should be a valid integer",
        ),
        (
            lambda c: c["neurofm"]["model_config"].update(depth=-1),
            r"model_config: depth: Input should be greater than 0",
        ),
        (
            lambda c: c["state_dict"].pop("model.readout.bias"),
            r"do not fit a POYO.*missing 1 tensor\(s\): readout\.bias",
        ),
        (
            lambda c: c["state_dict"].update({"model.extra.weight": torch.zeros(2)}),
            r"unexpected 1 tensor\(s\): extra\.weight",
        ),
        (
            lambda c: c["state_dict"].update({"model.readout.weight": torch.zeros(2, 3)}),
            r"wrong shape: readout\.weight \[2, 3\] \(expected \[2, 64\]\)",
        ),
        (
            lambda c: c["state_dict"].update({"model.unit_emb.weight": torch.zeros(5, 64)}),
            r"wrong shape: unit_emb\.weight \[5, 64\] \(expected \[\d+, 64\]\)",
        ),
        (lambda c: c["state_dict"].clear(), r"incomplete POYO checkpoint: no weights"),
        (
            lambda c: c["neurofm"].update(train_config={"epochs": "many"}),
            r"train_config.*epochs",
        ),
    ],
    ids=[
        "no-model-config",
        "no-scaler",
        "dim-big",
        "depth-negative",
        "missing-tensor",
        "unexpected-tensor",
        "wrong-shape",
        "wrong-vocabulary-size",
        "no-weights",
        "bad-train-config",
    ],
)
def test_tampered_poyo_checkpoints_are_clear_errors(
    pretrained_poyo, tmp_path, capsys, change, expected
):
    """Each used to be a KeyError, TypeError or RuntimeError traceback in evaluate/finetune."""
    root, ckpt = pretrained_poyo
    bad = _tampered(ckpt, tmp_path / "tampered.ckpt", change)
    with pytest.raises(NeuroFMError, match=r"tampered\.ckpt: .*" + expected):
        load_poyo(bad)
    line = _cli_error(capsys, "evaluate", str(bad), str(root / "cat_pre"))
    assert "tampered.ckpt" in line
    line = _cli_error(
        capsys, "finetune", str(bad), str(root / "cat_new"), "--out", str(tmp_path / "ft")
    )
    assert "tampered.ckpt" in line


def test_a_checkpoint_without_a_checksum_loads_with_a_warning(pretrained_poyo, tmp_path, caplog):
    _, ckpt = pretrained_poyo
    old = _tampered(ckpt, tmp_path / "old.ckpt", lambda c: c["neurofm"].pop(CHECKSUM_KEY), False)
    model, _, _ = load_poyo(old)
    assert "no weights checksum" in caplog.text
    torch.testing.assert_close(model.readout.weight, load_poyo(ckpt)[0].readout.weight)


def test_tampered_samba_checkpoints_are_clear_errors(tiny_samba, tmp_path):
    _, ckpt = tiny_samba
    bad = tmp_path / "flipped.ckpt"
    _flip_a_weight_byte(ckpt, bad, "model.parcel_bias")
    with pytest.raises(NeuroFMError, match=r"flipped\.ckpt: its weights changed"):
        load_samba(bad)
    for change, expected in [
        (lambda c: c["neurofm"].pop("parcels"), r"lacks 'parcels'"),
        (lambda c: c["neurofm"].pop("model_config"), r"lacks 'model_config'"),
        (lambda c: c["neurofm"]["model_config"].update(dropout=2.0), r"dropout: Input should"),
        (lambda c: c["state_dict"].pop("model.eeg_gat.edge_index"), r"the graphs .* missing"),
        (lambda c: c["state_dict"].pop("model.parcel_bias"), r"missing 1 tensor\(s\): parcel_bias"),
        (
            lambda c: c["state_dict"].update({"model.parcel_bias": torch.zeros(99)}),
            r"wrong shape: parcel_bias \[99\]",
        ),
    ]:
        bad = _tampered(ckpt, tmp_path / "tampered.ckpt", change)
        with pytest.raises(NeuroFMError, match=r"tampered\.ckpt: .*" + expected):
            load_samba(bad)


class Payload:
    def __init__(self, sentinel: pathlib.Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (pathlib.Path.touch, (self.sentinel,))


def test_evaluate_on_a_non_checkpoint_gives_no_unsafe_advice(pretrained_poyo, tmp_path, capsys):
    root, ckpt = pretrained_poyo
    notes = tmp_path / "notes.ckpt"
    notes.write_text("these are my notes, not a model\n")
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "neurofm": {"format": "neurofm.poyo", "x": Payload(notes)}}, evil)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[:5000])
    for path, expected in [
        (notes, "not a loadable checkpoint (not a PyTorch checkpoint, or damaged"),
        (evil, "holds Python objects, not only tensors and plain values (getattr was"),
        (cut, "not a loadable checkpoint (not a PyTorch checkpoint, or damaged"),
    ]:
        line = _cli_error(capsys, "evaluate", str(path), str(root / "cat_pre"))
        assert expected in line, line
        assert "weights_only" not in line and "trust" not in line, line  # torch's advice
    assert notes.read_text().startswith("these are my notes")  # the payload never ran


def test_load_checkpoint_checks_the_digest_of_what_it_reads(tmp_path):
    path = tmp_path / "x.ckpt"
    state = {"w": torch.arange(4.0), "emb._extra_state": {"words": ["<pad>", "a"]}}
    torch.save(seal({"state_dict": dict(state), "neurofm": {"format": "t"}}), path)
    assert load_checkpoint(path)["neurofm"][CHECKSUM_KEY] == weights_digest(state)
    # the digest covers values, dtypes, shapes, names and vocabularies
    variants = [
        {**state, "w": torch.arange(4.0) + 1e-7},
        {**state, "w": torch.arange(4.0).double()},
        {**state, "w": torch.arange(4.0).reshape(2, 2)},
        {"v": state["w"], "emb._extra_state": state["emb._extra_state"]},
        {**state, "emb._extra_state": {"words": ["<pad>", "b"]}},
    ]
    digests = {weights_digest(v) for v in variants}
    assert len(digests) == len(variants) and weights_digest(state) not in digests
    np.testing.assert_array_equal(load_checkpoint(path)["state_dict"]["w"].numpy(), np.arange(4.0))
    with pytest.raises(NeuroFMError, match="missing.ckpt: no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")
