"""The readers' boundary: whatever a third-party library raises on a bad file becomes a
:class:`~neurofm.errors.ReaderError` that names the file.

MNE, nibabel, nilearn, h5py and pynwb raise dozens of exception types on damaged input
(``OSError``, ``KeyError``, ``IndexError``, ``EOFError``, ``struct.error``...). The readers
turn the ones they expect into precise messages; this decorator is the net under them, found
necessary by fuzzing (``tests/faults``): a user's bad file is never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from neurofm.errors import NeuroFMError, ReaderError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["reader_boundary"]


def reader_boundary(what: str) -> Callable[[F], F]:
    """Decorate a reader ``fn(path, ...)`` so that any non-neurofm exception is a ReaderError.

    Parameters
    ----------
    what : str
        What the file was read as, for the message (``"EEG"``, ``"BOLD NIfTI"``).

    Returns
    -------
    callable
        The decorator. ``MemoryError`` (a header declaring absurd sizes) is converted too;
        ``KeyboardInterrupt`` and other ``BaseException`` pass through.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return fn(path, *args, **kwargs)
            except NeuroFMError:
                raise
            except Exception as exc:
                log.debug(
                    "%s: unexpected %s while reading", path, type(exc).__name__, exc_info=True
                )
                lines = str(exc).strip().splitlines()
                reason = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
                raise ReaderError(f"{path}: damaged or unreadable {what} file ({reason})") from exc

        return wrapper  # type: ignore[return-value]

    return decorate
