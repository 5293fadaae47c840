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
    assert files == {"catalog.json"} | {f"{i}.h5" for i in scenario["counts"]}


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
    assert vel["channels"] == ["0", "1"] and vel["unit"] == "m/s"
    assert s["signals"]["hand_pos"]["channels"] == ["x", "y"]
    cursor = s["signals"]["cursor_pos"]
    assert (cursor["kind"], cursor["length"]) == ("irregular", n_cursor)
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
    assert err.startswith(f"neurofm: error: {path}: not a neurofm recording")


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
