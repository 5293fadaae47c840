"""Training throughput across processes (issue 18.4): tiny POYO with 1 and 2 DDP processes.

What it measures. ``models/poyo_tiny.yaml`` (as shipped: depth 2, dropout on) trained by
:func:`neurofm.training.poyo.fit_poyo` on two synthetic reaching sessions (120 trials each,
50-60 units), on CPU: once in one process, once with Lightning's DDP over 2 processes
(``ddp_fork``: the ranks fork from this process, so no import time is counted; gloo does the
all-reduce). Weak scaling, as DDP is used: each process trains :data:`BATCH` windows per step,
so 2 processes train twice the windows per step. Each process computes with one torch thread
(``NEUROFM_NUM_THREADS=1``), so 2 processes use the machine's 2 cores.

Figures. ``train_windows_per_s_{1,2}_procs``: global windows per step over the median wall time
between consecutive step ends on rank 0 (data loading, forward, backward, gradient all-reduce,
AdamW step), after :data:`WARMUP` warm-up steps; validation is one 1 s window per epoch and
falls out of the median. ``train_ddp_speedup_2_procs``: their ratio (2.0 would be perfect
scaling; on a machine whose 2 cores other work shares, it is lower).

Run: ``.venv/bin/python benchmarks/scale_training.py`` (or via ``scale_bench.py``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Windows per process per step.
BATCH = 16
#: Steps timed (after the warm-up), per run.
STEPS = 30
WARMUP = 3


def _catalog(root: Path) -> Path:
    from neurofm.pipeline import ingest
    from neurofm.specs import load_card
    from neurofm.synthetic import generate_reaching_dataset

    generate_reaching_dataset(
        root / "raw", n_subjects=1, n_sessions=2, n_trials=120, n_units_range=(50, 60),
        progress=False,
    )  # fmt: skip
    card = load_card(REPO / "datasets" / "synthetic_reaching.yaml")
    report = ingest(root / "raw", root / "catalog", card=card, progress=False)
    if not report.ok:
        raise RuntimeError(f"ingest failed: {report.failed}")
    return root / "catalog"


def _step_timer(path: Path):
    """A callback writing rank 0's step-end times to ``path`` (JSON) when training ends."""
    import lightning.pytorch as pl

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.ends.append(time.perf_counter())

        def on_train_end(self, trainer, module) -> None:
            if trainer.is_global_zero:
                path.write_text(json.dumps(self.ends))

    return StepTimer()


def _windows_per_s(catalog: Path, processes: int, out: Path) -> float:
    import torch

    from neurofm.data.signals import Intervals
    from neurofm.models.poyo import POYOConfig
    from neurofm.training.poyo import TrainConfig, build_poyo, fit_poyo

    cfg = TrainConfig(batch_size=BATCH, epochs=100, lr=1e-3, unit_dropout=(20, 40, 60))
    model, scaler, train = build_poyo(
        catalog, POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml"), cfg
    )
    valid = {rid: Intervals([0.0], [1.0]) for rid in train}  # one window: validation is cheap
    times = out / "steps.json"
    torch.set_num_threads(1)
    fit_poyo(
        model,
        scaler,
        catalog,
        cfg,
        out,
        train_domains=train,
        valid_domains=valid,
        callbacks=[_step_timer(times)],
        accelerator="cpu",
        devices=processes,
        strategy="ddp_fork" if processes > 1 else "auto",
        progress=False,
        max_steps=STEPS + WARMUP + 1,
    )
    ends = json.loads(times.read_text())
    gaps = [b - a for a, b in zip(ends[WARMUP:], ends[WARMUP + 1 :], strict=False)]
    return BATCH * processes / statistics.median(gaps)


def training_figures() -> dict[str, float]:
    """Training windows/s of tiny POYO with 1 and 2 DDP processes (CPU, gloo, 1 thread each).

    Returns
    -------
    dict of str to float
        ``train_windows_per_s_1_procs``, ``train_windows_per_s_2_procs`` and
        ``train_ddp_speedup_2_procs`` (their ratio).
    """
    import logging

    logging.getLogger("lightning").setLevel(logging.WARNING)
    saved = {k: os.environ.get(k) for k in ("NEUROFM_NUM_THREADS", "OMP_NUM_THREADS")}
    os.environ.update(NEUROFM_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            catalog = _catalog(Path(tmp))
            one = _windows_per_s(catalog, 1, Path(tmp) / "one")
            two = _windows_per_s(catalog, 2, Path(tmp) / "two")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {
        "train_windows_per_s_1_procs": one,
        "train_windows_per_s_2_procs": two,
        "train_ddp_speedup_2_procs": two / one,
    }


if __name__ == "__main__":
    for name, value in training_figures().items():
        print(f"{name}: {value:.4g}", flush=True)
    sys.exit(0)
