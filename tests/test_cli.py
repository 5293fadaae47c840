"""Tests of the `neurofm` command: version, help without heavy imports, synth -> ingest -> info."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import h5py
import nwb_factory as fac
import pytest

import neurofm
from neurofm.cli import main
from neurofm.specs import load_card

REPO = Path(__file__).resolve().parents[1]

HEAVY = ("torch", "pynwb", "h5py", "lightning", "mne", "torch_geometric", "hdmf", "pandas")
SUBJECTS, SESSIONS, TRIALS = 2, 3, 8


def run_main(*argv: str) -> tuple[int, str, str]:
    """``neurofm ARGV`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's --help / --version / usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def run_cli(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """The installed console script in a fresh interpreter."""
    script = Path(sys.executable).with_name("neurofm")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "neurofm.cli"]
    return subprocess.run(
        [*cmd, *argv], capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("neurofm: error: ")]


# --------------------------------------------------------------------------------------------
# version, help, imports
# --------------------------------------------------------------------------------------------


def test_version_console_script():
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"neurofm {neurofm.__version__}"


def test_help_lists_the_commands():
    code, out, _ = run_main("--help")
    assert code == 0
    for command in ("synth", "ingest", "info"):
        assert command in out
    code, out, _ = run_main()  # no command: the help, exit status 0
    assert code == 0 and out.startswith("usage: neurofm")
    code, out, _ = run_main("ingest", "--help")
    assert code == 0 and "--force" in out and "--out" in out


def test_usage_error_exit_code():
    code, _, err = run_main("ingest")  # missing SRC and --out
    assert code == 2
    assert "required" in err


def test_help_does_not_import_heavy_modules():
    script = (
        "import sys\n"
        "from neurofm.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "print('LOADED=' + ','.join(loaded))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: neurofm" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "LOADED="


# --------------------------------------------------------------------------------------------
# the acceptance scenario: synth -> ingest -> info
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    dandiset, catalog = root / "D", root / "C"
    synth = run_main(
        "synth", "reaching", "--out", str(dandiset), "--subjects", str(SUBJECTS),
        "--sessions", str(SESSIONS), "--trials", str(TRIALS), "--seed", "0",
    )  # fmt: skip
    ingest = run_main("ingest", str(dandiset), "--out", str(catalog))
    nwb_files = sorted(dandiset.rglob("*.nwb"))
    return {
        "root": root,
        "dandiset": dandiset,
        "catalog": catalog,
        "synth": synth,
        "ingest": ingest,
        "nwb": nwb_files,
        # ground truth, counted with h5py straight from the NWB files
        "counts": {p.name.removesuffix("_ecephys.nwb"): fac.count_spikes(p) for p in nwb_files},
    }


def test_synth_writes_the_dandiset(scenario):
    code, out, _ = scenario["synth"]
    assert code == 0
    n = SUBJECTS * SESSIONS
    assert len(scenario["nwb"]) == n
    total = sum(scenario["counts"].values())
    assert out.strip() == f"wrote {n} sessions ({total:,} spikes) to {scenario['dandiset']}"
    assert {p.parent.name for p in scenario["nwb"]} == {"sub-S0", "sub-S1"}
    assert (scenario["dandiset"] / "dandiset.yaml").is_file()


def test_ingest_reports_every_file(scenario):
    code, out, err = scenario["ingest"]
    assert code == 0, err
    assert error_lines(err) == []
    for path in scenario["nwb"]:
        assert f"ingested  {path} -> {path.name.removesuffix('_ecephys.nwb')}" in out
    assert out.strip().splitlines()[-1] == (
        f"6 ingested, 0 up to date, 0 failed -> {scenario['catalog']}"
    )
    files = {p.name for p in scenario["catalog"].iterdir()}
    assert files == {"catalog.sqlite"} | {f"{i}.h5" for i in scenario["counts"]}


def test_info_catalog_json(scenario):
    code, out, err = run_main("info", str(scenario["catalog"]), "--json")
    assert code == 0, err
    summaries = json.loads(out)
    assert isinstance(summaries, list) and len(summaries) == 6
    assert sorted(s["id"] for s in summaries) == sorted(scenario["counts"])
    for s in summaries:
        spikes = s["signals"]["spikes"]
        assert spikes["n_spikes"] == scenario["counts"][s["id"]], s["id"]
        assert s["metadata"]["subject_id"] == s["id"].split("_")[0].removeprefix("sub-")
        assert s["signals"]["trials"]["n_intervals"] == TRIALS


def test_info_catalog_text(scenario):
    code, out, err = run_main("info", str(scenario["catalog"]))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == f"catalog {scenario['catalog']}: 6 recordings"
    rows = lines[3:]
    assert [r.split()[0] for r in rows] == sorted(scenario["counts"])
    for row in rows:
        fields = row.split()
        assert int(fields[-1]) == scenario["counts"][fields[0]]  # spikes column


def test_info_recording_json(scenario):
    rec_id = sorted(scenario["counts"])[0]
    path = next(p for p in scenario["nwb"] if p.name.startswith(rec_id))
    code, out, err = run_main("info", str(scenario["catalog"] / f"{rec_id}.h5"), "--json")
    assert code == 0, err
    s = json.loads(out)
    assert isinstance(s, dict) and s["id"] == rec_id
    assert set(s["signals"]) == {
        "spikes",
        "obs_intervals",
        "hand_pos",
        "hand_vel",
        "cursor_pos",
        "trials",
    }
    with h5py.File(path, "r") as f:
        n_units = f["units/id"].shape[0]
        n_beh = f["processing/behavior/hand_vel/data"].shape[0]
        n_cursor = f["processing/behavior/cursor_pos/data"].shape[0]
        rate = float(f["processing/behavior/hand_vel/starting_time"].attrs["rate"])
        trial_columns = set(f["intervals/trials"].attrs["colnames"])
    spikes = s["signals"]["spikes"]
    assert spikes["kind"] == "spikes"
    assert spikes["n_spikes"] == scenario["counts"][rec_id]
    assert spikes["n_units"] == n_units
    assert spikes["mean_rate_hz"] == pytest.approx(
        scenario["counts"][rec_id] / s["duration_s"] / n_units
    )
    vel = s["signals"]["hand_vel"]
    assert (vel["kind"], vel["length"], vel["rate"], vel["start"]) == ("regular", n_beh, rate, 0.0)
    # every kinematic series is named x, y (NWB has column names only for SpatialSeries)
    assert vel["channels"] == ["x", "y"] and vel["unit"] == "m/s"
    assert s["signals"]["hand_pos"]["channels"] == ["x", "y"]
    cursor = s["signals"]["cursor_pos"]
    assert (cursor["kind"], cursor["length"]) == ("irregular", n_cursor)
    assert cursor["channels"] == ["x", "y"]
    trials = s["signals"]["trials"]
    assert trials["n_intervals"] == TRIALS
    assert set(trials["columns"]) == trial_columns - {"start_time", "stop_time"}
    assert s["duration_s"] == pytest.approx(n_beh / rate)  # behaviour ends last
    prov = s["provenance"]
    assert prov["source_path"] == str(path.resolve())
    assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["reader"] == "neurofm.readers.nwb"
    assert s["metadata"]["modality"] == "ecephys"


def test_info_recording_text(scenario):
    rec_id = sorted(scenario["counts"])[-1]
    code, out, err = run_main("info", str(scenario["catalog"] / f"{rec_id}.h5"))
    assert code == 0, err
    assert out.startswith(f"recording {rec_id}  (")
    assert f"{scenario['counts'][rec_id]} spikes" in out
    assert f"{TRIALS} intervals" in out


def test_ingest_again_is_up_to_date(scenario):
    code, out, err = run_main(
        "ingest", str(scenario["dandiset"]), "--out", str(scenario["catalog"])
    )
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("0 ingested, 6 up to date, 0 failed")


def test_info_closed_pipe_is_quiet(scenario):
    """`neurofm info C --json | head -1`: no traceback when the reader goes away."""
    script = Path(sys.executable).with_name("neurofm")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "neurofm.cli"]
    proc = subprocess.Popen(
        [*cmd, "info", str(scenario["catalog"]), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


# --------------------------------------------------------------------------------------------
# info on bad paths
# --------------------------------------------------------------------------------------------


def test_info_missing_path(tmp_path):
    missing = tmp_path / "nothing.h5"
    code, out, err = run_main("info", str(missing))
    assert code == 1
    assert out == ""
    assert err == f"neurofm: error: {missing}: no such file or folder\n"


def test_info_non_recording_hdf5(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=[1, 2, 3])
    code, out, err = run_main("info", str(path), "--json")
    assert code == 1
    assert out == ""
    assert err.startswith(f"neurofm: error: {path}: not a neurofm recording")
    assert "'format'" in err and "neurofm.recording" in err
    assert len(err.splitlines()) == 1


def test_info_nwb_file_is_not_a_recording(scenario):
    path = scenario["nwb"][0]
    code, _, err = run_main("info", str(path))
    assert code == 1
    assert err == (
        f"neurofm: error: {path}: not a neurofm recording (an NWB file); ingest it first: "
        f"neurofm ingest {path} --out catalog, then neurofm info catalog\n"
    )


def test_info_text_file_and_plain_folder(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    code, _, err = run_main("info", str(text))
    assert code == 1
    assert err.startswith(f"neurofm: error: {text}: not a readable HDF5 file")
    assert len(err.splitlines()) == 1
    folder = tmp_path / "folder"
    folder.mkdir()
    code, _, err = run_main("info", str(folder))
    assert code == 1
    assert err.startswith(f"neurofm: error: {folder}: not a neurofm catalog")


# --------------------------------------------------------------------------------------------
# usage: whole option names, "did you mean", plurals
# --------------------------------------------------------------------------------------------


def test_a_mistyped_command_gets_a_suggestion():
    code, out, err = run_main("injest", "raw")
    assert code == 2 and out == ""
    last = err.splitlines()[-1]
    assert last.startswith("neurofm: error: argument COMMAND: invalid choice: 'injest'")
    assert last.endswith("; did you mean 'ingest'?")
    code, _, err = run_main("zzz")  # nothing close: no suggestion
    assert code == 2 and "did you mean" not in err


@pytest.mark.parametrize(
    ("argv", "unknown", "meant"),
    [
        (("synth", "reaching", "--out", "x", "--subject", "2"), "--subject 2", "--subjects"),
        (("ingest", "raw", "--output", "c"), "--output", "--out"),  # before "--out is required"
        (("ingest", "raw", "--out", "c", "--forc"), "--forc", "--force"),
        (("train", "p.yaml", "--epoch", "3"), "--epoch 3", "--epochs"),
    ],
)
def test_options_are_never_abbreviated(argv, unknown, meant, tmp_path):
    code, out, err = run_main(*argv)
    assert code == 2 and out == ""
    assert err.splitlines()[-1].endswith(
        f"error: unrecognized arguments: {unknown}; did you mean {meant}?"
    )
    assert not (Path("x").exists() or Path("c").exists())


def test_synth_one_session_is_singular(tmp_path):
    code, out, err = run_main(
        "synth", "reaching", "--out", str(tmp_path / "D"), "--subjects", "1", "--sessions", "1",
        "--trials", "3",
    )  # fmt: skip
    assert code == 0, err
    total = fac.count_spikes(next((tmp_path / "D").rglob("*.nwb")))
    assert out == f"wrote 1 session ({total:,} spikes) to {tmp_path / 'D'}\n"
    assert run_main("ingest", str(tmp_path / "D"), "--out", str(tmp_path / "C"))[0] == 0
    code, out, _ = run_main("info", str(tmp_path / "C"))
    assert out.splitlines()[0] == f"catalog {tmp_path / 'C'}: 1 recording"


def test_synth_eeg_fmri_says_volumes_per_run(tmp_path):
    import nibabel as nib

    code, out, err = run_main(
        "synth", "eeg-fmri", "--out", str(tmp_path / "B"), "--subjects", "2", "--duration",
        "30", "--parcels", "4",
    )  # fmt: skip
    assert code == 0, err
    bold = sorted((tmp_path / "B").rglob("*_bold.nii.gz"))
    per_run = {nib.load(p).shape[-1] for p in bold}
    assert len(bold) == 2 and per_run == {15}  # 30 s at TR 2 s
    assert out == f"wrote 2 EEG-fMRI runs (15 volumes each, TR 2 s) as BIDS to {tmp_path / 'B'}\n"


def test_info_shows_a_dash_for_recordings_without_spikes(tmp_path):
    import numpy as np

    from neurofm.data import Catalog, Recording
    from neurofm.data.signals import RegularSeries

    eeg = RegularSeries(
        np.zeros((500, 3), dtype=np.float32), 250.0, 0.0, ["Cz", "Pz", "Oz"], "eeg", "V",
        channel_info={"type": np.array(["eeg"] * 3)},
    )  # fmt: skip
    rec = Recording("sub-01_task-rest", {"eeg": eeg}, metadata={"modality": "eeg"})
    Catalog(tmp_path / "C", create=True).add(rec)
    code, out, err = run_main("info", str(tmp_path / "C"))
    assert code == 0, err
    row = out.splitlines()[3].split()
    assert row[0] == "sub-01_task-rest" and row[-2:] == ["-", "-"]
    assert "eeg" in row and "2.0" in row


# --------------------------------------------------------------------------------------------
# pipeline overrides: --epochs, --batch-size, KEY=VALUE
# --------------------------------------------------------------------------------------------

DEMO = Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml"


@pytest.mark.parametrize("command", ["train", "run"])
def test_overrides_reach_the_pipeline(command, monkeypatch, tmp_path):
    import neurofm.pipeline
    from neurofm.pipeline import PipelineResult
    from neurofm.specs import load_pipeline

    seen = {}

    def fake_run(path, **kwargs):
        seen.update(kwargs, path=path)
        return PipelineResult("demo", tmp_path)

    monkeypatch.setattr(neurofm.pipeline, "run_pipeline", fake_run)
    code, _, err = run_main(
        command, str(DEMO), "--epochs", "5", "steps.evaluate.split=valid", "--batch-size", "16",
        "card.splits.seed=3",
    )  # fmt: skip
    assert code == 0, err
    assert seen["overrides"] == [
        "steps.train.epochs=5",
        "steps.train.batch_size=16",
        "steps.evaluate.split=valid",
        "card.splits.seed=3",
    ]
    spec, card, _ = load_pipeline(DEMO, seen["overrides"])
    train, evaluate = spec.steps[2].train, spec.steps[3].evaluate
    assert (train.epochs, train.batch_size, train.lr) == (5, 16, 0.001)  # lr: the file's
    assert evaluate.split == "valid" and card.splits.seed == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ("--epochs", "0"),
            "(with steps.train.epochs=0): steps[2].train.epochs: Input should be "
            "greater than or equal to 1 (got 0)",
        ),
        (
            ("steps.train.epoch=5",),
            "(with steps.train.epoch=5): steps[2].train.epoch: unknown key (expected one of: ",
        ),
        (
            ("steps.finetune.epochs=5",),
            "override 'steps.finetune.epochs=5': steps has no "
            "'finetune' step (steps: pull, ingest, train, evaluate",
        ),
        (("epochs",), None),
    ],
)
def test_overrides_are_validated_like_the_file(extra, message, tmp_path):
    code, out, err = run_main("train", str(DEMO), "--workdir", str(tmp_path / "w"), *extra)
    if message is None:  # not KEY=VALUE, after an option: argparse's leftover
        assert code == 2 and err.splitlines()[-1].endswith("unrecognized arguments: epochs")
        code, _, err = run_main("train", str(DEMO), "epochs")  # where overrides go
        assert code == 1 and "override 'epochs': expected KEY=VALUE" in err
        return
    assert code == 1 and out == ""
    assert err.startswith(f"neurofm: error: {DEMO}") and message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------------------------
# evaluate: the sessions the model knows, filters, and what was skipped
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def poyo_and_all_sessions(pretrained_poyo, tmp_path_factory):
    """The pretrained POYO and one catalog of its two training sessions and the held-out one."""
    root, ckpt = pretrained_poyo
    catalog = tmp_path_factory.mktemp("evaluate") / "all"
    card = Path(__file__).resolve().parents[1] / "datasets" / "synthetic_reaching.yaml"
    for folder in ("pre", "new"):
        code, _, err = run_main("ingest", str(root / folder), "--out", str(catalog), "--card",
                                str(card))  # fmt: skip
        assert code == 0, err
    known = sorted(p.name.removesuffix("_ecephys.nwb") for p in (root / "pre").glob("*.nwb"))
    held_out = next((root / "new").glob("*.nwb")).name.removesuffix("_ecephys.nwb")
    return ckpt, catalog, known, held_out


def test_evaluate_scores_the_known_sessions_and_says_what_it_skipped(
    poyo_and_all_sessions, tmp_path, one_torch_thread
):
    ckpt, catalog, known, held_out = poyo_and_all_sessions
    code, out, err = run_main("evaluate", str(ckpt), str(catalog), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(doc["r2"]) == known
    assert doc["skipped"] == {
        held_out: "not a session the model was trained on; `neurofm adapt CKPT FILE` adapts it "
        "to a new session"
    }
    code, out, err = run_main(
        "evaluate", str(ckpt), str(catalog), "--plot", str(tmp_path / "p.png")
    )
    assert code == 0, err
    assert f"skipped {held_out}: not a session the model was trained on" in out
    assert (tmp_path / "p.png").stat().st_size > 0
    code, out, err = run_main(
        "evaluate", str(ckpt), str(catalog), "--plot", str(tmp_path / "p.txt")
    )
    assert code == 1 and out == "" and ".txt is not an image format" in err  # before scoring
    assert not (tmp_path / "p.txt").exists()


def test_evaluate_filters(poyo_and_all_sessions, one_torch_thread):
    ckpt, catalog, known, held_out = poyo_and_all_sessions
    code, out, err = run_main("evaluate", str(ckpt), str(catalog), "--recordings", known[1],
                              "--json")  # fmt: skip
    assert code == 0, err
    assert list(json.loads(out)["r2"]) == [known[1]] and json.loads(out)["skipped"] == {}
    code, out, err = run_main("evaluate", str(ckpt), str(catalog), "--subject", "S0", "--json")
    assert code == 0, err
    assert sorted(json.loads(out)["r2"]) == known
    # asked for by name, a session the model cannot score is an error, with the reason
    code, out, err = run_main("evaluate", str(ckpt), str(catalog), "--recordings", held_out)
    assert code == 1 and out == ""
    assert err == (
        f"neurofm: error: {held_out}: cannot be scored: not a session the model was trained "
        "on; `neurofm adapt CKPT FILE` adapts it to a new session\n"
    )
    code, _, err = run_main("evaluate", str(ckpt), str(catalog), "--subject", "S9")
    assert (
        code == 1
        and err == f"neurofm: error: {catalog}: no recording of subject S9 (subjects: S0)\n"
    )
    code, _, err = run_main("evaluate", str(ckpt), str(catalog), "--recordings", "nope,x")
    assert code == 1 and err.startswith(f"neurofm: error: {catalog}: no recording 'nope', 'x'")


def test_the_evaluate_step_lists_what_it_skipped(poyo_and_all_sessions, tmp_path,
                                                 one_torch_thread):  # fmt: skip
    from neurofm.evaluation.checkpoint import evaluate_checkpoint
    from neurofm.specs import EvaluateStep

    ckpt, catalog, known, held_out = poyo_and_all_sessions
    options = EvaluateStep(baselines=[], plot=False)
    report, lines = evaluate_checkpoint(ckpt, catalog, options, tmp_path)
    assert sorted(report.r2["POYO"]) == known
    assert lines[-1].startswith(f"skipped {held_out}: not a session the model was trained on")


# --------------------------------------------------------------------------------------------
# serve: the local DANDI server
# --------------------------------------------------------------------------------------------


def _serve(folder: Path, *args: str) -> subprocess.Popen:
    """``neurofm serve FOLDER`` in the background (its stdout lines go to ``proc.lines``)."""
    import queue
    import threading

    script = Path(sys.executable).with_name("neurofm")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "neurofm.cli"]
    proc = subprocess.Popen(
        [*cmd, "serve", str(folder), *(args or ("--dandiset", "000123"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout], daemon=True
    )
    reader.start()
    proc.lines, proc.reader = lines, reader  # type: ignore[attr-defined]
    return proc


def _next_line(proc: subprocess.Popen) -> str:
    import queue

    try:
        return proc.lines.get(timeout=120)  # type: ignore[attr-defined]
    except queue.Empty:
        raise AssertionError("neurofm serve printed nothing for 120 s") from None


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_serve_prints_its_url_and_serves_until_stopped(scenario, stop):
    import signal
    import urllib.request

    folder = scenario["dandiset"]
    proc = _serve(folder)
    try:
        assert _next_line(proc) == f"serving {folder} as dandi:000123 (draft)"
        url = _next_line(proc).removeprefix("API URL: ")
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
        with urllib.request.urlopen(f"{url}/dandisets/000123/", timeout=60) as resp:
            assert json.loads(resp.read())["identifier"] == "000123"
        assets = f"{url}/dandisets/000123/versions/draft/assets/"
        with urllib.request.urlopen(assets, timeout=60) as resp:
            served = {a["path"] for a in json.loads(resp.read())["results"]}
        nwb = {str(p.relative_to(folder)) for p in scenario["nwb"]}
        assert nwb <= served and "dandiset.yaml" not in served
    finally:
        proc.send_signal(getattr(signal, stop))
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()  # no-op when it stopped; never leave a server behind
    assert proc.returncode == 0, proc.stderr.read()
    proc.reader.join(timeout=30)  # everything it printed has been read
    rest = [proc.lines.get_nowait() for _ in range(proc.lines.qsize())]
    assert rest and rest[-1] == "stopped"


def test_serve_a_replica_where_its_card_pulls_from(tmp_path):
    import signal
    import urllib.request

    proc = _serve(tmp_path / "rep", "--replica", "mc_rtt", "--seed", "3")
    try:
        assert _next_line(proc) == (
            f"writing the replica of mc_rtt into {tmp_path / 'rep' / 'mc_rtt'}"
        )
        head = _next_line(proc)
        assert head.startswith(f"serving the replica of mc_rtt ({tmp_path / 'rep' / 'mc_rtt'}) "
                               "as dandi:000129 (versions ")  # fmt: skip
        run = _next_line(proc).split()
        assert run[:3] == ["neurofm", "run", str(REPO / "pipelines" / "mc_rtt.yaml")]
        url = run[run.index("--api-url") + 1]
        version = load_card(REPO / "datasets" / "mc_rtt.yaml").source.version
        assets = f"{url}/dandisets/000129/versions/{version}/assets/"
        with urllib.request.urlopen(assets, timeout=60) as resp:
            served = {a["path"] for a in json.loads(resp.read())["results"]}
        written = {p.relative_to(tmp_path / "rep" / "mc_rtt").as_posix()
                   for p in (tmp_path / "rep" / "mc_rtt").rglob("*.nwb")}  # fmt: skip
        assert written and written <= served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()
    assert (tmp_path / "rep" / "mc_rtt").is_dir()  # a folder given: kept
    import socket

    with socket.socket() as taken:  # a port in use: one line, no traceback
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = run_main(
            "serve", "--replica", "mc_rtt", str(tmp_path / "r2"), "--port", port
        )
    assert code == 1 and f"cannot serve on 127.0.0.1:{port}" in err and "Traceback" not in err
    code, _, err = run_main("serve", "--replica", "nosuch")
    assert code == 1 and "--replica: no replica of 'nosuch' (replicas: area2_bump, " in err
    code, _, err = run_main("serve")
    assert code == 1 and "serve: give the dandiset's folder, or --replica CARD" in err


def test_serve_refuses_bad_input(tmp_path):
    code, _, err = run_main("serve", str(tmp_path / "none"))
    assert code == 1 and err == (
        f"neurofm: error: {tmp_path / 'none'}: no such folder (the dandiset to serve)\n"
    )
    code, _, err = run_main("serve", str(tmp_path), "--dandiset", "12")
    assert code == 1 and "--dandiset: expected a six-digit id" in err
