"""Make the tiny torch_brain POYO checkpoint of ``tests/fixtures/torch_brain/`` (run once, in the
benchmark venv, which has torch_brain 0.2.1 and Lightning):

    .venv-bench/bin/python benchmarks/make_torch_brain_fixture.py

What it writes, all made by torch_brain itself with fixed seeds:

* ``poyo_tiny.ckpt``: a Lightning checkpoint in the layout torch_brain's training scripts write
  (and POYO-MP ships): a ``LightningModule`` holding the POYO as ``self.model``,
  ``save_hyperparameters`` of a plain dict whose ``"model"`` entry holds the POYO keyword
  arguments, ``state_dict`` with ``model.``-prefixed names and the ``InfiniteVocabEmbedding``
  vocabularies inside. The model is tiny (dim 24, depth 2, 2 x 16-wide heads, 4 latents per
  0.25 s step, 20 units in 2 sessions), its weights random then perturbed (so that LayerNorms,
  biases and every head matter) and trained for two AdamW steps through ``Trainer.fit``; saved
  with ``weights_only=True`` (no optimizer state).
* ``poyo_tiny_io.npz``: a batch of 4 windows (2 per session) tokenized by ``POYO.tokenize`` and
  batched by ``torch_brain.batching.collate`` (float64 timestamps, as torch_brain makes them),
  output queries at random times, and ``expected``: the outputs of the checkpoint reloaded with
  ``torch_brain.models.POYO.load_pretrained``, in eval mode.

``tests/pretrained/test_torch_brain.py`` loads both in the main venv (no torch_brain there) and
requires ``neurofm.pretrained.from_torch_brain`` to reproduce ``expected`` to 1e-5.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch_brain.batching import collate, pad8, track_mask8
from torch_brain.data import ArrayDict, Data, Interval, IrregularTimeSeries
from torch_brain.models import POYO

from neurofm.models.poyo import INPUT_KEYS

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "torch_brain"
SEED = 0

TINY = dict(
    sequence_length=1.0,
    latent_step=0.25,
    num_latents_per_step=4,
    dim=24,
    depth=2,
    dim_head=16,
    cross_heads=2,
    self_heads=2,
    ffn_dropout=0.2,
    lin_dropout=0.4,
    atn_dropout=0.1,
    emb_init_scale=0.02,
    t_min=1e-4,
    t_max=2.0627,
)
DIM_OUT = 2
SESSIONS = ("monkey_a/2020-01-01", "monkey_b/2020-02-02")
UNITS_PER_SESSION = 10
SESSION_S = 20.0
RATE_HZ = 15.0


def make_session(sid: str, rng: np.random.Generator) -> Data:
    """Poisson spikes of 10 units and a 2-D velocity at 100 Hz, in torch_brain's data classes."""
    n = rng.poisson(RATE_HZ * SESSION_S, UNITS_PER_SESSION)
    times = np.concatenate([rng.uniform(0, SESSION_S, k) for k in n])
    units = np.concatenate([np.full(k, u) for u, k in enumerate(n)])
    order = np.argsort(times)
    t = np.arange(0, SESSION_S, 0.01)
    vel = np.stack([np.sin(t), np.cos(0.7 * t)], axis=1).astype(np.float32)
    return Data(
        session=Data(id=sid),
        units=ArrayDict(id=np.array([f"{sid}/unit{u:02d}" for u in range(UNITS_PER_SESSION)])),
        spikes=IrregularTimeSeries(
            timestamps=times[order], unit_index=units[order], domain=Interval(0.0, SESSION_S)
        ),
        cursor=IrregularTimeSeries(timestamps=t, vel=vel, domain=Interval(0.0, SESSION_S)),
        domain=Interval(0.0, SESSION_S),
    )


def window_batch(
    model: POYO, sessions: list[Data], windows: list[tuple[int, float]], rng: np.random.Generator
) -> dict:
    """Tokenize windows with ``POYO.tokenize``; output queries at random float64 times."""
    items = []
    for s, start in windows:
        w = sessions[s].slice(start, start + TINY["sequence_length"])
        x = model.tokenize(w)
        n_out = int(rng.integers(5, 13))
        out_t = np.sort(rng.uniform(0.0, TINY["sequence_length"], n_out))
        x["output_timestamps"] = pad8(out_t)
        x["output_mask"] = track_mask8(out_t)
        x["target"] = pad8(
            np.interp(out_t + start, w.cursor.timestamps + start, w.cursor.vel[:, 0])
        )
        items.append(x)
    return collate(items)


class TrainWrapper(L.LightningModule):
    """Like torch_brain's ``examples/poyo`` wrapper: the POYO is ``self.model``, the run's config
    (a plain dict) is saved as hyper-parameters."""

    def __init__(self, model: POYO, cfg: dict, batch: dict) -> None:
        super().__init__()
        self.model = model
        self.batch = batch
        self.save_hyperparameters(cfg)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.model(**{k: batch[k] for k in INPUT_KEYS})
        mask = batch["output_mask"]
        return ((out[mask][:, 0] - batch["target"][mask].float()) ** 2).mean()

    def train_dataloader(self) -> DataLoader:
        return DataLoader([self.batch, self.batch], batch_size=None)  # the same batch twice

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)

    sessions = [make_session(sid, rng) for sid in SESSIONS]
    model = POYO(dim_out=DIM_OUT, **TINY)
    model.unit_emb.initialize_vocab([u for s in sessions for u in s.units.id.tolist()])
    model.session_emb.initialize_vocab(list(SESSIONS))
    with torch.no_grad():  # every parameter matters: no LayerNorm left at (1, 0), no zero bias
        for name, p in model.named_parameters():
            p.add_(0.2 * torch.randn_like(p))
            if name in ("unit_emb.weight", "session_emb.weight"):
                p[0] = 0.0  # the padding row stays zero, as torch_brain keeps it

    train = window_batch(model, sessions, [(0, 1.0), (1, 3.0)], rng)
    wrapper = TrainWrapper(model, {"model": dict(TINY), "seed": SEED, "batch_size": 2}, train)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            max_steps=2,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp,
        )
        trainer.fit(wrapper)
        args.out.mkdir(parents=True, exist_ok=True)
        ckpt_path = args.out / "poyo_tiny.ckpt"
        trainer.save_checkpoint(ckpt_path, weights_only=True)

    reloaded = POYO.load_pretrained(ckpt_path).eval()  # torch_brain's own loader
    batch = window_batch(reloaded, sessions, [(0, 4.25), (1, 7.5), (0, 12.0), (1, 17.3)], rng)
    with torch.no_grad():
        expected = reloaded(**{k: batch[k] for k in INPUT_KEYS})
    arrays = {k: batch[k].numpy() for k in INPUT_KEYS}
    arrays["output_mask"] = batch["output_mask"].numpy()
    arrays["expected"] = expected.numpy()
    np.savez_compressed(args.out / "poyo_tiny_io.npz", **arrays)
    n_params = sum(p.numel() for p in reloaded.parameters())
    print(
        json.dumps(
            {
                "checkpoint": str(ckpt_path.relative_to(REPO)),
                "bytes": ckpt_path.stat().st_size,
                "params": n_params,
                "shapes": {k: list(v.shape) for k, v in arrays.items()},
                "dtypes": {k: str(v.dtype) for k, v in arrays.items()},
                "expected_abs_max": float(np.abs(arrays["expected"]).max()),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
