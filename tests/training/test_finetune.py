"""Fine-tuning a pretrained POYO on a held-out session (unit identification)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofm.cli import main
from neurofm.data import Catalog, Intervals, Recording, RegularSeries, Spikes
from neurofm.errors import InvalidDataError, NeuroFMError
from neurofm.evaluation.fewshot import session_r2
from neurofm.pretrained import load_pretrained
from neurofm.pretrained.card import checkpoint_summary
from neurofm.training.finetune import finetune
from neurofm.training.poyo import load_poyo

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def setup(pretrained_poyo):
    """A model pretrained on two sessions, and a catalog with a third, held-out session."""
    return pretrained_poyo


def test_unit_id_trains_only_the_new_embeddings(setup, tmp_path):
    root, ckpt = setup
    pre, _, _ = load_poyo(ckpt)
    result = finetune(
        ckpt,
        root / "cat_new",
        tmp_path / "ft",
        mode="unit-id",
        trials=10,
        epochs=2,
        progress=False,
        score=session_r2,
    )
    assert result.trainable == ["unit_emb.weight", "session_emb.weight"]
    assert result.n_trials == 10
    tuned, _, _ = load_poyo(result.checkpoint)  # loads like any other checkpoint
    new_id = Catalog(root / "cat_new").ids[0]
    assert tuned.session_emb.vocab == [new_id]
    assert all(k.startswith(f"{new_id}/") for k in tuned.unit_emb.vocab)
    before, after = dict(pre.named_parameters()), dict(tuned.named_parameters())
    for name, p in after.items():
        if name.startswith(("unit_emb.", "session_emb.")):
            continue
        assert torch.equal(p, before[name]), f"{name} changed"  # bit-identical backbone
    assert not torch.equal(tuned.unit_emb.weight[1:], torch.zeros_like(tuned.unit_emb.weight[1:]))
    assert np.isfinite(result.mean_r2) and set(result.r2) == {new_id}
    # the card says where the model came from, that it holds the new session only, how far it
    # trained, and the score just printed
    card = load_pretrained(result.checkpoint).card
    assert card.scores["test"] == {"r2": pytest.approx(result.mean_r2)}
    assert f"fine-tuned (unit-id) on {new_id} from {ckpt.name}" in card.description
    assert set(card.adapted_from["sessions"]) == set(pre.session_emb.vocab)
    assert card.training["epochs_done"] == 2 and card.training["global_step"] > 0
    _, lines = checkpoint_summary(result.checkpoint)
    text = "\n".join(lines)
    assert "vocabulary   " in text and ", 1 session:" in text
    assert ", 2 of 2 epochs;" in text and "scores       test: R^2 " in text


def test_a_fine_tune_does_not_depend_on_what_ran_before_it(setup, tmp_path):
    root, ckpt = setup
    weights = []
    for before in (1, 2):  # the global generator left in two states by earlier work
        torch.manual_seed(before)
        result = finetune(ckpt, root / "cat_new", tmp_path / str(before), mode="unit-id",
                          trials=5, epochs=1, progress=False)  # fmt: skip
        weights.append(load_poyo(result.checkpoint)[0].unit_emb.weight.detach())
    assert torch.equal(weights[0], weights[1])


def test_full_mode_trains_everything(setup, tmp_path):
    root, ckpt = setup
    result = finetune(
        ckpt,
        root / "cat_new",
        tmp_path / "full",
        mode="full",
        trials=5,
        epochs=1,
        progress=False,
    )
    pre, _, _ = load_poyo(ckpt)
    tuned, _, _ = load_poyo(result.checkpoint)
    assert "readout.weight" in result.trainable
    assert result.r2 == {} and np.isnan(result.mean_r2)  # training itself never scores
    assert not torch.equal(pre.readout.weight, tuned.readout.weight)


def test_gradual_unfreezes_the_backbone(setup, tmp_path):
    root, ckpt = setup
    result = finetune(
        ckpt,
        root / "cat_new",
        tmp_path / "grad",
        mode="gradual",
        trials=5,
        epochs=2,
        unfreeze_epoch=1,
        progress=False,
    )
    pre, _, _ = load_poyo(ckpt)
    tuned, _, _ = load_poyo(result.checkpoint)
    assert not torch.equal(pre.readout.weight, tuned.readout.weight)


def test_bad_inputs(setup, tmp_path):
    root, ckpt = setup
    with pytest.raises(InvalidDataError, match="already in the checkpoint's vocabulary"):
        finetune(
            ckpt,
            root / "cat_pre",
            tmp_path / "x",
            recording_id=Catalog(root / "cat_pre").ids[0],
            progress=False,
        )
    rid = Catalog(root / "cat_new").ids[0]
    with pytest.raises(InvalidDataError, match=rf"^{rid}: trials: asked for 10000 labelled "
                       r"trials \(--trials\) but the train domain has only \d+$"):  # fmt: skip
        finetune(ckpt, root / "cat_new", tmp_path / "x", trials=10_000, progress=False)
    for bad, message in (
        ({"epochs": 0}, "finetune: epochs must be a whole number >= 1, got 0"),
        ({"trials": 0}, "finetune: trials must be a whole number >= 1, got 0"),
        ({"batch_size": 2.5}, "finetune: batch_size must be a whole number >= 1, got 2.5"),
    ):
        with pytest.raises(InvalidDataError, match=message):
            finetune(ckpt, root / "cat_new", tmp_path / "x", progress=False, **bad)
    # a session whose target is 1-D while the readout predicts 2 dimensions
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 20, 2000))
    rec = Recording(
        "one_dim",
        {
            "spikes": Spikes(t, rng.integers(0, 5, 2000), [f"u{i}" for i in range(5)]),
            "hand_vel": RegularSeries(rng.normal(size=(2000, 1)), 100.0),
            "train_domain": Intervals([0.0], [10.0]),
            "valid_domain": Intervals([10.0], [15.0]),
            "test_domain": Intervals([15.0], [20.0]),
        },
    )
    cat = Catalog(tmp_path / "one", create=True)
    cat.add(rec)
    with pytest.raises(
        InvalidDataError, match="has 1 dimensions but the checkpoint's readout predicts 2"
    ):
        finetune(ckpt, cat.path, tmp_path / "y", progress=False)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(NeuroFMError, match="not a neurofm POYO checkpoint"):
        finetune(foreign, root / "cat_new", tmp_path / "z", progress=False)


def test_cli_finetune(setup, tmp_path, capsys):
    root, ckpt = setup
    code = main(
        [
            "finetune",
            str(ckpt),
            str(root / "cat_new"),
            "--mode",
            "unit-id",
            "--trials",
            "5",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "trains: unit_emb.weight, session_emb.weight" in out and "test R^2" in out
    assert (tmp_path / "cli" / "last.ckpt").is_file()
    # a registered name stands for its checkpoint, as for adapt, predict and info: the shipped
    # model is read (it knows this synthetic session already, so it refuses to fine-tune it)
    args = ["--trials", "5", "--epochs", "1", "--out", str(tmp_path / "named")]
    assert main(["finetune", "poyo-tiny-synthetic", str(root / "cat_new"), *args]) == 1
    err = capsys.readouterr().err
    assert "is already in the checkpoint's vocabulary" in err and "no such checkpoint" not in err
    # counts are checked before anything is read, naming the option
    for option in ("--trials", "--epochs"):
        with pytest.raises(SystemExit) as exit_info:
            main(["finetune", str(ckpt), str(root / "cat_new"), option, "0", "--out", "o"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {option}: expected a positive integer, got '0'" in err
