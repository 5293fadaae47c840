"""torch_brain interop: a tiny POYO checkpoint made by torch_brain 0.2.1 itself
(``benchmarks/make_torch_brain_fixture.py``, in ``tests/fixtures/torch_brain/``, with the outputs
torch_brain computed on a stored batch) must load into neurofm's POYO and give the same outputs;
the export must write back what torch_brain wrote. torch_brain is not installed here."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.errors import NeuroFMError
from neurofm.models.poyo import INPUT_KEYS, POYO, POYOConfig
from neurofm.pretrained import CheckpointError, from_torch_brain, to_torch_brain
from neurofm.pretrained.torch_brain import name_table

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "torch_brain"
CKPT = FIXTURES / "poyo_tiny.ckpt"
IO = FIXTURES / "poyo_tiny_io.npz"
TOL = 1e-5


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(IO) as f:
        return dict(f)


@pytest.fixture(scope="module")
def fixture_ckpt() -> dict:
    return torch.load(CKPT, map_location="cpu", weights_only=True)


def outputs(model: POYO, io: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        out = model.eval()(**{k: torch.from_numpy(io[k]) for k in INPUT_KEYS})
    return out.numpy()[io["output_mask"]]


def max_diff(model: POYO, io: dict[str, np.ndarray]) -> float:
    return float(np.abs(outputs(model, io) - io["expected"][io["output_mask"]]).max())


def save(ckpt: dict, path: Path) -> Path:
    torch.save(ckpt, path)
    return path


def test_fixture_reproduces_torch_brain_outputs(io, fixture_ckpt, one_torch_thread):
    model = from_torch_brain(CKPT)
    hp = fixture_ckpt["hyper_parameters"]["model"]
    c = model.config
    assert (c.dim, c.depth, c.dim_head, c.cross_heads, c.self_heads) == (24, 2, 16, 2, 2)
    assert (c.window_length, c.latent_step, c.num_latents_per_step) == (1.0, 0.25, 4)
    assert (c.t_min, c.t_max, c.dim_out) == (hp["t_min"], hp["t_max"], 2)
    vocab = fixture_ckpt["state_dict"]["model.unit_emb.vocab"]
    assert model.unit_emb.vocab == [w for w in vocab if w != "NA"]  # same words, same rows
    assert len(model.unit_emb) == 20 and len(model.session_emb) == 2
    assert model.session_emb.vocab == ["monkey_a/2020-01-01", "monkey_b/2020-02-02"]
    assert max_diff(model, io) < TOL
    assert np.abs(io["expected"]).max() > 0.5  # outputs of a real size, not ~0


def test_frequencies_are_torch_brains_and_survive_save_load(io, fixture_ckpt, tmp_path):
    """neurofm recomputes the rotary frequencies on load exactly as torch_brain computed them, so
    an imported model saved and reloaded the neurofm way (the frequencies are not saved) keeps
    torch_brain's outputs; ``torch.logspace`` frequencies (neurofm's before) are visibly off."""
    model = from_torch_brain(CKPT)
    stored = fixture_ckpt["state_dict"]["model.rotary_emb.omega"][: model.config.dim_head // 4]
    assert torch.equal(model.rotary.omega, stored)
    torch.save(model.state_dict(), tmp_path / "nf.pt")
    again = POYO(model.config, readout="regression")
    again.load_state_dict(torch.load(tmp_path / "nf.pt", weights_only=True))
    assert "rotary.omega" not in again.state_dict()  # recomputed, not loaded
    assert torch.equal(again.rotary.omega, stored)
    np.testing.assert_array_equal(outputs(again, io), outputs(model, io))
    assert max_diff(again, io) < TOL

    c = model.config
    n = c.dim_head // 4
    logspace = 2 * np.pi / torch.logspace(np.log10(c.t_min), np.log10(c.t_max), n)
    assert not torch.equal(logspace, stored)
    with torch.no_grad():
        again.rotary.omega.copy_(logspace)
    assert max_diff(again, io) > TOL


def test_frequencies_of_other_periods_are_refused(fixture_ckpt, tmp_path):
    ckpt = dict(fixture_ckpt)
    ckpt["hyper_parameters"] = {"model": {**fixture_ckpt["hyper_parameters"]["model"]}}
    ckpt["hyper_parameters"]["model"]["t_max"] = 4.0
    path = save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"other\.ckpt: rotary_emb\.omega: .*t_max=4\.0"):
        from_torch_brain(path)


def test_without_the_permutation_outputs_differ(io, one_torch_thread):
    """The head permutation is needed: unpermuted rotary pairs are off."""
    model = from_torch_brain(CKPT)
    with torch.no_grad():  # undo the permutation of one head's rows
        w = model.enc_atn.to_q.weight
        dh = model.config.dim_head
        w.copy_(w.view(-1, dh, w.shape[1])[:, torch.arange(dh).roll(1)].reshape(w.shape))
    assert max_diff(model, io) > 1e-3


def test_round_trip_writes_back_what_torch_brain_wrote(io, fixture_ckpt, tmp_path):
    model = from_torch_brain(CKPT)
    out = to_torch_brain(model, tmp_path / "export.ckpt")
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    # torch_brain's layout: the same names, the same tensors bit for bit, the same vocabularies
    original = fixture_ckpt["state_dict"]
    assert list(ckpt["state_dict"]) == list(original)
    for key, value in original.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(ckpt["state_dict"][key], value), key
        else:
            assert ckpt["state_dict"][key] == value and isinstance(value, OrderedDict), key
    assert ckpt["hyper_parameters"]["model"] == fixture_ckpt["hyper_parameters"]["model"]
    # and back: the same weights and outputs
    again = from_torch_brain(out)
    a, b = model.state_dict(), again.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    assert a["unit_emb._extra_state"] == b["unit_emb._extra_state"]
    assert torch.equal(model.rotary.omega, again.rotary.omega)
    np.testing.assert_array_equal(outputs(model, io), outputs(again, io))


def test_export_of_a_neurofm_model_round_trips(io, tmp_path):
    torch.manual_seed(3)
    config = POYOConfig(
        dim=16,
        depth=1,
        dim_head=8,
        cross_heads=1,
        self_heads=2,
        num_latents_per_step=2,
        latent_step=0.5,
        dim_out=3,
    )
    model = POYO(config, [f"s/u{i}" for i in range(5)], ["s"], readout="class")
    path = to_torch_brain(model, tmp_path / "nf.ckpt")
    back = from_torch_brain(path, readout="class")
    assert back.config == config
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), back.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2), n1
    assert torch.equal(model.rotary.omega, back.rotary.omega)


def test_bare_state_dict_needs_the_time_geometry(io, fixture_ckpt, tmp_path):
    state = {k.removeprefix("model."): v for k, v in fixture_ckpt["state_dict"].items()}
    path = save(state, tmp_path / "bare.pt")
    with pytest.raises(
        CheckpointError,
        match=r"bare.pt: a bare state dict lacks sequence_length, "
        r"latent_step",
    ):
        from_torch_brain(path)
    model = from_torch_brain(path, hparams={"sequence_length": 1.0, "latent_step": 0.25})
    assert model.config.dim_head == 16 and model.config.self_heads == 2  # read from the tensors
    assert max_diff(model, io) < TOL
    with pytest.raises(
        CheckpointError, match="dim_head=64 does not match the weights, which have dim_head=16"
    ):
        from_torch_brain(
            path, hparams={"sequence_length": 1.0, "latent_step": 0.25, "dim_head": 64}
        )


def test_lightning_checkpoint_without_hyper_parameters(io, fixture_ckpt, tmp_path):
    ckpt = {k: v for k, v in fixture_ckpt.items() if k != "hyper_parameters"}
    path = save(ckpt, tmp_path / "nohp.ckpt")
    with pytest.raises(CheckpointError, match=r"nohp.ckpt: its hyper-parameters .* lack"):
        from_torch_brain(path)
    model = from_torch_brain(path, hparams={"sequence_length": 1.0, "latent_step": 0.25})
    assert max_diff(model, io) < TOL


def test_missing_and_unknown_keys_are_named(fixture_ckpt, tmp_path):
    ckpt = dict(fixture_ckpt)
    state = dict(ckpt["state_dict"])
    del state["model.dec_ffn.1.net.3.bias"]
    state["model.dec_ffn.2.weight"] = torch.zeros(3)
    ckpt["state_dict"] = state
    path = save(ckpt, tmp_path / "keys.ckpt")
    with pytest.raises(CheckpointError) as err:
        from_torch_brain(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "missing 'dec_ffn.1.net.3.bias'" in msg and "unknown 'dec_ffn.2.weight'" in msg


def test_wrong_shape_and_damaged_vocabulary(fixture_ckpt, tmp_path):
    ckpt = dict(fixture_ckpt)
    ckpt["state_dict"] = dict(ckpt["state_dict"], **{"model.enc_ffn.0.weight": torch.ones(5)})
    with pytest.raises(CheckpointError, match=r"shape.ckpt: weights do not fit .*enc_ffn.norm"):
        from_torch_brain(save(ckpt, tmp_path / "shape.ckpt"))
    vocab = OrderedDict(fixture_ckpt["state_dict"]["model.session_emb.vocab"])
    vocab.popitem()
    ckpt["state_dict"] = dict(fixture_ckpt["state_dict"], **{"model.session_emb.vocab": vocab})
    with pytest.raises(CheckpointError, match=r"vocab.ckpt: session_emb.vocab: expected 3 words"):
        from_torch_brain(save(ckpt, tmp_path / "vocab.ckpt"))


@pytest.mark.parametrize("kind", ["text", "hdf5", "truncated", "missing", "neurofm", "other"])
def test_foreign_or_broken_files(kind, tmp_path):
    path = tmp_path / f"{kind}.ckpt"
    if kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "hdf5":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    elif kind == "truncated":
        data = CKPT.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "neurofm":
        save({"neurofm": {"format": "neurofm.poyo"}, "state_dict": {}}, path)
    elif kind == "other":
        save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError) as err:
        from_torch_brain(path)
    assert str(path) in str(err.value)
    expected = {
        "text": "not a loadable checkpoint",
        "hdf5": "not a loadable checkpoint",
        "truncated": "not a loadable checkpoint",
        "missing": "no such checkpoint",
        "neurofm": "a neurofm checkpoint, not a torch_brain one",
        "other": "not a torch_brain POYO checkpoint",
    }[kind]
    assert expected in str(err.value)


def test_pickled_code_is_refused(tmp_path):
    path = save({"state_dict": {}, "hyper_parameters": {"model": Path("x")}}, tmp_path / "p.ckpt")
    with pytest.raises(CheckpointError, match="p.ckpt: not a loadable checkpoint: it holds Python"):
        from_torch_brain(path)


def test_export_refuses_torch_brain_reserved_word(tmp_path):
    model = POYO(
        POYOConfig(dim=8, depth=1, dim_head=4, cross_heads=1, self_heads=1, num_latents_per_step=1),
        ["NA"],
        ["s"],
    )
    with pytest.raises(NeuroFMError, match="unit id 'NA' is reserved by torch_brain"):
        to_torch_brain(model, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()


def test_name_table_covers_the_model():
    model = POYO(POYOConfig(depth=3))
    names = {nf for nf, _, _ in name_table(3)}
    assert names == {n for n, _ in model.named_parameters()}
