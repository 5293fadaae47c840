"""What every figure must satisfy: nothing drawn outside the canvas, no two parts overlapping."""

from __future__ import annotations

import itertools

import pytest


def _overlap(a, b, tol: float = 1.0) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


def _inside(box, outer, tol: float = 1.0) -> bool:
    return (
        box.x0 >= outer.x0 - tol
        and box.x1 <= outer.x1 + tol
        and box.y0 >= outer.y0 - tol
        and box.y1 <= outer.y1 + tol
    )


def check_layout(fig) -> None:
    """Every axes (with its titles, labels and tick labels), every figure legend and the
    suptitle lie inside the figure, and none of them overlaps another."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    parts = {}
    for i, ax in enumerate(fig.axes):
        if ax.get_visible():
            parts[f"axes {i} ({ax.get_title()!r})"] = ax.get_tightbbox(renderer)
    for i, legend in enumerate(fig.legends):
        parts[f"figure legend {i}"] = legend.get_window_extent(renderer)
    if fig._suptitle is not None and fig._suptitle.get_text():
        parts["suptitle"] = fig._suptitle.get_window_extent(renderer)
    for name, box in parts.items():
        assert _inside(box, fig.bbox), f"{name} is clipped: {box} outside {fig.bbox}"
    for (n1, b1), (n2, b2) in itertools.combinations(parts.items(), 2):
        assert not _overlap(b1, b2), f"{n1} overlaps {n2}"


@pytest.fixture
def laid_out():
    """The :func:`check_layout` assertion."""
    return check_layout
