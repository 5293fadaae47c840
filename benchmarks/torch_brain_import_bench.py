"""torch_brain interop, checked against torch_brain itself (run in the benchmark venv):

    .venv-bench/bin/python benchmarks/torch_brain_import_bench.py [--config 1.3M|11.8M]
        [--batch 8] [--threads 1]

Import: a ``torch_brain.models.POYO`` of torch_brain's shipped 1.3M config (dim 64, depth 6,
2 cross / 8 self heads of 64, 16 latents per 0.125 s step; 11.8M with ``--config``), vocabularies
of 2 sessions x 100 units, random weights (default init, then every parameter perturbed so that
LayerNorms and biases matter), is saved in torch_brain's Lightning layout (``state_dict`` with
``model.`` names and the vocabularies, ``hyper_parameters["model"]``; checked to load with
torch_brain's own ``POYO.load_pretrained``), read with ``neurofm.pretrained.from_torch_brain``,
and both models decode the same batch: windows of synthetic Poisson spikes (20 Hz) tokenized by
torch_brain (``POYO.tokenize`` + ``collate``: float64 timestamps), output queries at random times.

Export: an independent neurofm POYO (``models/poyo_1.3m.yaml`` shape, same vocabularies, random
perturbed weights) is written with ``to_torch_brain``, loaded by ``POYO.load_pretrained`` and
both decode the same batch.

Printed (``name: value``): the largest absolute output differences over real output queries
(``poyo_torch_brain_import_max_abs_diff``, ``poyo_torch_brain_export_max_abs_diff``; goal
<= 1e-5), the output scale, and, for information, the import difference when the timestamps are
float32 (torch_brain then computes the rotary angles in float32).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch_brain.batching import collate, pad8, track_mask8
from torch_brain.data import ArrayDict, Data, Interval, IrregularTimeSeries
from torch_brain.models import POYO as TBPOYO

from neurofm.models.poyo import INPUT_KEYS, POYO, POYOConfig
from neurofm.pretrained.torch_brain import from_torch_brain, to_torch_brain

REPO = Path(__file__).resolve().parent.parent
# torch_brain's examples/poyo/configs/model/*.yaml (shared/reference/poyo.md section 1)
CONFIGS = {
    "1.3M": dict(
        sequence_length=1.0, latent_step=0.125, num_latents_per_step=16, dim=64, depth=6,
        dim_head=64, cross_heads=2, self_heads=8, ffn_dropout=0.2, lin_dropout=0.4,
        atn_dropout=0.2,
    ),
    "11.8M": dict(
        sequence_length=1.0, latent_step=0.125, num_latents_per_step=32, dim=128, depth=24,
        dim_head=64, cross_heads=4, self_heads=8, ffn_dropout=0.2, lin_dropout=0.4,
        atn_dropout=0.2,
    ),
}  # fmt: skip
DIM_OUT = 2
N_SESSIONS, N_UNITS, RATE_HZ, SESSION_S = 2, 100, 20.0, 60.0
SEED = 0


def figure(name: str, value: float, fmt: str = ".3g") -> None:
    print(f"{name}: {value:{fmt}}", flush=True)


def make_session(s: int, rng: np.random.Generator) -> Data:
    sid = f"sess{s}"
    n = rng.poisson(RATE_HZ * SESSION_S, N_UNITS)
    times = np.concatenate([rng.uniform(0, SESSION_S, k) for k in n])
    units = np.concatenate([np.full(k, u) for u, k in enumerate(n)])
    order = np.argsort(times)
    return Data(
        session=Data(id=sid),
        units=ArrayDict(id=np.array([f"{sid}/unit{u:03d}" for u in range(N_UNITS)])),
        spikes=IrregularTimeSeries(
            timestamps=times[order], unit_index=units[order], domain=Interval(0.0, SESSION_S)
        ),
        domain=Interval(0.0, SESSION_S),
    )


def make_batch(model: TBPOYO, sessions: list[Data], batch: int, rng: np.random.Generator) -> dict:
    items = []
    for b in range(batch):
        start = float(rng.uniform(0, SESSION_S - model.sequence_length))
        x = model.tokenize(sessions[b % len(sessions)].slice(start, start + model.sequence_length))
        out_t = np.sort(rng.uniform(0, model.sequence_length, int(rng.integers(50, 101))))
        x["output_timestamps"] = pad8(out_t)
        x["output_mask"] = track_mask8(out_t)
        items.append(x)
    return collate(items)


def perturb(model: torch.nn.Module, scale: float = 0.1) -> None:
    """Every parameter moved off its init (LayerNorms off (1, 0), biases off 0); padding rows of
    the vocabularies stay zero."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(scale * torch.randn_like(p))
            if name in ("unit_emb.weight", "session_emb.weight"):
                p[0] = 0.0


def max_abs_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float((a[mask] - b[mask]).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="1.3M")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    cfg = CONFIGS[args.config]

    sessions = [make_session(s, rng) for s in range(N_SESSIONS)]
    units = [u for s in sessions for u in s.units.id.tolist()]
    session_ids = [s.session.id for s in sessions]
    tb = TBPOYO(dim_out=DIM_OUT, **cfg)
    tb.unit_emb.initialize_vocab(units)
    tb.session_emb.initialize_vocab(session_ids)
    perturb(tb)
    tb.eval()
    batch = make_batch(tb, sessions, args.batch, rng)
    inputs = {k: batch[k] for k in INPUT_KEYS}
    mask = batch["output_mask"]
    print(
        f"# torch_brain POYO {args.config}: {sum(p.numel() for p in tb.parameters()):,} "
        f"parameters, {len(units)} units, {len(session_ids)} sessions; batch of {args.batch} "
        f"windows, {int(batch['input_mask'].sum())} input tokens, {int(mask.sum())} output "
        f"queries; torch {torch.__version__}, {args.threads} thread(s)",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        # ---- import: torch_brain -> neurofm ----------------------------------------------------
        path = Path(tmp) / "torch_brain.ckpt"
        torch.save(
            {
                "state_dict": OrderedDict(("model." + k, v) for k, v in tb.state_dict().items()),
                "hyper_parameters": {"model": dict(cfg)},
            },
            path,
        )
        with torch.no_grad():
            y_tb = tb(**inputs)
            y_tb_reloaded = TBPOYO.load_pretrained(path).eval()(**inputs)
        assert torch.equal(y_tb, y_tb_reloaded), "torch_brain's loader disagrees with the model"
        t0 = time.perf_counter()
        nf = from_torch_brain(path)
        load_s = time.perf_counter() - t0
        with torch.no_grad():
            y_nf = nf(**inputs)
            f32 = {k: v.float() if v.dtype == torch.float64 else v for k, v in inputs.items()}
            y_nf32, y_tb32 = nf(**f32), tb(**f32)
        figure("poyo_torch_brain_params", sum(p.numel() for p in nf.parameters()), "d")
        figure("poyo_torch_brain_checkpoint_mb", path.stat().st_size / 2**20, ".2f")
        figure("poyo_torch_brain_import_load_ms", load_s * 1e3, ".0f")
        figure("poyo_torch_brain_output_abs_max", float(y_tb[mask].abs().max()))
        figure(
            "poyo_torch_brain_import_max_abs_diff_float32_times", max_abs_diff(y_nf32, y_tb32, mask)
        )

        # ---- export: neurofm -> torch_brain ----------------------------------------------------
        config = POYOConfig.from_yaml(REPO / "models" / "poyo_1.3m.yaml")
        if args.config != "1.3M":
            config = POYOConfig(
                **{**config.__dict__, **{k: v for k, v in cfg.items() if k != "sequence_length"}}
            )
        torch.manual_seed(SEED + 1)
        mine = POYO(config, units, session_ids)
        perturb(mine)
        mine.eval()
        out = to_torch_brain(mine, Path(tmp) / "neurofm.ckpt")
        theirs = TBPOYO.load_pretrained(out).eval()
        assert theirs.unit_emb.vocab == tb.unit_emb.vocab, "exported vocabulary differs"
        with torch.no_grad():
            y_mine, y_theirs = mine(**inputs), theirs(**inputs)
        figure("poyo_torch_brain_export_output_abs_max", float(y_theirs[mask].abs().max()))

    import_diff = max_abs_diff(y_nf, y_tb, mask)
    export_diff = max_abs_diff(y_mine, y_theirs, mask)
    print("# same inputs, float64 timestamps, eval mode; goal: both <= 1e-05", flush=True)
    figure("poyo_torch_brain_import_max_abs_diff", import_diff, ".2e")
    figure("poyo_torch_brain_export_max_abs_diff", export_diff, ".2e")
    if max(import_diff, export_diff) > 1e-5:
        raise SystemExit("torch_brain interop: outputs differ by more than 1e-5")


if __name__ == "__main__":
    main()
