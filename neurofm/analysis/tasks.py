"""Tasks for the analyses, generated natively and seedably (no downloads, no gym).

Cognitive tasks follow NeuroGym's definitions at ``dt = 100 ms`` with the timings of the
rich/lazy study (Liu et al., ICLR 2024), so every trial has 8 steps:

=========  ==========================  ===================================================
name       NeuroGym env                periods (ms)
=========  ==========================  ===================================================
``2af``    PerceptualDecisionMaking    stimulus 700, decision 100
``dms``    DelayMatchSample            sample 100, delay 500, test 100, decision 100
``cxt``    ContextDecisionMaking       stimulus 200, delay 500, decision 100
=========  ==========================  ===================================================

Observations are ``[fixation, stimulus ring...]`` (plus two context units for ``cxt``); the
fixation input is 1 except during the decision period. Labels are 0 ("fixate") outside the
decision period and 1 or 2 (the choice) inside it, and the loss counts every step, as in the
paper's code. Stimulus noise has NeuroGym's default ``sigma = 1`` scaled by ``1/sqrt(dt)``, i.e.
a standard deviation of 0.1 per step. NeuroGym itself (whose current API differs from the one the
paper pinned) is not needed.

``digits`` is the CPU stand-in for sequential MNIST: scikit-learn's bundled 8x8 digits presented
one row (8 pixels) per step, the class read out at the last step.

Dynamical targets for the bias-only RNNs (a cosine, the Van der Pol oscillator, the Lorenz
observable) and the digits label maps of the bias-only multi-task study live here as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from neurofm.errors import InvalidDataError

__all__ = [
    "DIGIT_TASKS",
    "ContextDecision",
    "DelayMatchSample",
    "PerceptualDecision",
    "SequentialDigits",
    "Task",
    "TaskBatch",
    "autocorrelation_hwhm",
    "digits_data",
    "digits_task_labels",
    "lorenz_observable",
    "make_task",
    "sine_target",
    "van_der_pol_target",
]

STEP_MS = 100.0
_SIGMA = 1.0 / np.sqrt(STEP_MS)  # NeuroGym: sigma / sqrt(dt) with sigma = 1, dt in ms


@dataclass
class TaskBatch:
    """One batch of trials.

    Attributes
    ----------
    inputs : ndarray, shape (batch, time, n_in), float32
    targets : ndarray
        Class labels ``(batch, time)`` int64 for classification, values ``(batch, time,
        n_out)`` float32 for regression.
    loss_mask : ndarray, shape (batch, time), bool
        Steps that count in the loss.
    decision_mask : ndarray, shape (batch, time), bool
        Steps that count for the score and the sign-similarity window.
    """

    inputs: np.ndarray
    targets: np.ndarray
    loss_mask: np.ndarray
    decision_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


class Task:
    """A trial generator with a fixed input size, output size and trial length.

    Subclasses set the class attributes and implement :meth:`sample`. ``kind`` is
    ``"classify"`` (cross-entropy over ``n_out`` classes) or ``"regress"`` (mean squared error).
    """

    name: ClassVar[str] = "task"
    kind: ClassVar[Literal["classify", "regress"]] = "classify"
    n_in: int
    n_out: int
    seq_len: int

    def sample(self, n: int, rng: np.random.Generator) -> TaskBatch:  # pragma: no cover
        """``n`` training trials drawn with ``rng``."""
        raise NotImplementedError

    def probe(self, n: int, seed: int = 12345) -> TaskBatch:
        """A fixed set of ``n`` held-out trials (the same for a given seed)."""
        return self.sample(n, np.random.default_rng(seed))

    def score(self, outputs: np.ndarray, batch: TaskBatch) -> float:
        """Accuracy on decision steps (classification) or R^2 over them (regression)."""
        mask = batch.decision_mask
        if self.kind == "classify":
            pred = outputs.argmax(-1)
            return float((pred[mask] == batch.targets[mask]).mean())
        y, p = batch.targets[mask], outputs[mask]
        ss_res = ((y - p) ** 2).sum(0)
        ss_tot = ((y - y.mean(0)) ** 2).sum(0)
        return float(np.mean(1.0 - ss_res / np.maximum(ss_tot, 1e-12)))


def _decision_batch(x: np.ndarray, label: np.ndarray) -> TaskBatch:
    """Labels 0 (fixate) everywhere but the last step, where the choice ``label`` is."""
    n, t, _ = x.shape
    y = np.zeros((n, t), np.int64)
    y[:, -1] = label
    decision = np.zeros((n, t), bool)
    decision[:, -1] = True
    return TaskBatch(x.astype(np.float32), y, np.ones((n, t), bool), decision)


class PerceptualDecision(Task):
    """Two-alternative forced choice (NeuroGym ``PerceptualDecisionMaking``): 2AF.

    Two stimulus units carry ``0.5 +- coh/200`` plus noise for 7 steps; choose the larger.
    """

    name = "2af"
    COHERENCES = (0.0, 6.4, 12.8, 25.6, 51.2)

    def __init__(self, stimulus_steps: int = 7, sigma: float = _SIGMA) -> None:
        self.stimulus_steps, self.sigma = stimulus_steps, sigma
        self.n_in, self.n_out, self.seq_len = 3, 3, stimulus_steps + 1

    def sample(self, n: int, rng: np.random.Generator) -> TaskBatch:
        choice = rng.integers(0, 2, n)
        coh = np.asarray(self.COHERENCES)[rng.integers(0, len(self.COHERENCES), n)]
        s = self.stimulus_steps
        x = np.zeros((n, self.seq_len, 3))
        x[:, :s, 0] = 1.0
        sign = np.where(choice == 0, 1.0, -1.0) * coh / 200.0
        x[:, :s, 1] = 0.5 + sign[:, None]
        x[:, :s, 2] = 0.5 - sign[:, None]
        x[:, :s, 1:] += rng.normal(0.0, self.sigma, (n, s, 2))
        return _decision_batch(x, choice + 1)


class DelayMatchSample(Task):
    """Delayed match-to-sample (NeuroGym ``DelayMatchSample``): DMS.

    A sample on a two-unit ring, a 5-step delay, a test; answer 1 for match, 2 for non-match.
    """

    name = "dms"

    def __init__(self, delay_steps: int = 5, sigma: float = _SIGMA) -> None:
        self.delay_steps, self.sigma = delay_steps, sigma
        self.n_in, self.n_out, self.seq_len = 3, 3, delay_steps + 3

    def sample(self, n: int, rng: np.random.Generator) -> TaskBatch:
        match = rng.integers(0, 2, n) == 0
        sample = rng.integers(0, 2, n)
        test = np.where(match, sample, 1 - sample)
        t_test = self.delay_steps + 1
        x = np.zeros((n, self.seq_len, 3))
        x[:, :-1, 0] = 1.0
        rows = np.arange(n)
        x[rows, 0, 1 + sample] = 1.0
        x[rows, t_test, 1 + test] = 1.0
        for t in (0, t_test):  # NeuroGym adds noise to the ring during sample and test only
            x[:, t, 1:] += rng.normal(0.0, self.sigma, (n, 2))
        return _decision_batch(x, np.where(match, 1, 2))


class ContextDecision(Task):
    """Context-dependent decision (NeuroGym ``ContextDecisionMaking``): CXT.

    Two modalities with two stimulus units each; two context units (shown throughout) say which
    modality to report. Inputs: fixation, mod1 (2), mod2 (2), context (2).
    """

    name = "cxt"
    COHERENCES = (5.0, 15.0, 50.0)

    def __init__(
        self, stimulus_steps: int = 2, delay_steps: int = 5, sigma: float = _SIGMA
    ) -> None:
        self.stimulus_steps, self.delay_steps, self.sigma = stimulus_steps, delay_steps, sigma
        self.n_in, self.n_out = 7, 3
        self.seq_len = stimulus_steps + delay_steps + 1

    def sample(self, n: int, rng: np.random.Generator) -> TaskBatch:
        s = self.stimulus_steps
        x = np.zeros((n, self.seq_len, 7))
        x[:, :-1, 0] = 1.0
        choices = rng.integers(0, 2, (n, 2))
        cohs = np.asarray(self.COHERENCES)[rng.integers(0, len(self.COHERENCES), (n, 2))]
        for mod in range(2):
            sign = np.where(choices[:, mod] == 0, 1.0, -1.0) * cohs[:, mod] / 200.0
            x[:, :s, 1 + 2 * mod] = 0.5 + sign[:, None]
            x[:, :s, 2 + 2 * mod] = 0.5 - sign[:, None]
        x[:, :s, 1:5] += rng.normal(0.0, self.sigma, (n, s, 4))
        context = rng.integers(0, 2, n)
        x[np.arange(n), :, 5 + context] = 1.0
        return _decision_batch(x, choices[np.arange(n), context] + 1)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def digits_data(
    test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, pixels in ``[0, 1]``, split into train and test.

    Returns
    -------
    x_train, y_train, x_test, y_test : ndarray
        Images flattened to 64 values (float32) and labels 0-9 (int64).
    """
    x, y = _digits()
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


class SequentialDigits(Task):
    """Sequential digits: one 8-pixel row per step, the class (0-9) read out at the last step.

    The CPU-sized stand-in for sequential MNIST (28 rows of 28 pixels) with the same protocol:
    the loss counts only the last step. Training trials come from the train split, probes from
    the test split.
    """

    name = "digits"

    def __init__(self, seed: int = 0) -> None:
        self.x_train, self.y_train, self.x_test, self.y_test = digits_data(seed=seed)
        self.n_in, self.n_out, self.seq_len = 8, 10, 8

    def _batch(self, x: np.ndarray, y: np.ndarray) -> TaskBatch:
        n = len(x)
        labels = np.zeros((n, 8), np.int64)
        labels[:, -1] = y
        last = np.zeros((n, 8), bool)
        last[:, -1] = True
        return TaskBatch(x.reshape(n, 8, 8), labels, last, last.copy())

    def sample(self, n: int, rng: np.random.Generator) -> TaskBatch:
        idx = rng.integers(0, len(self.x_train), n)
        return self._batch(self.x_train[idx], self.y_train[idx])

    def probe(self, n: int, seed: int = 12345) -> TaskBatch:
        idx = np.random.default_rng(seed).permutation(len(self.x_test))[:n]
        return self._batch(self.x_test[idx], self.y_test[idx])


_TASKS: dict[str, Callable[..., Task]] = {
    "2af": PerceptualDecision,
    "dms": DelayMatchSample,
    "cxt": ContextDecision,
    "digits": SequentialDigits,
}


def make_task(name: str, **kwargs: object) -> Task:
    """A task by name: ``2af``, ``dms``, ``cxt`` or ``digits``.

    Tasks built from a recording are made by :func:`neurofm.analysis.windows.DecodeBehaviour`.
    """
    if name not in _TASKS:
        raise InvalidDataError(f"unknown task {name!r} (expected one of {', '.join(_TASKS)})")
    return _TASKS[name](**kwargs)


# --------------------------------------------------------------------------------------------
# digits label maps for the multi-task bias study
# --------------------------------------------------------------------------------------------

#: Label maps over the ten digit classes: ``name -> (number of classes, map)``.
DIGIT_TASKS: dict[str, tuple[int, Callable[[np.ndarray], np.ndarray]]] = {
    "identity": (10, lambda y: y),
    "parity": (2, lambda y: y % 2),
    "geq5": (2, lambda y: (y >= 5).astype(np.int64)),
    "mod3": (3, lambda y: y % 3),
    # a fixed permutation of the classes: as hard as identity, but a different output code
    "permuted": (10, lambda y: np.array([3, 8, 0, 6, 1, 9, 4, 2, 7, 5])[y]),
}


def digits_task_labels(name: str, y: np.ndarray) -> tuple[int, np.ndarray]:
    """Relabel digit classes ``y`` for task ``name``; returns ``(n_classes, labels)``."""
    if name not in DIGIT_TASKS:
        raise InvalidDataError(
            f"unknown digits task {name!r} (expected one of {', '.join(DIGIT_TASKS)})"
        )
    n_classes, fn = DIGIT_TASKS[name]
    return n_classes, fn(np.asarray(y)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# dynamical-system targets
# --------------------------------------------------------------------------------------------


def sine_target(n_steps: int = 150, period: float = 25.0) -> np.ndarray:
    """``cos(2 pi t / period)`` for ``t = 0..n_steps-1``, shape ``(n_steps, 1)``.

    The paper's autonomous-generation target is a cosine of period 25 steps.
    """
    t = np.arange(n_steps)
    return np.cos(2 * np.pi * t / period)[:, None].astype(np.float32)


def van_der_pol_target(
    n_steps: int = 150, mu: float = 1.0, steps_per_period: float = 30.0, burn_in: float = 20.0
) -> np.ndarray:
    """Van der Pol limit cycle ``(x, dx/dt)``, each scaled to unit peak, shape ``(n_steps, 2)``.

    ``x'' - mu (1 - x^2) x' + x = 0`` integrated with scipy from ``(2, 0)``; the first
    ``burn_in`` time units are dropped so the trajectory starts on the cycle, and the sampling
    step is chosen so one period spans about ``steps_per_period`` samples.
    """
    from scipy.integrate import solve_ivp

    period = _van_der_pol_period(mu)
    dt = period / steps_per_period
    t_eval = burn_in + dt * np.arange(n_steps)
    sol = solve_ivp(
        lambda _t, z: [z[1], mu * (1 - z[0] ** 2) * z[1] - z[0]],
        (0.0, float(t_eval[-1])),
        [2.0, 0.0],
        t_eval=t_eval,
        rtol=1e-8,
        atol=1e-8,
    )
    z = sol.y.T
    return (z / np.abs(z).max(0)).astype(np.float32)


def _van_der_pol_period(mu: float) -> float:
    # Small-mu expansion joined to the relaxation limit; only sets the sampling step.
    if mu < 3:
        return 2 * np.pi * (1 + mu**2 / 16)
    return (3 - 2 * np.log(2)) * mu


def lorenz_observable(
    n_steps: int,
    dt: float = 0.02,
    seed: int = 0,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
) -> np.ndarray:
    """The ``x`` coordinate of the Lorenz system sampled every ``dt``, z-scored, shape (n,).

    The start is a random point near the attractor (seeded) after 20 time units of burn-in.
    """
    from scipy.integrate import solve_ivp

    rng = np.random.default_rng(seed)
    z0 = np.array([1.0, 1.0, 20.0]) + rng.normal(0, 1.0, 3)
    burn = 20.0
    t_eval = burn + dt * np.arange(n_steps)

    def field(_t: float, z: np.ndarray) -> list[float]:
        return [sigma * (z[1] - z[0]), z[0] * (rho - z[2]) - z[1], z[0] * z[1] - beta * z[2]]

    sol = solve_ivp(
        field,
        (0.0, float(t_eval[-1])),
        z0,
        t_eval=t_eval,
        rtol=1e-9,
        atol=1e-9,
    )
    x = sol.y[0]
    return ((x - x.mean()) / x.std()).astype(np.float32)


def autocorrelation_hwhm(x: np.ndarray) -> int:
    """Half-width at half-maximum of ``x``'s autocorrelation, in samples.

    The paper's Lorenz forecasting horizon (tau = 27 steps) is defined this way: the first lag
    at which the autocorrelation falls to 0.5.
    """
    x = np.asarray(x, np.float64) - np.mean(x)
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    ac /= ac[0]
    below = np.flatnonzero(ac < 0.5)
    return int(below[0]) if below.size else n
