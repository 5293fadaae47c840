"""What every plot shares: pyplot on a headless-safe backend, and saving a figure atomically.

Importing this module is cheap: matplotlib is imported only when :func:`pyplot` is called.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from neurofm.atomic import atomic_path
from neurofm.errors import NeuroFMError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FORMATS", "figure_format", "pyplot", "save_png"]


def pyplot() -> ModuleType:
    """``matplotlib.pyplot``, on the Agg backend unless a backend is already in play.

    Agg needs no display, so plots work on headless machines and in CI. A backend is left
    alone when the user already imported pyplot (they chose one, or matplotlib's default
    did) or set ``MPLBACKEND`` (Jupyter sets it for inline figures).

    Returns
    -------
    module
        ``matplotlib.pyplot``.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Image formats a plot is written in, by file suffix (matplotlib's, less the raw ones).
FORMATS = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "tif", "tiff")


def figure_format(path: str | os.PathLike[str]) -> str:
    """The image format a plot at ``path`` is written in: its suffix's, PNG without one.

    Raises
    ------
    NeuroFMError
        A suffix that is not an image format (``--plot out.txt``).
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    if suffix not in FORMATS:
        raise NeuroFMError(
            f"{path}: .{suffix} is not an image format; give the plot a name ending in "
            f"{', '.join('.' + f for f in FORMATS[:3])} (or another of {', '.join(FORMATS[3:])})"
        )
    return "jpeg" if suffix == "jpg" else "tiff" if suffix == "tif" else suffix


def save_png(fig: Figure, path: str | os.PathLike[str] | None, *, dpi: int = 110) -> Path | None:
    """Save ``fig`` at ``path``, atomically; do nothing when ``path`` is None.

    A PNG, or the format the suffix names (``.pdf``, ``.svg``: :func:`figure_format`).

    The image is written under a temporary name beside ``path`` and renamed into place when
    complete (:func:`neurofm.atomic.atomic_path`), so a crash never leaves a partial PNG under
    the final name. Missing parent folders are created.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to save.
    path : str or Path, optional
        Destination file.
    dpi : int
        Resolution in dots per inch.

    Returns
    -------
    Path or None
        ``path`` as a :class:`~pathlib.Path`, or None when nothing was saved.
    """
    if path is None:
        return None
    path = Path(path)
    fmt = figure_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
    return path
