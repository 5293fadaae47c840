"""Errors of loading, adapting and running pretrained models; each names the file and field."""

from __future__ import annotations

from neurofm.errors import InvalidDataError, NeuroFMError

__all__ = ["CheckpointError", "NoUnitsError", "TargetMismatchError"]


class CheckpointError(NeuroFMError):
    """A file that is not a checkpoint neurofm can use here: missing, foreign (a text or HDF5
    file), damaged, or the checkpoint of another model (e.g. SAMBA given where POYO is
    needed)."""


class TargetMismatchError(InvalidDataError):
    """A recording's behaviour does not fit the model's readout: the target signal is missing
    or has another number of dimensions than the checkpoint predicts."""


class NoUnitsError(InvalidDataError):
    """A recording (or the part of it to decode) has no units or no spikes to decode from."""
