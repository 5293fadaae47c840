"""neurofm's Lightning checkpoints: written atomically and sealed, read back checked.

Writing (:class:`CheckpointFile`, the Trainer's checkpoint plugin): every checkpoint goes to a
temporary file beside its target, is flushed to disk and renamed over it, so a kill at any
moment leaves either the previous ``last.ckpt`` or the new one, never half a file. Before it is
written, the ``neurofm`` section gets ``weights_sha256``, a digest of the state dict's tensors
(names, dtypes, shapes, bytes) and vocabularies.

Reading (:func:`load_checkpoint`, :func:`read_checkpoint`, :func:`load_weights`): files are
unpickled with ``weights_only=True`` (tensors and plain containers only, never code); the
digest is recomputed and a checkpoint whose weights changed since it was written is refused;
the ``neurofm`` section and the tensors are checked against what the model needs before any is
used. Every problem is one :class:`~neurofm.errors.NeuroFMError` naming the file and what is
missing or mismatched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from neurofm import display
from neurofm.atomic import atomic_path
from neurofm.errors import NeuroFMError

log = logging.getLogger(__name__)

__all__ = [
    "CHECKSUM_KEY",
    "CheckpointFile",
    "ResumePoint",
    "check_resumable",
    "checkpoint_format",
    "load_checkpoint",
    "load_weights",
    "malformed_section",
    "read_checkpoint",
    "resume_point",
    "seal",
    "training_state_digest",
    "weights_digest",
    "write_checkpoint",
]

#: Key of the weights' digest in a checkpoint's ``neurofm`` section.
CHECKSUM_KEY = "weights_sha256"
#: Key of the optimizer's and schedulers' digest there (:func:`training_state_digest`).
TRAINING_CHECKSUM_KEY = "training_state_sha256"
_TRAINING_STATE = ("optimizer_states", "lr_schedulers")
#: Top-level checkpoint key of the training position (see :class:`ResumePoint`).
RESUME_KEY = "neurofm_resume"


class ResumePoint(NamedTuple):
    """Where a resumed run picks up: batch ``batches`` (0-based) of epoch ``epoch``."""

    epoch: int
    batches: int


def weights_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 of a state dict: every entry's name, and its dtype, shape and bytes (tensors) or
    its canonical JSON (extra states such as vocabularies), in sorted name order.

    Parameters
    ----------
    state : mapping of str to tensor or plain value
        A ``state_dict`` (as saved, or as loaded back).

    Returns
    -------
    str
        The hex digest.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        h.update(name.encode() + b"\0")
        _leaf_digest(value, h)
        h.update(b"\0")
    return h.hexdigest()


def _leaf_digest(value: Any, h: Any) -> None:
    """Feed a tensor (dtype, shape, bytes) or a plain value (canonical JSON) to ``h``."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{t.dtype}{tuple(value.shape)}".encode() + b"\0")
        h.update(memoryview(t.view(torch.uint8).numpy()))
    else:
        h.update(json.dumps(value, sort_keys=True, default=repr).encode())


def _tree_digest(value: Any, h: Any) -> None:
    """Feed a nested structure of mappings, sequences, tensors and plain values to ``h``."""
    if isinstance(value, Mapping):
        h.update(f"M{len(value)}".encode())
        for key in sorted(value, key=repr):
            h.update(repr(key).encode() + b"\0")
            _tree_digest(value[key], h)
    elif isinstance(value, list | tuple):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _tree_digest(item, h)
    else:
        _leaf_digest(value, h)
    h.update(b"\0")


def training_state_digest(checkpoint: Mapping[str, Any]) -> str | None:
    """SHA-256 of what a resumed run takes from a checkpoint besides the weights: the
    optimizer's state (Adam's moments, step counts) and the learning-rate schedulers'. None
    when the checkpoint holds neither (weights only)."""
    parts = {k: checkpoint[k] for k in _TRAINING_STATE if k in checkpoint}
    if not parts:
        return None
    h = hashlib.sha256()
    _tree_digest(parts, h)
    return h.hexdigest()


def seal(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Store the weights' digest in the checkpoint's ``neurofm`` section (when it has one),
    and the optimizer's and schedulers' (:func:`training_state_digest`) when it holds them.

    Parameters
    ----------
    checkpoint : dict
        A Lightning checkpoint (``state_dict`` and, for neurofm's models, ``neurofm``).

    Returns
    -------
    dict
        The same checkpoint.
    """
    meta = checkpoint.get("neurofm")
    if isinstance(meta, dict) and isinstance(checkpoint.get("state_dict"), Mapping):
        meta[CHECKSUM_KEY] = weights_digest(checkpoint["state_dict"])
        training = training_state_digest(checkpoint)
        if training is not None:
            meta[TRAINING_CHECKSUM_KEY] = training
        else:
            meta.pop(TRAINING_CHECKSUM_KEY, None)
    return checkpoint


def write_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Seal ``checkpoint`` (:func:`seal`) and write it to ``path`` atomically: to a temporary
    file beside it, on disk, then renamed over it (a crash leaves the old file or the new one).

    Parameters
    ----------
    checkpoint : dict
        A Lightning checkpoint, e.g. one read back with :func:`load_checkpoint` and changed.
    path : path-like
        Where it goes.
    """
    seal(checkpoint)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())  # the bytes are on disk before the rename makes them current


class CheckpointFile(TorchCheckpointIO):
    """The Trainer's checkpoint plugin: atomic, sealed writes; checked, weights-only reads.

    Lightning writes every checkpoint (``last.ckpt`` at each epoch's end and every N steps)
    and reads the one a run resumes from through this object.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        write_checkpoint(checkpoint, path)

    def load_checkpoint(
        self,
        path: str | os.PathLike[str],
        map_location: Any = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        # weights_only whatever the caller asks: a checkpoint never runs code here
        return load_checkpoint(path)


def _describe_load_error(path: Path, exc: Exception) -> str:
    """One line saying why torch could not read ``path``, without torch's advice to load it
    with ``weights_only=False`` (which would run whatever code the file carries)."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (
            f"{path}: not a loadable checkpoint: it holds Python objects, not only tensors and "
            f"plain values ({refused.group(1)} was refused); neurofm loads weights only and never "
            "runs code from a checkpoint"
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        head = b"PK"
    if not head:
        return f"{path}: not a loadable checkpoint (the file is empty)"
    # torch.save writes a zip archive (PK..); its legacy format, a pickle (0x80, protocol)
    if not head.startswith((b"PK", b"\x80")):
        what = (
            "an HDF5 file (a recording or an NWB file?)"
            if head == b"\x89HDF"
            else f"a file that starts with {head!r}"
        )
        return (
            f"{path}: not a loadable checkpoint (not a PyTorch checkpoint, or damaged: "
            f"torch.save writes a zip archive; this is {what})"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = first.split(". This is an internal")[0]  # torch's zip reader adds a paragraph
    if "weights_only" in first or len(first) > 200:
        first = type(exc).__name__
    return f"{path}: not a loadable checkpoint (not a PyTorch checkpoint, or damaged: {first})"


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint file with ``weights_only=True`` and check its weights' digest.

    Parameters
    ----------
    path : path-like
        The ``.ckpt`` file.

    Returns
    -------
    dict
        The checkpoint.

    Raises
    ------
    NeuroFMError
        A missing or unreadable file, one holding pickled code, or a neurofm checkpoint whose
        weights no longer match the digest stored when it was written.
    """
    path = Path(path)
    if not path.is_file():
        raise NeuroFMError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise NeuroFMError(_describe_load_error(path, exc)) from None
    meta = ckpt.get("neurofm") if isinstance(ckpt, dict) else None
    if isinstance(meta, dict) and CHECKSUM_KEY in meta:
        state = ckpt.get("state_dict")
        if not isinstance(state, Mapping):
            raise NeuroFMError(f"{path}: the checkpoint has no 'state_dict' (no weights)")
        if weights_digest(state) != meta[CHECKSUM_KEY]:
            raise NeuroFMError(
                f"{path}: its weights changed after it was written (their SHA-256 does not "
                "match the one stored in the checkpoint): the file is damaged or was modified; "
                "use another copy or retrain"
            )
    elif isinstance(meta, dict):
        log.warning("%s: no weights checksum (written by an older neurofm); not verified", path)
    return ckpt


def checkpoint_format(path: str | os.PathLike[str]) -> str | None:
    """The ``format`` a neurofm checkpoint declares (``neurofm.poyo``, ``neurofm.samba``), or
    None for a missing file, an unreadable one or another tool's."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    meta = ckpt.get("neurofm") if isinstance(ckpt, dict) else None
    return meta.get("format") if isinstance(meta, dict) else None


def read_checkpoint(
    path: str | os.PathLike[str],
    fmt: str,
    model_name: str,
    required: Iterable[str] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``neurofm`` section and the model's state dict (``model.`` prefix removed).

    Parameters
    ----------
    path : path-like
        The checkpoint.
    fmt : str
        The format it must declare (``neurofm.poyo``).
    model_name : str
        The model's name, for messages (``POYO``).
    required : iterable of str
        Keys the ``neurofm`` section must have (``model_config``, ``scaler``...).

    Returns
    -------
    (dict, dict)
        The ``neurofm`` section and the state dict.

    Raises
    ------
    NeuroFMError
        A missing, unreadable or modified file (see :func:`load_checkpoint`), a checkpoint of
        another format, or one missing a required key or its weights.
    """
    path = Path(path)
    ckpt = load_checkpoint(path)
    meta = ckpt.get("neurofm") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise NeuroFMError(
            f"{path}: not a neurofm {model_name} checkpoint (no 'neurofm' section with format "
            f"{fmt!r}); was it written by another model or tool?"
        )
    missing = [key for key in required if key not in meta]
    if missing:
        raise NeuroFMError(
            f"{path}: incomplete {model_name} checkpoint: its 'neurofm' section lacks "
            f"{', '.join(map(repr, missing))} (has {', '.join(map(repr, sorted(meta)))})"
        )
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping) or not state:
        raise NeuroFMError(f"{path}: incomplete {model_name} checkpoint: no weights (state_dict)")
    return meta, {str(k).removeprefix("model."): v for k, v in state.items()}


def resume_point(checkpoint: Mapping[str, Any]) -> ResumePoint | None:
    """Where training resumes from ``checkpoint`` (as written by the trainer's ``last.ckpt``
    callback), or None when it does not say.

    Parameters
    ----------
    checkpoint : mapping
        A loaded checkpoint.

    Returns
    -------
    ResumePoint or None
    """
    point = checkpoint.get(RESUME_KEY)
    if isinstance(point, Mapping) and {"epoch", "batches"} <= set(point):
        return ResumePoint(int(point["epoch"]), int(point["batches"]))
    return None


def check_resumable(
    path: str | os.PathLike[str], checkpoint: Mapping[str, Any], ranks: int
) -> None:
    """Refuse to resume from ``checkpoint`` when what the run would take from it besides the
    weights (:func:`load_checkpoint` checks those) is damaged, or on another number of ranks.

    The optimizer's state is checked against the digest :func:`seal` stored (a flipped bit in
    Adam's second moment would otherwise carry on into every later checkpoint, sealed anew).
    The number of DDP ranks must be the one it was trained on: each rank's share of an
    epoch's windows, the steps per epoch and so the learning-rate schedule depend on it
    (resumed on 2 ranks instead of 1, a run spends most of its schedule at the final,
    near-zero rate). Checkpoints written before these were recorded are not checked.

    Raises
    ------
    NeuroFMError
        A damaged optimizer or scheduler state, or another number of ranks.
    """
    meta = checkpoint.get("neurofm")
    stored = meta.get(TRAINING_CHECKSUM_KEY) if isinstance(meta, Mapping) else None
    if stored is not None and training_state_digest(checkpoint) != stored:
        raise NeuroFMError(
            f"{path}: cannot resume: its optimizer state changed after it was written (its "
            "SHA-256 does not match the one stored in the checkpoint): the file is damaged or "
            "was modified. Its weights are intact and can still be evaluated or fine-tuned; "
            "resume from another copy, or start over without resuming"
        )
    point = checkpoint.get(RESUME_KEY)
    saved = point.get("ranks") if isinstance(point, Mapping) else None
    if isinstance(saved, int) and saved != ranks:
        raise NeuroFMError(
            f"{path}: cannot resume: the run was started on {display.count(saved, 'rank')} "
            f"(devices x nodes) and would go on on {ranks}; each rank's share of the windows "
            "and the learning-rate schedule depend on it. Resume with the devices it was "
            "started with, or start over without resuming"
        )


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def load_weights(
    model: torch.nn.Module, state: Mapping[str, Any], path: str | os.PathLike[str], model_name: str
) -> None:
    """Load ``state`` into ``model`` after checking that every tensor is there with its shape.

    Vocabulary embeddings (:class:`~neurofm.models.layers.VocabEmbedding`) take their number of
    rows from the checkpoint's vocabulary, so only their width and agreement with that
    vocabulary are checked.

    Parameters
    ----------
    model : torch.nn.Module
        The model, built from the checkpoint's config.
    state : mapping
        Its state dict from the checkpoint (:func:`read_checkpoint`).
    path : path-like
        The checkpoint, for messages.
    model_name : str
        The model's name, for messages.

    Raises
    ------
    NeuroFMError
        Missing or unexpected tensors, or tensors of the wrong shape, listed by name.
    """
    from neurofm.models.layers import VocabEmbedding

    expected = model.state_dict()
    vocabs = {
        f"{name}.weight": module
        for name, module in model.named_modules()
        if isinstance(module, VocabEmbedding)
    }
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problems.append(f"missing {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {_names(unexpected)}")
    wrong = []
    for key, value in state.items():
        if key not in expected or not isinstance(expected[key], torch.Tensor):
            continue
        got, want = _shape(value), _shape(expected[key])
        if key in vocabs:
            words = state.get(key.removesuffix("weight") + "_extra_state")
            n = len(words["words"]) if isinstance(words, Mapping) and "words" in words else None
            want = (n if n is not None else -1, vocabs[key].dim)
        if got != want:
            wrong.append(
                f"{key} {list(got) if got is not None else type(value).__name__} "
                f"(expected {list(want)})"
            )
    if wrong:
        problems.append(f"wrong shape: {'; '.join(wrong[:5])}" + (" ..." if len(wrong) > 5 else ""))
    if problems:
        raise NeuroFMError(
            f"{path}: its weights do not fit a {model_name} of the checkpoint's own config "
            f"({'; '.join(problems)}): the file is damaged or was written by another neurofm "
            "version"
        )
    try:
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else repr(exc)
        raise NeuroFMError(
            f"{path}: its weights do not load into a {model_name} ({type(exc).__name__}: {first})"
        ) from None


@contextmanager
def malformed_section(path: str | os.PathLike[str], section: str) -> Iterator[None]:
    """Turn an error while reading a part of a checkpoint's ``neurofm`` section (a missing key,
    a value of the wrong type) into a :class:`NeuroFMError` naming the file and the part.

    Parameters
    ----------
    path : path-like
        The checkpoint.
    section : str
        The part being read (``scaler``, ``train_config``).
    """
    try:
        yield
    except NeuroFMError as exc:
        raise NeuroFMError(f"{path}: {section}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise NeuroFMError(
            f"{path}: malformed checkpoint: its {section!r} cannot be read "
            f"({type(exc).__name__}: {text})"
        ) from None


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:5])
    return f"{len(keys)} tensor(s): {shown}" + (" ..." if len(keys) > 5 else "")
