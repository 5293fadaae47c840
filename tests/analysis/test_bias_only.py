"""neurofm.analysis.bias_only: frozen random weights, learned biases; science trends and CLI.

The science trends are read from one run of ``neurofm analyze bias-only`` on the pipeline's
small defaults (module fixture): the pipeline *is* the issue's setup, which
``test_pipeline_holds_the_science_setup`` pins, so the tables are computed once.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from neurofm.analysis.bias_only import (
    BiasOnlyConfig,
    BiasOnlyMLP,
    BiasOnlyRNN,
    _fit_mlp,
    freeze_all_but_biases,
    lorenz_forecast,
    recording_decoding,
    task_variance,
    task_variance_clusters,
    width_sweep,
)
from neurofm.analysis.results import load_config
from neurofm.analysis.tasks import (
    autocorrelation_hwhm,
    digits_data,
    digits_task_labels,
    lorenz_observable,
    sine_target,
    van_der_pol_target,
)
from neurofm.analysis.windows import DecodeBehaviour, open_recording_source
from neurofm.cli import main
from neurofm.errors import InvalidDataError, SpecError

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipelines" / "bias_only.yaml"


def run_main(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """``neurofm analyze bias-only pipelines/bias_only.yaml`` once (about a minute)."""
    out = tmp_path_factory.mktemp("bias") / "results"
    code, stdout, stderr = run_main(
        "analyze", "bias-only", str(PIPELINE), "--out", str(out), "--no-progress"
    )
    assert code == 0, stderr
    return out, stdout


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------


def test_bias_only_mlp_learns_only_its_biases():
    x_tr, y_tr, _, _ = digits_data()
    model = BiasOnlyMLP(64, 32, 10, n_tasks=2, seed=0)
    w1, w2 = model.w1.detach().clone(), model.w2.detach().clone()
    assert model.n_trainable() == 2 * (32 + 10)
    _fit_mlp(model, [(x_tr[:200], y_tr[:200], 10)], epochs=2, lr=0.05, batch_size=50, seed=0)
    assert torch.equal(model.w1, w1) and torch.equal(model.w2, w2)  # frozen
    assert model.b1[0].abs().sum() > 0  # task 0's biases moved...
    assert model.b1[1].abs().sum() == 0  # ...task 1's did not: it had no loss
    full = BiasOnlyMLP(64, 32, 10, train_weights=True, seed=0)
    assert full.n_trainable() == 64 * 32 + 32 * 10 + 32 + 10
    uniform = BiasOnlyMLP(64, 32, 10, init="uniform", seed=0)
    assert float(uniform.w1.abs().max()) <= 0.1
    with pytest.raises(InvalidDataError, match="unknown weight init 'orthogonal'"):
        BiasOnlyMLP(4, 4, 2, init="orthogonal")  # type: ignore[arg-type]


def test_freeze_all_but_biases_on_any_module():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    assert freeze_all_but_biases(net) == ["0.bias", "2.bias"]
    assert not net[0].weight.requires_grad and net[0].bias.requires_grad


def test_digits_label_maps():
    y = np.arange(10)
    assert digits_task_labels("parity", y)[1].tolist() == [0, 1] * 5
    assert digits_task_labels("geq5", y)[1].tolist() == [0] * 5 + [1] * 5
    n, mod3 = digits_task_labels("mod3", y)
    assert n == 3 and mod3.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    n, perm = digits_task_labels("permuted", y)
    assert n == 10 and sorted(perm.tolist()) == list(range(10))
    with pytest.raises(InvalidDataError, match="unknown digits task 'colour'"):
        digits_task_labels("colour", y)


def test_task_variance_clusters_recover_planted_structure():
    rng = np.random.default_rng(0)
    # 3 tasks; units 0-29 vary only in task 0, 30-59 only in task 1, 60-89 in task 2
    hidden = []
    for t in range(3):
        h = 0.01 * rng.normal(size=(200, 90))
        h[:, 30 * t : 30 * (t + 1)] += rng.normal(size=(200, 30))
        hidden.append(h)
    tv = task_variance(hidden)
    assert tv.shape == (90, 3)
    biases = rng.normal(size=(3, 90))
    out = task_variance_clusters(tv, biases, seed=0)
    assert sorted(out["sizes"]) == [30, 30, 30]
    assert min(out["selectivity"]) > 0.9  # each cluster belongs to one task
    assert sorted(out["preferred_task"]) == [0, 1, 2]
    labels = out["labels"]
    assert len(set(labels[:30])) == 1 and len(set(labels[30:60])) == 1


def test_bias_only_rnn_keeps_frozen_weights():
    model = BiasOnlyRNN(0, 20, 1, gains=[0.5, 1.5], train_weights=[False, True], seed=0)
    w = model.w.detach().clone()
    assert torch.allclose(w[1], 3 * w[0])  # one random matrix, scaled by g
    target = torch.as_tensor(sine_target(30))[None, None]
    from neurofm.analysis.bias_only import _adam

    opt = _adam(model, 1e-2, 1e-3)
    for _ in range(5):
        loss = ((model(None, 30) - target) ** 2).mean((1, 2, 3)).sum()
        opt.zero_grad()
        loss.backward()
        model.mask_frozen_grads()
        opt.step()
    assert torch.equal(model.w[0], w[0])  # bias-only network: weights untouched
    assert not torch.equal(model.w[1], w[1])  # fully trained control: weights moved
    assert model.bias[0].abs().sum() > 0 and model.r0.grad is not None


def test_dynamical_targets():
    s = sine_target(50, 25.0)
    assert s.shape == (50, 1) and s[0, 0] == pytest.approx(1.0) and s[25, 0] == pytest.approx(1)
    v = van_der_pol_target(120, steps_per_period=30)
    assert v.shape == (120, 2) and np.abs(v).max() == pytest.approx(1.0)
    # periodic: the x component crosses zero upwards about every 30 steps
    up = np.flatnonzero((v[:-1, 0] < 0) & (v[1:, 0] >= 0))
    assert np.allclose(np.diff(up), 30, atol=2)
    x = lorenz_observable(20_000, 0.01)
    assert abs(float(x.mean())) < 1e-5 and float(x.std()) == pytest.approx(1.0, abs=1e-4)
    assert 15 <= autocorrelation_hwhm(x) <= 35  # the paper's tau is 27 steps
    assert autocorrelation_hwhm(np.sin(np.arange(400) * 2 * np.pi / 40)) == 7  # cos > .5: 60 deg


def test_lorenz_forecast_and_recording_decoding_run_small():
    rows, traces = lorenz_forecast(
        n_hidden=30, steps=5, segment=80, batch_size=2, train_length=3000, progress=False
    )
    assert [r["mode"] for r in rows] == ["bias", "full"]
    for r in rows:
        assert r["tau"] == autocorrelation_hwhm(lorenz_observable(3000, 0.01))
        assert np.isfinite(r["mse_teacher_forced"]) and np.isfinite(r["mse_free_running"])
    assert traces["truth"].shape == traces["bias/g=1/free_running"].shape
    with open_recording_source(synthetic={"seed": 1, "n_trials": 16, "n_units": 20}) as rec:
        task = DecodeBehaviour(rec, windows_per_trial=2)
        rows = recording_decoding(task, n_hidden=30, steps=5, progress=False)
    assert [r["mode"] for r in rows] == ["bias", "full"] and rows[0]["probe_windows"] > 0


# --------------------------------------------------------------------------------------------
# science: from the pipeline run
# --------------------------------------------------------------------------------------------


def test_pipeline_holds_the_science_setup():
    cfg = yaml.safe_load(PIPELINE.read_text())
    widths = cfg["width_sweep"]["widths"]
    assert widths == sorted(widths) and len(widths) >= 4 and widths[-1] >= 4096
    assert len(cfg["multitask"]["tasks"]) >= 3
    gen = cfg["generation"]
    assert "sine" in gen["targets"] and {0.5, 1.5} <= set(gen["gains"])
    assert gen["n_hidden"] == 200 and gen["period"] == 25


@pytest.mark.slow
def test_accuracy_rises_with_width_and_beats_chance(pipeline_run):
    out, _ = pipeline_run
    rows = read_csv(out / "width_sweep.csv")
    bias = sorted((int(r["width"]), float(r["accuracy"])) for r in rows if r["mode"] == "bias")
    full = {int(r["width"]): float(r["accuracy"]) for r in rows if r["mode"] == "full"}
    accs = [a for _, a in bias]
    assert all(b > a for a, b in zip(accs, accs[1:], strict=False)), bias
    assert accs[-1] > 0.75 and accs[1] > 0.4  # chance is 0.1
    # fully trained nets do better at equal width; the gap narrows with width
    gaps = [full[w] - a for w, a in bias]
    assert min(gaps) > 0 and gaps[-1] < gaps[0] / 2


def test_one_frozen_net_solves_several_tasks(pipeline_run):
    out, _ = pipeline_run
    rows = read_csv(out / "multitask.csv")
    assert len(rows) >= 3
    for r in rows:
        acc, chance = float(r["accuracy"]), float(r["chance"])
        # well above chance: at least 60% of the way from chance to perfect
        assert acc > chance + 0.6 * (1 - chance), r
    clusters = read_csv(out / "task_variance_clusters.csv")
    assert sum(int(c["units"]) for c in clusters) > 0.5 * 1024  # most units are active
    assert max(float(c["selectivity"]) for c in clusters) > 0.45  # task-selective clusters
    assert len({c["preferred_task"] for c in clusters}) >= 3


def test_bias_only_rnn_generates_a_sine_at_high_gain_only(pipeline_run):
    out, _ = pipeline_run
    rows = [r for r in read_csv(out / "generation.csv") if r["target"] == "sine"]
    mse = {(r["mode"], float(r["gain"])): float(r["mse"]) for r in rows}
    variance = float(rows[0]["target_variance"])
    assert mse[("bias", 1.5)] < 0.01 * variance  # low error at g = 1.5
    assert mse[("bias", 0.5)] > 0.5 * variance  # clearly worse at g = 0.5
    # the fully trained control does not care about g
    assert max(mse[("full", 0.5)], mse[("full", 1.5)]) < 0.05 * variance
    vdp = {
        (r["mode"], float(r["gain"])): float(r["mse"])
        for r in read_csv(out / "generation.csv")
        if r["target"] == "vdp"
    }
    assert vdp[("bias", 1.5)] < vdp[("bias", 0.5)] / 5


def test_cli_bias_only_writes_tables_and_plots(pipeline_run):
    out, stdout = pipeline_run
    for name in (
        "width_sweep",
        "multitask",
        "task_variance_clusters",
        "generation",
        "lorenz",
        "recording",
    ):
        assert (out / f"{name}.csv").is_file(), name
    for name in ("width_sweep", "multitask", "generation", "lorenz"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    assert (out / "config.yaml").read_text() == PIPELINE.read_text()
    lorenz = read_csv(out / "lorenz.csv")
    for r in lorenz:  # feeding back its own forecasts is worse than seeing the true signal
        assert float(r["mse_free_running"]) > float(r["mse_teacher_forced"])
    bias_tf = next(float(r["mse_teacher_forced"]) for r in lorenz if r["mode"] == "bias")
    assert bias_tf < float(lorenz[0]["mse_persistence"])  # beats "nothing changes"
    rec = read_csv(out / "recording.csv")
    assert {r["mode"] for r in rec} == {"bias", "full"}
    assert all(float(r["r2"]) > 0.2 for r in rec)  # behaviour decoded from the spikes
    assert "== width_sweep" in stdout and f"results -> {out}" in stdout


def test_config_errors_name_file_and_key(tmp_path):
    path = tmp_path / "bias.yaml"
    path.write_text("generation: {gains: [0.5], targets: [square]}\n")
    with pytest.raises(SpecError, match=r"bias\.yaml: generation\.targets\[0\]: Input should be"):
        load_config(BiasOnlyConfig, path)
    path.write_text("width_sweep: {width: [64]}\n")
    with pytest.raises(SpecError, match=r"width_sweep\.width: unknown key \(expected one of: "):
        load_config(BiasOnlyConfig, path)
    path.write_text("width_sweep: {widths: [64, 0]}\n")  # a net of no units trains nothing
    with pytest.raises(
        SpecError, match=r"width_sweep\.widths\[1\]: Input should be greater than 0"
    ):
        load_config(BiasOnlyConfig, path)
    path.write_text("multitask: {tasks: [identity, colour]}\n")
    with pytest.raises(SpecError, match=r"unknown tasks \['colour'\]"):
        load_config(BiasOnlyConfig, path)
    path.write_text("name: nothing\n")
    with pytest.raises(SpecError, match="nothing to run"):
        load_config(BiasOnlyConfig, path)
    path.write_text("recording: {source: {synthetic: {n_units: many}}}\n")
    code, out, err = run_main("analyze", "bias-only", str(path))
    assert code == 1 and out == ""
    assert err.startswith("neurofm: error: ") and "recording.source.synthetic.n_units" in err


def test_progress_outside_a_terminal_is_whole_lines(capsys, one_torch_thread):
    # (in a log file or a notebook without ipywidgets: lines, not tqdm redraws or its warning)
    width_sweep(widths=(8,), epochs=1, full_training=False, progress=True)
    err = capsys.readouterr().err
    assert "width sweep: 1/1" in err and "\r" not in err and "IProgress" not in err
