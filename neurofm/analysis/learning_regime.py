"""Rank of the initial weights and rich vs lazy learning in recurrent networks.

Reproduces the setup of Liu, Baratin, Cornford, Mihalas, Shea-Brown & Lajoie, "How connectivity
structure shapes rich and lazy learning in neural circuits" (ICLR 2024), at CPU size:

* the RNN ``h_t = ReLU((1 - a) h_{t-1} + a (W_in x_t + W_rec h_{t-1}))``, ``y_t = W_out h_t``,
  ``a = dt / tau = 1``, no biases, ``h_0 = 0``; ``W_in`` and ``W_out`` get PyTorch's default
  ``nn.Linear`` init, ``W_rec`` the condition's init; all three are trained (SGD, momentum 0.9)
  with cross-entropy over every step, and the metrics look at ``W_rec``;
* initial ``W_rec`` from one random base ``W0 = g N(0,1)/sqrt(N)`` per seed: SVD truncation to
  rank ``r`` at fixed ``||W0||_F``, power-law spectra, task-aligned rank-``r`` weights, and
  "experimentally driven" weights from a recording (:mod:`neurofm.analysis.initializers`);
* metrics (:mod:`neurofm.analysis.regime_metrics`): ``||dW_rec||_F``, representation alignment on a
  probe set (last decision step), tangent-kernel alignment of the empirical NTK restricted to
  ``W_rec`` (rows: probe trials x steps x outputs), sign similarity over the decision window;
* the two-layer linear theory check (:func:`linear_theory`).

The paper's trend: at fixed norm, higher initial rank -> smaller weight change and higher
kernel/representation alignment (lazier); a low-rank init aligned with the task is the
exception and stays lazy.

Every (seed, condition) network of one task is trained at once as an ensemble with batched
matrix products: the networks share nothing but the batches they see (the conditions of one seed
see the same trials, which makes their comparison paired), and SGD acts element-wise, so this is
the same as training them one by one, only ~10x faster on a CPU.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from neurofm import display
from neurofm.analysis import initializers as inits
from neurofm.analysis.rank import effective_rank, eigen_rank
from neurofm.analysis.regime_metrics import (
    alignment,
    empirical_ntk,
    representation_alignment,
    sign_similarity,
    weight_change,
)
from neurofm.analysis.results import StrictModel
from neurofm.analysis.tasks import Task, TaskBatch
from neurofm.analysis.threads import single_thread
from neurofm.analysis.windows import RecordingSource
from neurofm.errors import InvalidDataError
from neurofm.progress import progress_bar

log = logging.getLogger(__name__)

__all__ = [
    "AnalysisResult",
    "Condition",
    "LearningRegimeConfig",
    "RNNWeights",
    "TrainConfig",
    "aligned_condition",
    "decay_condition",
    "linear_theory",
    "matrix_condition",
    "rnn_forward",
    "run_learning_regime",
    "run_task_sweep",
    "svd_condition",
    "task_directions",
]


# --------------------------------------------------------------------------------------------
# the model: plain tensors, so one forward serves a single network and an ensemble
# --------------------------------------------------------------------------------------------


def rnn_forward(
    w_in: torch.Tensor,
    w_rec: torch.Tensor,
    w_out: torch.Tensor,
    x: torch.Tensor,
    alpha: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the rate RNN.

    Parameters
    ----------
    w_in : Tensor, shape (..., N, D)
    w_rec : Tensor, shape (..., N, N)
    w_out : Tensor, shape (..., K, N)
        Leading dimensions (if any) index independent networks of an ensemble.
    x : Tensor, shape (..., B, T, D)
        Inputs; without the leading ensemble dimension they are shared by every network.
    alpha : float
        ``dt / tau`` (1 in the paper: a discrete-time RNN).

    Returns
    -------
    y : Tensor, shape (..., B, T, K)
        Outputs (logits or regression values).
    h : Tensor, shape (..., B, T, N)
        Hidden states.
    """
    drive = torch.einsum("...nd,...btd->...btn", w_in, x)  # input current of every step
    h = torch.zeros(drive.shape[:-2] + drive.shape[-1:], dtype=drive.dtype)  # (..., B, N)
    w_rec_t = w_rec.transpose(-1, -2)
    states = []
    for t in range(x.shape[-2]):
        pre = drive[..., t, :] + h @ w_rec_t
        h = torch.relu((1 - alpha) * h + alpha * pre) if alpha != 1 else torch.relu(pre)
        states.append(h)
    hidden = torch.stack(states, dim=-2)  # (..., B, T, N)
    return torch.einsum("...kn,...btn->...btk", w_out, hidden), hidden


@dataclass
class RNNWeights:
    """The three weight matrices of one network (or an ensemble, with a leading dimension)."""

    w_in: torch.Tensor
    w_rec: torch.Tensor
    w_out: torch.Tensor

    @classmethod
    def default(cls, n_in: int, n_hidden: int, n_out: int, seed: int) -> RNNWeights:
        """``W_in``, ``W_out`` as PyTorch's ``nn.Linear`` default (``U(+-1/sqrt(fan_in))``)
        and ``W_rec = 0``; seeded, so every condition of a seed shares them."""
        gen = torch.Generator().manual_seed(int(seed) + 7919)  # offset: W0 uses `seed` itself
        w_in = (torch.rand(n_hidden, n_in, generator=gen) * 2 - 1) / math.sqrt(n_in)
        w_out = (torch.rand(n_out, n_hidden, generator=gen) * 2 - 1) / math.sqrt(n_hidden)
        return cls(w_in, torch.zeros(n_hidden, n_hidden), w_out)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.w_in, self.w_rec, self.w_out


def _loss(task: Task, y: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-network mean loss over masked steps, shape (...,) for outputs (..., B, T, K)."""
    targets, mask = batch["targets"], batch["loss_mask"]
    if task.kind == "classify":
        logp = F.log_softmax(y, dim=-1)
        nll = -torch.gather(logp, -1, targets.expand(y.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    else:
        nll = ((y - targets) ** 2).mean(-1)
    mask = mask.to(y.dtype).expand(nll.shape)
    return (nll * mask).sum((-1, -2)) / mask.sum((-1, -2))


def _torch_batch(batch: TaskBatch) -> dict[str, torch.Tensor]:
    return {
        "inputs": torch.as_tensor(batch.inputs),
        "targets": torch.as_tensor(batch.targets),
        "loss_mask": torch.as_tensor(batch.loss_mask),
    }


def task_directions(
    task: Task,
    weights: RNNWeights,
    rank: int,
    n_trials: int = 1024,
    seed: int = 0,
) -> torch.Tensor:
    """Hidden-state directions the task asks the recurrent weights to read: shape (rank, N).

    The top right singular vectors of ``sum_t delta_t (h_{t-1} - mean h_{t-1})^T``, the
    cross-covariance between the recurrent layer's input (the previous hidden state, centred)
    and the error signal it must drive (``delta_t``, the loss gradient at the pre-activations),
    taken with ``W_rec = 0``. It is the descent direction of ``W_rec`` at zero with the
    activity centred: in the two-layer linear theory with whitened inputs the same recipe
    gives the teacher direction ``beta``, the paper's aligned init (Proposition 1).

    Centring matters: ReLU activity has a large common mode, and a rank-one ``W_rec`` reading it
    at the sweep's Frobenius norm would be unstable.
    """
    batch = _torch_batch(task.sample(n_trials, np.random.default_rng(seed)))
    x = batch["inputs"]
    drive = torch.einsum("nd,btd->btn", weights.w_in, x).detach()
    pre = drive.clone().requires_grad_(True)  # W_rec = 0: pre-activation = input drive
    hidden = torch.relu(pre)
    y = torch.einsum("kn,btn->btk", weights.w_out, hidden)
    (delta,) = torch.autograd.grad(_loss(task, y, batch), pre)
    prev = hidden[:, :-1].detach()
    prev = prev - prev.mean(0, keepdim=True)
    cross = torch.einsum("btn,btm->nm", delta[:, 1:], prev)  # (N out, N in)
    _, _, vt = torch.linalg.svd(-cross)
    return vt[:rank]


# --------------------------------------------------------------------------------------------
# conditions and training
# --------------------------------------------------------------------------------------------


@dataclass
class Condition:
    """One initial ``W_rec`` of a sweep.

    Attributes
    ----------
    label : str
        Row label in the results table, e.g. ``"svd"``, ``"aligned"``, ``"experimental"``.
    param : float
        The condition's parameter (the rank, a decay exponent...), NaN when none.
    build : callable
        ``build(w0, weights, task) -> W_rec`` from the seed's base matrix and weights.
    """

    label: str
    param: float
    build: Callable[[torch.Tensor, RNNWeights, Task], torch.Tensor]


@dataclass
class TrainConfig:
    """Optimisation of the RNN sweep (the paper: SGD, momentum 0.9, lr 3e-3, batch 32)."""

    steps: int = 2000
    lr: float = 1e-2
    momentum: float = 0.9
    batch_size: int = 32
    optimizer: str = "sgd"
    clip_grad: float | None = None
    probe_trials: int = 320
    ntk_trials: int = 16


@dataclass
class _Run:
    seed: int
    condition: Condition
    w_rec0: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


def _ntk_wrt_rec(
    w_in: torch.Tensor,
    w_rec: torch.Tensor,
    w_out: torch.Tensor,
    x: torch.Tensor,
    steps: torch.Tensor,
) -> torch.Tensor:
    """NTK w.r.t. ``W_rec`` with one row per (trial, step in ``steps``, output), as the paper:
    every step for the NeuroGym tasks, only the last for sequential digits (its loss steps)."""
    return empirical_ntk(
        lambda p: rnn_forward(w_in, p["w_rec"], w_out, x)[0][:, steps], {"w_rec": w_rec}
    )


def _clip_per_network(params: Sequence[torch.Tensor], max_norm: float) -> None:
    # Each network's gradient is clipped by its own norm (slices along the ensemble axis),
    # so one network's large gradient never rescales another's.
    norms = torch.zeros(params[0].shape[0])
    for p in params:
        norms += p.grad.reshape(p.shape[0], -1).pow(2).sum(1)
    scale = (max_norm / (norms.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.view(-1, *([1] * (p.dim() - 1))))


@single_thread()
def run_task_sweep(
    task: Task,
    conditions: Sequence[Condition],
    seeds: Sequence[int],
    n_hidden: int = 100,
    gain: float = 1.5,
    train: TrainConfig | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train one RNN per (seed, condition) on ``task`` and measure how lazily each learned.

    Parameters
    ----------
    task : Task
        The task (see :mod:`neurofm.analysis.tasks`, :mod:`neurofm.analysis.windows`).
    conditions : sequence of Condition
        Initial ``W_rec`` constructions.
    seeds : sequence of int
        One base ``W0``, ``W_in``, ``W_out`` and trial stream per seed.
    n_hidden : int
        Hidden units ``N``.
    gain : float
        ``g`` of the base ``W0 = g N(0,1)/sqrt(N)`` (sets the shared Frobenius norm).
    train : TrainConfig, optional
        Optimisation settings.
    progress : bool
        Show a progress bar over training steps.

    Returns
    -------
    list of dict
        One row per network: task, init, param, seed, effective ranks, norms, spectral radius of
        the initial ``W_rec``, the four metrics, the probe score before and after, the final
        loss and whether the run diverged.
    """
    train = train or TrainConfig()
    runs: list[_Run] = []
    base: dict[int, RNNWeights] = {}
    for seed in seeds:
        weights = RNNWeights.default(task.n_in, n_hidden, task.n_out, seed)
        base[seed] = weights
        w0 = inits.random_gaussian(n_hidden, gain, seed)
        for cond in conditions:
            w_rec0 = cond.build(w0, weights, task).to(torch.float32)
            if w_rec0.shape != (n_hidden, n_hidden):
                raise InvalidDataError(
                    f"init {cond.label!r}: W_rec has shape {tuple(w_rec0.shape)}, "
                    f"expected ({n_hidden}, {n_hidden})"
                )
            runs.append(_Run(seed, cond, w_rec0))
    m = len(runs)
    w_in = torch.stack([base[r.seed].w_in for r in runs]).requires_grad_(True)
    w_rec = torch.stack([r.w_rec0 for r in runs]).requires_grad_(True)
    w_out = torch.stack([base[r.seed].w_out for r in runs]).requires_grad_(True)
    params = [w_in, w_rec, w_out]

    probe = task.probe(train.probe_trials)
    px = torch.as_tensor(probe.inputs)
    ntk_x = px[: train.ntk_trials]
    ntk_steps = torch.as_tensor(np.flatnonzero(probe.loss_mask.any(0)))
    last = _last_decision_step(probe)

    def snapshot() -> tuple[np.ndarray, np.ndarray, list[torch.Tensor]]:
        with torch.no_grad():
            y, h = rnn_forward(w_in, w_rec, w_out, px)
        kernels = [_ntk_wrt_rec(w_in[i], w_rec[i], w_out[i], ntk_x, ntk_steps) for i in range(m)]
        return y.numpy(), h.numpy(), kernels

    y0, h0, k0 = snapshot()
    seed_index = {s: i for i, s in enumerate(seeds)}
    which = torch.as_tensor([seed_index[r.seed] for r in runs])
    rngs = [np.random.default_rng([s, 1]) for s in seeds]
    if train.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=train.lr, momentum=train.momentum)
    elif train.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=train.lr)
    else:
        raise InvalidDataError(f"unknown optimizer {train.optimizer!r} (expected sgd or adam)")
    dead = torch.zeros(m, dtype=torch.bool)
    losses = torch.zeros(m)
    bar = progress_bar(range(train.steps), desc=f"{task.name}: {m} networks", disable=not progress)
    for _ in bar:
        # one batch per seed; every condition of that seed sees the same trials
        batches = [task.sample(train.batch_size, rng) for rng in rngs]
        batch = {
            key: torch.stack([torch.as_tensor(getattr(b, key)) for b in batches])[which]
            for key in ("inputs", "targets", "loss_mask")
        }
        y, _ = rnn_forward(w_in, w_rec, w_out, batch["inputs"])
        per_net = _loss(task, y, batch)
        dead |= ~torch.isfinite(per_net.detach())
        opt.zero_grad(set_to_none=False)
        torch.where(dead, torch.zeros_like(per_net), per_net).sum().backward()
        for p in params:  # a diverged network stops moving instead of spreading NaNs
            p.grad[dead] = 0.0
        if train.clip_grad:
            _clip_per_network(params, train.clip_grad)
        opt.step()
        losses = per_net.detach()
        if progress and (~dead).any():
            bar.set_postfix(loss=f"{float(losses[~dead].mean()):.3f}")

    # exploding weights or activity count as diverged even when the loss stayed finite
    finite = torch.stack([torch.isfinite(p.detach()).flatten(1).all(1) for p in params]).all(0)
    dead |= ~finite
    with np.errstate(all="ignore"):
        yt, ht, kt = snapshot()
    dead |= ~torch.as_tensor(np.isfinite(yt).reshape(m, -1).all(1))
    rows = []
    for i, run in enumerate(runs):
        w_init, w_end = run.w_rec0, w_rec[i].detach()
        row: dict[str, Any] = {
            "task": task.name,
            "init": run.condition.label,
            "param": run.condition.param,
            "seed": run.seed,
            "hard_rank": effective_rank(w_init, "hard"),
            "participation_ratio": effective_rank(w_init, "participation"),
            "entropy_rank": effective_rank(w_init, "entropy"),
            "eigen_rank": eigen_rank(w_init),
            "fro_norm": float(torch.linalg.matrix_norm(w_init)),
            "spectral_radius": inits.spectral_radius(w_init),
            "score_before": task.score(y0[i], probe),
            "diverged": bool(dead[i]),
        }
        if dead[i]:  # a diverged run's numbers mean nothing: keep them out of the means
            log.warning(
                "%s: init %s(%g), seed %d diverged",
                task.name,
                run.condition.label,
                run.condition.param,
                run.seed,
            )
            row.update(dict.fromkeys(_RUN_METRICS, math.nan))
        else:
            row.update(
                weight_change=weight_change(w_init, w_end),
                relative_weight_change=weight_change(w_init, w_end, relative=True),
                kernel_alignment=alignment(k0[i], kt[i]),
                representation_alignment=representation_alignment(h0[i][:, last], ht[i][:, last]),
                sign_similarity=sign_similarity(
                    h0[i][probe.decision_mask], ht[i][probe.decision_mask]
                ),
                score=task.score(yt[i], probe),
                final_loss=float(losses[i]),
            )
        rows.append(row)
    return rows


_RUN_METRICS = (
    "weight_change",
    "relative_weight_change",
    "kernel_alignment",
    "representation_alignment",
    "sign_similarity",
    "score",
    "final_loss",
)


def _last_decision_step(batch: TaskBatch) -> int:
    steps = np.flatnonzero(batch.decision_mask.any(0))
    return int(steps[-1]) if steps.size else batch.inputs.shape[1] - 1


# --------------------------------------------------------------------------------------------
# the standard conditions
# --------------------------------------------------------------------------------------------


def svd_condition(rank: int) -> Condition:
    """Rank-``rank`` SVD truncation of the seed's ``W0`` at its Frobenius norm."""
    return Condition("svd", float(rank), lambda w0, _w, _t: inits.svd_truncate(w0, rank))


def decay_condition(exponent: float) -> Condition:
    """``W0``'s singular vectors with a power-law spectrum ``i^-exponent``."""
    return Condition(
        "decay", float(exponent), lambda w0, _w, _t: inits.spectral_decay(w0, exponent)
    )


def aligned_condition(rank: int, seed_offset: int = 10_000) -> Condition:
    """Rank-``rank`` init whose input directions come from the task (:func:`task_directions`)."""

    def build(w0: torch.Tensor, weights: RNNWeights, task: Task) -> torch.Tensor:
        right = task_directions(task, weights, rank, seed=seed_offset)
        return inits.task_aligned(w0, right, rank)

    return Condition("aligned", float(rank), build)


def matrix_condition(label: str, matrix: torch.Tensor) -> Condition:
    """A fixed matrix (e.g. experimentally driven connectivity) used for every seed."""
    return Condition(label, math.nan, lambda _w0, _w, _t: matrix.clone())


# --------------------------------------------------------------------------------------------
# two-layer linear theory
# --------------------------------------------------------------------------------------------


@single_thread()
def linear_theory(
    dim: int = 20,
    hidden: int = 20,
    ranks: Sequence[int] = (1, 5, 20),
    teachers: int = 8,
    scale: float = 0.1,
    steps: int = 3000,
    lr: float = 0.05,
    probe_points: int = 64,
    aligned: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Rank of the initial weights in a two-layer linear student-teacher network.

    The student ``f(x) = w2^T W1 x`` (``W1``: hidden x dim) learns a teacher ``y = beta^T x``
    with whitened inputs, so the loss is the population loss ``0.5 ||W1^T w2 - beta||^2`` and
    full-batch gradient descent is exact. ``W1(0)`` is a rank-``r`` truncation of a Gaussian at
    Frobenius norm ``scale`` (the theorem needs a small initial scale), ``w2(0)`` Gaussian with
    the same norm; the aligned init is ``W1(0) = scale a beta^T / ||beta||`` with ``a`` the
    random base's top left singular vector (Proposition 1). Each teacher ``beta`` is a random
    unit vector; results are per teacher, so callers average over tasks as the theorem does.

    Returns
    -------
    list of dict
        Rows with init, rank, teacher, ``weight_change`` (``||dW1||_F``), ``kernel_alignment``
        (NTK w.r.t. both layers on ``probe_points`` Gaussian inputs), ``final_loss``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    probe = torch.randn(probe_points, dim, generator=gen)
    conditions: list[tuple[str, int]] = [("svd", r) for r in ranks]
    if aligned:
        conditions.append(("aligned", 1))
    labels, w1s, w2s, betas = [], [], [], []
    for k in range(teachers):
        beta = torch.randn(dim, generator=gen)
        beta /= beta.norm()
        base = torch.randn(hidden, dim, generator=gen)
        w2_0 = torch.randn(hidden, generator=gen)
        w2_0 *= scale / w2_0.norm()
        for label, r in conditions:
            if label == "svd":
                w1_0 = inits.svd_truncate(base, r, preserve=None)
            else:
                u, _, _ = torch.linalg.svd(base)
                w1_0 = torch.outer(u[:, 0], beta)
            labels.append((label, r, k))
            w1s.append(w1_0 * (scale / torch.linalg.matrix_norm(w1_0)))
            w2s.append(w2_0)
            betas.append(beta)
    # every (teacher, init) student descends at once: they share nothing but the loop
    w1_init, w2, beta_all = torch.stack(w1s), torch.stack(w2s), torch.stack(betas)
    w1 = w1_init.clone()

    def kernels(w1: torch.Tensor, w2: torch.Tensor) -> list[torch.Tensor]:
        def f(p: dict[str, torch.Tensor]) -> torch.Tensor:
            return probe @ (p["w1"].T @ p["w2"])

        return [empirical_ntk(f, {"w1": a, "w2": b}) for a, b in zip(w1, w2, strict=True)]

    k0 = kernels(w1, w2)
    for _ in progress_bar(range(steps), desc="linear theory", disable=not progress):
        resid = torch.einsum("rhd,rh->rd", w1, w2) - beta_all  # gradient of the population loss
        g1 = torch.einsum("rh,rd->rhd", w2, resid)
        g2 = torch.einsum("rhd,rd->rh", w1, resid)
        w1, w2 = w1 - lr * g1, w2 - lr * g2
    kt = kernels(w1, w2)
    resid = torch.einsum("rhd,rh->rd", w1, w2) - beta_all
    return [
        {
            "init": label,
            "rank": r,
            "teacher": k,
            "weight_change": weight_change(w1_init[i], w1[i]),
            "kernel_alignment": alignment(k0[i], kt[i]),
            "final_loss": float(0.5 * resid[i].pow(2).sum()),
        }
        for i, (label, r, k) in enumerate(labels)
    ]


# --------------------------------------------------------------------------------------------
# config and runner: `neurofm analyze learning-regime CONFIG.yaml`
# --------------------------------------------------------------------------------------------


class TrainSpec(StrictModel):
    """Optimisation (config section ``train``)."""

    steps: int = Field(2000, ge=1)
    lr: float = Field(1e-2, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["sgd", "adam"] = "sgd"
    clip_grad: float | None = Field(None, gt=0, description="per-network gradient-norm clip")


class ExperimentalSpec(StrictModel):
    """Experimentally driven ``W_rec`` from the config's recording (section ``experimental``)."""

    method: Literal["correlation", "coupling"] = Field(
        "correlation", description="spike-count correlation or lag-1 ridge coupling"
    )
    bin_size: float = Field(0.05, gt=0, description="bin width (s) of the spike counts")
    spectral_radius: float = Field(1.5, gt=0, description="radius the matrix is rescaled to")
    control: bool = Field(True, description="also run the shuffled control")
    control_match: Literal["fro", "radius"] = Field(
        "fro", description="what the control shares with the data-driven matrix"
    )


class LinearTheorySpec(StrictModel):
    """The two-layer linear student-teacher check (section ``linear_theory``)."""

    dim: int = Field(20, ge=2)
    hidden: int = Field(20, ge=1)
    ranks: list[int] = Field(default_factory=lambda: [1, 5, 20], min_length=1)
    teachers: int = Field(8, ge=1)
    scale: float = Field(0.3, gt=0, description="Frobenius norm of each initial layer")
    steps: int = Field(2000, ge=1)
    lr: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _ranks(self) -> LinearTheorySpec:
        bad = [r for r in self.ranks if not 1 <= r <= min(self.dim, self.hidden)]
        if bad:
            raise ValueError(f"ranks {bad} must be in [1, min(dim, hidden)]")
        return self


TaskName = Literal["2af", "dms", "cxt", "digits", "recording"]


class LearningRegimeConfig(StrictModel):
    """An analysis config for ``neurofm analyze learning-regime`` (not a pipeline spec)."""

    name: str = "learning_regime"
    description: str = ""
    out: str = Field("analysis-output/learning_regime", description="results folder")
    tasks: list[TaskName] = Field(default_factory=lambda: ["2af"], min_length=1)
    n_hidden: int = Field(100, ge=2)
    gain: float = Field(1.5, gt=0, description="g of the base W0 = g N(0,1)/sqrt(N)")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    ranks: list[int] = Field(default_factory=lambda: [1, 10, 100])
    aligned_ranks: list[int] = Field(default_factory=lambda: [1])
    decay_exponents: list[float] = Field(default_factory=list)
    experimental: ExperimentalSpec | None = None
    recording: RecordingSource | None = None
    train: TrainSpec = TrainSpec()
    probe_trials: int = Field(320, ge=2)
    ntk_trials: int = Field(16, ge=1)
    linear_theory: LinearTheorySpec | None = LinearTheorySpec()

    @model_validator(mode="after")
    def _consistent(self) -> LearningRegimeConfig:
        bad = [r for r in self.ranks + self.aligned_ranks if not 1 <= r <= self.n_hidden]
        if bad:
            raise ValueError(f"ranks {bad} must be in [1, n_hidden={self.n_hidden}]")
        if ("recording" in self.tasks or self.experimental) and self.recording is None:
            raise ValueError("the 'recording' task and 'experimental' init need a 'recording'")
        if not (self.ranks or self.aligned_ranks or self.decay_exponents or self.experimental):
            raise ValueError("no initial condition: give ranks, aligned_ranks, ... ")
        return self


@dataclass
class AnalysisResult:
    """What an analysis wrote: the folder, its tables and the figures' names."""

    out: Path
    tables: dict[str, list[dict[str, Any]]]
    figures: list[str]

    def __repr__(self) -> str:
        tables = ", ".join(f"{k} ({display.count(len(v), 'row')})" for k, v in self.tables.items())
        return (
            f"<AnalysisResult {str(self.out)!r}: tables {tables or 'none'}; "
            f"figures {', '.join(self.figures) or 'none'}>"
        )


_SWEEP_METRICS = (
    "weight_change",
    "kernel_alignment",
    "representation_alignment",
    "sign_similarity",
    "score",
    "participation_ratio",
    "spectral_radius",
)


def _conditions(cfg: LearningRegimeConfig, recording: Any) -> list[Condition]:
    conds = [svd_condition(r) for r in cfg.ranks]
    conds += [aligned_condition(r) for r in cfg.aligned_ranks]
    conds += [decay_condition(a) for a in cfg.decay_exponents]
    if cfg.experimental is not None:
        from neurofm.analysis.windows import coupling_matrix, spike_count_correlation, top_units

        exp = cfg.experimental
        units = top_units(recording, cfg.n_hidden)
        estimate = spike_count_correlation if exp.method == "correlation" else coupling_matrix
        w = inits.from_connectivity(estimate(recording, exp.bin_size, units), exp.spectral_radius)
        conds.append(matrix_condition("experimental", w))
        if exp.control:
            # Shuffling keeps every entry, hence the Frobenius norm (the quantity the rank sweep
            # holds fixed); "radius" rescales it to the data-driven matrix's spectral radius
            # instead, holding the stability confound (App. Fig. 9) fixed.
            shuffled = inits.shuffled_control(w, seed=0)
            if exp.control_match == "radius":
                shuffled *= exp.spectral_radius / inits.spectral_radius(shuffled)
            conds.append(matrix_condition("shuffled", shuffled))
    return conds


def run_learning_regime(
    config: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> AnalysisResult:
    """Run the rank sweep a config describes and write its results folder.

    Parameters
    ----------
    config : path
        A YAML file validated by :class:`LearningRegimeConfig`.
    out : path, optional
        Results folder (default: the config's ``out``, relative to the working directory).
    progress : bool
        Progress bars over tasks and training steps.

    Returns
    -------
    AnalysisResult
        Tables ``results`` (one row per task x init x seed), ``summary`` (mean and sd over
        seeds) and ``linear_theory``; figures ``<task>.png`` and ``linear_theory.png``.
    """
    from neurofm.analysis.results import check_results_folder, load_config, summarise, write_results
    from neurofm.analysis.tasks import make_task
    from neurofm.viz import analysis as plots

    path = Path(config)
    cfg, text = load_config(LearningRegimeConfig, path)
    out_dir = check_results_folder(Path(out) if out is not None else Path(cfg.out))
    train = TrainConfig(
        steps=cfg.train.steps,
        lr=cfg.train.lr,
        momentum=cfg.train.momentum,
        batch_size=cfg.train.batch_size,
        optimizer=cfg.train.optimizer,
        clip_grad=cfg.train.clip_grad,
        probe_trials=cfg.probe_trials,
        ntk_trials=cfg.ntk_trials,
    )
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack, single_thread():
        recording = None
        if cfg.recording is not None:
            recording = stack.enter_context(cfg.recording.open(path.parent, f"{path}: recording"))
        conditions = _conditions(cfg, recording)
        for name in progress_bar(cfg.tasks, desc="tasks", disable=not progress):
            if name == "recording":
                task = cfg.recording.decode_task(recording)  # type: ignore[union-attr]
            else:
                task = make_task(name)
            log.info("%s: %d conditions x %d seeds", name, len(conditions), len(cfg.seeds))
            rows += run_task_sweep(
                task, conditions, cfg.seeds, cfg.n_hidden, cfg.gain, train, progress
            )
        theory: list[dict[str, Any]] = []
        if cfg.linear_theory is not None:
            lt = cfg.linear_theory
            theory = linear_theory(
                lt.dim,
                lt.hidden,
                lt.ranks,
                lt.teachers,
                lt.scale,
                lt.steps,
                lt.lr,
                progress=progress,
            )
    summary = summarise(rows, ("task", "init", "param"), _SWEEP_METRICS)
    tables = {"results": rows, "summary": summary}
    figures = {task: plots.plot_rank_sweep(rows, task) for task in cfg.tasks}
    if theory:
        tables["linear_theory"] = theory
        tables["linear_theory_summary"] = summarise(
            theory, ("init", "rank"), ("weight_change", "kernel_alignment", "final_loss")
        )
        figures["linear_theory"] = plots.plot_linear_theory(theory)
    names = list(figures)
    write_results(out_dir, tables, figures, text, extra={"name": cfg.name, "tasks": cfg.tasks})
    return AnalysisResult(out_dir, tables, names)
