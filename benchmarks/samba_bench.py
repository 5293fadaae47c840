"""SAMBA benchmark: training throughput and peak memory vs fMRI parcels and window length.

What it measures (every figure is printed as ``name: value``, exponents and ratios last):

Model and inputs. ``Samba`` from ``models/samba.yaml`` with ``n_channels=64`` (a common EEG
cap), three stimulus classes, and per configuration ``n_parcels`` P and ``window_trs`` W:
P in (100, 200, 400) at W = 16, and W in (8, 16, 32) at P = 200. Graphs are the top-k
(``graph_k``) correlation graphs of random (T, C) and (T, P) series (``connectivity_graph``).
Inputs are synthetic: band energies (B, C, S, levels + 1) (|N(0, 1)|, as the training data
precomputes them per run), BOLD (B, W, P) ~ N(0, 1), labels (B, W) in [-1, 3). Batch 16.

Training throughput (windows/s): full steps -- forward (``teacher_forcing=0``), the model's
loss (corr + mse + stimulus cross-entropy), backward, AdamW step (lr 3e-3, weight decay 1e-4,
the model's parameter groups) -- in train mode (dropout on), one torch thread. Each
configuration runs in its own fresh worker process (``--worker P W``): 2 warm-up steps, then 6
timed steps; this is done in 2 rounds, the second in reverse order (A..E, E..A), so a burst of
load from other tenants of a shared machine does not land on one configuration only; figures
are medians of the 12 pooled steps. The fits use CPU time (``time.process_time``), less
sensitive to time-slicing than wall-clock time; both throughputs are printed.

Peak memory. Fresh processes keep configurations from contaminating each other:
``peak_rss_mb`` is the worker's VmHWM (imports included) after the timed steps (the larger of
the two rounds); ``train_mem_mb`` is that peak minus the RSS just before the first step
(model, optimizer and inputs built), i.e. what training itself adds.

Allocator. With glibc's default malloc, tensors over its dynamic mmap threshold (at most
32 MB) are mapped and unmapped every step, so each step pays fresh zero-filled pages (printed as
``page_faults_per_step``). The fMRI GAT's per-edge temporaries, (edges + self-loops) x heads x
dim float32, cross 32 MB between 200 and 400 parcels (~39 MB at P = 400, W = 16), which makes
that stage look superlinear in its edges; ``--malloc-no-mmap`` runs the workers with glibc
tunables that serve everything from the heap and never trim it: compute only. The headline
uses the default allocator (what a training process gets).

Graph edges. The EEG GAT runs once per (window, grid step) on the channel graph and the fMRI
GAT once per (window, TR) on the parcel graph, so a batch processes
``B * (S * E_eeg + W * E_fmri)`` edges (``edge_index`` edges; GATv2 also adds one self-loop per
node, counted separately in ``edges_with_self_loops``).

Stage breakdown. In each worker, every stage's forward + backward is timed alone on leaf
inputs of its real shape (median of 2 x 3 calls): wavelet attention, EEG GAT, the channel -> parcel
mapping (a dense P x C einsum), the per-parcel HRF convolution, the fMRI GAT, the decoder (GRU
over TRs, readouts, stimulus head, loss; ``encode`` replaced by a leaf) and the AdamW step.
Shares at P = 400 and each stage's exponent vs parcels say which term dominates the growth.

Fits. Least-squares slopes in log-log space: CPU time per window vs parcels (W = 16), vs total
edges per batch (all five configurations), vs window_trs (P = 200); edges per batch vs parcels.
The issue's requirement: the cost grows no worse than the graph's edges, i.e.
``samba_time_exponent_vs_parcels <= samba_edges_exponent_vs_parcels``.

Run alone: ``.venv-bench/bin/python benchmarks/samba_bench.py [--rounds N] [--steps N]
[--reps N] [--threads N] [--malloc-no-mmap]`` (about 2-3 minutes on a 2-core CPU machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CONFIG_YAML = REPO / "models" / "samba.yaml"

N_CHANNELS = 64
BATCH = 16
CLASSES = ["a", "b", "c"]
LR = 3e-3  # neurofm.training.samba's default
WEIGHT_DECAY = 1e-4
GRAPH_T = 300  # samples of the random series the connectivity graphs are built from
PARCELS = (100, 200, 400)
WINDOWS = (8, 16, 32)
BASE_P, BASE_W = 200, 16
CONFIGS = [(p, BASE_W) for p in PARCELS] + [(BASE_P, w) for w in WINDOWS if w != BASE_W]
STAGES = ("wavelet", "eeg_gat", "mapping", "hrf", "fmri_gat", "decoder", "optimizer")
SEED = 0
# --malloc-no-mmap: glibc serves every allocation from its heap and never gives memory back, so
# the per-edge temporaries of the GATs do not cost fresh, zero-filled pages every step.
NO_MMAP_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"


def tag(p: int, w: int) -> str:
    return f"p{p}_w{w}"


def figure(name: str, value: Any, fmt: str = ".3f") -> None:
    print(f"{name}: {value:{fmt}}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def section(text: str) -> None:
    print(f"# {text}", flush=True)


def slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# ------------------------------------------------------------------------------------------------
# worker: one configuration in a fresh process
# ------------------------------------------------------------------------------------------------


def memory_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB (VmRSS, VmHWM; ru_maxrss as a fallback)."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
        return (
            int(fields["VmRSS"].split()[0]) / 1024,
            int(fields["VmHWM"].split()[0]) / 1024,
        )
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


def cpu_times(fn: Callable[[], None], reps: int, warmup: int = 1) -> list[float]:
    """CPU seconds of each of ``reps`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        c0 = time.process_time()
        fn()
        out.append(time.process_time() - c0)
    return out


def worker(p: int, w: int, steps: int, warmup: int, threads: int, reps: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    from neurofm.models.samba import Samba, SambaConfig, connectivity_graph

    rss_import, _ = memory_mb()
    base = SambaConfig.from_yaml(CONFIG_YAML)
    cfg = dataclasses.replace(
        base, n_channels=N_CHANNELS, n_parcels=p, window_trs=w, classes=list(CLASSES)
    )
    rng = np.random.default_rng(SEED)
    eeg_graph = connectivity_graph(rng.standard_normal((GRAPH_T, N_CHANNELS)), cfg.graph_k)
    fmri_graph = connectivity_graph(rng.standard_normal((GRAPH_T, p)), cfg.graph_k)
    model = Samba(cfg, eeg_graph, fmri_graph)
    model.train()
    opt = torch.optim.AdamW(model.parameter_groups(LR, WEIGHT_DECAY))
    s = cfg.geometry.n_steps
    energy = torch.randn(BATCH, N_CHANNELS, s, cfg.levels + 1).abs()
    bold = torch.randn(BATCH, w, p)
    labels = torch.randint(-1, len(CLASSES), (BATCH, w), dtype=torch.int64)

    def step() -> None:
        out = model(energy=energy, bold=bold, teacher_forcing=0.0)
        loss = model.loss(out, bold, labels)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rss_setup, _ = memory_mb()
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps
    _, peak = memory_mb()  # before the breakdown, whose leaf copies would add to it

    # ---- stage breakdown: forward + backward of each stage alone, on leaf inputs -------------
    with torch.no_grad():
        u0, alpha0 = model.wavelet(energy)  # (B, C, S, d)
        g0 = model.eeg_gat(u0.transpose(1, 2)).transpose(1, 2)
        v0 = torch.einsum("bcsd,pc->bpds", g0, model.mapping) + model.mapping_bias[..., None]
        h0 = model.hrf(v0)[..., model.readout_steps]  # (B, P, d, W)
        z0 = model.fmri_gat(h0.permute(0, 3, 1, 2))  # (B, W, P, d)

    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.detach().clone().contiguous().requires_grad_(True)

    def fwd_bwd(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            y = fn()
            y.backward(torch.ones_like(y))

        return run

    u_in, g_in, v_in, z_in = (
        leaf(u0.transpose(1, 2)),
        leaf(g0),
        leaf(v0),
        leaf(z0),
    )

    def decoder() -> torch.Tensor:
        model.encode = lambda _energy: {"features": z_in, "alpha": alpha0}  # type: ignore[method-assign]
        try:
            out = model(energy=energy, bold=bold, teacher_forcing=0.0)
        finally:
            del model.encode
        return model.loss(out, bold, labels)["loss"]

    stage_fns: dict[str, Callable[[], None]] = {
        "wavelet": fwd_bwd(lambda: model.wavelet(energy)[0]),
        "eeg_gat": fwd_bwd(lambda: model.eeg_gat(u_in)),
        "mapping": fwd_bwd(
            lambda: (
                torch.einsum("bcsd,pc->bpds", model.dropout(g_in), model.mapping)
                + model.mapping_bias[None, :, :, None]
            )
        ),
        "hrf": fwd_bwd(lambda: model.hrf(v_in)[..., model.readout_steps]),
        "fmri_gat": fwd_bwd(lambda: model.fmri_gat(z_in)),
        "decoder": fwd_bwd(decoder),
    }
    stages: dict[str, list[float]] = {}
    for name, fn in stage_fns.items():
        stages[name] = cpu_times(fn, reps)
    fwd_bwd(decoder)()  # every parameter the decoder touches has a gradient: time AdamW alone
    for prm in model.parameters():
        if prm.grad is None:
            prm.grad = torch.zeros_like(prm)
    stages["optimizer"] = cpu_times(opt.step, reps)

    e_eeg, e_fmri = eeg_graph.shape[1], fmri_graph.shape[1]
    return {
        "p": p,
        "w": w,
        "n_steps": s,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": peak,
        "faults_per_step": faults,
        "rss_import_mb": rss_import,
        "rss_setup_mb": rss_setup,
        "e_eeg": e_eeg,
        "e_fmri": e_fmri,
        "edges_per_batch": BATCH * (s * e_eeg + w * e_fmri),
        "edges_with_self_loops": BATCH * (s * (e_eeg + N_CHANNELS) + w * (e_fmri + p)),
        "eeg_edges_per_batch": BATCH * s * e_eeg,
        "fmri_edges_per_batch": BATCH * w * e_fmri,
        "n_params": sum(q.numel() for q in model.parameters()),
        "stages_cpu_s": stages,
    }


# ------------------------------------------------------------------------------------------------
# parent: one worker per configuration, then the fits
# ------------------------------------------------------------------------------------------------


def run_worker(p: int, w: int, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.malloc_no_mmap:
        env["GLIBC_TUNABLES"] = NO_MMAP_TUNABLES
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(p),
        str(w),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--reps",
        str(args.reps),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"samba_bench worker {tag(p, w)} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def pool(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's rounds -> medians of the pooled step and stage times, the largest
    peak RSS and the largest training increment."""
    r = dict(rounds[0])
    for key in ("wall_s", "cpu_s"):
        r[key] = statistics.median([t for x in rounds for t in x[key]])
    r["stages_cpu_s"] = {
        name: statistics.median([t for x in rounds for t in x["stages_cpu_s"][name]])
        for name in STAGES
    }
    r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in rounds)
    r["faults_per_step"] = statistics.median(x["faults_per_step"] for x in rounds)
    r["train_mem_mb"] = max(x["peak_rss_mb"] - x["rss_setup_mb"] for x in rounds)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=2, help="worker processes per config (order alternates)"
    )
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per worker")
    parser.add_argument("--reps", type=int, default=3, help="timed calls per stage per worker")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each worker")
    parser.add_argument(
        "--malloc-no-mmap",
        action="store_true",
        help="workers serve every allocation from glibc's heap (no per-step page faults)",
    )
    parser.add_argument("--worker", nargs=2, type=int, metavar=("P", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        p, w = args.worker
        result = worker(p, w, args.steps, args.warmup, args.threads, args.reps)
        print(json.dumps(result), flush=True)
        return

    t_start = time.perf_counter()
    section(
        f"SAMBA training, {N_CHANNELS} EEG channels, batch {BATCH}, {args.threads} thread(s), "
        f"{args.rounds} rounds of one fresh process per config, {args.steps} timed steps after "
        f"{args.warmup} warm-up each; medians of the pooled steps"
        + ("; glibc malloc without mmap" if args.malloc_no_mmap else "")
    )
    rounds: dict[tuple[int, int], list[dict[str, Any]]] = {key: [] for key in CONFIGS}
    for i in range(args.rounds):
        for key in CONFIGS if i % 2 == 0 else CONFIGS[::-1]:
            rounds[key].append(run_worker(*key, args))
    res = {key: pool(rounds[key]) for key in CONFIGS}

    section("throughput (windows/s, wall and CPU time)")
    for key, r in res.items():
        figure(f"samba_windows_per_s_{tag(*key)}", BATCH / r["wall_s"], ".1f")
    for key, r in res.items():
        figure(f"samba_windows_per_cpu_s_{tag(*key)}", BATCH / r["cpu_s"], ".1f")
    section("memory: worker peak RSS (imports included) and what training adds to the setup")
    for key, r in res.items():
        figure(f"samba_peak_rss_mb_{tag(*key)}", r["peak_rss_mb"], ".0f")
    for key, r in res.items():
        figure(f"samba_train_mem_mb_{tag(*key)}", r["train_mem_mb"], ".0f")
    for key, r in res.items():
        figure(f"samba_page_faults_per_step_{tag(*key)}", r["faults_per_step"], ".0f")
    section("graph edges per batch: EEG (B*S copies) + fMRI (B*W copies), edge_index edges")
    for key, r in res.items():
        figure(f"samba_edges_per_batch_{tag(*key)}", r["edges_per_batch"])
    for key, r in res.items():
        section(
            f"  {tag(*key)}: S={r['n_steps']} E_eeg={r['e_eeg']} E_fmri={r['e_fmri']} "
            f"eeg={r['eeg_edges_per_batch']} fmri={r['fmri_edges_per_batch']} "
            f"with self-loops={r['edges_with_self_loops']} params={r['n_params']}"
        )

    section("stage breakdown: forward+backward CPU ms per batch, each stage alone")
    for key, r in res.items():
        parts = " ".join(f"{k}={v * 1e3:.1f}" for k, v in r["stages_cpu_s"].items())
        total = sum(r["stages_cpu_s"].values())
        section(f"  {tag(*key)}: {parts} (sum {total * 1e3:.0f}, step {r['cpu_s'] * 1e3:.0f})")
    big = res[(PARCELS[-1], BASE_W)]
    total_big = sum(big["stages_cpu_s"].values())
    for name in STAGES:
        figure(
            f"samba_stage_share_{tag(PARCELS[-1], BASE_W)}_{name}",
            big["stages_cpu_s"][name] / total_big,
        )

    section(
        "exponents (log-log slopes): goal samba_time_exponent_vs_parcels <= "
        f"samba_edges_exponent_vs_parcels; elapsed {time.perf_counter() - t_start:.0f} s"
    )
    by_p = [res[(p, BASE_W)] for p in PARCELS]
    by_w = [res[(BASE_P, w)] for w in WINDOWS]
    per_window = [r["cpu_s"] / BATCH for r in res.values()]
    edges = [r["edges_per_batch"] for r in res.values()]
    for name in STAGES:
        figure(
            f"samba_stage_exponent_vs_parcels_{name}",
            slope(list(PARCELS), [r["stages_cpu_s"][name] for r in by_p]),
        )
    figure(
        "samba_mem_exponent_vs_parcels",
        slope(list(PARCELS), [r["train_mem_mb"] for r in by_p]),
    )
    figure(
        "samba_fmri_edges_exponent_vs_parcels",
        slope(list(PARCELS), [r["fmri_edges_per_batch"] for r in by_p]),
    )
    figure(
        "samba_edges_with_self_loops_exponent_vs_parcels",
        slope(list(PARCELS), [r["edges_with_self_loops"] for r in by_p]),
    )
    figure("samba_time_exponent_vs_window_trs", slope(list(WINDOWS), [r["cpu_s"] for r in by_w]))
    edges_exp = slope(list(PARCELS), [r["edges_per_batch"] for r in by_p])
    time_exp = slope(list(PARCELS), [r["cpu_s"] for r in by_p])
    figure("samba_edges_exponent_vs_parcels", edges_exp)
    figure("samba_time_exponent_vs_edges", slope(edges, per_window))
    figure("samba_time_exponent_vs_parcels", time_exp)
    figure("samba_time_over_edges_exponent_vs_parcels", time_exp / edges_exp)


if __name__ == "__main__":
    main()
