"""Contention benchmark: POYO training next to CPU-bound neighbours, with and without neurofm's
thread policy (:mod:`neurofm.threads`).

What it measures. Training steps/s of the tiny POYO (``models/poyo_tiny.yaml``, batch 16 of
1 s windows, 100 units at ~20 Hz, AdamW) in a worker process, for ``--seconds`` after a
warm-up, in five settings: alone; next to one plain numpy loop (one CPU-bound thread);
next to a copy of itself; next to a copy of itself and a numpy loop (two neighbours). The
worker uses the policy as training does (``ThreadPolicy.start`` then ``recheck`` after every
step); a copy of itself is the same worker, so it follows the policy too. "Default" is today's
behaviour without a policy: torch's own thread count (one per core) held fixed
(``NEUROFM_NUM_THREADS`` = the core count).

Figures (``name: value``), ratios to the policy's own solo run unless named otherwise:
``contention_solo_steps_per_s``, ``contention_solo_default_steps_per_s``,
``contention_solo_policy_vs_default`` (goal >= ~1: the policy must not slow a lone run),
``contention_one_neighbour_ratio`` (numpy loop; goal >= 0.40 on 2 cores),
``contention_one_copy_ratio``, ``contention_two_neighbours_ratio`` (goal >= 0.25), and the same
three ``..._default_ratio`` figures for today's fixed threads, against its own solo run.

Run alone on an otherwise idle machine: ``python benchmarks/contention_bench.py [--seconds S]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BATCH, UNITS, RATE_HZ, QUERIES = 16, 100, 20.0, 100


def make_batch(rng, torch, config):
    """A POYO batch of random 1 s windows, in the tokenizer's layout (start/end tokens too)."""
    n_spikes = rng.poisson(UNITS * RATE_HZ, BATCH)
    length = int(n_spikes.max()) + 2 * UNITS
    unit = np.zeros((BATCH, length), np.int64)
    times = np.zeros((BATCH, length), np.float32)
    kind = np.zeros((BATCH, length), np.int64)
    mask = np.zeros((BATCH, length), bool)
    for b, n in enumerate(n_spikes):
        u = np.concatenate([rng.integers(0, UNITS, n), np.arange(UNITS), np.arange(UNITS)])
        t = np.concatenate([rng.uniform(0, 1, n), np.zeros(UNITS), np.ones(UNITS)])
        k = np.concatenate([np.zeros(n), np.ones(UNITS), 2 * np.ones(UNITS)])
        m = len(u)
        unit[b, :m], times[b, :m], kind[b, :m], mask[b, :m] = u, t, k, True
    steps = int(round(config.window_length / config.latent_step))
    n_lat = config.num_latents_per_step
    latent_index = np.tile(np.arange(n_lat), steps)
    latent_times = np.repeat(np.arange(steps) * config.latent_step, n_lat)
    return {
        "input_unit_index": torch.from_numpy(unit),
        "input_timestamps": torch.from_numpy(times),
        "input_token_type": torch.from_numpy(kind),
        "input_mask": torch.from_numpy(mask),
        "latent_index": torch.from_numpy(np.tile(latent_index, (BATCH, 1))),
        "latent_timestamps": torch.from_numpy(np.tile(latent_times, (BATCH, 1)).astype("f4")),
        "session_index": torch.zeros(BATCH, dtype=torch.long),
        "output_timestamps": torch.from_numpy(
            np.tile(np.linspace(0, 1, QUERIES, endpoint=False), (BATCH, 1)).astype("f4")
        ),
        "target": torch.from_numpy(rng.standard_normal((BATCH, QUERIES, 2)).astype("f4")),
    }


def train_worker(seconds: float, warmup: float) -> None:
    import torch

    from neurofm.models.poyo import POYO, POYOConfig
    from neurofm.threads import ThreadPolicy

    config = POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = POYO(config, [f"u{i}" for i in range(UNITS)], ["s0"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pool = [make_batch(rng, torch, config) for _ in range(4)]
    policy = ThreadPolicy()
    policy.start()
    steps, t_start, counted_from = 0, time.perf_counter(), None
    threads_seen = []
    while True:
        batch = pool[steps % len(pool)]
        loss = ((model(**batch) - batch["target"]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        policy.recheck()
        threads_seen.append(torch.get_num_threads())
        steps += 1
        now = time.perf_counter()
        if counted_from is None and now - t_start >= warmup:
            counted_from, steps0 = now, steps
        if counted_from is not None and now - counted_from >= seconds:
            break
    rate = (steps - steps0) / (now - counted_from)
    print(json.dumps({"steps_per_s": rate, "threads_last": threads_seen[-1]}), flush=True)


def numpy_worker() -> None:
    x = np.random.default_rng(0).standard_normal(1_000_000)
    while True:  # one CPU-bound thread: elementwise numpy never uses a thread pool
        x = np.sin(x) * 1.0001


def _spawn(role: str, env: dict[str, str], seconds: float, warmup: float) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--role", role, "--seconds", str(seconds)]
    cmd += ["--warmup", str(warmup)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def scenario(neighbours: list[str], fixed: int | None, seconds: float, warmup: float) -> float:
    """Steps/s of one training worker next to ``neighbours`` ("numpy", "copy")."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("NEUROFM_NUM_THREADS", None)
    if fixed is not None:
        env["NEUROFM_NUM_THREADS"] = str(fixed)
    others = []
    for role in neighbours:  # copies run longer than the measured worker: they stay busy
        role = "train" if role == "copy" else "numpy"
        others.append(_spawn(role, env, seconds * 3, warmup))
    time.sleep(1.0 if others else 0.0)
    main = _spawn("train", env, seconds, warmup)
    out, _ = main.communicate()
    for p in others:
        p.kill()
        p.wait()
    if main.returncode:
        raise SystemExit(f"training worker failed (exit {main.returncode})")
    return json.loads(out.strip().splitlines()[-1])["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["bench", "train", "numpy"], default="bench")
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    if args.role == "train":
        return train_worker(args.seconds, args.warmup)
    if args.role == "numpy":
        return numpy_worker()

    from neurofm.threads import cpu_cores

    cores = cpu_cores()
    print(f"# {cores} cores; {args.seconds:g} s measured per run after {args.warmup:g} s")
    settings = {"": [], "one_neighbour": ["numpy"], "one_copy": ["copy"]}
    settings["two_neighbours"] = ["copy", "numpy"]
    solos: dict[str, float] = {}
    for label, fixed in (("", None), ("_default", cores)):
        rates = {
            name: scenario(n, fixed, args.seconds, args.warmup) for name, n in settings.items()
        }
        solo = solos[label] = rates.pop("")
        print(f"contention_solo{label}_steps_per_s: {solo:.2f}")
        for name, rate in rates.items():
            print(f"contention_{name}{label}_steps_per_s: {rate:.2f}")
            print(f"contention_{name}{label}_ratio: {rate / solo:.2f}")
    print(f"contention_solo_policy_vs_default: {solos[''] / solos['_default']:.2f}")


if __name__ == "__main__":
    main()
