"""Spike baselines fitted in a second process while the model trains."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from neurofm.data.catalog import Catalog
from neurofm.errors import InvalidDataError
from neurofm.evaluation.background import BackgroundBaselines, BaselineRequest
from neurofm.evaluation.baselines import score_baselines
from neurofm.pipeline.steps import start_baselines_during_training
from neurofm.specs import BaselineOptions, load_pipeline, validate

SMALL = {
    "wiener": {"alphas": [10.0, 1e4], "history": [0.1, 0.2]},
    "gru": {
        "candidates": [{"hidden": 8, "lr": 1e-2}, {"hidden": 16, "lr": 1e-2}],
        "max_steps": 20,
        "search_steps": 10,
        "eval_every": 10,
    },
}


@pytest.fixture(scope="module")
def reaching_catalog(tmp_path_factory):
    """Two synthetic reaching sessions with train/valid/test domains (the demo's card)."""
    from reaching_factory import reaching_catalog

    return reaching_catalog(tmp_path_factory.mktemp("background_baselines"), 2, 24)


def _request(catalog: Path, **changes) -> BaselineRequest:
    kw = {
        "target": "hand_vel",
        "split": "test",
        "names": ["wiener", "gru"],
        "sessions": Catalog(catalog).ids,
        "options": validate(BaselineOptions, SMALL, "pipe.yaml"),
    }
    kw.update(changes)
    return BaselineRequest.of(catalog, **kw)


def test_the_second_process_scores_what_fitting_here_scores(reaching_catalog, one_torch_thread):
    request = _request(reaching_catalog)
    with BackgroundBaselines(request) as job:
        here = score_baselines(
            reaching_catalog,
            "hand_vel",
            "test",
            ["wiener", "gru"],
            list(request.sessions),
            request.options,
            progress=False,
        )
        # the same request, spelled with a relative path and lists, is the same request
        there = job.scores(_request(Path(reaching_catalog)))
    assert there is not None and there.background and not here.background
    assert there.r2 == here.r2  # one thread in both processes: the same numbers exactly
    assert there.tuning == here.tuning
    assert there.lines()[0].startswith("Wiener (2 sessions, ")
    assert "s, while the model trained): ridge alpha" in there.lines()[0]
    assert not job.running


def test_another_request_stops_the_process_and_gets_nothing(reaching_catalog):
    job = BackgroundBaselines(_request(reaching_catalog))
    other = _request(reaching_catalog, sessions=Catalog(reaching_catalog).ids[:1])
    assert job.scores(other) is None
    assert not job.running


def test_an_error_in_the_second_process_is_raised_here(reaching_catalog):
    request = _request(reaching_catalog, target="no_such_signal")
    with pytest.raises(InvalidDataError) as there:
        BackgroundBaselines(request).scores(request)
    with pytest.raises(InvalidDataError) as here:
        score_baselines(reaching_catalog, "no_such_signal", "test", ["wiener"], progress=False)
    assert "no_such_signal" in str(there.value)
    assert str(there.value) == str(here.value)


def test_cancel_stops_a_running_fit_at_once(reaching_catalog):
    big = validate(BaselineOptions, {"gru": {"max_steps": 100000, "patience": 1000}}, "p.yaml")
    job = BackgroundBaselines(_request(reaching_catalog, names=["gru"], options=big))
    time.sleep(0.5)
    t0 = time.perf_counter()
    job.cancel()
    assert not job.running
    assert time.perf_counter() - t0 < 5


def test_the_end_of_the_second_process_is_announced_to_the_thread_policy(
    reaching_catalog, monkeypatch
):
    told = threading.Event()
    monkeypatch.setattr("neurofm.evaluation.background.look_again", told.set)
    request = _request(reaching_catalog, names=["wiener"])
    job = BackgroundBaselines(request)
    assert job.scores(request) is not None
    assert told.wait(10)
    assert job._process.exitcode == 0  # the announcer did not reap it: its owner did


def _machine(monkeypatch, cores: int, busy: float = 0.0) -> None:
    """A machine with ``cores`` cores, ``busy`` of them running other processes' threads."""
    monkeypatch.setattr("neurofm.threads.cpu_cores", lambda: cores)
    monkeypatch.setattr("neurofm.threads.other_runnable", lambda *a, **k: busy)


def _demo_steps(tmp_path: Path, *overrides: str):
    spec, card, _ = load_pipeline("pipelines/demo.yaml", list(overrides))
    steps = {s.kind: s.options for s in spec.steps}
    return steps["train"], steps["evaluate"], card


def test_started_beside_training_for_the_sessions_the_model_will_score(
    reaching_catalog, tmp_path, monkeypatch
):
    _machine(monkeypatch, cores=2)
    first = Catalog(reaching_catalog).ids[0]
    train, evaluate, card = _demo_steps(tmp_path, f"steps.train.recordings=[{first}]")
    job = start_baselines_during_training(
        train, evaluate, card, reaching_catalog, Path("pipelines").resolve()
    )
    assert job is not None
    try:
        assert job.request.sessions == (first,)  # the train step's recordings only
        assert job.request.names == ("wiener", "gru")
        assert job.request.split == "test" and job.request.target == "hand_vel"
        assert job.request.options == evaluate.baseline_options
    finally:
        job.cancel()


@pytest.mark.parametrize(
    "override",
    [
        "steps.evaluate.baselines_during_training=false",
        "steps.evaluate.baselines=[]",
        "steps.train.devices=2",  # DDP: every rank would start one
        "steps.train.model=../models/samba.yaml",  # SAMBA's baseline is the ridge
        "card.fields.target={trials: target_id, at: start}",  # a per-trial target
    ],
)
def test_not_started_where_it_cannot_help(reaching_catalog, tmp_path, monkeypatch, override):
    _machine(monkeypatch, cores=2)
    train, evaluate, card = _demo_steps(tmp_path, override)
    assert (
        start_baselines_during_training(
            train, evaluate, card, reaching_catalog, Path("pipelines").resolve()
        )
        is None
    )


@pytest.mark.parametrize(
    ("cores", "busy", "fixed"), [(1, 0, None), (2, 1, None), (4, 3, "1"), (2, 0, "2"), (4, 0, "4")]
)
def test_not_started_without_a_core_to_spare(
    reaching_catalog, tmp_path, monkeypatch, cores, busy, fixed
):
    _machine(monkeypatch, cores=cores, busy=busy)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if fixed is None:
        monkeypatch.delenv("NEUROFM_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("NEUROFM_NUM_THREADS", fixed)
    train, evaluate, card = _demo_steps(tmp_path)
    assert (
        start_baselines_during_training(
            train, evaluate, card, reaching_catalog, Path("pipelines").resolve()
        )
        is None
    )


def test_a_second_process_that_dies_leaves_the_fit_to_this_one(reaching_catalog, caplog):
    import os
    import signal

    request = _request(reaching_catalog)
    job = BackgroundBaselines(request)
    os.kill(job._process.pid, signal.SIGKILL)  # as the kernel's OOM killer would
    with caplog.at_level("WARNING", logger="neurofm.evaluation.background"):
        assert job.scores(request) is None
    assert "ended without a result (exit code -9); fitting them here" in caplog.text
    assert not job.running


def test_neurofm_run_reports_the_same_baselines_either_way(tmp_path, monkeypatch, capsys):
    """The pipeline's train + evaluate steps with the baselines fitted beside training, and
    one after the other: the same table; the lines say which happened."""
    import textwrap

    from reaching_factory import local_reaching_card

    from neurofm.pipeline import run_pipeline
    from neurofm.synthetic.reaching import generate_reaching_dataset

    _machine(monkeypatch, cores=2)
    raw = tmp_path / "raw"
    generate_reaching_dataset(raw, n_subjects=1, n_sessions=2, n_trials=12, progress=False)
    card = local_reaching_card(raw, tmp_path / "card.yaml")
    spec = tmp_path / "pipe.yaml"
    model = Path("models/poyo_tiny.yaml").resolve()
    spec.write_text(
        textwrap.dedent(
            f"""\
            name: beside
            dataset: {card}
            steps:
              - pull: {{}}
              - ingest: {{out: catalog}}
              - train: {{model: {model}, out: poyo, epochs: 1, batch_size: 8}}
              - evaluate:
                  baselines: [wiener, gru]
                  plot: false
                  baseline_options:
                    wiener: {{alphas: [10.0, 10000.0], history: [0.1]}}
                    gru:
                      candidates: [{{hidden: 8, lr: 0.01}}]
                      max_steps: 10
                      eval_every: 5
            """
        )
    )
    results = {}
    for beside in (True, False):
        capsys.readouterr()
        result = run_pipeline(
            spec,
            workdir=tmp_path / f"work_{beside}",
            overrides=[f"steps.evaluate.baselines_during_training={str(beside).lower()}"],
        )
        err = capsys.readouterr().err
        note = "fitting the baselines (wiener, gru) in a second process meanwhile"
        assert (note in err) is beside
        results[beside] = result
    r2 = {b: r.reports["evaluate"].r2 for b, r in results.items()}
    assert r2[True]["Wiener"] == r2[False]["Wiener"]
    assert r2[True]["GRU"] == r2[False]["GRU"]
    lines = {b: "\n".join(r.summary) for b, r in results.items()}
    assert "GRU (2 sessions, " in lines[False] and "while the model trained" not in lines[False]
    assert lines[True].count(", while the model trained): ") == 2
