"""GPU check: POYO and SAMBA on one CUDA GPU, unattended, in under 8 minutes.

Prints ``name: value`` lines:

- ``gpu_poyo_<size>_train_windows_per_s`` / ``gpu_poyo_<size>_infer_windows_per_s`` for the
  1.3M and 11.8M configs (``models/poyo_1.3m.yaml``, ``models/poyo_11.8m.yaml``): full AdamW
  steps under bf16 autocast, attention on ``scaled_dot_product_attention`` (neurofm's reference
  path on CUDA), batch 64 of real 1 s windows from a synthetic reaching catalog (200 units);
  ``..._peak_mem_mb`` (``torch.cuda.max_memory_allocated`` of the training phase).
- The same for torch_brain's POYO with the same config on the same batches, and
  ``gpu_poyo_<size>_train_speedup_vs_torch_brain`` (when torch_brain is installed, as in
  ``.venv-bench``; skipped with a line saying so otherwise).
- ``gpu_loader_windows_per_s_workers_<n>`` for 0/2/4 DataLoader workers: neurofm's training
  loader (sampler -> window -> tokenize -> collate), CPU side only, against
  ``gpu_poyo_1.3m_train_windows_per_s``: ``gpu_loader_headroom_workers_<n>`` > 1 means the
  loader keeps the GPU busy.
- ``gpu_samba_steps_per_s``: SAMBA (``models/samba.yaml``) training steps on a synthetic
  EEG-fMRI pair, bf16 autocast.

Where no CUDA device exists it prints ``gpu_available: 0`` and why, and exits 0 (so ``make
bench`` runs everywhere). Run: ``python benchmarks/gpu_check.py [--seconds S]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from neurofm.models.poyo import INPUT_KEYS

REPO = Path(__file__).resolve().parents[1]
BATCH = 64


def figure(name: str, value: float, fmt: str = ".1f") -> None:
    print(f"{name}: {value:{fmt}}", flush=True)


def make_catalog(root: Path) -> Path:
    """Two synthetic reaching sessions of 200 units, ingested with the demo's card."""
    from neurofm.pipeline import ingest
    from neurofm.specs import load_card
    from neurofm.synthetic import generate_reaching_dataset

    generate_reaching_dataset(
        root / "raw", n_subjects=1, n_sessions=2, n_trials=40, n_units_range=(200, 200),
        progress=False,
    )  # fmt: skip
    card = load_card(REPO / "datasets" / "synthetic_reaching.yaml")
    assert ingest(root / "raw", root / "catalog", card=card, progress=False).ok
    return root / "catalog"


def data_module(catalog: Path, config_yaml: Path, workers: int) -> Any:
    from neurofm.data import Catalog
    from neurofm.models.poyo import POYO, POYOConfig
    from neurofm.training.datasets import split_domains_of
    from neurofm.training.poyo import POYODataModule, TrainConfig, catalog_vocab, fit_scaler

    cat = Catalog(catalog)
    units, sessions = catalog_vocab(cat, cat.ids)
    model = POYO(POYOConfig.from_yaml(config_yaml), units, sessions)
    cfg = TrainConfig(batch_size=BATCH, num_workers=workers)
    scaler = fit_scaler(cat, cat.ids, cfg.target, split_domains_of(cat, "train"))
    return POYODataModule(cat, model, scaler, cfg)


def loader_rate(dm: Any, seconds: float) -> float:
    """Windows/s the training loader delivers (first batch excluded: worker start-up)."""
    it = iter(dm.train_dataloader())
    next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            continue
        n += int(batch["session_index"].shape[0])
    return n / (time.perf_counter() - t0)


def batches(dm: Any, n: int, device: Any) -> list[dict[str, Any]]:
    out = []
    for batch in dm.train_dataloader():
        b = {k: batch[k].to(device) for k in INPUT_KEYS}
        b["target"] = batch["output_values"].to(device)
        b["weights"] = (batch["output_weights"] * batch["output_mask"]).to(device)
        out.append(b)
        if len(out) == n:
            return out
    return out


def torch_brain_model(config_yaml: Path, units: list[str], sessions: list[str]) -> Any:
    from torch_brain.models import POYO as TBPOYO

    from neurofm.models.poyo import POYOConfig

    c = POYOConfig.from_yaml(config_yaml)
    model = TBPOYO(
        sequence_length=c.window_length,
        latent_step=c.latent_step,
        num_latents_per_step=c.num_latents_per_step,
        dim=c.dim,
        depth=c.depth,
        dim_head=c.dim_head,
        cross_heads=c.cross_heads,
        self_heads=c.self_heads,
        ffn_dropout=c.ffn_dropout,
        lin_dropout=c.lin_dropout,
        atn_dropout=c.atn_dropout,
        dim_out=c.dim_out,
    )
    model.unit_emb.initialize_vocab(units)
    model.session_emb.initialize_vocab(sessions)
    return model


def throughput(model: Any, pool: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    """Training and inference windows/s under bf16 autocast, and training's peak memory."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    cuda = pool[0]["target"].is_cuda
    autocast = torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step(i: int) -> None:
        b = pool[i % len(pool)]
        with autocast:
            pred = model(**{k: b[k] for k in INPUT_KEYS}).float()
        err = ((pred - b["target"]) ** 2).mean(-1)
        loss = (err * b["weights"]).sum() / b["weights"].sum().clamp_min(1e-8)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn: Any) -> float:
        for i in range(3):  # warm-up: kernels, allocator, AdamW state
            fn(i)
        sync()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn(n)
            n += 1
            if n % 10 == 0:
                sync()
        sync()
        return n * BATCH / (time.perf_counter() - t0)

    model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    train = timed(step)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    model.eval()

    def infer(i: int) -> None:
        b = pool[i % len(pool)]
        with torch.no_grad(), autocast:
            model(**{k: b[k] for k in INPUT_KEYS})

    return {"train": train, "infer": timed(infer), "peak_mb": peak}


def samba_rate(root: Path, accelerator: str) -> float:
    """SAMBA training steps/s (Lightning, bf16 mixed) on a small synthetic EEG-fMRI dataset."""
    from neurofm.models.samba import SambaConfig
    from neurofm.pipeline import ingest
    from neurofm.specs import load_card
    from neurofm.synthetic import generate_eeg_fmri_dataset
    from neurofm.training.samba import SambaTrainConfig, train_samba

    generate_eeg_fmri_dataset(root / "eeg_raw", n_subjects=2, progress=False)
    card = load_card(REPO / "datasets" / "synthetic_eeg_fmri.yaml")
    assert ingest(root / "eeg_raw", root / "eeg_catalog", card=card, progress=False).ok
    steps = 200
    t0 = time.perf_counter()
    train_samba(
        root / "eeg_catalog",
        SambaConfig.from_yaml(REPO / "models" / "samba.yaml"),
        SambaTrainConfig(epochs=1000),
        root / "samba_run",
        progress=False,
        max_steps=steps,
        accelerator=accelerator,
        precision="bf16-mixed" if accelerator == "gpu" else "32-true",
    )
    return steps / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per measurement")
    parser.add_argument(
        "--cpu-dry-run", action="store_true", help="exercise every step on the CPU (no figures)"
    )
    args = parser.parse_args()
    import torch

    global BATCH
    if args.cpu_dry_run:  # small batches: the point is that every step runs, not its speed
        BATCH = 4

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print(
            f"# gpu_check: skipped: no CUDA device (torch {torch.__version__}, "
            f"torch.cuda.is_available() is False); run it on a GPU machine"
        )
        figure("gpu_available", 0, "d")
        return 0
    device = torch.device("cpu" if args.cpu_dry_run else "cuda")
    if device.type == "cuda":
        figure("gpu_available", 1, "d")
        print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    else:
        print("# CPU dry run: the figures below are not GPU figures")
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        import torch_brain  # noqa: F401

        have_tb = True
    except ImportError:
        have_tb = False
        print("# torch_brain not installed: its columns are skipped (use .venv-bench)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        catalog = make_catalog(root)
        for size in ("1.3m", "11.8m"):
            yaml = REPO / "models" / f"poyo_{size}.yaml"
            dm = data_module(catalog, yaml, workers=0)
            pool = batches(dm, 8, device)
            torch.manual_seed(0)
            ours = throughput(dm.model.to(device), pool, args.seconds)
            for key, fmt in (("train", ".1f"), ("infer", ".1f"), ("peak_mb", ".0f")):
                suffix = "peak_mem_mb" if key == "peak_mb" else f"{key}_windows_per_s"
                figure(f"gpu_poyo_{size}_{suffix}", ours[key], fmt)
            if size == "1.3m":
                consumed = ours["train"]
            if have_tb:
                units, sessions = dm.model.unit_emb.vocab, dm.model.session_emb.vocab
                tb = torch_brain_model(yaml, list(units), list(sessions)).to(device)
                theirs = throughput(tb, pool, args.seconds)
                figure(f"gpu_torch_brain_poyo_{size}_train_windows_per_s", theirs["train"])
                figure(f"gpu_torch_brain_poyo_{size}_infer_windows_per_s", theirs["infer"])
                figure(f"gpu_torch_brain_poyo_{size}_peak_mem_mb", theirs["peak_mb"], ".0f")
                figure(
                    f"gpu_poyo_{size}_train_speedup_vs_torch_brain",
                    ours["train"] / theirs["train"],
                    ".2f",
                )
                figure(
                    f"gpu_poyo_{size}_infer_speedup_vs_torch_brain",
                    ours["infer"] / theirs["infer"],
                    ".2f",
                )
            del dm
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for workers in (0, 2, 4):
            dm = data_module(catalog, REPO / "models" / "poyo_1.3m.yaml", workers)
            rate = loader_rate(dm, args.seconds / 2)
            figure(f"gpu_loader_windows_per_s_workers_{workers}", rate)
            figure(f"gpu_loader_headroom_workers_{workers}", rate / consumed, ".2f")
        try:
            accel = "gpu" if device.type == "cuda" else "cpu"
            figure("gpu_samba_steps_per_s", samba_rate(root, accel))
        except Exception as exc:  # the last line: report it, keep the figures above
            print(f"# SAMBA not measured: {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
