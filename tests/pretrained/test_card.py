"""Model cards: written into every POYO checkpoint, loadable with weights_only, printed by
``neurofm info CKPT``; old checkpoints without one still load."""

from __future__ import annotations

import json
import re

import torch

import neurofm
from neurofm.cli import main as cli
from neurofm.data import Catalog
from neurofm.pretrained import NO_CARD, ModelCard, load_pretrained
from neurofm.training.checkpoints import load_checkpoint, seal


def test_every_poyo_checkpoint_carries_a_card(pretrained_poyo):
    root, ckpt = pretrained_poyo
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain values only
    card = ModelCard.from_dict(raw["neurofm"]["card"])
    cat = Catalog(root / "cat_pre")
    # what the model saw, read back from the catalog itself
    assert card.recordings == cat.ids
    assert card.sessions == cat.ids
    assert card.n_units == sum(e["n_units"] for e in cat.entries)
    per = card.vocabulary["units_per_session"]
    assert per == {e["id"]: e["n_units"] for e in cat.entries}
    assert card.data["cards"] == ["synthetic_reaching"]
    assert card.data["catalog"] == str(root / "cat_pre")
    for rec in card.data["recordings"]:
        assert rec["sha256"] and rec["subject_id"]
    assert card.target["name"] == "hand_vel"
    assert card.target["dim"] == 2 and len(card.target["channels"]) == 2
    assert card.target["rate"] > 0
    assert card.config["depth"] == 1
    assert card.training["settings"]["batch_size"] == 8
    assert card.training["global_step"] == raw["global_step"] > 0
    assert card.training["mode"] == "train" and card.training["epoch"] == raw["epoch"]
    # an epoch-end checkpoint: the 0-based index of the epoch that ended, and epochs trained
    settings = card.training["settings"]
    assert card.training["epochs_done"] == raw["epoch"] + 1 == settings["epochs"]
    assert card.versions["neurofm"] == neurofm.__version__
    assert card.versions["torch"] == torch.__version__
    assert card.created.endswith("+00:00")
    # round trip through the typed card
    assert ModelCard.from_dict(card.to_dict()) == card
    assert json.loads(json.dumps(card.to_dict())) == card.to_dict()


def test_info_prints_the_card(pretrained_poyo, capsys):
    root, ckpt = pretrained_poyo
    assert cli(["info", str(ckpt)]) == 0
    text = capsys.readouterr().out
    assert "neurofm POYO checkpoint (format neurofm.poyo)" in text
    for rid in Catalog(root / "cat_pre").ids:
        assert rid in text
    assert "decodes      hand_vel (regression, 2 dims" in text
    model = load_pretrained(ckpt)
    epochs = model.card.training["settings"]["epochs"]
    # the model's repr is one line (not the network and the whole card)
    n_units, n_sessions = len(model.model.unit_emb.vocab), len(model.model.session_emb.vocab)
    assert repr(model) == (
        f"<PretrainedPOYO {ckpt.name}: dim {model.model.config.dim}, depth "
        f"{model.model.config.depth}; {n_units} units, {n_sessions} sessions; decodes hand_vel; "
        f"scores: valid: R^2 {model.card.scores['valid']['r2']:.4g}>"
    )
    assert re.search(rf"training     train: step \d+ of \d+, {epochs} of {epochs} epochs; ", text)
    assert f"by neurofm {neurofm.__version__} (torch {torch.__version__}" in text
    assert cli(["info", str(ckpt), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    saved = load_checkpoint(ckpt)["neurofm"]["card"]
    assert summary["card"] == saved and summary["format"] == "neurofm.poyo"


def test_old_checkpoint_without_card_loads_and_info_says_so(pretrained_poyo, tmp_path, capsys):
    _, ckpt = pretrained_poyo
    old = load_checkpoint(ckpt)
    del old["neurofm"]["card"]
    path = tmp_path / "old.ckpt"
    torch.save(seal(old), path)
    assert cli(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert NO_CARD in text and "no model card (written by neurofm < " in text
    # a card written before epochs_done: its 0-based epoch index is shown as such
    older = load_checkpoint(ckpt)
    del older["neurofm"]["card"]["training"]["epochs_done"]
    torch.save(seal(older), path)
    assert cli(["info", str(path)]) == 0
    assert re.search(r", epoch index \d+ of \d+ epochs; ", capsys.readouterr().out)
    torch.save(seal(old), path)
    assert "vocabulary   " in text
    model = load_pretrained(path)
    assert model.card.card_version == 0
    assert model.card.sessions == list(model.model.session_emb.vocab)


def test_update_card(pretrained_poyo, tmp_path, capsys):
    import shutil

    from neurofm.pretrained import update_card
    from neurofm.pretrained.errors import CheckpointError

    _, ckpt = pretrained_poyo
    path = tmp_path / "c.ckpt"
    shutil.copy(ckpt, path)
    before = load_pretrained(path).card
    update_card(path, description="trained on synthetic data only", scores={"test": {"r2": 0.5}})
    card = load_pretrained(path).card  # resealed: the digest check passes
    assert card.description == "trained on synthetic data only"
    assert card.scores == {**before.scores, "test": {"r2": 0.5}}
    assert cli(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "description  trained on synthetic data only" in text and "test: R^2 0.5" in text
    try:
        update_card(path, colour="blue")
    except CheckpointError as exc:
        assert str(exc).startswith(f"{path}: unknown card field(s) ['colour']")
    else:
        raise AssertionError("no error")
