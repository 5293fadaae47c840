"""Multi-session training helps: a session with few labelled trials, alone vs with the others.

Synthetic centre-out reaching (neurofm.synthetic.reaching): one subject, several sessions
(overlapping but different units, drifting tuning). One target session keeps only its first
``TRIALS`` training trials (the train domain restricted to them, as few-shot fine-tuning does).
The tiny POYO (models/poyo_tiny.yaml) is trained from scratch

* ``single``: on the target session's few trials alone;
* ``all``: on every other session's full train domain plus the target's few trials;

with the same recipe and the same number of optimisation steps, then scored on the target
session's test domain (stitched R^2, neurofm.training.evaluate). Mean over seeds.

Prints ``name: value`` lines, ratios last: ``multisession_r2_single``, ``multisession_r2_all``
and ``multisession_r2_gain`` (all - single); also the spread over seeds and the ``all`` model's
R^2 on the other sessions (that it learned them too). Writes
bench-output/multisession/results.json. ``--quick``: fewer steps, one seed.

Measured (1 thread, ~9 min): single 0.755 (sd 0.073), all 0.787 (sd 0.032), gain +0.032 in
the mean but -0.08 to +0.13 seed by seed; the ``all`` model scores 0.92 on the other sessions.
With 10 trials the target alone is already decoded well here (cosine-tuned synthetic units),
and in ``all`` its trials are ~8 % of the windows drawn: the gain is mostly in stability.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import time
from pathlib import Path

import torch

from neurofm.data.catalog import Catalog
from neurofm.data.signals import Intervals
from neurofm.models.poyo import POYO, POYOConfig
from neurofm.pipeline import ingest
from neurofm.specs import load_card
from neurofm.synthetic import generate_reaching_dataset
from neurofm.training.data import split_domains_of
from neurofm.training.evaluate import evaluate_poyo
from neurofm.training.finetune import first_trials
from neurofm.training.poyo import TrainConfig, catalog_vocab, fit_poyo, fit_scaler

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-output" / "multisession"

SESSIONS = 4  # of one subject; the last (by id) is the target
TRIALS_PER_SESSION = 60
TRIALS = 10  # labelled training trials of the target session
STEPS, SEEDS = 1500, (0, 1, 2)
QUICK_STEPS, QUICK_SEEDS = 400, (0,)
RECIPE = TrainConfig(batch_size=8, lr=1e-3, unit_dropout=None, epochs=1_000_000)


def build(root: Path) -> Path:
    """The synthetic dandiset, ingested once into one catalog (cached under ``root``)."""
    catalog = root / "catalog"
    if (catalog / "catalog.json").is_file():
        return catalog
    generate_reaching_dataset(
        root / "raw",
        n_subjects=1,
        n_sessions=SESSIONS,
        n_trials=TRIALS_PER_SESSION,
        n_units_range=(50, 80),
        seed=11,
        progress=False,
    )
    card = load_card(REPO / "datasets" / "synthetic_reaching.yaml")
    report = ingest(root / "raw", catalog, card=card, progress=False)
    if not report.ok:
        raise SystemExit(f"ingest failed: {report}")
    return catalog


def train_and_score(
    catalog: Path,
    train_domains: dict[str, Intervals],
    target: str,
    steps: int,
    seed: int,
    out_dir: Path,
) -> dict[str, float]:
    """Fresh tiny POYO on exactly ``train_domains`` for ``steps`` steps; test R^2 of every
    session it was trained on."""
    shutil.rmtree(out_dir, ignore_errors=True)  # logs and checkpoints of an earlier run
    cat = Catalog(catalog)
    ids = sorted(train_domains)
    cfg = dataclasses.replace(RECIPE, seed=seed, recordings=ids)
    scaler = fit_scaler(cat, ids, cfg.target, train_domains)  # from the training data only
    units, sessions = catalog_vocab(cat, ids)
    config = POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml")
    config = dataclasses.replace(config, dim_out=len(scaler.mean))
    torch.manual_seed(seed)
    model = POYO(config, units, sessions)
    # Validation runs after every epoch (a few steps, for the target alone): keep it tiny.
    valid = split_domains_of(cat, "valid", [target])
    valid = {target: first_trials(valid[target], 1)}
    module, _ = fit_poyo(
        model,
        scaler,
        catalog,
        cfg,
        out_dir,
        train_domains=train_domains,
        valid_domains=valid,
        progress=False,
        max_steps=steps,
    )
    assert module.global_step == steps, (module.global_step, steps)
    return evaluate_poyo(model, scaler, catalog, cfg.target, "test", ids).r2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps, one seed")
    ap.add_argument("--steps", type=int, help="optimisation steps per run")
    ap.add_argument("--seeds", type=int, nargs="+", help="training seeds")
    args = ap.parse_args()
    torch.set_num_threads(1)  # robust on a shared 2-core machine
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    seeds = tuple(args.seeds or (QUICK_SEEDS if args.quick else SEEDS))
    t0 = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    catalog = build(OUT / "data")

    domains = split_domains_of(Catalog(catalog), "train")
    target = sorted(domains)[-1]
    few = first_trials(domains[target], TRIALS)
    others = {rid: dom for rid, dom in domains.items() if rid != target}
    conditions = {"single": {target: few}, "all": {**others, target: few}}
    print(
        f"# {len(domains)} sessions; target {target}: {TRIALS} of its {len(domains[target])} "
        f"train trials ({float((few.end - few.start).sum()):.0f} s); the other sessions: "
        f"{sum(len(d) for d in others.values())} train trials "
        f"({sum(float((d.end - d.start).sum()) for d in others.values()):.0f} s)",
        flush=True,
    )
    print(f"# tiny POYO, {steps} steps of batch {RECIPE.batch_size} each, seeds {seeds}")

    r2: dict[str, list[float]] = {name: [] for name in conditions}
    others_r2: list[float] = []  # the 'all' model on the other sessions: did it learn them?
    for seed in seeds:
        for name, train_domains in conditions.items():
            start = time.perf_counter()
            scores = train_and_score(
                catalog, train_domains, target, steps, seed, OUT / "runs" / f"{name}_{seed}"
            )
            r2[name].append(scores[target])
            rest = [v for rid, v in scores.items() if rid != target]
            others_r2 += rest
            print(
                f"# seed {seed} {name:<6s}: target test R^2 {scores[target]:.3f}"
                + (f", other sessions {statistics.mean(rest):.3f}" if rest else "")
                + f" ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    mean = {name: statistics.mean(values) for name, values in r2.items()}
    gains = [a - b for a, b in zip(r2["all"], r2["single"], strict=True)]
    (OUT / "results.json").write_text(
        json.dumps(
            {"target": target, "trials": TRIALS, "steps": steps, "seeds": seeds, "r2": r2},
            indent=1,
        )
    )
    if len(seeds) > 1:
        for name, values in r2.items():
            print(f"multisession_r2_{name}_std: {statistics.stdev(values):.3f}")
        print(f"multisession_r2_gain_min_over_seeds: {min(gains):.3f}")
    print(f"multisession_r2_all_other_sessions: {statistics.mean(others_r2):.3f}")
    print(f"multisession_r2_single: {mean['single']:.3f}")
    print(f"multisession_r2_all: {mean['all']:.3f}")
    print(f"# total {time.perf_counter() - t0:.0f} s; goal: all > single (mean over seeds)")
    print(f"multisession_r2_gain: {mean['all'] - mean['single']:.3f}")


if __name__ == "__main__":
    main()
