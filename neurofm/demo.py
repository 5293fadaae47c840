"""``make demo``: the main job end to end on an embedded, generated dataset.

synthetic reaching NWB (DANDI layout) -> ingest into a catalog -> summary -> trial plot.
Later stages (training, fine-tuning) extend this script.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path


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

    t0 = time.perf_counter()
    raw, catalog = args.out / "dandiset", args.out / "catalog"
    shutil.rmtree(raw, ignore_errors=True)
    print(f"[1/4] synthesising {args.subjects}x{args.sessions} reaching sessions -> {raw}")
    rc = cli(
        [
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
    )
    if rc:
        return rc
    print(f"[2/4] ingesting NWB files -> {catalog}")
    rc = cli(["ingest", str(raw), "--out", str(catalog)])
    if rc:
        return rc
    print("[3/4] catalog summary")
    cli(["info", str(catalog)])

    from neurofm.data import Catalog
    from neurofm.viz import plot_trial

    cat = Catalog(catalog)
    figure = args.out / "trial_raster.png"
    with cat.open(cat.ids[0]) as rec:
        plot_trial(rec, trial=1, path=figure)
    print(f"[4/4] raster + behaviour of one trial -> {figure}")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
