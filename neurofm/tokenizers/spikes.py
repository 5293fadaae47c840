"""POYO tokens from a window of a Recording, and a collate that batches them.

One token per spike (its unit and time), plus a start and an end token for every unit of the
recording so silent units are seen too; latent tokens on a fixed time grid; output queries at the
target's sample times (a behaviour series), or at each trial's event time (a per-trial target,
:class:`~neurofm.data.targets.TrialTarget`), with weights: a sample whose value is not finite
(NaN gaps in behaviour) or whose class is unknown weighs 0. Unit ids are namespaced
``"<recording id>/<unit id>"`` so units of different sessions never collide.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurofm.data.recording import Recording
from neurofm.data.targets import TrialTarget, as_target, finite_rows, target_samples
from neurofm.errors import InvalidDataError

TOKEN_SPIKE, TOKEN_START, TOKEN_END = 0, 1, 2
PAD_MULTIPLE = 8

__all__ = [
    "ClassEncoder",
    "SpikeTokenizer",
    "TargetScaler",
    "collate",
    "encoding_from_dict",
    "unit_keys",
]


def unit_keys(recording_id: str, unit_ids: Sequence[str]) -> list[str]:
    """Vocabulary keys of a recording's units: ``"<recording id>/<unit id>"``."""
    return [f"{recording_id}/{u}" for u in unit_ids]


@dataclass
class TargetScaler:
    """z-scoring of the decoding target, fitted on training data and kept in the checkpoint."""

    mean: np.ndarray
    std: np.ndarray

    def forward(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetScaler:
        return cls(np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64))

    @property
    def width(self) -> int:
        """Outputs the model predicts: one per target dimension."""
        return len(self.mean)


@dataclass
class ClassEncoder:
    """The classes of a categorical target, fitted on training data and kept in the checkpoint.

    Labels are strings (:func:`~neurofm.data.targets.class_labels`); a label not among
    ``classes`` (or empty: no value) encodes to -1 and weighs 0 in training.
    """

    classes: tuple[str, ...]

    def encode(self, labels: np.ndarray) -> np.ndarray:
        """Class indices (int64) of ``labels``; -1 for a label not among the classes."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([index.get(str(v), -1) for v in labels], dtype=np.int64)

    def decode(self, index: np.ndarray) -> np.ndarray:
        """Labels of class indices."""
        return np.asarray(self.classes, dtype=object)[np.asarray(index, dtype=np.int64)]

    def to_dict(self) -> dict[str, list[str]]:
        return {"classes": list(self.classes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassEncoder:
        return cls(tuple(str(c) for c in d["classes"]))

    @property
    def width(self) -> int:
        """Outputs the model predicts: one logit per class."""
        return len(self.classes)


def encoding_from_dict(d: dict[str, Any]) -> TargetScaler | ClassEncoder:
    """The target's encoding saved in a checkpoint: a scaler, or the classes."""
    return ClassEncoder.from_dict(d) if "classes" in d else TargetScaler.from_dict(d)


@dataclass
class SpikeTokenizer:
    """Turns a window (an in-memory :class:`Recording`) into POYO's arrays.

    Parameters
    ----------
    unit_index, session_index : callable
        Map lists of string keys to vocabulary rows (``model.unit_emb.index``).
    window_length, latent_step, num_latents_per_step : float, float, int
        The model's time geometry.
    target : str or TrialTarget
        Name of the behaviour signal to decode (a RegularSeries or IrregularSeries), or a
        per-trial value at an event time (outputs at the trials' event times in the window).
    scaler : TargetScaler or ClassEncoder, optional
        z-scoring of the target, or the classes of a class target (required for one).
    unit_dropout : (int, int, int), optional
        Augmentation: keep a random number of units drawn from a triangular distribution
        (min, mode, max), capped at the recording's units; None disables it.
    seed : int
        Seed of the augmentation.
    """

    unit_index: Callable[[Sequence[str]], np.ndarray]
    session_index: Callable[[Sequence[str]], np.ndarray]
    window_length: float
    latent_step: float
    num_latents_per_step: int
    target: str | TrialTarget = "hand_vel"
    scaler: TargetScaler | ClassEncoder | None = None
    unit_dropout: tuple[int, int, int] | None = None
    seed: int = 0
    # recording id -> (its units' ids, vocabulary generation, their rows): see _unit_rows
    _rows: dict[str, tuple[Any, int, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.target = as_target(self.target)
        if isinstance(self.target, TrialTarget) and self.target.is_class:
            if not isinstance(self.scaler, ClassEncoder):
                raise InvalidDataError(
                    f"the class target {self.target.label} needs its classes (a ClassEncoder)"
                )
        n_steps = int(round(self.window_length / self.latent_step))
        self._latent_index = np.tile(np.arange(self.num_latents_per_step), n_steps)
        self._latent_times = np.repeat(
            (np.arange(n_steps) + 0.5) * self.latent_step, self.num_latents_per_step
        )

    @property
    def signals(self) -> tuple[str, ...]:
        """The signals a window needs for tokenizing: the spikes and the target's series or
        interval table (:class:`~neurofm.training.datasets.WindowDataset` windows only these)."""
        target = self.target
        return ("spikes", target if isinstance(target, str) else target.table)

    def _unit_rows(self, window: Recording, ids: np.ndarray) -> np.ndarray:
        """Vocabulary rows of the window's units. Windows of an open recording share its
        units table, so the rows are looked up once per recording (a fifth of the input path's
        time went to building and looking up the same keys window after window), and again
        when the table or the vocabulary (its ``generation``) is another; a ``unit_index``
        that is not a vocabulary's is asked every time."""
        generation = getattr(getattr(self.unit_index, "__self__", None), "generation", None)
        if generation is None:
            return self.unit_index(unit_keys(window.id, ids))
        cached = self._rows.get(window.id)
        if cached is not None and cached[0] is ids and cached[1] == generation:
            return cached[2]
        rows = self.unit_index(unit_keys(window.id, ids))
        self._rows[window.id] = (ids, generation, rows)
        return rows

    def _kept_units(self, n_units: int, window: Recording) -> np.ndarray | None:
        if self.unit_dropout is None:
            return None
        # Drawn from the window itself (recording, start): the same window always drops the
        # same units, whichever worker or resumed run tokenizes it; windows move every epoch.
        key = [self.seed, zlib.crc32(window.id.encode()), int(round(window.absolute_start * 1e6))]
        rng = np.random.default_rng(key)
        lo, mode, hi = self.unit_dropout
        hi = min(hi, n_units)
        lo, mode = min(lo, hi), min(max(mode, lo), hi)
        k = hi if hi == lo else int(round(rng.triangular(lo, mode, hi)))
        return np.sort(rng.choice(n_units, size=max(1, k), replace=False))

    def __call__(self, window: Recording) -> dict[str, Any]:
        spikes = window["spikes"]
        n_units = len(spikes.units)
        rows = self._unit_rows(window, spikes.units.ids)
        times, units = spikes.timestamps, spikes.unit_index
        kept = self._kept_units(n_units, window)
        if kept is not None:
            mask = np.zeros(n_units, dtype=bool)
            mask[kept] = True
            keep = mask[units]
            times, units = times[keep], units[keep]
        present = np.arange(n_units) if kept is None else kept
        length = window.duration
        input_rows = np.concatenate([rows[units], rows[present], rows[present]])
        input_times = np.concatenate([times, np.zeros(len(present)), np.full(len(present), length)])
        input_types = np.concatenate(
            [
                np.full(len(times), TOKEN_SPIKE),
                np.full(len(present), TOKEN_START),
                np.full(len(present), TOKEN_END),
            ]
        )
        item: dict[str, Any] = {
            "input_unit_index": input_rows,
            "input_timestamps": input_times,  # float64: see RotaryTimeEmbedding
            "input_token_type": input_types,
            "latent_index": self._latent_index,
            "latent_timestamps": self._latent_times,
            "session_index": int(self.session_index([window.id])[0]),
            "recording_id": window.id,
            "absolute_start": window.absolute_start,
        }
        item.update(self.outputs(window))
        return item

    def outputs(self, window: Recording) -> dict[str, Any]:
        """Output query times (relative), the encoded target there, and each one's weight.

        A series' samples (z-scored), or each trial event inside the window: its z-scored
        value, or for a class target its class index (as a float, shape ``(Q, 1)``). Samples
        with a non-finite value, or a class label the encoder does not know, weigh 0 (their
        value is set to 0 so the loss stays finite).
        """
        target = self.target
        if isinstance(target, str):
            if target not in window:
                raise InvalidDataError(
                    f"recording {window.id!r} has no target signal {target!r} "
                    f"(has {sorted(window.signals)})"
                )
            series = window[target]
            values = series.data if series.kind == "regular" else series.values
            times = np.asarray(series.timestamps, dtype=np.float64)
        else:
            # Trials overlapping the window come whole: keep the events inside it.
            times, values = target_samples(window, target)
            inside = (times >= 0) & (times < window.duration)
            times, values = times[inside], values[inside]
            if target.is_class:
                index = self.scaler.encode(values)  # type: ignore[union-attr]
                known = index >= 0
                return {
                    "output_timestamps": times,
                    "output_values": np.where(known, index, 0).astype(np.float32)[:, None],
                    "output_weights": known.astype(np.float32),
                }
        values = np.asarray(values, dtype=np.float64)
        ok = finite_rows(values)
        weights = np.ones(len(values), dtype=np.float32)
        if not ok.all():  # NaN gaps: zero weight, and a finite placeholder value
            values = np.where(ok.reshape((-1,) + (1,) * (values.ndim - 1)), values, 0.0)
            weights = ok.astype(np.float32)
        if self.scaler is not None:
            values = self.scaler.forward(values)
        if not ok.all():
            values = np.where(ok.reshape((-1,) + (1,) * (values.ndim - 1)), values, 0.0)
        return {
            "output_timestamps": times,
            "output_values": values.astype(np.float32),
            "output_weights": weights,
        }


def _pad_length(n: int) -> int:
    return max(PAD_MULTIPLE, -(-n // PAD_MULTIPLE) * PAD_MULTIPLE)


def _stack(arrays: list[np.ndarray], length: int, fill: float = 0) -> np.ndarray:
    first = arrays[0]
    out = np.full((len(arrays), length, *first.shape[1:]), fill, dtype=first.dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch tokenized windows, padding token and output axes to a multiple of 8.

    Padding to the batch's own longest window (not a global maximum) keeps the wasted work to
    the spread of spike counts within a batch; the multiple of 8 keeps kernel shapes regular.
    """
    import torch

    n_in = _pad_length(max(len(it["input_unit_index"]) for it in items))
    n_out = _pad_length(max(len(it["output_timestamps"]) for it in items))
    batch: dict[str, Any] = {}
    for key in ("input_unit_index", "input_token_type"):
        batch[key] = torch.from_numpy(_stack([it[key] for it in items], n_in).astype(np.int64))
    batch["input_timestamps"] = torch.from_numpy(
        _stack([it["input_timestamps"] for it in items], n_in)
    )
    lengths = np.array([len(it["input_unit_index"]) for it in items])
    batch["input_mask"] = torch.from_numpy(np.arange(n_in)[None, :] < lengths[:, None])
    batch["latent_index"] = torch.from_numpy(np.stack([it["latent_index"] for it in items]))
    batch["latent_timestamps"] = torch.from_numpy(
        np.stack([it["latent_timestamps"] for it in items])
    )
    batch["session_index"] = torch.tensor([it["session_index"] for it in items])
    for key in ("output_timestamps", "output_values", "output_weights"):
        batch[key] = torch.from_numpy(_stack([it[key] for it in items], n_out))
    out_lengths = np.array([len(it["output_timestamps"]) for it in items])
    batch["output_mask"] = torch.from_numpy(np.arange(n_out)[None, :] < out_lengths[:, None])
    batch["recording_id"] = [it["recording_id"] for it in items]
    # float64: a window starting at 103.76 s must not land microseconds off (float32 would)
    batch["absolute_start"] = torch.tensor(
        [it["absolute_start"] for it in items], dtype=torch.float64
    )
    return batch
