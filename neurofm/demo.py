"""``make demo``: the main job end to end on an embedded, generated dataset.

synthetic reaching NWB (DANDI layout) -> served by a local DANDI server -> ``neurofm run
pipelines/demo.yaml`` (verified pull + ingest with train/valid/test domains) -> summary ->
trial plot -> a new session in one call (load_pretrained, adapt, predict, plot).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml"
HELD_OUT = "sub-S1_ses-20240312"  # not in the demo pipeline's train step


class StageClock:
    """Wall and CPU time (this process, all its threads) of consecutive stages.

    Parameters
    ----------
    wall, cpu : callable
        The clocks (``time.perf_counter`` and ``time.process_time``; tests pass fakes).
    """

    def __init__(
        self,
        wall: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] = time.process_time,
    ) -> None:
        self._wall, self._cpu = wall, cpu
        self.stages: list[tuple[str, float, float]] = []  # (name, wall s, cpu s), closed ones
        self._open: tuple[str, float, float] | None = None

    def start(self, name: str) -> None:
        """Close the running stage (if any) and start ``name``."""
        self.stop()
        self._open = (name, self._wall(), self._cpu())

    def stop(self) -> None:
        """Close the running stage."""
        if self._open is not None:
            name, w, c = self._open
            self.stages.append((name, self._wall() - w, self._cpu() - c))
            self._open = None

    def table(self) -> str:
        """One row per stage: wall s, share of the total wall time, CPU s; then the total."""
        self.stop()
        total = sum(w for _, w, _ in self.stages) or 1.0
        width = max([len(n) for n, _, _ in self.stages] + [5])
        rows = [f"{'stage':<{width}}  {'wall s':>7}  {'share':>6}  {'cpu s':>7}"]
        rows += [f"{n:<{width}}  {w:7.1f}  {w / total:6.1%}  {c:7.1f}" for n, w, c in self.stages]
        cpu = sum(c for _, _, c in self.stages)
        rows.append(f"{'total':<{width}}  {total:7.1f}  {1:6.1%}  {cpu:7.1f}")
        return "\n".join(rows)


#: Modules the pipeline imports on its way to the first training step, slowest first.
WARM_IMPORTS = (
    "neurofm.training.poyo",
    "neurofm.pipeline.steps",
    "neurofm.training.datasets",
    "neurofm.sources.dandi",
)


def _warm_imports() -> None:
    """Import the pipeline's modules now (they would be imported later anyway), without the
    cyclic garbage collector: imports make objects that live as long as the process, and each
    full collection re-scans them all (eight passes, ~1 s, before the first training step).
    ``gc.freeze`` then leaves them out of later collections (CPython's advice for a process
    that is done starting up)."""
    gc.disable()
    try:
        for name in WARM_IMPORTS:
            importlib.import_module(name)
    finally:
        gc.enable()
        gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurofm.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from neurofm.cli import main as cli
    from neurofm.testing.dandi_server import serve_dandiset

    t0 = time.perf_counter()
    clock = StageClock()
    clock.start("synthesise the dandiset (and import the trainer)")
    raw, work = args.out / "dandiset", args.out / "pipeline"
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(work / "poyo", ignore_errors=True)  # each demo trains its model afresh
    print(
        f"demo step 1 of 6: synthesising {args.subjects}x{args.sessions} reaching sessions -> {raw}"
    )
    synth = [
        "synth",
        "reaching",
        "--out",
        str(raw),
        "--subjects",
        str(args.subjects),
        "--sessions",
        str(args.sessions),
        "--trials",
        str(args.trials),
        "--seed",
        str(args.seed),
    ]
    # The synthesis runs in a second process while this one imports what the pipeline's train
    # step needs (torch, Lightning: ~5 s; both are single-threaded, so one after the other left
    # a core idle). Same work; the first training step comes ~2.5-3 s sooner. This stage's CPU
    # time is this process's (the imports), not the synthesis's.
    child = subprocess.Popen([sys.executable, "-m", "neurofm.cli", *synth])
    try:
        _warm_imports()
    finally:
        rc = child.wait()
    if rc:
        return rc
    # The demo never touches the internet: a local DANDI server serves the synthetic dandiset
    # over the same REST API as the archive, and the real dandi client pulls from it.
    clock.start("pipeline: pull, ingest, train POYO, baselines, evaluate")
    with serve_dandiset(raw, "000000") as server:
        print(f"demo step 2 of 6: serving it as dandi:000000 at {server.api_url}")
        print(
            "demo step 3 of 6: neurofm run pipelines/demo.yaml, whose own steps [1/4]-[4/4] "
            "are a verified pull, ingest, train POYO and evaluate"
        )
        rc = cli(["run", str(PIPELINE), "--api-url", server.api_url, "--workdir", str(work)])
    if rc:
        return rc
    catalog = work / "catalog"
    clock.start("catalog summary")
    print("demo step 4 of 6: catalog summary")
    cli(["info", str(catalog)])

    from neurofm.data import Catalog
    from neurofm.viz.spikes import plot_trial

    clock.start("trial plot")
    cat = Catalog(catalog)
    figure = args.out / "trial_raster.png"
    with cat.open(cat.ids[0]) as rec:
        plot_trial(rec, trial=1, path=figure)
    print(f"demo step 5 of 6: raster + behaviour of one trial -> {figure}")

    clock.start("new session: adapt, predict, plot")
    print(
        f"demo step 6 of 6: a new session in one call: the held-out session {HELD_OUT} -> "
        "load_pretrained -> adapt (unit-id, 20 labelled trials) -> predict -> plot"
    )
    one_call(work / "poyo" / "last.ckpt", catalog, HELD_OUT, args.out)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    print(clock.table())
    return 0


def one_call(checkpoint: Path, catalog: Path, held_out: str, out: Path, epochs: int = 100) -> Path:
    """The demo's last step: adapt the pretrained POYO to a held-out session of the catalog
    from 20 labelled trials, decode the whole session, plot decoded vs true behaviour on
    held-out trials; returns the plot."""
    from neurofm.data import Catalog
    from neurofm.pretrained import load_pretrained
    from neurofm.pretrained.report import plot_decoded, write_adaptation_report

    model = load_pretrained(checkpoint)
    adapted = model.adapt(
        held_out,
        catalog=catalog,
        trials=20,
        mode="unit-id",
        epochs=epochs,  # 30 left the new embeddings half-learned (R^2 0.13-0.45); 100: ~0.89
        out=out / "adapted",
    )
    a = adapted.card.adaptation or {}
    print(f"  vocabulary: +{a.get('new_units')} units and 1 session ({adapted.card.n_units} units)")
    score = adapted.card.scores["adaptation"]
    print(f"  held-out R^2 (stitched, the {score['n']} trials not adapted on): {score['r2']:.3f}")
    # What `neurofm adapt` writes beside its checkpoint: report.md/json, predictions.png.
    report = write_adaptation_report(adapted, out / "adapted")[1]
    print(f"  adaptation report: {report}")
    decoded = adapted.predict(held_out, catalog=catalog)
    figure = out / "held_out_predictions.png"
    with Catalog(catalog).open(held_out) as rec:
        trials = rec["trials"].load()
        rest = trials.take(np.argsort(trials.start, kind="stable")[20:])
        plot_decoded(decoded, rec, rest, figure)
    print(f"  decoded {decoded.name} over the whole session ({len(decoded)} samples) -> {figure}")
    print(f"  adapted checkpoint: {adapted.path}")
    return figure


if __name__ == "__main__":
    sys.exit(main())
