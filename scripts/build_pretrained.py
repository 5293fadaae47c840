"""Rebuild the pretrained checkpoint that ships with neurofm: ``poyo-tiny-synthetic``.

Recipe (every number is fixed here, so a rebuild gives the same corpus, the same training run
and the same stored scores on the same torch version and thread count):

1. corpus: :func:`neurofm.synthetic.generate_reaching_dataset` with :data:`CORPUS` -- 3 subjects
   x 4 sessions = 12 sessions, 40-60 units each, with more unit turnover (``pool_factor``) and
   drift (``drift_scale``) than the defaults, so the backbone sees many different populations;
   session 4 of each subject (:data:`HELDOUT_SESSION`) is never generated here: it is the
   held-out session that ``benchmarks/finetune_bench.py`` and the shipped-checkpoint test adapt
   to;
2. ingest with the ``synthetic_reaching`` dataset card (trial splits from the NWB files);
3. pretrain the tiny POYO (``models/poyo_tiny.yaml``) with :data:`TRAIN`, single-threaded on
   the CPU;
4. score it (stitched R^2 of hand velocity on every session's valid and test trials), write the
   model card (``checkpoint["neurofm"]["card"]``, read by :class:`neurofm.pretrained.ModelCard`;
   it says the model saw synthetic data only and holds the recipe: corpus parameters and the
   held-out session index) and save weights + card -- no optimizer state -- atomically to
   ``neurofm/pretrained/weights/poyo-tiny-synthetic.ckpt``.

Usage::

    OMP_NUM_THREADS=1 python scripts/build_pretrained.py [--work-dir DIR] [--out CKPT]

The work folder (default ``bench-output/build_pretrained``, git-ignored) keeps the corpus, the
catalog and the training run; an interrupted run resumes from its ``last.ckpt``; a finished one
is only re-scored and re-saved. Logging goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
NAME = "poyo-tiny-synthetic"
DEFAULT_OUT = REPO / "neurofm" / "pretrained" / "weights" / f"{NAME}.ckpt"
DEFAULT_WORK = REPO / "bench-output" / "build_pretrained"  # git-ignored

#: The pretraining corpus (arguments of generate_reaching_dataset).
CORPUS: dict[str, Any] = {
    "seed": 16,
    "n_subjects": 3,
    "n_sessions": 4,
    "n_trials": 60,
    "n_units_range": (40, 60),
    "behavior_rate": 200.0,
    "pool_factor": 2.0,
    "drift_scale": 1.5,
}
#: Session index (of every subject) kept out of pretraining: the held-out sessions.
HELDOUT_SESSION = 4
#: Pretraining settings (neurofm.training.poyo.TrainConfig).
TRAIN: dict[str, Any] = {
    "target": "hand_vel",
    "epochs": 24,
    "batch_size": 16,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "flat_fraction": 0.5,
    # keep 20-60 units per window: the backbone learns to decode from whichever units a
    # session has, which is what a new session's unit identification relies on
    "unit_dropout": (20, 45, 60),
    "seed": 0,
}
MODEL_CONFIG = REPO / "models" / "poyo_tiny.yaml"
CARD = REPO / "datasets" / "synthetic_reaching.yaml"

log = logging.getLogger("build_pretrained")


def build_corpus(work: Path) -> Path:
    """Generate and ingest the corpus (skipped when its catalog is already complete)."""
    from neurofm.data.catalog import Catalog
    from neurofm.errors import NeuroFMError
    from neurofm.pipeline import ingest
    from neurofm.specs import load_card
    from neurofm.synthetic import generate_reaching_dataset

    raw, catalog = work / "raw", work / "catalog"
    expected = CORPUS["n_subjects"] * CORPUS["n_sessions"]
    try:
        complete = len(Catalog(catalog)) == expected
    except NeuroFMError:  # no catalog yet
        complete = False
    if complete:
        log.info("corpus: %s already holds %d sessions", catalog, expected)
        return catalog
    generate_reaching_dataset(raw, progress=False, **CORPUS)
    report = ingest(raw, catalog, card=load_card(CARD), progress=False)
    if not report.ok:
        raise SystemExit(f"ingest failed: {report.failed}")
    return catalog


def pretrain(catalog: Path, work: Path, epochs: int) -> tuple[Path, float]:
    """Train (or resume) the tiny POYO; returns ``last.ckpt`` and the wall time of this call."""
    from neurofm.models.poyo import POYOConfig
    from neurofm.training.checkpoints import load_checkpoint
    from neurofm.training.poyo import TrainConfig, train_poyo

    run = work / "pretrain"
    last = run / "last.ckpt"
    wall_file = run / "wall_time_s.txt"  # the finished run's wall time, for the card
    cfg = TrainConfig(**{**TRAIN, "epochs": epochs})
    resume = None
    if last.is_file():
        done = int(load_checkpoint(last).get("epoch", -1)) + 1
        if done >= epochs:
            log.info("pretraining: %s already finished (%d epochs)", last, done)
            return last, float(wall_file.read_text()) if wall_file.is_file() else float("nan")
        resume = last
    t0 = time.perf_counter()
    train_poyo(
        catalog,
        POYOConfig.from_yaml(MODEL_CONFIG),
        cfg,
        run,
        resume=resume,
        accelerator="cpu",
        progress=False,
    )
    wall = time.perf_counter() - t0
    if resume is None:
        wall_file.write_text(f"{wall:.1f}\n")
    return last, wall


def scores(ckpt: Path, catalog: Path) -> dict[str, Any]:
    """Stitched R^2 of every pretraining session on its valid and test trials."""
    from neurofm.evaluation.poyo import evaluate_poyo
    from neurofm.training.poyo import load_poyo

    model, scaler, cfg = load_poyo(ckpt)
    model.eval()
    out: dict[str, Any] = {"metric": "r2 of hand_vel, stitched, per session"}
    for split in ("valid", "test"):
        r2 = {
            k: round(float(v), 6)
            for k, v in evaluate_poyo(model, scaler, catalog, cfg.target, split).r2.items()
        }
        out[split] = {"mean": round(float(np.mean(list(r2.values()))), 6), "sessions": r2}
    return out


def model_card(last: Path, catalog: Path, score: dict, wall: float) -> dict[str, Any]:
    """The model card (:class:`neurofm.pretrained.ModelCard` layout, stored in the checkpoint's
    ``neurofm`` section): config, vocabularies, target, training data and settings, scores and
    versions, plus ``recipe`` (how to regenerate the corpus and the held-out sessions)."""
    from neurofm.data.catalog import Catalog
    from neurofm.training import card as mc
    from neurofm.training.checkpoints import load_checkpoint
    from neurofm.training.poyo import POYOModule, load_poyo

    model, scaler, cfg = load_poyo(last)
    ckpt = load_checkpoint(last)
    card = POYOModule(model, scaler, cfg, int(ckpt["neurofm"]["total_steps"])).model_card()
    cat = Catalog(catalog)
    entries = []
    for rid in cat.ids:
        with cat.open(rid) as rec:
            entries.append(mc.recording_entry(rid, rec))
            target = mc.target_section(cfg.target, scaler, rec)
    card["data"] = mc.data_section(catalog.name, entries)
    card["target"] = target
    card["training"].update(
        epoch=int(ckpt.get("epoch", cfg.epochs - 1)),  # 0-based, as Lightning's
        global_step=int(ckpt.get("global_step", 0)),
        mode="pretrain",
        device="cpu",
        threads=torch.get_num_threads(),
        wall_time_s=None if np.isnan(wall) else round(wall, 1),
        script="scripts/build_pretrained.py",
    )
    card["description"] = (
        "Tiny POYO (dim 64, depth 2) pretrained to decode hand velocity from the sorted spikes "
        f"of {len(cat.ids)} synthetic centre-out reaching sessions of "
        f"{CORPUS['n_subjects']} subjects. Trained on synthetic data only "
        "(neurofm.synthetic.reaching), not on recordings of real animals: a starting point "
        "for adapting to new sessions from a few labelled trials (unit identification)."
    )
    card["synthetic_data_only"] = True
    card["scores"] = {split: {"r2": score[split]["mean"]} for split in ("valid", "test")}
    card["session_scores"] = {
        "metric": score["metric"],
        **{split: score[split]["sessions"] for split in ("valid", "test")},
    }
    card["recipe"] = mc.plain(
        {
            "generator": "neurofm.synthetic.reaching.generate_reaching_dataset",
            "corpus": CORPUS,
            "heldout_session_index": HELDOUT_SESSION,
            "dataset_card": CARD.relative_to(REPO).as_posix(),
            "model_config": MODEL_CONFIG.relative_to(REPO).as_posix(),
            "train": TRAIN,
            "rebuild": "OMP_NUM_THREADS=1 python scripts/build_pretrained.py",
        }
    )
    return mc.plain(card)


def save(last: Path, out: Path, card: dict[str, Any]) -> None:
    """Weights and the ``neurofm`` section with the card -- no optimizer state -- sealed and
    written atomically."""
    from neurofm.atomic import atomic_path
    from neurofm.training.card import CARD_KEY
    from neurofm.training.checkpoints import CHECKSUM_KEY, load_checkpoint, seal

    ckpt = load_checkpoint(last)
    meta = {k: v for k, v in ckpt["neurofm"].items() if k != CHECKSUM_KEY}
    meta[CARD_KEY] = card
    slim = {"state_dict": ckpt["state_dict"], "neurofm": meta}
    seal(slim)
    with atomic_path(out) as tmp:
        torch.save(slim, tmp)
    log.info("wrote %s (%.2f MB)", out, out.stat().st_size / 1e6)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=TRAIN["epochs"], help="(for trials only)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)  # the recorded scores are those of a single-threaded CPU run
    args.work_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    catalog = build_corpus(args.work_dir)
    log.info("corpus ready in %.0f s", time.perf_counter() - t0)
    last, wall = pretrain(catalog, args.work_dir, args.epochs)
    log.info("pretraining took %.0f s", wall)
    score = scores(last, catalog)
    log.info("test R^2 %.3f, valid R^2 %.3f", score["test"]["mean"], score["valid"]["mean"])
    save(last, args.out, model_card(last, catalog, score, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
