"""POYO benchmark: neurofm's POYO against torch_brain's, same config, same windows, same run.

What it measures (every figure is printed as ``name: value``, ratios last):

Data. Two synthetic sessions of 100 units (Poisson, rates uniform in 15-25 Hz, ~20 Hz mean) and a
2-D hand velocity at 100 Hz, 10 minutes each, drawn once with numpy and written in both
libraries' formats (``Recording.save``; ``Data.to_hdf5``). Both libraries read the *same* 1 s
windows lazily from their file (neurofm: ``Recording.open(...).window(a, a + 1)``;
torch_brain: ``Data.from_hdf5(lazy=True).slice(a, a + 1)``, without the Dataset's deep copy) and
tokenize them their own way (neurofm: ``SpikeTokenizer`` + ``collate``; torch_brain:
``model.tokenize`` + ``pad8`` outputs + ``collate``, as in shared/reference/poyo.md section 11).

Models. neurofm ``POYO`` from ``models/poyo_1.3m.yaml`` and torch_brain ``POYO(dim_out=2, **1.3M
config)`` with the same vocabularies (the same 200 unit keys and 2 session keys, in the same
order); both must have 1,267,074 parameters. Before timing anything, equal work is checked: the
same input tokens per window (spikes + a start and an end token per unit; checked against the
spike count of the window), the same padded batch length, 128 latents, the same output queries;
and the two models compute the same function: neurofm's weights are copied into torch_brain's
model (rotary feature pairs permuted: neurofm rotates feature i with i + 16, torch_brain 2i with
2i + 1) and the eval-mode outputs are compared on real windows.

Training throughput (windows/s), batch 32: full steps -- forward, weighted MSE, backward, AdamW
step (lr 1e-3, weight decay 1e-4, one parameter group, PyTorch's default implementation) -- in
train mode, i.e. with the configured dropouts (ffn 0.2, lin 0.4, attention 0.2). Steps cycle
through a FIXED POOL of pre-tokenized batches (the same windows for both libraries), so the
figure is the model's; tokenization is measured separately. Dropout masks are seeded per step
identically in both processes. The first step of each library is a warm-up (AdamW state,
allocator) and not counted. Inference throughput: the same batches, ``model.eval()`` and
``torch.no_grad()``.

Tokenize + collate (neurofm): a batch of 32 fresh random windows read lazily from the saved
Recording, tokenized and collated, timed alone; ``poyo_tokenize_share_of_step`` is its median
over the median training step. Goal < 0.10. Secondary: the same with the training recipe's unit
dropout (30, 100, 300), and torch_brain's lazy slice + tokenize + collate of the same windows.

Fairness on a shared machine. Each library runs in its own worker process (so each has a clean
peak RSS: ``VmHWM`` of the process, imports included; the RSS after imports is printed too),
with the same ``torch.set_num_threads`` (default 1: on this 2-core machine shared with other
processes, 2 OpenMP threads spin against the other tenants and were measured up to 14x slower
and far noisier; ``--threads 2`` is there for a quiet machine). The parent process tells the
workers in turn what to do -- A, B, B, A, A, B... -- so only one computes at a time and a burst
of background load hits both alike; figures are medians. Wall-clock figures are the headline;
CPU-time (``time.process_time``) figures, less sensitive to time-slicing by other tenants, are
printed too.

Allocator. With glibc's default malloc, tensors over its (dynamic, <= 32 MB) mmap threshold --
torch_brain's encoder attention matrices are 32 x 2 x 128 x ~2300 floats, ~75 MB -- are mapped
and unmapped every step, so every step pays fresh zero-filled pages; how many depends on each
process's allocation history (torch_brain: 55k-110k page faults per step measured; neurofm,
whose CPU attention works a few windows at a time, ~3k). The headline figures use the default
allocator (what a user's training process gets); page faults and system time per step are
printed. ``--malloc-no-mmap`` runs both workers with glibc tunables that serve everything from
the heap and never trim it: compute only (it changed neurofm's speedup by less than the noise
when measured).

``--profile`` adds a torch.profiler table (top ops by self CPU time) of one training step per
library and a per-block breakdown of the training forward pass.

``--size 11.8m``: the same measurements on torch_brain's 11.8M config (POYO-mp, POYO-1; neurofm
``models/poyo_11.8m.yaml``, 11,743,490 parameters, 256 latents), figures named ``poyo_11.8m_*``.

Run alone: ``.venv-bench/bin/python benchmarks/poyo_bench.py [--quick] [--size 11.8m] [--threads N]
[--profile] [--malloc-no-mmap] [--device cuda]`` (``--device cuda`` exists for a GPU machine;
not tried on one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCH_OUT = REPO / "bench-output"
CONFIG_YAML = REPO / "models" / "poyo_1.3m.yaml"

# torch_brain's examples/poyo/configs/model/poyo_1.3M.yaml (shared/reference/poyo.md section 1).
TB_CONFIG: dict[str, Any] = dict(
    sequence_length=1.0,
    latent_step=0.125,
    num_latents_per_step=16,
    dim=64,
    depth=6,
    dim_head=64,
    cross_heads=2,
    self_heads=8,
    ffn_dropout=0.2,
    lin_dropout=0.4,
    atn_dropout=0.2,
)
EXPECTED_PARAMS = 1_267_074
LATENTS = 128
#: Figure names start with this (``--size 11.8m``: ``poyo_11.8m_``).
PREFIX = "poyo_"

# --size 11.8m: torch_brain's examples/poyo/configs/model/poyo_11.8M.yaml (POYO-mp, POYO-1)
# against models/poyo_11.8m.yaml, measured the same way.
SIZES: dict[str, dict[str, Any]] = {
    "1.3m": dict(
        CONFIG_YAML=CONFIG_YAML, TB_CONFIG=TB_CONFIG, EXPECTED_PARAMS=EXPECTED_PARAMS, LATENTS=128
    ),
    "11.8m": dict(
        CONFIG_YAML=REPO / "models" / "poyo_11.8m.yaml",
        TB_CONFIG={
            **TB_CONFIG,
            "dim": 128,
            "depth": 24,
            "cross_heads": 4,
            "num_latents_per_step": 32,
        },
        EXPECTED_PARAMS=11_743_490,
        LATENTS=256,
    ),
}


def select_size(size: str) -> None:
    """Point the module's config globals at one of :data:`SIZES` (parent and workers alike)."""
    global PREFIX
    globals().update(SIZES[size])
    PREFIX = "poyo_" if size == "1.3m" else f"poyo_{size}_"


N_SESSIONS = 2
N_UNITS = 100
RATE_RANGE_HZ = (15.0, 25.0)
VEL_RATE_HZ = 100.0
SESSION_S = 600.0
WINDOW_S = 1.0
BATCH = 32
LR = 1e-3
WEIGHT_DECAY = 1e-4
UNIT_DROPOUT = (30, 100, 300)  # neurofm's TrainConfig default
SEED = 0
# --malloc-no-mmap: glibc serves every allocation from its heap and never gives memory back, so
# the big attention temporaries do not cost fresh, zero-filled pages (page faults) every step.
NO_MMAP_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"

LIBS = ("neurofm", "torch_brain")
# neurofm.models.poyo.INPUT_KEYS, written out rather than imported: this module is also the
# torch_brain worker, whose import-time and peak RSS figures must not include neurofm.
MODEL_KEYS = (
    "input_unit_index",
    "input_timestamps",
    "input_token_type",
    "input_mask",
    "latent_index",
    "latent_timestamps",
    "session_index",
    "output_timestamps",
)


def session_id(s: int) -> str:
    return f"sess{s}"


def unit_id(u: int) -> str:
    return f"unit{u:03d}"


def vocabularies() -> tuple[list[str], list[str]]:
    """The same unit and session keys, in the same order, for both models."""
    units = [f"{session_id(s)}/{unit_id(u)}" for s in range(N_SESSIONS) for u in range(N_UNITS)]
    return units, [session_id(s) for s in range(N_SESSIONS)]


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------


def section(text: str) -> None:
    print(f"# {text}", flush=True)


def figure(name: str, value: float, fmt: str = ".2f") -> None:
    name = PREFIX + name.removeprefix("poyo_")
    print(f"{name}: {value:{fmt}}", flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process: VmHWM (this exec's own address space)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# ------------------------------------------------------------------------------------------------
# synthetic data, drawn once, written in both formats
# ------------------------------------------------------------------------------------------------


def make_session(seed: int) -> dict[str, np.ndarray]:
    """Independent Poisson units drawn as one merged process (sorted by construction)."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(*RATE_RANGE_HZ, N_UNITS)
    total = float(rates.sum())
    expected = total * SESSION_S
    times = np.cumsum(rng.exponential(1.0 / total, int(expected + 8 * np.sqrt(expected) + 100)))
    n = int(np.searchsorted(times, SESSION_S, side="left"))
    unit_index = rng.choice(N_UNITS, size=n, p=rates / total).astype(np.int64)
    t = np.arange(int(round(SESSION_S * VEL_RATE_HZ))) / VEL_RATE_HZ
    vel = np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.3 * t)], axis=1)
    vel = (vel + 0.1 * rng.standard_normal(vel.shape)).astype(np.float32)
    return {"timestamps": times[:n], "unit_index": unit_index, "vel": vel}


def write_files(sessions: list[dict[str, np.ndarray]], data_dir: Path) -> None:
    import h5py
    from torch_brain.data import ArrayDict, Data, Interval, IrregularTimeSeries, RegularTimeSeries

    from neurofm.data import Recording, RegularSeries, Spikes

    (data_dir / "neurofm").mkdir(parents=True)
    (data_dir / "torch_brain").mkdir(parents=True)
    for s, sess in enumerate(sessions):
        sid = session_id(s)
        Recording(
            sid,
            {
                "spikes": Spikes(
                    sess["timestamps"], sess["unit_index"], [unit_id(u) for u in range(N_UNITS)]
                ),
                "hand_vel": RegularSeries(sess["vel"], VEL_RATE_HZ, 0.0, ["vx", "vy"]),
            },
            duration=SESSION_S,
        ).save(data_dir / "neurofm" / f"{sid}.h5")
        data = Data(
            session=Data(id=sid),
            units=ArrayDict(id=np.array([f"{sid}/{unit_id(u)}" for u in range(N_UNITS)])),
            spikes=IrregularTimeSeries(
                timestamps=sess["timestamps"], unit_index=sess["unit_index"], domain="auto"
            ),
            hand_vel=RegularTimeSeries(
                sampling_rate=VEL_RATE_HZ, vel=sess["vel"], domain_start=0.0
            ),
            domain=Interval(0.0, SESSION_S),
        )
        with h5py.File(data_dir / "torch_brain" / f"{sid}.h5", "w") as f:
            data.to_hdf5(f)


def draw_windows(rng: np.random.Generator, n_batches: int) -> list[list[tuple[int, float]]]:
    """Batches of (session, start): sessions alternate; starts on a 1 ms grid + 0.5 ms, so no
    100 Hz sample sits on a window edge (both libraries then agree on the samples trivially)."""
    batches = []
    for _ in range(n_batches):
        ms = rng.integers(0, int((SESSION_S - WINDOW_S) * 1000) - 1, BATCH)
        batches.append([(b % N_SESSIONS, float(m) / 1000 + 0.0005) for b, m in enumerate(ms)])
    return batches


def spikes_in(session: dict[str, np.ndarray], a: float) -> int:
    lo, hi = np.searchsorted(session["timestamps"], [a, a + WINDOW_S], side="left")
    return int(hi - lo)


# ------------------------------------------------------------------------------------------------
# worker side: one library per process
# ------------------------------------------------------------------------------------------------


class Runner:
    """Model, data and timed operations of one library (subclasses: how to build and tokenize)."""

    lib = ""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model: Any = None
        self.pool: list[dict[str, Any]] = []

    # ---- subclass API ------------------------------------------------------------------------
    def build_model(self, units: list[str], sessions: list[str]) -> Any:
        raise NotImplementedError

    def open_data(self, data_dir: Path) -> None:
        raise NotImplementedError

    def make_batch(self, windows: list[tuple[int, float]], unit_dropout: bool = False) -> dict:
        """Model inputs (MODEL_KEYS) plus ``target`` (B, Q, 2) and ``weights`` (B, Q)."""
        raise NotImplementedError

    # ---- helpers -----------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.device.type == "cpu":
            return batch
        return {k: v.to(self.device) for k, v in batch.items()}

    def _loss(self, pred: Any, batch: dict[str, Any]) -> Any:
        # neurofm's training loss (weighted MSE over real output samples), for both libraries.
        w = batch["weights"]
        err = ((pred - batch["target"]) ** 2).mean(dim=-1)
        return (err * w).sum() / w.sum().clamp_min(1e-8)

    # ---- commands ----------------------------------------------------------------------------
    def setup(self, data_dir: str, pool: list) -> dict[str, Any]:
        torch = self.torch
        units, sessions = vocabularies()
        torch.manual_seed(SEED)
        self.model = self.build_model(units, sessions).to(self.device)
        self.open_data(Path(data_dir))
        self.pool = [self._to_device(self.make_batch([tuple(w) for w in ws])) for ws in pool]
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        first = self.pool[0]
        return {
            "params": sum(p.numel() for p in self.model.parameters()),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "tokens_per_window": [b["input_mask"].sum(1).tolist() for b in self.pool],
            "padded_tokens": [int(b["input_mask"].shape[1]) for b in self.pool],
            "latents": int(first["latent_index"].shape[1]),
            "outputs_per_window": [b["weights"].gt(0).sum(1).tolist() for b in self.pool],
            "padded_outputs": [int(b["output_timestamps"].shape[1]) for b in self.pool],
            "rss_mb": rss_mb(),
        }

    def train(self, step: int) -> dict[str, float]:
        torch, model = self.torch, self.model
        batch = self.pool[step % len(self.pool)]
        inputs = {k: batch[k] for k in MODEL_KEYS}
        model.train()
        torch.manual_seed(SEED * 1_000_003 + step)  # same dropout stream in both processes
        self._sync()
        u0 = resource.getrusage(resource.RUSAGE_SELF)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = self._loss(model(**inputs), batch)
        self._sync()
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self._sync()
        t2 = time.perf_counter()
        self.opt.step()
        self._sync()
        t3, c3 = time.perf_counter(), time.process_time()
        u3 = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "wall": t3 - t0,
            "cpu": c3 - c0,
            "sys": u3.ru_stime - u0.ru_stime,
            "faults": u3.ru_minflt - u0.ru_minflt,
            "fwd": t1 - t0,
            "bwd": t2 - t1,
            "opt": t3 - t2,
            "loss": loss.item(),
        }

    def infer(self, step: int) -> dict[str, float]:
        torch, model = self.torch, self.model
        batch = self.pool[step % len(self.pool)]
        inputs = {k: batch[k] for k in MODEL_KEYS}
        model.eval()
        with torch.no_grad():
            self._sync()
            u0 = resource.getrusage(resource.RUSAGE_SELF)
            t0, c0 = time.perf_counter(), time.process_time()
            model(**inputs)
            self._sync()
            t1, c1 = time.perf_counter(), time.process_time()
            u1 = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "wall": t1 - t0,
            "cpu": c1 - c0,
            "sys": u1.ru_stime - u0.ru_stime,
            "faults": u1.ru_minflt - u0.ru_minflt,
        }

    def tokenize(self, windows: list, unit_dropout: bool = False) -> dict[str, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        self.make_batch([tuple(w) for w in windows], unit_dropout)
        return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}

    def profile(self, step: int, rows: int) -> dict[str, Any]:
        """Per-block forward times of a training step, and a profiler table of a whole step."""
        from torch.profiler import ProfilerActivity, profile

        torch, model = self.torch, self.model
        blocks: dict[str, float] = {}
        starts: dict[int, float] = {}
        labelled = [("encoder cross-attn", model.enc_atn), ("encoder ffn", model.enc_ffn)]
        for attn, ffn in model.proc_layers:
            depth = len(model.proc_layers)
            labelled += [
                (f"processor self-attn (x{depth})", attn),
                (f"processor ffn (x{depth})", ffn),
            ]
        labelled += [("decoder cross-attn", model.dec_atn), ("decoder ffn", model.dec_ffn)]
        handles = []
        for label, module in labelled:

            def pre(mod: Any, args: Any, key: int = id(module)) -> None:
                self._sync()
                starts[key] = time.perf_counter()

            def post(mod: Any, args: Any, out: Any, key: int = id(module), lab: str = label):
                self._sync()
                blocks[lab] = blocks.get(lab, 0.0) + time.perf_counter() - starts[key]

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        batch = self.pool[step % len(self.pool)]
        inputs = {k: batch[k] for k in MODEL_KEYS}
        model.train()
        torch.manual_seed(step)
        self._sync()
        t0 = time.perf_counter()
        loss = self._loss(model(**inputs), batch)
        self._sync()
        total_fwd = time.perf_counter() - t0
        for h in handles:
            h.remove()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        blocks["embeddings, rotary, readout, loss (rest)"] = total_fwd - sum(blocks.values())
        blocks["forward total"] = total_fwd

        activities = [ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            torch.manual_seed(step)
            loss = self._loss(model(**inputs), batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self._sync()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
        return {"blocks_ms": {k: v * 1e3 for k, v in blocks.items()}, "table": table}


class NeurofmRunner(Runner):
    lib = "neurofm"

    def build_model(self, units: list[str], sessions: list[str]) -> Any:
        from neurofm.models.poyo import POYO, POYOConfig

        self.config = POYOConfig.from_yaml(CONFIG_YAML)
        return POYO(self.config, units, sessions)

    def open_data(self, data_dir: Path) -> None:
        from neurofm.data import Recording
        from neurofm.tokenizers.spikes import SpikeTokenizer

        self.recs = [
            Recording.open(data_dir / "neurofm" / f"{session_id(s)}.h5") for s in range(N_SESSIONS)
        ]
        c, model = self.config, self.model
        common = dict(
            unit_index=model.unit_emb.index,
            session_index=model.session_emb.index,
            window_length=c.window_length,
            latent_step=c.latent_step,
            num_latents_per_step=c.num_latents_per_step,
            target="hand_vel",
        )
        self.tokenizer = SpikeTokenizer(**common)
        self.tokenizer_dropout = SpikeTokenizer(**common, unit_dropout=UNIT_DROPOUT, seed=SEED)

    def make_batch(self, windows: list[tuple[int, float]], unit_dropout: bool = False) -> dict:
        from neurofm.tokenizers.spikes import collate

        tok = self.tokenizer_dropout if unit_dropout else self.tokenizer
        batch = collate([tok(self.recs[s].window(a, a + WINDOW_S)) for s, a in windows])
        out = {k: batch[k] for k in MODEL_KEYS}
        out["target"] = batch["output_values"]
        out["weights"] = batch["output_weights"] * batch["output_mask"]
        return out


class TorchBrainRunner(Runner):
    lib = "torch_brain"

    def build_model(self, units: list[str], sessions: list[str]) -> Any:
        from torch_brain.models import POYO

        model = POYO(dim_out=2, **TB_CONFIG)
        model.unit_emb.initialize_vocab(units)
        model.session_emb.initialize_vocab(sessions)
        return model

    def open_data(self, data_dir: Path) -> None:
        import h5py
        from torch_brain.data import Data

        self.files = [
            h5py.File(data_dir / "torch_brain" / f"{session_id(s)}.h5", "r")
            for s in range(N_SESSIONS)
        ]
        self.data = [Data.from_hdf5(f, lazy=True) for f in self.files]

    def make_batch(self, windows: list[tuple[int, float]], unit_dropout: bool = False) -> dict:
        from torch_brain.batching import collate, pad8

        if unit_dropout:
            raise ValueError("unit dropout is only measured for neurofm")
        items = []
        for s, a in windows:
            w = self.data[s].slice(a, a + WINDOW_S)  # lazy read, origin reset to the window
            x = self.model.tokenize(w)
            x["output_timestamps"] = pad8(w.hand_vel.timestamps)
            x["output_mask"] = pad8(np.ones(len(w.hand_vel), dtype=bool))
            x["target"] = pad8(w.hand_vel.vel)
            items.append(x)
        batch = collate(items)
        out = {k: batch[k] for k in MODEL_KEYS}
        out["target"] = batch["target"]
        out["weights"] = batch["output_mask"].float()
        return out


def worker_main(lib: str, threads: int, device: str) -> None:
    """Serve the parent's commands, one JSON line in, one JSON line out."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    runner: Runner = NeurofmRunner(device) if lib == "neurofm" else TorchBrainRunner(device)
    if lib == "neurofm":
        import neurofm.models.poyo  # noqa: F401  (import cost outside the timed commands)
    else:
        import torch_brain.models  # noqa: F401
    proto.write(json.dumps({"rss_mb": rss_mb()}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        try:
            if op == "exit":
                reply: dict[str, Any] = {"peak_rss_mb": peak_rss_mb()}
                if runner.device.type == "cuda":
                    reply["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
            else:
                reply = getattr(runner, op)(**cmd)
        except Exception:
            reply = {"error": traceback.format_exc()}
        proto.write(json.dumps(reply) + "\n")
        if op == "exit":
            break


# ------------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------------


class Worker:
    def __init__(
        self, lib: str, threads: int, device: str, no_mmap: bool = False, size: str = "1.3m"
    ) -> None:
        self.lib = lib
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if no_mmap:
            env["GLIBC_TUNABLES"] = NO_MMAP_TUNABLES
        env.setdefault("KINETO_LOG_LEVEL", "99")  # the profiler's start/stop lines on stderr
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", lib]
            + ["--threads", str(threads), "--device", device, "--size", size],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.lib} worker died (exit code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise SystemExit(f"{self.lib} worker failed:\n{reply['error']}")
        return reply

    def call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> dict[str, Any]:
        reply = self.call("exit")
        self.proc.wait()
        return reply


def interleaved(
    workers: dict[str, Worker], n: int, op: str, make_kwargs: Any
) -> dict[str, list[dict[str, float]]]:
    """Run ``op`` n times per library, alternating A B, B A, A B... Returns replies per lib."""
    out: dict[str, list[dict[str, float]]] = {lib: [] for lib in workers}
    names = list(workers)
    for i in range(n):
        order = names if i % 2 == 0 else names[::-1]
        for lib in order:
            out[lib].append(workers[lib].call(op, **make_kwargs(i, lib)))
    return out


def median(replies: list[dict[str, float]], key: str = "wall") -> float:
    return statistics.median(r[key] for r in replies)


def check_same_function(
    sessions: list[dict[str, np.ndarray]], data_dir: Path, windows: list, threads: int
) -> float:
    """Copy neurofm's weights into torch_brain's POYO; eval outputs on real windows must agree.

    Run in the parent (not in the timed workers). Returns the largest absolute difference.
    """
    import torch

    torch.set_num_threads(threads)
    nf, tb = NeurofmRunner("cpu"), TorchBrainRunner("cpu")
    units, sess = vocabularies()
    torch.manual_seed(1)
    nf.model, tb.model = nf.build_model(units, sess), tb.build_model(units, sess)
    c = nf.config
    ours = {
        "sequence_length": c.window_length,
        **{k: getattr(c, k) for k in TB_CONFIG if k != "sequence_length"},
    }
    assert ours == TB_CONFIG, f"{CONFIG_YAML.name} differs from torch_brain's config: {ours}"
    assert (c.t_min, c.t_max) == (1e-4, 2.0627), (c.t_min, c.t_max)

    # neurofm rotates feature i with i + r (r = 16 pairs), torch_brain 2i with 2i + 1.
    dh, r = c.dim_head, c.dim_head // 4
    perm = torch.arange(dh)
    perm[0 : 2 * r : 2] = torch.arange(r)
    perm[1 : 2 * r : 2] = torch.arange(r, 2 * r)

    def rows(w: torch.Tensor) -> torch.Tensor:  # (blocks * heads * dh, dim)
        return w.view(-1, dh, w.shape[-1])[:, perm].reshape(w.shape)

    def cols(w: torch.Tensor) -> torch.Tensor:  # (dim, heads * dh)
        return w.view(w.shape[0], -1, dh)[:, :, perm].reshape(w.shape)

    src = list(nf.model.named_parameters())
    dst = list(tb.model.named_parameters())
    assert len(src) == len(dst)
    with torch.no_grad():
        for (ns, ps), (nd, pd) in zip(src, dst, strict=True):
            assert ps.shape == pd.shape, (ns, nd)
            leaf = ns.rsplit(".", 2)[-2:]
            if leaf[0] in ("to_q", "to_kv", "to_qkv"):
                pd.copy_(rows(ps))
            elif leaf == ["to_out", "weight"]:
                pd.copy_(cols(ps))
            else:
                pd.copy_(ps)
    # Same frequencies to the last bit: neurofm computes them as torch_brain does (at omega ~ 6e4
    # rad/s one float32 ulp is a visible phase error), nothing copied.
    assert torch.equal(nf.model.rotary.omega, tb.model.rotary_emb.omega[: c.dim_head // 4])
    nf.open_data(data_dir)
    tb.open_data(data_dir)
    nf.model.eval()
    tb.model.eval()
    bn, bt = nf.make_batch(windows), tb.make_batch(windows)
    with torch.no_grad():
        yn = nf.model(**{k: bn[k] for k in MODEL_KEYS})
        yt = tb.model(**{k: bt[k] for k in MODEL_KEYS})
    mask = bn["weights"] > 0
    assert torch.equal(mask, bt["weights"] > 0)
    assert torch.equal(bn["target"][mask], bt["target"][mask]), "targets differ"
    diff = float((yn[mask] - yt[mask]).abs().max())
    scale = float(yt[mask].abs().max())
    assert diff <= 1e-4 * max(scale, 1.0), f"outputs differ by {diff} (scale {scale})"
    for rec in nf.recs:
        rec.close()
    for f in tb.files:
        f.close()
    return diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (about a third)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both libraries")
    parser.add_argument("--train-steps", type=int, help="timed training steps per library")
    parser.add_argument("--infer-steps", type=int, help="timed inference batches per library")
    parser.add_argument("--pool", type=int, help="pre-tokenized batches cycled through")
    parser.add_argument("--profile", action="store_true", help="profile one step of each")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-check", action="store_true", help="skip the same-function check")
    parser.add_argument(
        "--malloc-no-mmap",
        action="store_true",
        help="workers' glibc malloc never mmaps nor trims (compute only, no page-fault churn)",
    )
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="1.3m",
        help="model size: torch_brain's 1.3M (default) or 11.8M config, figures poyo_11.8m_*",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help="windows per batch (default 32; 11.8M's torch_brain needs ~16 GB at 32)",
    )
    parser.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    select_size(args.size)
    globals()["BATCH"] = args.batch
    if args.worker:
        worker_main(args.worker, args.threads, args.device)
        return

    t_start = time.perf_counter()
    train_steps = args.train_steps or (3 if args.quick else 10)
    infer_steps = args.infer_steps or (4 if args.quick else 14)
    pool_size = args.pool or (2 if args.quick else 4)

    # Workers first, while this process is small (nothing of it leaks into their peak RSS).
    workers = {
        lib: Worker(lib, args.threads, args.device, args.malloc_no_mmap, args.size) for lib in LIBS
    }
    import_rss = {lib: w.read()["rss_mb"] for lib, w in workers.items()}

    BENCH_OUT.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="poyo_bench.", dir=BENCH_OUT))
    try:
        sessions = [make_session(SEED + 1 + s) for s in range(N_SESSIONS)]
        write_files(sessions, tmp)
        n_spikes = sum(len(s["timestamps"]) for s in sessions)
        section(
            f"data: {N_SESSIONS} sessions x {N_UNITS} units, {n_spikes:,} spikes in "
            f"{N_SESSIONS * SESSION_S:g} s ({n_spikes / N_SESSIONS / N_UNITS / SESSION_S:.1f} Hz "
            f"mean), hand_vel 2-D at {VEL_RATE_HZ:g} Hz; {WINDOW_S:g} s windows, batch {BATCH}"
        )
        rng = np.random.default_rng(SEED)
        pool = draw_windows(rng, pool_size)
        setup = {lib: w.call("setup", data_dir=str(tmp), pool=pool) for lib, w in workers.items()}
        n, t = setup["neurofm"], setup["torch_brain"]

        # ---- equal work -----------------------------------------------------------------------
        expected_tokens = [[spikes_in(sessions[s], a) + 2 * N_UNITS for s, a in ws] for ws in pool]
        for lib, info in setup.items():
            assert info["params"] == EXPECTED_PARAMS, (lib, info["params"])
            assert info["tokens_per_window"] == expected_tokens, f"{lib}: input tokens differ"
            assert info["latents"] == LATENTS, (lib, info["latents"])
        assert n["padded_tokens"] == t["padded_tokens"], (n["padded_tokens"], t["padded_tokens"])
        assert n["outputs_per_window"] == t["outputs_per_window"], "output queries differ"
        tokens = np.array(expected_tokens)
        outputs = np.array(n["outputs_per_window"])
        section(
            f"POYO {args.size} ({CONFIG_YAML.name}); "
            f"torch {n['torch']}, {args.threads} thread(s) per library (torch.get_num_threads: "
            f"neurofm {n['threads']}, torch_brain {t['threads']}), device {args.device}; "
            f"pool of {pool_size} pre-tokenized batches; glibc malloc "
            + ("without mmap/trim (--malloc-no-mmap)" if args.malloc_no_mmap else "default")
        )
        section(
            "equal work: identical input tokens per window (spikes + 2 per unit), padded "
            "lengths, latents and output queries in both libraries (asserted)"
        )
        figure("poyo_params_neurofm", n["params"], "d")
        figure("poyo_params_torch_brain", t["params"], "d")
        figure("poyo_input_tokens_per_window_mean", float(tokens.mean()), ".1f")
        figure("poyo_input_tokens_per_window_min", int(tokens.min()), "d")
        figure("poyo_input_tokens_per_window_max", int(tokens.max()), "d")
        figure("poyo_padded_input_tokens_per_batch_mean", statistics.mean(n["padded_tokens"]))
        figure("poyo_latents_per_window", n["latents"], "d")
        figure("poyo_output_queries_per_window", float(outputs.mean()), ".1f")
        if not args.no_check:
            diff = check_same_function(sessions, tmp, pool[0][:8], args.threads)
            section("same function: neurofm weights copied into torch_brain, eval outputs agree")
            figure("poyo_same_function_max_abs_diff", diff, ".2e")

        # ---- timed ----------------------------------------------------------------------------
        section(
            f"training: 1 warm-up + {train_steps} timed steps per library, interleaved; "
            f"tokenize+collate of fresh windows in between"
        )
        interleaved(workers, 1, "train", lambda i, lib: {"step": -1})  # warm-up
        tok_windows = draw_windows(rng, train_steps)
        train = interleaved(workers, train_steps, "train", lambda i, lib: {"step": i})
        tok = interleaved(
            workers, train_steps, "tokenize", lambda i, lib: {"windows": tok_windows[i]}
        )
        tok_drop = {
            "neurofm": interleaved(
                {"neurofm": workers["neurofm"]},
                train_steps,
                "tokenize",
                lambda i, lib: {"windows": tok_windows[i], "unit_dropout": True},
            )["neurofm"]
        }
        section(f"inference: 1 warm-up + {infer_steps} timed batches per library, interleaved")
        interleaved(workers, 1, "infer", lambda i, lib: {"step": -1})
        infer = interleaved(workers, infer_steps, "infer", lambda i, lib: {"step": i})

        profiles = {}
        if args.profile:
            profiles = {lib: w.call("profile", step=0, rows=18) for lib, w in workers.items()}
        final = {lib: w.close() for lib, w in workers.items()}

        # ---- report ---------------------------------------------------------------------------
        for lib in LIBS:
            figure(f"poyo_train_step_ms_{lib}", median(train[lib]) * 1e3, ".0f")
        for lib in LIBS:
            for part in ("fwd", "bwd", "opt"):
                figure(f"poyo_train_{part}_ms_{lib}", median(train[lib], part) * 1e3, ".0f")
        for lib in LIBS:
            figure(f"poyo_train_sys_ms_{lib}", median(train[lib], "sys") * 1e3, ".0f")
            figure(f"poyo_train_page_faults_per_step_{lib}", median(train[lib], "faults"), ".0f")
        for lib in LIBS:
            figure(f"poyo_train_windows_per_s_{lib}", BATCH / median(train[lib]))
        for lib in LIBS:
            figure(f"poyo_train_windows_per_cpu_s_{lib}", BATCH / median(train[lib], "cpu"))
        for lib in LIBS:
            figure(f"poyo_infer_batch_ms_{lib}", median(infer[lib]) * 1e3, ".0f")
        for lib in LIBS:
            figure(f"poyo_infer_page_faults_per_batch_{lib}", median(infer[lib], "faults"), ".0f")
        for lib in LIBS:
            figure(f"poyo_infer_windows_per_s_{lib}", BATCH / median(infer[lib]))
        for lib in LIBS:
            figure(f"poyo_infer_windows_per_cpu_s_{lib}", BATCH / median(infer[lib], "cpu"))
        section(f"tokenize+collate of {BATCH} windows read lazily from the saved file")
        figure("poyo_tokenize_collate_ms_neurofm", median(tok["neurofm"]) * 1e3, ".1f")
        figure(
            "poyo_tokenize_collate_ms_neurofm_unit_dropout",
            median(tok_drop["neurofm"]) * 1e3,
            ".1f",
        )
        figure("poyo_tokenize_collate_ms_torch_brain", median(tok["torch_brain"]) * 1e3, ".1f")
        figure(
            "poyo_tokenize_share_of_step",
            median(tok["neurofm"]) / median(train["neurofm"]),
            ".4f",
        )
        section("peak RSS of each worker process (VmHWM, imports included), and after imports")
        for lib in LIBS:
            figure(f"poyo_peak_rss_mb_{lib}", final[lib]["peak_rss_mb"], ".0f")
        for lib in LIBS:
            figure(f"poyo_rss_after_import_mb_{lib}", import_rss[lib], ".0f")
        for lib in LIBS:
            if "peak_gpu_mb" in final[lib]:
                figure(f"poyo_peak_gpu_mb_{lib}", final[lib]["peak_gpu_mb"], ".0f")

        for lib, prof in profiles.items():
            section(f"profile {lib}: forward blocks of one training step (ms)")
            for label, ms in prof["blocks_ms"].items():
                section(f"  {label:<45s} {ms:8.1f}")
            section(f"profile {lib}: one training step, torch.profiler, top ops by self CPU")
            for line in prof["table"].splitlines():
                section(line)

        section(
            f"ratios: neurofm / torch_brain throughput, goal >= 1.5 (train); "
            f"tokenize share goal < 0.10; elapsed {time.perf_counter() - t_start:.0f} s"
        )
        figure(
            "poyo_train_speedup_vs_torch_brain_cpu_time",
            median(train["torch_brain"], "cpu") / median(train["neurofm"], "cpu"),
        )
        figure(
            "poyo_infer_speedup_vs_torch_brain_cpu_time",
            median(infer["torch_brain"], "cpu") / median(infer["neurofm"], "cpu"),
        )
        figure(
            "poyo_train_speedup_vs_torch_brain",
            median(train["torch_brain"]) / median(train["neurofm"]),
        )
        figure(
            "poyo_infer_speedup_vs_torch_brain",
            median(infer["torch_brain"]) / median(infer["neurofm"]),
        )
    finally:
        for w in workers.values():
            if w.proc.poll() is None:
                w.proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
