"""A new session in one call: load_pretrained -> adapt -> predict -> save, through the API
and the CLI (``neurofm adapt``, ``neurofm predict``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import neurofm
from neurofm.cli import main as cli
from neurofm.data import Catalog, Recording
from neurofm.data.signals import Intervals, RegularSeries
from neurofm.errors import NeuroFMError
from neurofm.evaluation.poyo import evaluate_poyo
from neurofm.pretrained import load_pretrained
from neurofm.training.checkpoints import load_checkpoint

EPOCHS = "2"  # adaptation is tested for wiring and bookkeeping, not for its score


@pytest.fixture(scope="module")
def new_session(pretrained_poyo):
    root, ckpt = pretrained_poyo
    return ckpt, next((root / "new").glob("*.nwb"))


@pytest.fixture(scope="module")
def adapted(new_session):
    ckpt, nwb = new_session
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return load_pretrained(ckpt).adapt(nwb, trials=20, epochs=int(EPOCHS))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def decoded(adapted, new_session):
    """The adapted model's decoding of the whole new session (shared: it takes seconds)."""
    return adapted.predict(new_session[1])


def test_adapt_extends_the_vocabulary_and_scores_the_other_trials(new_session, adapted):
    ckpt, nwb = new_session
    pre = load_pretrained(ckpt)
    rec = neurofm.read(nwb)
    n_units = len(rec["spikes"].units)
    card = adapted.card
    assert card.adaptation["recording"] == rec.id and card.adaptation["source"] == str(nwb)
    assert card.adaptation["new_units"] == n_units and card.adaptation["kept_units"] == 0
    assert card.sessions == [*pre.card.sessions, rec.id]
    assert card.n_units == pre.card.n_units + n_units
    assert card.vocabulary["units_per_session"][rec.id] == n_units
    assert card.recordings == [*pre.card.recordings, rec.id]
    assert card.adapted_from["sessions"] == pre.card.sessions
    # unit identification: pretrained rows and the backbone are untouched, new rows learned
    old = pre.model.unit_emb.weight.detach()
    new = adapted.model.unit_emb.weight.detach()
    assert torch.equal(new[: len(old)], old)
    for name, p in pre.model.state_dict().items():
        if not name.startswith(("unit_emb", "session_emb")):
            assert torch.equal(p, adapted.model.state_dict()[name]), name
    # scored on the 10 trials not used for adaptation
    score = card.scores["adaptation"]
    assert score["n"] == len(rec["trials"]) - 20 == 10
    assert np.isfinite(score["r2"]) and score["r2"] == adapted.evaluation.sessions[rec.id].r2
    assert card.scores["valid"] == pre.card.scores["valid"]


def test_an_adaptation_does_not_depend_on_what_ran_before_it(new_session, one_torch_thread):
    ckpt, nwb = new_session
    pre = load_pretrained(ckpt)
    rows = []
    for before in (1, 2):  # the global generator left in two states by earlier work
        torch.manual_seed(before)
        rows.append(pre.adapt(nwb, trials=20, epochs=1).model.unit_emb.weight.detach())
    assert torch.equal(rows[0], rows[1])


def test_a_backbone_trained_anew_does_not_keep_the_pretrained_scores(new_session, one_torch_thread):
    ckpt, nwb = new_session
    pre = load_pretrained(ckpt)
    assert "valid" in pre.card.scores
    full = pre.adapt(nwb, trials=20, epochs=1, mode="full")
    assert list(full.card.scores) == ["adaptation"]  # the valid score was another model's


def test_predict_is_the_stitched_decoding_aligned_to_the_recording(
    pretrained_poyo, adapted, decoded
):
    root, _ = pretrained_poyo
    rec = neurofm.read(next((root / "new").glob("*.nwb")))
    pred = decoded
    vel = rec["hand_vel"]
    assert isinstance(pred, RegularSeries) and pred.name == "hand_vel"
    assert pred.rate == vel.rate and pred.start == vel.start
    assert list(pred.channels) == list(vel.channels) and pred.data.shape == vel.data.shape
    assert np.isfinite(pred.data).all()
    # the same windows through the evaluation code give the same stitched values (on the
    # first 30 s, to stay quick)
    cat = Catalog(root / "cat_new")
    assert cat.ids == [rec.id]
    part = {rec.id: Intervals(np.array([0.0]), np.array([30.0]))}
    ev = evaluate_poyo(adapted.model, adapted.encoding, cat.path, "hand_vel", domains=part)
    s = ev.sessions[rec.id]
    with cat.open(rec.id) as stored:
        head = stored.window(0.0, 30.0)
    by_id = adapted.predict(head)
    idx = np.searchsorted(by_id.timestamps, s.timestamps - 1e-9)
    np.testing.assert_allclose(by_id.data[idx], s.prediction, rtol=1e-5, atol=1e-6)
    # the NWB file and the ingested recording hold the same session: the same decoding, but
    # for the last second, whose window is aligned to where each says the recording ends
    n = len(by_id) - int(vel.rate)
    np.testing.assert_allclose(pred.data[:n], by_id.data[:n], rtol=1e-5, atol=1e-6)
    # a recording without behaviour is decoded on the card's grid: the same values
    bare = Recording(rec.id, {k: v for k, v in head.signals.items() if k != "hand_vel"}, 30.0)
    grid = adapted.predict(bare)
    assert grid.rate == vel.rate and grid.start == 0.0 and len(grid) == len(by_id)
    np.testing.assert_allclose(grid.data, by_id.data, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(tmp_path, adapted, new_session):
    _, nwb = new_session
    path = adapted.save(tmp_path / "a.ckpt")
    again = load_pretrained(path)
    assert again.card == adapted.card
    assert again.config == adapted.config
    head = neurofm.read(nwb).window(0.0, 10.0)
    np.testing.assert_array_equal(again.predict(head).data, adapted.predict(head).data)


def test_a_session_the_model_knows_keeps_its_units(pretrained_poyo, adapted):
    root, _ = pretrained_poyo
    rid = Catalog(root / "cat_new").ids[0]
    rows = adapted.model.unit_emb.weight.detach().clone()
    again = adapted.adapt(rid, catalog=root / "cat_new", trials=20, epochs=1)
    assert again.card.adaptation["new_units"] == 0
    assert again.card.adaptation["kept_units"] == adapted.card.vocabulary["units_per_session"][rid]
    assert again.card.n_units == adapted.card.n_units
    assert again.card.sessions == adapted.card.sessions
    # the other sessions' rows do not move; this session's rows kept training from theirs
    n_pre = len(rows) - again.card.adaptation["kept_units"]
    assert torch.equal(again.model.unit_emb.weight.detach()[:n_pre], rows[:n_pre])


def test_cli_adapt_then_predict(new_session, tmp_path, capsys):
    ckpt, nwb = new_session
    out = tmp_path / "run"
    argv = ["adapt", str(ckpt), str(nwb), "--trials", "20", "--epochs", EPOCHS, "--out", str(out)]
    assert cli([*argv, "--accelerator", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "held-out R^2 (stitched, 10 trials)" in text
    for name in ("adapted.ckpt", "report.json", "report.md", "predictions.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    card = load_checkpoint(out / "adapted.ckpt")["neurofm"]["card"]
    assert report["r2"] == card["scores"]["adaptation"]["r2"]
    assert report["held_out_trials"] == 10 and report["trials"] == 20
    assert set(report["r2_per_dimension"]) == set(card["target"]["channels"])
    assert f"{report['r2']:.3f}" in (out / "report.md").read_text()
    assert cli(["info", str(out / "adapted.ckpt")]) == 0
    assert "adapted to   " in capsys.readouterr().out

    csv = tmp_path / "preds.csv"
    assert cli(["predict", str(out / "adapted.ckpt"), str(nwb), "--out", str(csv)]) == 0
    header = csv.read_text().splitlines()[0].split(",")
    table = np.loadtxt(csv, delimiter=",", skiprows=1)
    expected = load_pretrained(out / "adapted.ckpt").predict(nwb)
    assert header == ["time", *expected.channels]
    np.testing.assert_allclose(table[:, 0], expected.timestamps, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(table[:, 1:], expected.data, rtol=1e-6, atol=1e-7)


def test_cli_predict_nwb(adapted, decoded, new_session, tmp_path, capsys):
    from neurofm.writers import nwb as writer

    if not hasattr(writer, "add_predictions"):
        pytest.skip("neurofm.writers.nwb.add_predictions is not there")
    from pynwb import NWBHDF5IO

    _, nwb = new_session
    ckpt = adapted.save(tmp_path / "a.ckpt")
    out = tmp_path / "preds.nwb"
    assert cli(["predict", str(ckpt), str(nwb), "--out", str(out)]) == 0
    with NWBHDF5IO(str(out), "r") as io:
        series = io.read().processing["neurofm"]["hand_vel"]
        np.testing.assert_allclose(series.data[:], decoded.data, rtol=1e-6)


def test_irregular_predictions_go_to_nwb_with_their_timestamps(new_session, tmp_path, capsys):
    from pynwb import NWBHDF5IO

    from neurofm.data.signals import IrregularSeries
    from neurofm.pretrained.report import write_predictions

    _, nwb = new_session
    times = np.array([0.5, 0.75, 2.0, 3.25])  # a per-trial target read out at event times
    series = IrregularSeries(times, np.arange(8.0).reshape(4, 2), name="target_pos",
                             channels=["x", "y"])  # fmt: skip
    out = write_predictions(series, tmp_path / "p.nwb", source=nwb)
    with NWBHDF5IO(str(out), "r") as io:
        back = io.read().processing["neurofm"]["target_pos"]
        np.testing.assert_array_equal(back.timestamps[:], times)
        np.testing.assert_array_equal(back.data[:], series.values)
    # a name predict cannot write is refused before anything is loaded or decoded
    code = cli(["predict", "no-such.ckpt", str(nwb), "--out", str(tmp_path / "p.txt")])
    assert code == 1 and "p.txt: --out must end in .csv or .nwb" in capsys.readouterr().err


def test_a_changed_copy_of_the_adapted_file_is_named_as_such(adapted, decoded, new_session,
                                                              tmp_path):  # fmt: skip
    from neurofm.pretrained.report import write_predictions

    _, nwb = new_session
    # the same session's file with predictions added: same name (so id), other bytes
    (tmp_path / "copy").mkdir()
    copy = write_predictions(decoded, tmp_path / "copy" / nwb.name, source=nwb)
    with pytest.raises(NeuroFMError) as err:
        adapted.predict(copy)
    rid = neurofm.read(nwb).id
    assert f"the model knows recording {rid!r} as session {rid!r}, made from a file with " in (
        str(err.value)
    )
    assert "Predict on the file the model was adapted on, or adapt the model to this one" in (
        str(err.value)
    )


def test_a_folder_given_as_the_recording_says_how_to_name_one(new_session, tmp_path, capsys):
    ckpt, _ = new_session
    assert cli(["adapt", str(ckpt), str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}: a folder, not a recording file; for a recording of a catalog" in err
    assert f"--catalog {tmp_path}" in err and not (tmp_path / "o").exists()


def test_demo_ends_with_the_one_call_path(pretrained_poyo, tmp_path, capsys):
    from neurofm.demo import one_call

    root, ckpt = pretrained_poyo
    rid = Catalog(root / "cat_new").ids[0]
    figure = one_call(ckpt, root / "cat_new", rid, tmp_path, epochs=int(EPOCHS))
    text = capsys.readouterr().out
    assert figure.is_file() and (tmp_path / "adapted" / "adapted.ckpt").is_file()
    assert "held-out R^2 (stitched, the 10 trials not adapted on)" in text
    # one checkpoint: the trainer's last.ckpt is not left beside adapted.ckpt
    assert [p.name for p in (tmp_path / "adapted").rglob("*.ckpt")] == ["adapted.ckpt"]
    adapted = load_pretrained(tmp_path / "adapted" / "adapted.ckpt")
    assert adapted.card.adaptation["recording"] == rid
    # the report `neurofm adapt` writes, with the card's held-out score
    report = (tmp_path / "adapted" / "report.md").read_text()
    assert f"{adapted.card.scores['adaptation']['r2']:.3f}" in report and rid in report
    assert (tmp_path / "adapted" / "predictions.png").is_file()


def test_another_session_with_a_trained_id_gets_its_own_rows(pretrained_poyo, new_session):
    """Recording ids are unique within a dataset only: a new session that carries the id of a
    session the model was trained on (other data, another sha256) must not take its rows."""
    root, ckpt = pretrained_poyo
    pre = load_pretrained(ckpt)
    trained_id = pre.card.sessions[0]
    rec = neurofm.read(new_session[1])
    clash = Recording(trained_id, rec.signals, duration=rec.duration,
                      metadata=rec.metadata, provenance=rec.provenance)  # fmt: skip
    sid = f"{trained_id}@{rec.provenance.sha256[:8]}"
    assert pre.session_id(clash) == sid
    adapted = pre.adapt(clash, trials=20, epochs=1)
    n_units = len(rec["spikes"].units)
    assert adapted.card.adaptation["recording"] == sid
    assert adapted.card.adaptation["new_units"] == n_units
    assert adapted.card.adaptation["kept_units"] == 0
    assert adapted.card.sessions == [*pre.card.sessions, sid]
    # predict finds the new session's rows through the same rule, not the trained session's
    assert adapted.session_id(clash) == sid
    assert np.isfinite(adapted.predict(clash.window(0.0, 5.0)).data).any()
    # in a catalog the recording cannot be renamed: a clear error instead
    Catalog(root / "clash", create=True).add(clash)
    with pytest.raises(neurofm.NeuroFMError, match=rf"another session with the id '{trained_id}'"):
        pre.adapt(trained_id, catalog=root / "clash", trials=20, epochs=1)
