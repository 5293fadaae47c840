"""Networks with frozen random weights that learn only their biases.

Reproduces, at CPU size, Williams, Payeur, Ryoo, Jiralerspong, Perich, Mazzucato & Lajoie,
"Expressivity of Neural Networks with Random Weights and Learned Biases" (ICLR 2025):

* feed-forward: one hidden ReLU layer with frozen random weights; only the hidden and output
  biases learn. Accuracy rises with width and stays well above chance
  (:func:`width_sweep`, against full training at the same width);
* multi-task: one frozen network, one bias vector per task (:func:`multitask`); per-unit task
  variance (Yang et al. 2019) clusters the units by task (:func:`task_variance_clusters`);
* recurrent: ``r_t = (1 - a) r_{t-1} + a relu(W r_{t-1} + B x_t + b)``, ``y_t = C r_t + c``
  with ``W ~ N(0, g^2/N)``, ``B``, ``C`` frozen; the biases ``b``, ``c`` and the initial state
  ``r_0`` learn. Autonomous generation (a cosine, Van der Pol) across gains ``g``
  (:func:`generation_sweep`), Lorenz forecasting teacher-forced and free-running
  (:func:`lorenz_forecast`), and decoding a recording's behaviour (:func:`recording_decoding`).

Data are scikit-learn's bundled digits (the CPU stand-in for MNIST) and native generators
(:mod:`neurofm.analysis.tasks`). Several networks are trained at once along a leading ensemble
axis when they share a loop (the recurrent sweeps): they never interact, so this is training
them one by one, without the per-step overhead of tiny matrix products.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator

from neurofm.analysis.results import StrictModel
from neurofm.analysis.tasks import (
    Task,
    autocorrelation_hwhm,
    digits_data,
    digits_task_labels,
    lorenz_observable,
    sine_target,
    van_der_pol_target,
)
from neurofm.analysis.threads import single_thread
from neurofm.analysis.windows import RecordingSource
from neurofm.errors import InvalidDataError
from neurofm.progress import progress_bar

log = logging.getLogger(__name__)

__all__ = [
    "BiasOnlyConfig",
    "BiasOnlyMLP",
    "BiasOnlyRNN",
    "freeze_all_but_biases",
    "generation_sweep",
    "lorenz_forecast",
    "multitask",
    "recording_decoding",
    "run_bias_only",
    "task_variance",
    "task_variance_clusters",
    "width_sweep",
]

Init = Literal["gaussian", "uniform"]


def _frozen_weight(
    shape: tuple[int, ...], fan_in: int, init: Init, gen: torch.Generator, bound: float = 0.1
) -> torch.Tensor:
    if init == "gaussian":  # N(0, 1/fan_in): unit-variance pre-activations for unit inputs
        return torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    if init == "uniform":  # Uniform[-R, R], the theorem's distribution
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound
    raise InvalidDataError(f"unknown weight init {init!r} (expected gaussian or uniform)")


def freeze_all_but_biases(model: torch.nn.Module) -> list[str]:
    """Turn off gradients of every parameter that is not a bias.

    A bias is a parameter whose own name ends in ``bias`` (``nn.Linear.bias``, ``out_bias``) or
    is ``b`` followed by digits (``b1``). Works on any module (e.g. a pretrained network to
    bias-tune); returns the names still trainable.
    """
    import re

    trainable = []
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        keep = leaf.endswith("bias") or re.fullmatch(r"b\d*", leaf) is not None
        p.requires_grad_(keep)
        if keep:
            trainable.append(name)
    return trainable


# --------------------------------------------------------------------------------------------
# feed-forward
# --------------------------------------------------------------------------------------------


class BiasOnlyMLP(torch.nn.Module):
    """One hidden ReLU layer with frozen random weights and (per-task) learned biases.

    Parameters
    ----------
    n_in, width, n_out : int
        Layer sizes.
    n_tasks : int
        Bias vectors: one per task over the same weights.
    init : {"gaussian", "uniform"}
        Frozen weights ``N(0, 1/fan_in)`` or ``Uniform[-0.1, 0.1]``.
    train_weights : bool
        Also train the weights (the fully trained control).
    seed : int
        Seed of the random weights.
    """

    def __init__(
        self,
        n_in: int,
        width: int,
        n_out: int,
        n_tasks: int = 1,
        init: Init = "gaussian",
        train_weights: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        self.w1 = torch.nn.Parameter(
            _frozen_weight((width, n_in), n_in, init, gen), requires_grad=train_weights
        )
        self.w2 = torch.nn.Parameter(
            _frozen_weight((n_out, width), width, init, gen), requires_grad=train_weights
        )
        self.b1 = torch.nn.Parameter(torch.zeros(n_tasks, width))
        self.b2 = torch.nn.Parameter(torch.zeros(n_tasks, n_out))

    def forward(self, x: torch.Tensor, task: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, n_out)`` and hidden activity ``(B, width)`` under task ``task``'s biases."""
        h = torch.relu(x @ self.w1.T + self.b1[task])
        return h @ self.w2.T + self.b2[task], h

    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _fit_mlp(
    model: BiasOnlyMLP,
    data: Sequence[tuple[np.ndarray, np.ndarray, int]],
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> None:
    """Adam on every task's (x, y, n_classes) jointly: each step sums the tasks' losses."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(seed)
    n = len(data[0][0])
    xs = [torch.as_tensor(x) for x, _, _ in data]
    ys = [torch.as_tensor(y) for _, y, _ in data]
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n, batch_size):
            idx = torch.as_tensor(order[i : i + batch_size])
            loss = torch.zeros(())
            for k, (_, _, n_cls) in enumerate(data):
                logits, _ = model(xs[k][idx], k)
                loss = loss + F.cross_entropy(logits[:, :n_cls], ys[k][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def _accuracy(model: BiasOnlyMLP, x: np.ndarray, y: np.ndarray, n_cls: int, task: int = 0) -> float:
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(x), task)
    return float((logits[:, :n_cls].argmax(1).numpy() == y).mean())


@single_thread()
def width_sweep(
    widths: Sequence[int] = (64, 256, 1024, 4096),
    seeds: Sequence[int] = (0,),
    epochs: int = 30,
    lr: float = 0.03,
    full_lr: float = 1e-3,
    batch_size: int = 128,
    init: Init = "gaussian",
    full_training: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Digits test accuracy of bias-only (and fully trained) one-hidden-layer nets vs width.

    Returns
    -------
    list of dict
        Rows ``mode`` (``bias`` or ``full``), ``width``, ``seed``, ``trainable`` (parameter
        count), ``accuracy`` (test split), ``chance`` (0.1).
    """
    x_tr, y_tr, x_te, y_te = digits_data()
    modes = ["bias", "full"] if full_training else ["bias"]
    jobs = [(m, w, s) for s in seeds for w in widths for m in modes]
    rows = []
    for mode, width, seed in progress_bar(jobs, desc="width sweep", disable=not progress):
        model = BiasOnlyMLP(64, width, 10, init=init, train_weights=mode == "full", seed=seed)
        _fit_mlp(
            model, [(x_tr, y_tr, 10)], epochs, lr if mode == "bias" else full_lr, batch_size, seed
        )
        rows.append(
            {
                "mode": mode,
                "width": width,
                "seed": seed,
                "trainable": model.n_trainable(),
                "accuracy": _accuracy(model, x_te, y_te, 10),
                "chance": 0.1,
            }
        )
    return rows


def task_variance(hidden: Sequence[np.ndarray]) -> np.ndarray:
    """Per-unit task variance (Yang et al. 2019): ``TV[i, k] = Var_x h_k,i(x)``.

    Parameters
    ----------
    hidden : sequence of ndarray, each (samples, units)
        Hidden activity of the same inputs under each task.

    Returns
    -------
    ndarray, shape (units, tasks)
    """
    return np.stack([np.asarray(h).var(0) for h in hidden], axis=1)


def task_variance_clusters(
    tv: np.ndarray,
    biases: np.ndarray,
    n_clusters: int | None = None,
    seed: int = 0,
    min_variance: float = 1e-3,
) -> dict[str, Any]:
    """K-means on units' normalised task-variance profiles, as in the paper's Fig. 1C.

    Units whose largest task variance is below ``min_variance`` are inactive and left out.
    Each active unit's profile is its task variance divided by its maximum over tasks.

    Parameters
    ----------
    tv : ndarray, shape (units, tasks)
        From :func:`task_variance`.
    biases : ndarray, shape (tasks, units)
        The learned hidden biases of each task.
    n_clusters : int, optional
        Default: the number of tasks.

    Returns
    -------
    dict
        ``labels`` (cluster of each active unit, -1 inactive), ``profiles`` (cluster x task mean
        normalised TV), ``sizes``, ``selectivity`` (per cluster: its largest task's share of the
        profile), ``preferred_task``, ``spearman`` (per cluster: mean over tasks of the Spearman
        correlation between units' TV and bias, NaN where undefined).
    """
    from scipy.stats import spearmanr
    from sklearn.cluster import KMeans

    n_units, n_tasks = tv.shape
    k = n_clusters or n_tasks
    peak = tv.max(1)
    active = peak > min_variance
    labels = np.full(n_units, -1)
    if active.sum() < k:
        raise InvalidDataError(f"task variance: only {int(active.sum())} active units for {k}")
    profiles_units = tv[active] / peak[active, None]
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(profiles_units)
    labels[active] = km.labels_
    profiles, sizes, spearman = [], [], []
    for c in range(k):
        members = labels == c
        sizes.append(int(members.sum()))
        profiles.append(profiles_units[km.labels_ == c].mean(0))
        rhos = []
        for t in range(n_tasks):
            if members.sum() > 2 and np.ptp(tv[members, t]) > 0 and np.ptp(biases[t, members]) > 0:
                rhos.append(spearmanr(tv[members, t], biases[t, members]).statistic)
        spearman.append(float(np.mean(rhos)) if rhos else float("nan"))
    profiles_arr = np.asarray(profiles)
    return {
        "labels": labels,
        "profiles": profiles_arr,
        "sizes": sizes,
        "selectivity": (profiles_arr.max(1) / profiles_arr.sum(1)).tolist(),
        "preferred_task": profiles_arr.argmax(1).tolist(),
        "spearman": spearman,
    }


@single_thread()
def multitask(
    tasks: Sequence[str] = ("identity", "parity", "geq5", "mod3"),
    width: int = 1024,
    epochs: int = 30,
    lr: float = 0.03,
    batch_size: int = 128,
    init: Init = "gaussian",
    seed: int = 0,
    n_clusters: int | None = None,
    full_training: bool = True,
    full_lr: float = 1e-3,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One frozen random network, one learned bias vector per digits task.

    Every task reads its classes from the first outputs of the shared frozen readout. With the
    weights frozen, each task's biases learn only from that task's loss, so the bank's accuracy
    on a task equals what the same net reaches on that task alone; the comparison that matters
    is with a fully trained network of the same width (the paper's Fig. 1B), which has ~75x
    more trainable parameters per task here.

    Returns
    -------
    rows : list of dict
        Per task: ``task``, ``classes``, ``chance`` (majority class), ``accuracy`` (multi-task
        bank), ``full_accuracy`` (fully trained, same width; absent without ``full_training``).
    clusters : dict
        :func:`task_variance_clusters` of the bank's hidden units, plus ``tasks``.
    """
    x_tr, y_tr, x_te, y_te = digits_data()
    data, test = [], []
    for name in tasks:
        n_cls, ytr = digits_task_labels(name, y_tr)
        _, yte = digits_task_labels(name, y_te)
        data.append((x_tr, ytr, n_cls))
        test.append((yte, n_cls))
    bank = BiasOnlyMLP(64, width, 10, n_tasks=len(tasks), init=init, seed=seed)
    _fit_mlp(bank, data, epochs, lr, batch_size, seed)
    rows = []
    for k, name in enumerate(progress_bar(tasks, desc="multi-task", disable=not progress)):
        yte, n_cls = test[k]
        row = {
            "task": name,
            "classes": n_cls,
            "chance": float(np.bincount(yte).max() / len(yte)),
            "accuracy": _accuracy(bank, x_te, yte, n_cls, k),
            "trainable_per_task": width + 10,
        }
        if full_training:
            full = BiasOnlyMLP(64, width, 10, init=init, train_weights=True, seed=seed)
            _fit_mlp(full, [data[k]], epochs, full_lr, batch_size, seed)
            row["full_accuracy"] = _accuracy(full, x_te, yte, n_cls)
            row["full_trainable"] = full.n_trainable()
        rows.append(row)
    with torch.no_grad():
        hidden = [bank(torch.as_tensor(x_te), k)[1].numpy() for k in range(len(tasks))]
    clusters = task_variance_clusters(
        task_variance(hidden), bank.b1.detach().numpy(), n_clusters, seed
    )
    clusters["tasks"] = list(tasks)
    return rows, clusters


# --------------------------------------------------------------------------------------------
# recurrent
# --------------------------------------------------------------------------------------------


class BiasOnlyRNN(torch.nn.Module):
    """An ensemble of rate RNNs with frozen random weights and learned biases.

    ``r_t = (1 - alpha) r_{t-1} + alpha relu(W r_{t-1} + B x_t + b)``, ``y_t = C r_t + c``,
    with ``W ~ N(0, g^2/N)``, ``B ~ N(0, 1/n_in)``, ``C ~ N(0, 1/N)``. Learned: the
    recurrent bias ``b``, the output bias ``c`` and the initial state ``r_0`` (and, for the
    networks flagged in ``train_weights``, ``W``, ``B`` and ``C``: the fully trained control).

    Parameters
    ----------
    n_in, n_hidden, n_out : int
        Sizes (``n_in = 0`` for autonomous generation).
    gains : sequence of float
        One network per gain ``g``.
    train_weights : sequence of bool, optional
        Per network: also train the weights (default: none do).
    alpha : float
        ``dt / tau``; 1 is the discrete-time RNN.
    seed : int
        Seed of the frozen weights (networks of equal gain share them).
    """

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_out: int,
        gains: Sequence[float],
        train_weights: Sequence[bool] | None = None,
        alpha: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        m = len(gains)
        flags = list(train_weights) if train_weights is not None else [False] * m
        if len(flags) != m:
            raise InvalidDataError("train_weights needs one flag per gain")
        gen = torch.Generator().manual_seed(int(seed))
        base_w = torch.randn(n_hidden, n_hidden, generator=gen) / math.sqrt(n_hidden)
        base_b = torch.randn(n_hidden, max(n_in, 1), generator=gen) / math.sqrt(max(n_in, 1))
        base_c = torch.randn(n_out, n_hidden, generator=gen) / math.sqrt(n_hidden)
        g = torch.as_tensor(list(gains), dtype=torch.float32).view(m, 1, 1)
        self.alpha = alpha
        self.gains = list(gains)
        self.w = torch.nn.Parameter(g * base_w)  # same random matrix, scaled per network
        self.b_in = torch.nn.Parameter(base_b.expand(m, -1, -1).clone()[..., :n_in])
        self.c_out = torch.nn.Parameter(base_c.expand(m, -1, -1).clone())
        self.bias = torch.nn.Parameter(torch.zeros(m, n_hidden))
        self.out_bias = torch.nn.Parameter(torch.zeros(m, n_out))
        self.r0 = torch.nn.Parameter(0.1 * torch.rand(m, n_hidden, generator=gen))
        self.register_buffer("train_weights", torch.as_tensor(flags))

    def step(self, r: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """One update of the states ``r`` ``(M, B, N)`` given ``drive = B x_t + b``."""
        pre = torch.baddbmm(drive, r, self.w.transpose(-1, -2))
        if self.alpha == 1:
            return torch.relu(pre)
        return (1 - self.alpha) * r + self.alpha * torch.relu(pre)

    def drive(self, x: torch.Tensor | None, n_steps: int, batch: int) -> torch.Tensor:
        """``B x_t + b`` for every step at once: ``(M, batch, n_steps, N)``."""
        bias = self.bias[:, None, None, :]
        if x is None:
            return bias.expand(-1, batch, n_steps, -1)
        x = x.expand(len(self.w), -1, -1, -1)
        return torch.einsum("mnd,mbtd->mbtn", self.b_in, x) + bias

    def readout(self, states: torch.Tensor) -> torch.Tensor:
        """``C r + c`` for states ``(M, ..., N)`` -> ``(M, ..., n_out)``."""
        shape = states.shape
        flat = states.reshape(shape[0], -1, shape[-1])
        out = torch.baddbmm(self.out_bias.unsqueeze(1), flat, self.c_out.transpose(-1, -2))
        return out.reshape(*shape[:-1], -1)

    def forward(self, x: torch.Tensor | None, n_steps: int, batch: int = 1) -> torch.Tensor:
        """Outputs ``(M, batch, n_steps, n_out)``.

        Autonomous (``x`` None): the outputs read ``r_0 .. r_{T-1}``, so the learned initial
        state sets the first value. Driven (``x``: ``(M or 1, batch, n_steps, n_in)``): output
        ``t`` reads the state after input ``x_t``.
        """
        drive = self.drive(x, n_steps, batch)
        r = self.r0.unsqueeze(1).expand(-1, batch, -1)
        states = []
        if x is None:
            states.append(r)
            for t in range(n_steps - 1):
                r = self.step(r, drive[:, :, t])
                states.append(r)
        else:
            for t in range(n_steps):
                r = self.step(r, drive[:, :, t])
                states.append(r)
        return self.readout(torch.stack(states, dim=2))

    def mask_frozen_grads(self) -> None:
        """Zero the weight gradients of bias-only networks (call after ``backward``)."""
        frozen = ~self.train_weights
        for p in (self.w, self.b_in, self.c_out):
            if p.grad is not None:
                p.grad[frozen] = 0.0


def _adam(model: BiasOnlyRNN, lr: float, weight_lr: float) -> torch.optim.Optimizer:
    # Adam with an exactly zero gradient never moves a weight, so masking the gradients of the
    # bias-only networks keeps their weights frozen while the controls' weights learn. Weights
    # get a smaller step: Adam moves every entry by ~lr, and N coherent moves of 1e-2 would
    # blow the recurrent spectral radius up within a few steps.
    return torch.optim.Adam(
        [
            {"params": [model.bias, model.out_bias, model.r0], "lr": lr},
            {"params": [model.w, model.b_in, model.c_out], "lr": weight_lr},
        ]
    )


@single_thread()
def generation_sweep(
    targets: Sequence[Literal["sine", "vdp"]] = ("sine", "vdp"),
    gains: Sequence[float] = (0.5, 1.5),
    n_hidden: int = 200,
    n_steps: int = 150,
    period: float = 25.0,
    steps: int = 1500,
    lr: float = 1e-2,
    weight_lr: float = 5e-4,
    full_training: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Autonomous generation of a cosine / Van der Pol cycle by bias-only RNNs across gains.

    Returns
    -------
    rows : list of dict
        Per target, gain and mode (``bias``/``full``): ``mse`` of the generated trajectory
        (the target has unit peak), ``target_variance`` for scale.
    traces : dict
        ``"<target>"`` -> target ``(n_steps, d)`` and ``"<target>/<mode>/g=<g>"`` -> output.
    """
    rows: list[dict[str, Any]] = []
    traces: dict[str, np.ndarray] = {}
    modes = ["bias", "full"] if full_training else ["bias"]
    for name in targets:
        if name == "sine":
            target = sine_target(n_steps, period)
        elif name == "vdp":
            target = van_der_pol_target(n_steps, steps_per_period=period)
        else:
            raise InvalidDataError(f"unknown generation target {name!r} (expected sine or vdp)")
        traces[name] = target
        nets = [(mode, g) for mode in modes for g in gains]
        model = BiasOnlyRNN(
            0,
            n_hidden,
            target.shape[1],
            [g for _, g in nets],
            [mode == "full" for mode, _ in nets],
            seed=seed,
        )
        y = torch.as_tensor(target)[None, None]
        opt = _adam(model, lr, weight_lr)
        bar = progress_bar(
            range(steps), desc=f"generate {name}: {len(nets)} RNNs", disable=not progress
        )
        for _ in bar:
            out = model(None, n_steps)
            loss = ((out - y) ** 2).mean((1, 2, 3))
            opt.zero_grad()
            loss.sum().backward()
            model.mask_frozen_grads()
            opt.step()
        with torch.no_grad():
            out = model(None, n_steps)
            mse = ((out - y) ** 2).mean((1, 2, 3)).numpy()
        for i, (mode, g) in enumerate(nets):
            rows.append(
                {
                    "target": name,
                    "mode": mode,
                    "gain": g,
                    "mse": float(mse[i]),
                    "target_variance": float(target.var()),
                }
            )
            traces[f"{name}/{mode}/g={g:g}"] = out[i, 0].numpy()
    return rows, traces


@single_thread()
def lorenz_forecast(
    gains: Sequence[float] = (1.0,),
    n_hidden: int = 200,
    dt: float = 0.01,
    horizon: int | None = None,
    train_length: int = 20_000,
    segment: int = 200,
    washout: int = 50,
    batch_size: int = 16,
    steps: int = 600,
    lr: float = 1e-2,
    weight_lr: float = 5e-4,
    generations: int = 3,
    full_training: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Forecast the Lorenz ``x`` observable ``tau`` steps ahead, teacher-forced and free-running.

    The network reads ``x_t`` and outputs a forecast of ``x_{t+tau}``; ``tau`` defaults to the
    half-width at half-maximum of the autocorrelation (the paper's horizon, 27 steps there;
    about 24 at ``dt = 0.01`` here). The default gain is 1: driven by the chaotic input, a
    g = 1.5 reservoir was itself too irregular to forecast with biases alone in our runs.
    Training is teacher-forced on segments of a long trajectory. Evaluated on a trajectory
    from another initial condition:

    * teacher-forced: every input is the true signal;
    * free-running ("self-sustained"): after a teacher-forced warm-up, the input at step ``s``
      is the network's own forecast made at ``s - tau``; the error is reported per generation
      of feedback (steps ``k tau .. (k+1) tau`` after the switch), so compounding shows.

    Returns
    -------
    rows : list of dict
        Per mode and gain: ``tau``, ``mse_teacher_forced``, ``mse_free_running``,
        ``mse_generation_<k>`` and ``mse_persistence`` (predicting ``x_{t+tau} = x_t``).
    traces : dict
        Test signal and free-running outputs for plotting.
    """
    x_train = lorenz_observable(train_length, dt, seed=seed)
    x_test = lorenz_observable(4000, dt, seed=seed + 1)
    tau = horizon or autocorrelation_hwhm(x_train)
    modes = ["bias", "full"] if full_training else ["bias"]
    nets = [(mode, g) for mode in modes for g in gains]
    model = BiasOnlyRNN(
        1, n_hidden, 1, [g for _, g in nets], [m == "full" for m, _ in nets], seed=seed
    )
    opt = _adam(model, lr, weight_lr)
    rng = np.random.default_rng(seed)
    for _ in progress_bar(range(steps), desc=f"lorenz: {len(nets)} RNNs", disable=not progress):
        starts = rng.integers(0, train_length - segment - tau, batch_size)
        xs = np.stack([x_train[s : s + segment] for s in starts])
        ys = np.stack([x_train[s + tau : s + tau + segment] for s in starts])
        out = model(torch.as_tensor(xs)[None, ..., None], segment, batch_size)
        err = (out[:, :, washout:, 0] - torch.as_tensor(ys)[None, :, washout:]) ** 2
        opt.zero_grad()
        err.mean((1, 2)).sum().backward()
        model.mask_frozen_grads()
        opt.step()

    warm = max(washout, 2 * tau)  # stay within the segment length seen in training
    total = warm + generations * tau
    n_starts = 16
    starts = np.linspace(0, len(x_test) - total - tau - 1, n_starts).astype(int)
    truth = np.stack([x_test[s : s + total + tau] for s in starts])  # (S, total + tau)
    with torch.no_grad():
        tf = model(torch.as_tensor(truth[:, :total])[None, ..., None], total, n_starts)[..., 0]
        free = _free_run(model, truth, warm, total, tau, n_starts)
    target = torch.as_tensor(truth[:, tau : tau + total])  # forecast at t targets x_{t+tau}
    rows = []
    traces: dict[str, np.ndarray] = {"truth": truth[0, tau : tau + total]}
    persistence = float(((truth[:, warm:total] - truth[:, warm + tau : total + tau]) ** 2).mean())
    for i, (mode, g) in enumerate(nets):
        row: dict[str, Any] = {"mode": mode, "gain": g, "tau": tau}
        row["mse_teacher_forced"] = float(((tf[i, :, warm:] - target[:, warm:]) ** 2).mean())
        # the forecast made at step s is fed back as the input at s + tau: generation k of the
        # feedback covers forecasts made at warm - tau + k tau ... (inputs already predicted)
        err = (free[i] - target) ** 2
        row["mse_free_running"] = float(err[:, warm:].mean())
        for k in range(generations):
            a, b = warm + k * tau, warm + (k + 1) * tau
            row[f"mse_generation_{k + 1}"] = float(err[:, a:b].mean())
        row["mse_persistence"] = persistence
        rows.append(row)
        traces[f"{mode}/g={g:g}/teacher_forced"] = tf[i, 0].numpy()
        traces[f"{mode}/g={g:g}/free_running"] = free[i, 0].numpy()
    return rows, traces


def _free_run(
    model: BiasOnlyRNN, truth: np.ndarray, warm: int, total: int, tau: int, batch: int
) -> torch.Tensor:
    """Forecasts ``(M, batch, total)``; from step ``warm`` on, the input at ``s`` is the
    forecast made at ``s - tau`` (which targets ``x_s``) instead of the true ``x_s``."""
    m = len(model.w)
    r = model.r0.unsqueeze(1).expand(-1, batch, -1)
    outs = torch.zeros(m, batch, total)
    true_in = torch.as_tensor(truth[:, :total], dtype=torch.float32)
    b_in = model.b_in[..., 0].unsqueeze(1)  # (M, 1, N): n_in = 1
    for t in range(total):
        inp = outs[:, :, t - tau] if t >= warm else true_in[None, :, t].expand(m, -1)
        r = model.step(r, b_in * inp[..., None] + model.bias.unsqueeze(1))
        outs[:, :, t] = model.readout(r)[..., 0]
    return outs


@single_thread()
def recording_decoding(
    task: Task,
    gains: Sequence[float] = (1.5,),
    n_hidden: int = 200,
    steps: int = 800,
    lr: float = 1e-2,
    weight_lr: float = 5e-4,
    batch_size: int = 32,
    full_training: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Bias-only RNNs that read a recording's binned spikes and output its behaviour.

    ``task`` is a :class:`~neurofm.analysis.windows.DecodeBehaviour` (windows of a Recording);
    the score is R^2 of the behaviour on the held-out probe windows.
    """
    if task.kind != "regress":
        raise InvalidDataError("recording_decoding needs a regression task (DecodeBehaviour)")
    modes = ["bias", "full"] if full_training else ["bias"]
    nets = [(mode, g) for mode in modes for g in gains]
    model = BiasOnlyRNN(
        task.n_in,
        n_hidden,
        task.n_out,
        [g for _, g in nets],
        [m == "full" for m, _ in nets],
        seed=seed,
    )
    opt = _adam(model, lr, weight_lr)
    rng = np.random.default_rng(seed)
    for _ in progress_bar(
        range(steps), desc=f"{task.name}: {len(nets)} RNNs", disable=not progress
    ):
        b = task.sample(batch_size, rng)
        out = model(torch.as_tensor(b.inputs)[None], task.seq_len, batch_size)
        loss = ((out - torch.as_tensor(b.targets)[None]) ** 2).mean((1, 2, 3))
        opt.zero_grad()
        loss.sum().backward()
        model.mask_frozen_grads()
        opt.step()
    probe = task.probe(10_000)
    with torch.no_grad():
        out = model(torch.as_tensor(probe.inputs)[None], task.seq_len, len(probe)).numpy()
    return [
        {"mode": mode, "gain": g, "r2": task.score(out[i], probe), "probe_windows": len(probe)}
        for i, (mode, g) in enumerate(nets)
    ]


# --------------------------------------------------------------------------------------------
# config and runner: `neurofm analyze bias-only CONFIG.yaml`
# --------------------------------------------------------------------------------------------


class WidthSweepSpec(StrictModel):
    """Feed-forward width sweep on digits (config section ``width_sweep``)."""

    widths: list[PositiveInt] = Field(default_factory=lambda: [64, 256, 1024, 4096], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    epochs: int = Field(30, ge=1)
    lr: float = Field(0.03, gt=0, description="Adam step of the biases")
    full_lr: float = Field(1e-3, gt=0, description="Adam step of the fully trained control")
    batch_size: int = Field(128, ge=1)
    init: Init = "gaussian"
    full_training: bool = True


class MultiTaskSpec(StrictModel):
    """One frozen net, one bias vector per digits task (section ``multitask``)."""

    tasks: list[str] = Field(
        default_factory=lambda: ["identity", "parity", "geq5", "mod3"], min_length=1
    )
    width: int = Field(1024, ge=2)
    epochs: int = Field(30, ge=1)
    lr: float = Field(0.03, gt=0)
    full_lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    init: Init = "gaussian"
    clusters: int | None = Field(None, ge=1, description="K-means clusters (default: tasks)")
    full_training: bool = True

    @model_validator(mode="after")
    def _known(self) -> MultiTaskSpec:
        from neurofm.analysis.tasks import DIGIT_TASKS

        bad = [t for t in self.tasks if t not in DIGIT_TASKS]
        if bad:
            raise ValueError(f"unknown tasks {bad} (expected some of {', '.join(DIGIT_TASKS)})")
        return self


class GenerationSpec(StrictModel):
    """Autonomous generation across gains (section ``generation``)."""

    targets: list[Literal["sine", "vdp"]] = Field(
        default_factory=lambda: ["sine", "vdp"], min_length=1
    )
    gains: list[float] = Field(default_factory=lambda: [0.5, 1.5], min_length=1)
    n_hidden: int = Field(200, ge=2)
    n_steps: int = Field(100, ge=2, description="length of the generated trajectory")
    period: float = Field(25.0, gt=1, description="steps per period of the target")
    steps: int = Field(400, ge=1, description="training steps")
    lr: float = Field(1e-2, gt=0)
    weight_lr: float = Field(5e-4, gt=0)
    full_training: bool = True


class LorenzSpec(StrictModel):
    """Lorenz forecasting, teacher-forced and free-running (section ``lorenz``)."""

    gains: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    n_hidden: int = Field(100, ge=2)
    horizon: int | None = Field(None, ge=1, description="default: autocorrelation HWHM")
    segment: int = Field(200, ge=10)
    batch_size: int = Field(8, ge=1)
    steps: int = Field(200, ge=1)
    lr: float = Field(1e-2, gt=0)
    weight_lr: float = Field(5e-4, gt=0)
    full_training: bool = True


class RecordingRNNSpec(StrictModel):
    """Bias-only RNNs decoding a recording's behaviour (section ``recording``)."""

    source: RecordingSource
    gains: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    n_hidden: int = Field(200, ge=2)
    steps: int = Field(300, ge=1)
    lr: float = Field(1e-2, gt=0)
    weight_lr: float = Field(5e-4, gt=0)
    batch_size: int = Field(32, ge=1)
    full_training: bool = True


class BiasOnlyConfig(StrictModel):
    """An analysis config for ``neurofm analyze bias-only`` (not a pipeline spec).

    Every section is optional; a missing section is skipped.
    """

    name: str = "bias_only"
    description: str = ""
    out: str = Field("analysis-output/bias_only", description="results folder")
    seed: int = 0
    width_sweep: WidthSweepSpec | None = None
    multitask: MultiTaskSpec | None = None
    generation: GenerationSpec | None = None
    lorenz: LorenzSpec | None = None
    recording: RecordingRNNSpec | None = None

    @model_validator(mode="after")
    def _something(self) -> BiasOnlyConfig:
        sections = ("width_sweep", "multitask", "generation", "lorenz", "recording")
        if all(getattr(self, s) is None for s in sections):
            raise ValueError(f"nothing to run: give at least one of {', '.join(sections)}")
        return self


def run_bias_only(
    config: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Any:
    """Run the studies a config lists and write the results folder.

    Returns
    -------
    neurofm.analysis.learning_regime.AnalysisResult
        Tables among ``width_sweep``, ``multitask``, ``task_variance_clusters``,
        ``generation``, ``lorenz``, ``recording``; one PNG per study.
    """
    from neurofm.analysis.learning_regime import AnalysisResult
    from neurofm.analysis.results import check_results_folder, load_config, write_results
    from neurofm.viz import analysis as plots

    path = Path(config)
    cfg, text = load_config(BiasOnlyConfig, path)
    out_dir = check_results_folder(Path(out) if out is not None else Path(cfg.out))
    tables: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, Any] = {}
    seed = cfg.seed
    with single_thread():
        if (ws := cfg.width_sweep) is not None:
            rows = width_sweep(
                ws.widths,
                ws.seeds,
                ws.epochs,
                ws.lr,
                ws.full_lr,
                ws.batch_size,
                ws.init,
                ws.full_training,
                progress,
            )
            tables["width_sweep"] = rows
            figures["width_sweep"] = plots.plot_width_sweep(rows)
        if (mt := cfg.multitask) is not None:
            rows, clusters = multitask(
                mt.tasks,
                mt.width,
                mt.epochs,
                mt.lr,
                mt.batch_size,
                mt.init,
                seed,
                mt.clusters,
                mt.full_training,
                mt.full_lr,
                progress,
            )
            tables["multitask"] = rows
            tables["task_variance_clusters"] = [
                {
                    "cluster": c,
                    "units": clusters["sizes"][c],
                    "preferred_task": clusters["tasks"][clusters["preferred_task"][c]],
                    "selectivity": clusters["selectivity"][c],
                    "spearman_tv_bias": clusters["spearman"][c],
                    **{f"tv_{t}": float(v) for t, v in zip(clusters["tasks"], prof, strict=True)},
                }
                for c, prof in enumerate(clusters["profiles"])
            ]
            figures["multitask"] = plots.plot_multitask(rows, clusters)
        if (gs := cfg.generation) is not None:
            rows, traces = generation_sweep(
                gs.targets,
                gs.gains,
                gs.n_hidden,
                gs.n_steps,
                gs.period,
                gs.steps,
                gs.lr,
                gs.weight_lr,
                gs.full_training,
                seed,
                progress,
            )
            tables["generation"] = rows
            figures["generation"] = plots.plot_generation(rows, traces)
        if (ls := cfg.lorenz) is not None:
            rows, traces = lorenz_forecast(
                ls.gains,
                ls.n_hidden,
                horizon=ls.horizon,
                segment=ls.segment,
                batch_size=ls.batch_size,
                steps=ls.steps,
                lr=ls.lr,
                weight_lr=ls.weight_lr,
                full_training=ls.full_training,
                seed=seed,
                progress=progress,
            )
            tables["lorenz"] = rows
            figures["lorenz"] = plots.plot_lorenz(rows, traces)
        if (rs := cfg.recording) is not None:
            with rs.source.open(path.parent, f"{path}: recording.source") as rec:
                task = rs.source.decode_task(rec)
                rows = recording_decoding(
                    task,
                    rs.gains,
                    rs.n_hidden,
                    rs.steps,
                    rs.lr,
                    rs.weight_lr,
                    rs.batch_size,
                    rs.full_training,
                    seed,
                    progress,
                )
            for row in rows:
                row["recording"] = task.recording_id
            tables["recording"] = rows
    write_results(out_dir, tables, figures, text, extra={"name": cfg.name})
    return AnalysisResult(out_dir, tables, list(figures))
