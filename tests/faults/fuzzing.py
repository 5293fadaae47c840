"""Mutation fuzzing of neurofm's inputs: NWB, EDF/BDF, FIF, BrainVision, NIfTI and YAML specs.

A small valid *seed* file of each format is written with the field's own writers (pynwb, MNE's
exporters, nibabel) or taken from the repository (dataset cards, pipelines, model configs).
Each *mutant* is a seed with one mutation: truncated at a random byte, a few bytes flipped, or a
span of the header zeroed. Every mutant must either

* read correctly: the Recording saves into a catalog, verifies against its checksums, opens
  and yields a window (a spec validates), or
* raise a :class:`~neurofm.errors.NeuroFMError` whose message names the file;

never another exception type (a traceback), a hang (each input runs under a time bound), a
crash of the process, a file left in the catalog by a failed read, or, where the format lets
one tell (the header of EDF/BDF and NIfTI declares the data size; HDF5 records its end of
file), a truncated file read silently as a different, shorter recording.

Mutants run in a worker process that the parent restarts when an input hangs or kills it, so a
segfault in a C library is a finding, not the end of the run. Mutations are drawn from a seeded
``numpy`` generator: a finding is reproduced by its (seed file, mutation) description.

Used by ``tests/faults/test_fuzz.py`` (fixed seed, ~1 minute) and by ``make fuzz``
(``python tests/faults/fuzzing.py --seconds 600``: random seeds, as long as asked).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]

#: Seed files per format: (name, the file the reader is given, the files mutants may change).
#: Formats whose header or container declares the data size, so a truncation must not read as
#: a shorter recording without a warning.
TELLS_TRUNCATION = {"nwb", "edf", "bdf", "nifti", "nifti-gz"}
FORMATS = ("nwb", "edf", "bdf", "fif", "brainvision", "nifti", "nifti-gz", "yaml")
MUTATIONS = ("truncate", "flip", "zero_header")


@dataclass
class Seed:
    """A valid input: its files (relative name -> bytes) and how to read it."""

    name: str
    fmt: str
    files: dict[str, bytes]
    main: str  # the file handed to the reader
    mutable: list[str]  # the files a mutation may touch
    reader: str  # see _read
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Mutation:
    """One mutation of one file of a seed, drawn from a generator (so it can be replayed)."""

    seed: str
    file: str
    kind: str
    at: list[int]
    values: list[int]

    def describe(self) -> str:
        if self.kind == "truncate":
            what = f"cut to {self.at[0]} bytes"
        elif self.kind == "flip":
            pairs = zip(self.at, self.values, strict=True)
            what = "xor " + ", ".join(f"byte {a} with {v:#04x}" for a, v in pairs)
        else:
            what = f"bytes {self.at[0]}..{self.at[1]} zeroed"
        return f"{self.seed}:{self.file}: {what}"

    def apply(self, data: bytes) -> bytes:
        if self.kind == "truncate":
            return data[: self.at[0]]
        out = bytearray(data)
        if self.kind == "flip":
            for a, v in zip(self.at, self.values, strict=True):
                out[a] ^= v
        else:
            out[self.at[0] : self.at[1]] = bytes(self.at[1] - self.at[0])
        return bytes(out)


def draw_mutation(rng: np.random.Generator, seed: Seed) -> Mutation:
    """A random mutation of one of the seed's mutable files."""
    name = seed.mutable[int(rng.integers(len(seed.mutable)))]
    size = len(seed.files[name])
    kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    if kind == "truncate":
        # Half uniform, half near the end (where the data of most formats lies).
        cut = (
            int(rng.integers(size))
            if rng.random() < 0.5
            else int(size - 1 - rng.integers(min(size, 4096)))
        )
        return Mutation(seed.name, name, kind, [max(cut, 0)], [])
    if kind == "flip":
        n = int(rng.integers(1, 9))
        # Header bytes are where parsers make decisions: bias a third of the flips there.
        limit = min(size, 1024) if rng.random() < 0.33 else size
        at = sorted(set(int(a) for a in rng.integers(0, limit, n)))
        return Mutation(seed.name, name, kind, at, [int(v) for v in rng.integers(1, 256, len(at))])
    span_end = min(size, int(rng.integers(1, 1024)))
    start = int(rng.integers(0, span_end))
    return Mutation(seed.name, name, "zero_header", [start, span_end], [])


# --------------------------------------------------------------------------------------------
# seeds
# --------------------------------------------------------------------------------------------


def _eeg_raw() -> Any:
    import mne

    rng = np.random.default_rng(0)
    names = ["Fp1", "Fp2", "Cz", "O1"]
    raw = mne.io.RawArray(
        rng.normal(0, 2e-5, (len(names), 1000)), mne.create_info(names, 100.0, "eeg"), verbose=False
    )
    raw.set_annotations(mne.Annotations([1.0, 4.5], [0.5, 0.0], ["stim/A", "R128"]))
    return raw


def write_seeds(folder: Path) -> list[Seed]:
    """Write one small valid input per format under ``folder``; returns the seeds."""
    import mne
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    seeds: list[Seed] = []

    def collect(name: str, fmt: str, files: list[Path], main: Path, reader: str, **options):
        seeds.append(
            Seed(
                name,
                fmt,
                {p.name: p.read_bytes() for p in files},
                main.name,
                [p.name for p in files],
                reader,
                options,
            )
        )

    # NWB: units, behaviour, trials; without the cached namespaces (pynwb's own copy is used)
    # so that most bytes are data and structure, not the schema's JSON text.
    sys.path.insert(0, str(REPO / "tests"))
    import nwb_factory as fac
    from pynwb import NWBHDF5IO

    nwb = fac.new_nwbfile("fuzz")
    rng = np.random.default_rng(1)
    for _ in range(3):
        nwb.add_unit(spike_times=np.sort(rng.uniform(0, 2.0, 20)))
    fac.add_behavior(nwb, n=50)
    nwb.add_trial_column("split", "train/valid/test")
    for k in range(3):
        nwb.add_trial(
            start_time=0.5 * k, stop_time=0.5 * k + 0.4, split=["train", "valid", "test"][k]
        )
    path = folder / "seed.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb, cache_spec=False)
    collect("nwb", "nwb", [path], path, "nwb")

    raw = _eeg_raw()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fmt, ext in (("edf", ".edf"), ("bdf", ".bdf")):
            path = folder / f"seed{ext}"
            mne.export.export_raw(path, raw, fmt=fmt, overwrite=True, verbose=False)
            collect(fmt, fmt, [path], path, "eeg")
        path = folder / "seed_raw.fif"
        raw.save(path, overwrite=True, verbose=False)
        collect("fif", "fif", [path], path, "eeg")
        bv = folder / "bv"
        bv.mkdir(exist_ok=True)
        mne.export.export_raw(
            bv / "seed.vhdr", raw, fmt="brainvision", overwrite=True, verbose=False
        )
        files = [bv / "seed.vhdr", bv / "seed.vmrk", bv / "seed.eeg"]
        collect("brainvision", "brainvision", files, files[0], "eeg")

    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    bold = nib.Nifti1Image(
        (1000 + np.random.default_rng(2).normal(0, 5, (5, 5, 4, 8))).astype(np.float32), affine
    )
    bold.header.set_xyzt_units("mm", "sec")
    bold.header["pixdim"][4] = 2.0
    labels = np.zeros((5, 5, 4), np.int16)
    labels[:2], labels[2:] = 1, 2
    for fmt, ext in (("nifti", ".nii"), ("nifti-gz", ".nii.gz")):
        sub = folder / fmt
        sub.mkdir(exist_ok=True)
        nib.save(bold, sub / f"bold{ext}")
        nib.save(nib.Nifti1Image(labels, affine), sub / f"atlas{ext}")
        files = [sub / f"bold{ext}", sub / f"atlas{ext}"]
        collect(fmt, fmt, files, files[0], "fmri", atlas=files[1].name)

    # YAML specs as shipped: cards, a pipeline (with its card and model), model configs, and
    # an EEG preprocessing chain.
    specs = folder / "yaml"
    (specs / "datasets").mkdir(parents=True, exist_ok=True)
    (specs / "pipelines").mkdir(exist_ok=True)
    (specs / "models").mkdir(exist_ok=True)
    for card in ("synthetic_reaching.yaml", "ds002336.yaml"):
        shutil.copy(REPO / "datasets" / card, specs / "datasets" / card)
        p = specs / "datasets" / card
        collect(f"card-{p.stem}", "yaml", [p], p, "card")
    shutil.copy(REPO / "pipelines" / "demo.yaml", specs / "pipelines" / "demo.yaml")
    shutil.copy(REPO / "models" / "poyo_tiny.yaml", specs / "models" / "poyo_tiny.yaml")
    p = specs / "pipelines" / "demo.yaml"
    collect("pipeline-demo", "yaml", [p], p, "pipeline")
    for model in ("poyo_tiny.yaml", "samba.yaml"):
        shutil.copy(REPO / "models" / model, specs / "models" / model)
        p = specs / "models" / model
        collect(f"model-{p.stem}", "yaml", [p], p, "poyo" if "poyo" in model else "samba")
    p = specs / "preprocessing.yaml"
    p.write_text(
        "bad_channels: [Fp1]\nnotch: [50.0]\nl_freq: 1.0\nh_freq: 40.0\nreference: average\n"
    )
    collect("preprocessing", "yaml", [p], p, "preprocessing")
    return seeds


# --------------------------------------------------------------------------------------------
# one mutant (in the worker)
# --------------------------------------------------------------------------------------------


def _read(seed: Seed, folder: Path) -> Any:
    """Read the seed's main file in ``folder`` the way neurofm does for its format."""
    path = folder / seed.main
    if seed.reader == "nwb":
        from neurofm.readers.nwb import read_nwb

        return read_nwb(path, tmp_dir=folder)
    if seed.reader == "eeg":
        from neurofm.readers.eeg import read_eeg

        return read_eeg(path)
    if seed.reader == "fmri":
        from neurofm.readers.fmri import read_fmri

        return read_fmri(path, folder / seed.options["atlas"])
    if seed.reader == "card":
        from neurofm.specs import load_card

        return load_card(path)
    if seed.reader == "pipeline":
        from neurofm.specs import load_pipeline

        return load_pipeline(path)
    if seed.reader == "poyo":
        from neurofm.models.poyo import POYOConfig

        return POYOConfig.from_yaml(path)
    if seed.reader == "samba":
        from neurofm.models.samba import SambaConfig

        return SambaConfig.from_yaml(path)
    if seed.reader == "preprocessing":
        from neurofm.readers.eeg import load_preprocessing

        return load_preprocessing(path)
    raise ValueError(seed.reader)


def _shape(rec: Any) -> dict[str, Any]:
    """What a truncation would change: the duration and each signal's length."""
    return {
        "duration": round(float(rec.duration), 9),
        **{k: len(v) for k, v in rec.signals.items()},
    }


def check_mutant(
    seed: Seed, mutation: Mutation | None, work: Path, baseline: dict | None
) -> tuple[str, str]:
    """Run one input; returns (outcome, detail): outcome is "read", "error" or "finding"."""
    from neurofm.data import Catalog, Recording
    from neurofm.data.recording import verify_recording
    from neurofm.errors import NeuroFMError

    inputs, catalog = work / "in", work / "catalog"
    for p in (inputs, catalog):
        shutil.rmtree(p, ignore_errors=True)
    sub = inputs / Path(seed.main).parent
    sub.mkdir(parents=True)
    for name, data in seed.files.items():
        if mutation is not None and name == mutation.file:
            data = mutation.apply(data)
        (sub / name).write_bytes(data)
    # The pipeline seed finds its card and model beside it, as in the repository.
    if seed.reader == "pipeline":
        for other in ("datasets/synthetic_reaching.yaml", "models/poyo_tiny.yaml"):
            (inputs / other).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / other, inputs / other)
    path = sub / seed.main
    named = {str(path), str(sub / (mutation.file if mutation else seed.main))}
    before = set(inputs.rglob("*"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _read(seed, sub)
    except NeuroFMError as exc:
        text = str(exc)
        if not any(n in text for n in named):
            return "finding", f"{type(exc).__name__} does not name the file: {text[:300]}"
        left = set(inputs.rglob("*")) - before
        if left:
            return "finding", f"failed read left {sorted(str(p.relative_to(inputs)) for p in left)}"
        return "error", text[:200]
    except Exception as exc:
        tb = traceback.format_exc(limit=-3).strip().splitlines()
        return (
            "finding",
            f"traceback {type(exc).__name__}: {str(exc)[:200]} | {' / '.join(tb[-4:])[:400]}",
        )
    if seed.fmt == "yaml":
        return "read", ""
    # (the detail of a clean read is the recording's shape, the baseline of its mutants)
    # A recording: it must store, verify, open and window; a truncation the format can
    # detect must not have produced a different recording without a recorded warning.
    try:
        shape = _shape(result)
        warned = bool(result.provenance.extra.get("reader_warnings"))
        try:
            with Catalog(catalog, create=True) as cat:
                cat.add(result)
        finally:
            result.close()
        saved = catalog / f"{result.id}.h5"
        problems = verify_recording(saved)
        if problems:
            return "finding", f"saved recording does not verify: {problems[:2]}"
        with Recording.open(saved) as rec:
            rec.summary()
            rec.window(0.0, max(min(rec.duration, 1.0), 1e-3))
    except NeuroFMError as exc:
        text = str(exc)
        if not any(n in text for n in named) and result.id not in text:
            return "finding", f"save/open error does not name the file: {text[:300]}"
        stored = [p.name for p in catalog.iterdir()] if catalog.is_dir() else []
        if any(name.endswith((".h5", ".tmp")) for name in stored):
            return "finding", f"failed save left {stored} in the catalog"
        return "error", text[:200]
    except Exception as exc:
        tb = traceback.format_exc(limit=-3).strip().splitlines()
        return (
            "finding",
            f"after reading: traceback {type(exc).__name__}: {str(exc)[:200]} | "
            f"{' / '.join(tb[-4:])[:400]}",
        )
    left = (
        [p.name for p in catalog.iterdir() if p.name.endswith(".tmp")] if catalog.is_dir() else []
    )
    if left:
        return "finding", f"temporary files left in the catalog: {left}"
    if (
        mutation is not None
        and mutation.kind == "truncate"
        and seed.fmt in TELLS_TRUNCATION
        and baseline is not None
        and shape != baseline
        and not warned
    ):
        return (
            "finding",
            f"truncated input read silently as a different recording: {shape} vs {baseline}",
        )
    return "read", json.dumps(shape)


def _worker(conn: Any, seeds_json: str, work: str, limit: float) -> None:
    """Worker loop: receive (seed name, mutation) pairs, answer (outcome, detail)."""
    import signal

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    logging.disable(logging.CRITICAL)
    seeds = {
        s["name"]: Seed(**{**s, "files": {k: bytes.fromhex(v) for k, v in s["files"].items()}})
        for s in json.loads(seeds_json)
    }
    baselines: dict[str, Any] = {}

    class Hang(BaseException):
        """Raised by the alarm; a BaseException so that no ``except Exception`` (ours or a
        library's) can turn a hang into an ordinary error."""

    def on_alarm(*_: Any) -> None:
        raise Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        name, mut = task
        seed = seeds[name]
        mutation = Mutation(**mut) if mut else None
        here = Path(work)
        try:
            if name not in baselines and seed.fmt != "yaml":
                outcome, detail = check_mutant(seed, None, here, None)
                if outcome != "read":  # the seed itself must read: a broken harness otherwise
                    raise RuntimeError(f"seed {name} does not read: {detail}")
                baselines[name] = json.loads(detail)
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                answer = check_mutant(seed, mutation, here, baselines.get(name))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Hang:
            answer = ("finding", f"hang: no answer within {limit:g} s")
        except Exception as exc:  # the harness itself
            answer = ("finding", f"harness error {type(exc).__name__}: {exc}")
        conn.send(answer)


# --------------------------------------------------------------------------------------------
# the parent: worker management and the campaign
# --------------------------------------------------------------------------------------------


@dataclass
class Campaign:
    """Results of a fuzzing run."""

    tried: int = 0
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    findings: list[tuple[str, str]] = field(default_factory=list)  # (mutation, what)
    slowest: tuple[float, str] = (0.0, "")  # (seconds, mutation)

    def count(self, fmt: str, outcome: str) -> None:
        per = self.outcomes.setdefault(fmt, {})
        per[outcome] = per.get(outcome, 0) + 1


class Fuzzer:
    """Seeds plus a worker process that is restarted after a hang or a crash."""

    def __init__(self, folder: Path, limit: float = 30.0) -> None:
        self.folder = Path(folder)
        self.limit = limit
        self.seeds = {s.name: s for s in write_seeds(self.folder / "seeds")}
        self._seeds_json = json.dumps(
            [
                {**s.__dict__, "files": {k: v.hex() for k, v in s.files.items()}}
                for s in self.seeds.values()
            ]
        )
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        work = tempfile.mkdtemp(prefix="work-", dir=self.folder)
        self._proc = self._ctx.Process(
            target=_worker, args=(child, self._seeds_json, work, self.limit), daemon=True
        )
        self._proc.start()
        self._conn = parent

    def stop(self) -> None:
        if self._proc is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
            self._proc = None

    def run_one(self, mutation: Mutation) -> tuple[str, str]:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send((mutation.seed, mutation.__dict__))
        # The worker bounds each input itself; this bound (plus start-up and the baseline
        # read) catches what an alarm cannot interrupt: a hang inside C code.
        if self._conn.poll(self.limit * 3 + 120):
            try:
                return self._conn.recv()
            except EOFError:
                pass
        code = self._proc.exitcode
        self._proc.kill()
        self._proc.join(10)
        self._proc = None
        if code is None:
            return "finding", f"hang: the worker did not answer within {self.limit * 3 + 120:g} s"
        return "finding", f"the worker process died (exit code {code}): a crash in a library"

    def campaign(
        self,
        rng: np.random.Generator,
        formats: list[str],
        n: int | None = None,
        seconds: float | None = None,
        report: Any = None,
    ) -> Campaign:
        """Run ``n`` mutants per format (or round-robin until ``seconds`` have passed)."""
        result = Campaign()
        chosen = [s for s in self.seeds.values() if s.fmt in formats]
        start = time.monotonic()
        k = 0
        while True:
            if n is not None and k >= n * len(formats):
                break
            if seconds is not None and time.monotonic() - start >= seconds:
                break
            fmt = formats[k % len(formats)]
            pool = [s for s in chosen if s.fmt == fmt]
            seed = pool[int(rng.integers(len(pool)))]
            mutation = draw_mutation(rng, seed)
            began = time.monotonic()
            outcome, detail = self.run_one(mutation)
            took = time.monotonic() - began
            if took > result.slowest[0]:
                result.slowest = (took, mutation.describe())
            result.tried += 1
            result.count(fmt, outcome)
            if outcome == "finding":
                result.findings.append((mutation.describe(), detail))
                if report is not None:
                    report(f"FINDING {mutation.describe()}: {detail}")
            k += 1
        return result


def main(argv: list[str] | None = None) -> int:
    """``make fuzz``: fuzz every format round-robin for ``--seconds``, random seed by default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 600)))
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default random)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--limit", type=float, default=30.0, help="seconds allowed per input")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    formats = [f for f in args.formats.split(",") if f]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown formats {unknown} (choose from {', '.join(FORMATS)})")
    with tempfile.TemporaryDirectory(prefix="neurofm-fuzz-") as tmp:
        fuzzer = Fuzzer(Path(tmp), limit=args.limit)
        print(f"fuzzing {', '.join(formats)} for {args.seconds:g} s (seed {seed})", flush=True)
        try:
            result = fuzzer.campaign(
                np.random.default_rng(seed),
                formats,
                seconds=args.seconds,
                report=lambda line: print(line, flush=True),
            )
        finally:
            fuzzer.stop()
    for fmt, per in result.outcomes.items():
        counts = ", ".join(f"{v} {k}" for k, v in sorted(per.items()))
        print(f"  {fmt:<12} {counts}")
    took, which = result.slowest
    print(f"slowest input: {took:.1f} s ({which})")
    print(f"{result.tried} inputs tried, {len(result.findings)} findings (seed {seed})")
    return 1 if result.findings else 0


if __name__ == "__main__":
    sys.exit(main())
