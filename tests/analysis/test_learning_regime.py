"""neurofm.analysis.learning_regime: ranks, inits, metrics, tasks, the rich/lazy trends, CLI."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.analysis import initializers as inits
from neurofm.analysis.learning_regime import (
    RNNWeights,
    TrainConfig,
    aligned_condition,
    linear_theory,
    rnn_forward,
    run_task_sweep,
    svd_condition,
    task_directions,
)
from neurofm.analysis.rank import effective_rank, eigen_rank, hard_rank
from neurofm.analysis.regime_metrics import (
    alignment,
    empirical_ntk,
    representation_alignment,
    sign_similarity,
    weight_change,
)
from neurofm.analysis.results import load_config, summarise, write_results
from neurofm.analysis.tasks import make_task
from neurofm.analysis.windows import (
    DecodeBehaviour,
    binned_counts,
    coupling_matrix,
    open_recording_source,
    spike_count_correlation,
)
from neurofm.cli import main
from neurofm.errors import InvalidDataError, SpecError

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipelines" / "learning_regime.yaml"


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _mean(rows, init, param, metric):
    vals = [r[metric] for r in rows if r["init"] == init and r["param"] == param]
    return float(np.mean(vals))


# --------------------------------------------------------------------------------------------
# effective rank
# --------------------------------------------------------------------------------------------


def test_effective_rank_measures_on_known_spectra():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(30, 1))
    rank_one = u @ rng.normal(size=(1, 30))
    for kind in ("hard", "stable", "participation", "entropy"):
        assert effective_rank(rank_one, kind) == pytest.approx(1.0, abs=1e-6), kind
    eye = np.eye(30)
    for kind in ("hard", "stable", "participation", "entropy"):
        assert effective_rank(eye, kind) == pytest.approx(30.0), kind
    assert eigen_rank(eye) == pytest.approx(1.0)
    # the paper's eigenvalue form: an outlier eigenvalue makes it small
    outlier = np.diag([10.0] + [1.0] * 9)
    assert eigen_rank(outlier) == pytest.approx(19.0 / 100.0)
    # an SVD truncation has exactly the rank it was cut to
    w0 = inits.random_gaussian(40, 1.5, seed=1)
    assert [hard_rank(inits.svd_truncate(w0, r)) for r in (1, 7, 40)] == [1, 7, 40]


def test_effective_rank_errors_are_clear():
    with pytest.raises(InvalidDataError, match="unknown kind 'nope'.*hard, stable"):
        effective_rank(np.eye(3), "nope")
    with pytest.raises(InvalidDataError, match="square matrix"):
        eigen_rank(np.ones((2, 3)))
    with pytest.raises(InvalidDataError, match="NaN or infinite"):
        effective_rank(np.array([[1.0, np.nan], [0.0, 1.0]]))


# --------------------------------------------------------------------------------------------
# initialisers
# --------------------------------------------------------------------------------------------


def test_svd_truncation_and_decay_keep_the_norm_and_the_singular_vectors():
    w0 = inits.random_gaussian(50, 1.5, seed=3)
    norm = float(torch.linalg.matrix_norm(w0))
    u0, _, _ = torch.linalg.svd(w0)
    for r in (1, 5, 50):
        w = inits.svd_truncate(w0, r)
        assert float(torch.linalg.matrix_norm(w)) == pytest.approx(norm, rel=1e-5)
        u, _, _ = torch.linalg.svd(w)
        # the same leading left singular vectors (up to sign) for every rank
        assert torch.allclose(u[:, :r].abs(), u0[:, :r].abs(), atol=1e-3)
    flat = inits.spectral_decay(w0, 0.0)
    steep = inits.spectral_decay(w0, 2.0)
    assert effective_rank(flat, "participation") == pytest.approx(50.0, rel=1e-4)
    assert effective_rank(steep, "participation") < 2.0
    assert float(torch.linalg.matrix_norm(steep)) == pytest.approx(norm, rel=1e-5)
    with pytest.raises(InvalidDataError, match=r"rank must be in \[1, 50\]"):
        inits.svd_truncate(w0, 0)
    lo = inits.low_rank_init(20, 3, gain=1.25, seed=0)
    assert hard_rank(lo) == 3


def test_task_aligned_init_reads_the_given_directions():
    w0 = inits.random_gaussian(30, 1.5, seed=0)
    right = torch.linalg.qr(torch.randn(30, 2))[0].T  # (2, 30) orthonormal rows
    w = inits.task_aligned(w0, right, 2)
    _, _, vt = torch.linalg.svd(w)
    # the row space of W is spanned by the task directions
    proj = vt[:2] @ right.T
    assert torch.allclose(proj.abs().sum(0).sort().values, torch.ones(2), atol=0.5)
    assert torch.linalg.matrix_rank(torch.cat([vt[:2], right])) == 2
    assert float(torch.linalg.matrix_norm(w)) == pytest.approx(
        float(torch.linalg.matrix_norm(w0)), rel=1e-5
    )
    with pytest.raises(InvalidDataError, match="need 3 right directions"):
        inits.task_aligned(w0, right, 3)


def test_connectivity_init_and_shuffled_control():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(40, 1))
    corr = shared @ shared.T + 0.1 * rng.normal(size=(40, 40))
    w = inits.from_connectivity(corr, radius=1.3)
    assert inits.spectral_radius(w) == pytest.approx(1.3, rel=1e-4)
    assert torch.all(torch.diagonal(w) == 0)
    s = inits.shuffled_control(w, seed=1)
    assert torch.all(torch.diagonal(s) == 0)
    assert torch.allclose(s.flatten().sort().values, w.flatten().sort().values)
    # structure gone: the shuffled matrix has a much higher effective rank
    assert effective_rank(s, "participation") > 5 * effective_rank(w, "participation")
    with pytest.raises(InvalidDataError, match="square matrix"):
        inits.from_connectivity(np.ones((3, 4)))


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------


def test_alignment_metrics():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(6, 6))
    k = k @ k.T
    assert alignment(k, 3 * k) == pytest.approx(1.0)
    assert alignment(np.diag([1.0, 0.0]), np.diag([0.0, 1.0])) == pytest.approx(0.0)
    assert np.isnan(alignment(np.zeros((2, 2)), np.eye(2)))
    h = rng.normal(size=(20, 8))
    q = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    assert representation_alignment(h, h @ q) == pytest.approx(1.0)  # rotations of units
    assert weight_change(np.eye(3), 2 * np.eye(3)) == pytest.approx(np.sqrt(3))
    assert weight_change(np.eye(3), 2 * np.eye(3), relative=True) == pytest.approx(1.0)
    a = np.array([[1.0, 0.0], [0.5, 2.0]])
    assert sign_similarity(a, np.array([[1.0, 1.0], [0.0, 2.0]])) == pytest.approx(0.5)
    with pytest.raises(InvalidDataError, match="shapes differ"):
        weight_change(np.eye(2), np.eye(3))


def test_empirical_ntk_matches_explicit_jacobian():
    torch.manual_seed(0)
    w_in, w_out = torch.randn(5, 2), torch.randn(3, 5)
    w_rec = 0.3 * torch.randn(5, 5)
    x = torch.randn(4, 3, 2)
    kernel = empirical_ntk(lambda p: rnn_forward(w_in, p["w"], w_out, x)[0], {"w": w_rec})
    # the same kernel from one autograd call per output entry
    rows = []
    w = w_rec.clone().requires_grad_(True)
    y = rnn_forward(w_in, w, w_out, x)[0].reshape(-1)
    for i in range(len(y)):
        (g,) = torch.autograd.grad(y[i], w, retain_graph=True)
        rows.append(g.reshape(-1))
    jac = torch.stack(rows)
    assert kernel.shape == (36, 36)
    assert torch.allclose(kernel, jac @ jac.T, atol=1e-4)


def test_ensemble_forward_equals_single_networks():
    torch.manual_seed(1)
    nets = [RNNWeights.default(3, 10, 3, s) for s in range(3)]
    for n in nets:
        n.w_rec = 0.4 * torch.randn(10, 10)
    x = torch.randn(2, 8, 3)
    y_all, h_all = rnn_forward(
        torch.stack([n.w_in for n in nets]),
        torch.stack([n.w_rec for n in nets]),
        torch.stack([n.w_out for n in nets]),
        x,
    )
    for i, n in enumerate(nets):
        y, h = rnn_forward(*n.tensors(), x)
        assert torch.allclose(y_all[i], y, atol=1e-6)
        assert torch.allclose(h_all[i], h, atol=1e-6)


# --------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------


def test_cognitive_tasks_follow_neurogym():
    rng = np.random.default_rng(0)
    b = make_task("2af").sample(2000, rng)
    assert b.inputs.shape == (2000, 8, 3)
    assert (b.inputs[:, :7, 0] == 1).all() and (b.inputs[:, 7] == 0).all()  # fixation, decision
    assert (b.targets[:, :7] == 0).all() and set(np.unique(b.targets[:, 7])) == {1, 2}
    evidence = b.inputs[:, :7, 1].sum(1) - b.inputs[:, :7, 2].sum(1)
    strong = np.abs(evidence) > 1.5  # high-coherence trials: the larger input is the answer
    assert ((evidence[strong] > 0) == (b.targets[strong, 7] == 1)).all()

    d = make_task("dms").sample(500, rng)
    sample, test = d.inputs[:, 0, 1:].argmax(1), d.inputs[:, 6, 1:].argmax(1)
    assert ((sample == test) == (d.targets[:, 7] == 1)).all()  # 1 = match, 2 = non-match
    assert np.abs(d.inputs[:, 1:6, 1:]).max() == 0  # nothing on the ring during the delay

    c = make_task("cxt").sample(2000, rng)
    context = c.inputs[:, 0, 5:].argmax(1)
    assert (c.inputs[:, :, 5:].sum(-1) == 1).all()  # context shown throughout
    for mod in (0, 1):
        ev = c.inputs[:, :2, 1 + 2 * mod].sum(1) - c.inputs[:, :2, 2 + 2 * mod].sum(1)
        sel = (context == mod) & (np.abs(ev) > 0.6)
        assert ((ev[sel] > 0) == (c.targets[sel, 7] == 1)).all()

    g = make_task("digits")
    p = g.probe(50)
    assert p.inputs.shape == (50, 8, 8) and p.loss_mask[:, :7].sum() == 0
    with pytest.raises(InvalidDataError, match="unknown task 'mnist'"):
        make_task("mnist")


def test_tasks_are_seeded():
    for name in ("2af", "dms", "cxt", "digits"):
        t = make_task(name)
        a = t.sample(8, np.random.default_rng(3))
        b = t.sample(8, np.random.default_rng(3))
        assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets)


# --------------------------------------------------------------------------------------------
# recordings: windows, connectivity, the experimentally driven init
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording():
    # synthetic reaching -> NWB -> read_nwb -> Recording.save -> Recording.open (lazy)
    with open_recording_source(synthetic={"seed": 0, "n_trials": 24, "n_units": 40}) as rec:
        yield rec


def test_recording_source_is_a_lazy_recording(recording):
    assert recording.is_lazy
    assert {"spikes", "hand_vel", "trials"} <= set(recording.signals)
    assert len(recording.spikes.units) == 40
    with pytest.raises(InvalidDataError, match="exactly one of path, catalog"):
        with open_recording_source():
            pass


def test_decode_task_windows_match_the_recording(recording):
    task = DecodeBehaviour(recording, bin_size=0.1, n_bins=8, windows_per_trial=2, seed=1)
    assert task.n_in == 40 and task.n_out == 2 and task.seq_len == 8
    batch = task.sample(5, np.random.default_rng(0))
    assert batch.inputs.shape == (5, 8, 40) and batch.targets.shape == (5, 8, 2)
    # z-scored with training statistics
    assert abs(float(task.x_train.mean())) < 1e-4 and abs(float(task.y_train.mean())) < 1e-4
    # binned counts from a window equal counts of the in-memory spikes
    sp = recording.spikes.load()
    counts = binned_counts(recording, 10.0, 11.0, 0.25)
    t, u = np.asarray(sp.timestamps), np.asarray(sp.unit_index)
    for b in range(4):
        sel = (t >= 10.0 + 0.25 * b) & (t < 10.25 + 0.25 * b)
        assert np.array_equal(counts[b], np.bincount(u[sel], minlength=40))
    assert task.score(task.probe(1000).targets, task.probe(1000)) == pytest.approx(1.0)


def test_connectivity_from_a_recording(recording):
    corr = spike_count_correlation(recording, bin_size=0.05, chunk=7.0)
    # streamed in 7 s chunks == computed on the whole binned recording at once
    whole = binned_counts(recording, 0.0, np.floor(recording.duration / 0.05 + 1e-9) * 0.05, 0.05)
    assert np.allclose(corr, np.corrcoef(whole.T), atol=1e-8)
    assert np.allclose(corr, corr.T) and np.allclose(np.diag(corr), 1.0)
    coupling = coupling_matrix(recording, bin_size=0.05)
    assert coupling.shape == (40, 40) and np.isfinite(coupling).all()
    w = inits.from_connectivity(corr, radius=1.5)
    # shared tuning gives the correlation matrix an outlier eigenvalue: low eigen-rank
    assert eigen_rank(w) < 0.5 * eigen_rank(inits.random_gaussian(40, 1.5, 0))


# --------------------------------------------------------------------------------------------
# science: rich vs lazy
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rank_sweep_on_2af_rich_to_lazy():
    """N = 100, ranks {1, 10, 100}, 3 seeds (the issue's setup; about a minute on a CPU).

    Higher initial rank at fixed ||W0||_F: less weight change and higher tangent-kernel
    alignment (mean over seeds); a task-aligned rank-1 init changes less than a random one.
    """
    task = make_task("2af")
    conds = [svd_condition(1), svd_condition(10), svd_condition(100), aligned_condition(1)]
    train = TrainConfig(steps=2000, lr=1e-2, momentum=0.9, batch_size=32)
    rows = run_task_sweep(
        task, conds, seeds=[0, 1, 2], n_hidden=100, gain=1.5, train=train, progress=False
    )
    assert not any(r["diverged"] for r in rows)
    assert min(r["score"] for r in rows) > 0.75  # every network learned 2AF (chance 0.5)
    dw = [_mean(rows, "svd", float(r), "weight_change") for r in (1, 10, 100)]
    ka = [_mean(rows, "svd", float(r), "kernel_alignment") for r in (1, 10, 100)]
    assert dw[0] > dw[1] > dw[2], dw
    assert ka[0] < ka[1] < ka[2], ka
    aligned = _mean(rows, "aligned", 1.0, "weight_change")
    assert aligned < dw[0], (aligned, dw[0])
    # the init's rank is what the table says it is
    assert {r["hard_rank"] for r in rows if r["init"] == "aligned"} == {1}


def test_task_directions_are_orthonormal_and_centred():
    task = make_task("2af")
    weights = RNNWeights.default(3, 50, 3, seed=0)
    v = task_directions(task, weights, rank=3, n_trials=256)
    assert torch.allclose(v @ v.T, torch.eye(3), atol=1e-5)
    # centring keeps the leading direction off ReLU activity's common mode
    batch = task.sample(256, np.random.default_rng(0))
    h = torch.relu(torch.einsum("nd,btd->btn", weights.w_in, torch.as_tensor(batch.inputs)))
    mean_dir = h.mean((0, 1))
    cos = float((v[0] @ mean_dir).abs() / mean_dir.norm())
    assert cos < 0.5


def test_linear_theory_rank_and_alignment():
    """Two-layer linear student-teacher, small init: the same trends as the RNN."""
    rows = linear_theory(
        dim=20, hidden=20, ranks=(1, 5, 20), teachers=8, scale=0.3, steps=2000, lr=0.1
    )
    assert max(r["final_loss"] for r in rows) < 1e-6  # every student learned its teacher
    summary = {
        (s["init"], s["rank"]): s
        for s in summarise(rows, ("init", "rank"), ("weight_change", "kernel_alignment"))
    }
    ka = [summary[("svd", r)]["kernel_alignment_mean"] for r in (1, 5, 20)]
    dw = [summary[("svd", r)]["weight_change_mean"] for r in (1, 5, 20)]
    assert ka[0] < ka[1] < ka[2], ka
    assert dw[0] > dw[1] > dw[2], dw
    aligned = summary[("aligned", 1)]
    assert aligned["kernel_alignment_mean"] > ka[0]
    assert aligned["weight_change_mean"] < dw[0] - 0.05
    # per teacher, too: the kernel ordering holds for every task, not only on average
    for k in range(8):
        per = {
            r["rank"]: r["kernel_alignment"]
            for r in rows
            if r["teacher"] == k and r["init"] == "svd"
        }
        assert per[1] < per[5] < per[20]


# --------------------------------------------------------------------------------------------
# configs, results folder, CLI
# --------------------------------------------------------------------------------------------


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lr.yaml"
    path.write_text(text)
    return path


def test_config_errors_name_file_and_key(tmp_path):
    from neurofm.analysis.learning_regime import LearningRegimeConfig

    path = _config(tmp_path, "tasks: [2af]\ntrain: {stepz: 3}\n")
    with pytest.raises(SpecError, match=r"lr\.yaml: train\.stepz: unknown key \(expected one"):
        load_config(LearningRegimeConfig, path)
    path = _config(tmp_path, "tasks: [2af]\nn_hidden: many\n")
    with pytest.raises(SpecError, match=r"lr\.yaml: n_hidden: .*integer.*'many'"):
        load_config(LearningRegimeConfig, path)
    path = _config(tmp_path, "tasks: [2af, pong]\n")
    with pytest.raises(SpecError, match=r"lr\.yaml: tasks\[1\]: Input should be '2af'"):
        load_config(LearningRegimeConfig, path)
    path = _config(tmp_path, "n_hidden: 20\nranks: [1, 50]\n")
    with pytest.raises(SpecError, match=r"ranks \[50\] must be in \[1, n_hidden=20\]"):
        load_config(LearningRegimeConfig, path)
    path = _config(tmp_path, "tasks: [recording]\n")
    with pytest.raises(SpecError, match="need a 'recording'"):
        load_config(LearningRegimeConfig, path)
    path = _config(tmp_path, "recording: {path: a.h5, synthetic: {seed: 1}}\n")
    with pytest.raises(SpecError, match="recording: give exactly one of path, catalog"):
        load_config(LearningRegimeConfig, path)
    # the CLI reports it on one line, exit status 1
    code, out, err = run_main("analyze", "learning-regime", str(path))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("neurofm: error: ") and "lr.yaml" in err
    code, _, err = run_main("analyze", "learning-regime", str(tmp_path / "missing.yaml"))
    assert code == 1 and "no such spec file" in err
    # a recording that is not there: named by the config and its key, before anything trains
    path = _config(tmp_path, "recording: {path: nope.h5}\n")
    out = tmp_path / "res"
    code, _, err = run_main("analyze", "learning-regime", str(path), "--out", str(out))
    assert code == 1 and not out.exists()
    assert f"neurofm: error: {path}: recording.path: {tmp_path / 'nope.h5'}: no such " in err


def test_results_folder_is_written_atomically(tmp_path):
    import matplotlib.pyplot as plt

    out = tmp_path / "res"
    write_results(out, {"t": [{"a": 1, "b": 0.5}]}, {}, "x: 1\n")
    assert (out / "t.csv").read_text() == "a,b\n1,0.5\n"
    fig = plt.figure()
    write_results(out, {"t": [{"a": 2, "b": float("nan")}]}, {"p": fig}, "x: 2\n")
    assert (out / "t.csv").read_text() == "a,b\n2,\n"  # replaced as a whole
    assert (out / "p.png").read_bytes()[:4] == b"\x89PNG"

    class Boom:
        def savefig(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_results(out, {"t": [{"a": 3}]}, {"p": Boom()}, "x: 3\n")
    assert (out / "config.yaml").read_text() == "x: 2\n"  # the old folder is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]  # no temporary left


def test_results_never_replace_what_is_not_results(tmp_path, monkeypatch):
    from neurofm.errors import NeuroFMError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    (mine / "table.csv").write_text("a\n1\n")
    with pytest.raises(NeuroFMError, match=r"--out .*mine: exists and is not an earlier "
                       r"analysis's results folder \(notes.txt\)"):  # fmt: skip
        write_results(mine, {"t": [{"a": 1}]}, {}, "x: 1\n")
    (mine / "notes.txt").unlink()  # CSVs alone: not known to be results either
    with pytest.raises(NeuroFMError, match=r"\(no summary.json or config.yaml\)"):
        write_results(mine, {"t": [{"a": 1}]}, {}, "x: 1\n")
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    with pytest.raises(NeuroFMError, match=r"a file is there; give a folder"):
        write_results(afile, {"t": [{"a": 1}]}, {}, "x: 1\n")
    monkeypatch.chdir(mine)
    with pytest.raises(NeuroFMError, match=r"--out \.: the working directory"):
        write_results(Path("."), {"t": [{"a": 1}]}, {}, "x: 1\n")
    assert (mine / "table.csv").read_text() == "a\n1\n" and afile.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt", "mine"]
    # through the CLI: refused before anything trains
    code, _, err = run_main("analyze", "learning-regime", str(PIPELINE), "--out", str(afile))
    assert code == 1 and "a file is there" in err


@pytest.mark.slow
def test_cli_learning_regime_pipeline(tmp_path):
    """The pipeline's small defaults: every task, every init, tables and plots."""
    out = tmp_path / "lr"
    code, stdout, _ = run_main(
        "analyze", "learning-regime", str(PIPELINE), "--out", str(out), "--no-progress"
    )
    assert code == 0, stdout
    names = {p.name for p in out.iterdir()}
    assert {"results.csv", "summary.csv", "linear_theory.csv", "config.yaml"} <= names
    for task in ("2af", "dms", "cxt", "digits", "recording", "linear_theory"):
        assert (out / f"{task}.png").read_bytes()[:4] == b"\x89PNG", task
    assert (out / "config.yaml").read_text() == PIPELINE.read_text()
    import csv

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 5 * 7  # 5 tasks x (3 ranks + aligned + decay + experimental + shuffled)
    assert {r["init"] for r in rows} == {"svd", "aligned", "decay", "experimental", "shuffled"}
    assert all(r["diverged"] == "False" for r in rows)
    # the experimentally driven init has the outlier eigenvalue the paper describes
    exp = next(r for r in rows if r["init"] == "experimental")
    assert float(exp["eigen_rank"]) < 0.2 and float(exp["spectral_radius"]) == pytest.approx(1.5)
    assert "== summary" in stdout and f"results -> {out}" in stdout
