"""Few-shot adaptation to a held-out session: unit identification vs full fine-tuning vs scratch.

POYO (tiny config) is pretrained on the synthetic reaching sessions of one subject; a further
session of the same subject (new, unmatched units, drifted tuning) is held out. On it we measure

* the few-shot curve: stitched test R^2 vs labelled trials (5, 10, 20, all) for unit-id, full
  fine-tuning and training from scratch, 3 seeds each;
* the prequential code length (bits to encode its first 16 trials' behaviour while adapting
  online) for unit-id and from scratch: lower = more data-efficient.

Goal: unit-id with 20 trials beats from-scratch with 20 trials (mean over seeds).
Writes bench-output/finetune/{few_shot.csv, few_shot.png, code_length.json}; prints
``name: value`` lines, ratios last. ``--quick`` uses fewer epochs and seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from neurofm.evaluation.fewshot import few_shot_curve, prequential_code_length
from neurofm.models.poyo import POYOConfig
from neurofm.pipeline import ingest
from neurofm.specs import load_card
from neurofm.synthetic import generate_reaching_dataset
from neurofm.training.poyo import TrainConfig, train_poyo

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-output" / "finetune"


def build(root: Path, n_sessions: int, n_trials: int) -> tuple[Path, Path]:
    raw = root / "raw"
    if not raw.exists():
        generate_reaching_dataset(
            raw,
            n_subjects=1,
            n_sessions=n_sessions,
            n_trials=n_trials,
            n_units_range=(50, 80),
            seed=11,
            progress=False,
        )
    files = sorted(raw.rglob("*.nwb"))
    card = load_card(REPO / "datasets" / "synthetic_reaching.yaml")
    pre, new = root / "pre", root / "new"
    for folder, chosen in ((pre, files[:-1]), (new, files[-1:])):
        folder.mkdir(exist_ok=True)
        for f in chosen:
            shutil.copy(f, folder / f.name)
    ingest(pre, root / "cat_pre", card=card, progress=False)
    ingest(new, root / "cat_new", card=card, progress=False)
    return root / "cat_pre", root / "cat_new"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)  # robust on a shared 2-core machine
    epochs, seeds = (15, (0,)) if args.quick else (30, (0, 1, 2))
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cat_pre, cat_new = build(OUT / "data", n_sessions=4, n_trials=60)
    model_cfg = POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml")
    ckpt = OUT / "pretrain" / "last.ckpt"
    if not ckpt.is_file():
        train_poyo(
            cat_pre,
            model_cfg,
            TrainConfig(
                epochs=40 if not args.quick else 15, batch_size=8, lr=1e-3, unit_dropout=None
            ),
            OUT / "pretrain",
            progress=False,
        )
    print(f"# pretrained on {cat_pre} in {time.perf_counter() - t0:.0f} s")

    rows = few_shot_curve(
        ckpt,
        cat_new,
        OUT / "runs",
        trials=(5, 10, 20, None),
        seeds=seeds,
        epochs=epochs,
        progress=False,
    )
    import pandas as pd

    table = pd.DataFrame(rows)
    table.to_csv(OUT / "few_shot.csv", index=False)
    summary = table.groupby(["mode", "trials"])["r2"].agg(["mean", "std"]).reset_index()
    print("# few-shot test R^2 (mean over seeds)")
    for _, r in summary.iterrows():
        print(
            f"few_shot_r2_{r['mode'].replace('-', '_')}_{int(r['trials'])}_trials: {r['mean']:.3f}"
        )
    _plot(summary, OUT / "few_shot.png")

    codes = {}
    for mode in ("unit-id", "scratch"):
        code = prequential_code_length(
            ckpt, cat_new, OUT / "prequential", mode=mode, n_trials=16, epochs=epochs
        )
        codes[mode] = {
            "bits": code.bits,
            "bits_per_sample": code.bits_per_sample,
            "blocks": code.blocks,
        }
        print(f"prequential_bits_per_sample_{mode.replace('-', '_')}: {code.bits_per_sample:.3f}")
    (OUT / "code_length.json").write_text(json.dumps(codes, indent=1))

    def mean(mode: str, k: int) -> float:
        sel = summary[(summary["mode"] == mode) & (summary["trials"] == k)]
        return float(sel["mean"].iloc[0]) if len(sel) else float("nan")

    print(f"# total {time.perf_counter() - t0:.0f} s; goal: unit-id(20) > scratch(20)")
    print(
        f"few_shot_r2_gain_unit_id_over_scratch_20_trials: "
        f"{mean('unit-id', 20) - mean('scratch', 20):.3f}"
    )
    print(
        f"prequential_code_ratio_scratch_over_unit_id: "
        f"{codes['scratch']['bits'] / codes['unit-id']['bits']:.3f}"
    )


def _plot(summary, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for mode, group in summary.groupby("mode"):
        ax.errorbar(
            group["trials"],
            group["mean"],
            yerr=np.nan_to_num(group["std"]),
            marker="o",
            capsize=3,
            label=mode,
        )
    ax.set_xscale("log")
    ax.set_xlabel("labelled trials of the new session")
    ax.set_ylabel("test R^2 (stitched)")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
