"""Exceptions raised by neurofm.

Every error a user can cause (a bad file, a bad value) is a :class:`NeuroFMError` whose message
names the file or signal, the field and what was expected, so the CLI can print it on one line.
"""

from __future__ import annotations

from numbers import Integral


class NeuroFMError(Exception):
    """Base class of every error neurofm raises on purpose."""


class InvalidDataError(NeuroFMError, ValueError):
    """A signal or recording violates the data layer's invariants.

    The message names the signal and the field, e.g.
    ``spikes.timestamps: must be finite (found NaN at index 12)``.
    """


class ReaderError(NeuroFMError):
    """A source file cannot be read: not the expected format, truncated or missing a field."""


class CatalogError(NeuroFMError):
    """A catalog folder or its index is missing, inconsistent or cannot be written."""


class SourceError(NeuroFMError):
    """A remote source (e.g. the DANDI archive) refused, failed or sent something unexpected."""


class DigestMismatchError(SourceError):
    """A downloaded file does not match the digest its source advertised; it was deleted."""


class SpecError(NeuroFMError):
    """A pipeline spec or dataset card is invalid; the message names the file and the key."""


class MissingExtraError(NeuroFMError, ImportError):
    """An optional dependency is not installed; the message says which extra to install,
    e.g. ``pip install neurofm[pynapple]``."""


def check_counts(where: str, **counts: object) -> None:
    """Raise :class:`InvalidDataError` unless every ``name=value`` is a whole number >= 1
    (``None``: not given, allowed); the message names ``where`` and the argument, e.g.
    ``adapt: epochs must be a whole number >= 1, got 0``."""
    for name, value in counts.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise InvalidDataError(f"{where}: {name} must be a whole number >= 1, got {value!r}")
