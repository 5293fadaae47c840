"""How neurofm's objects explain themselves: short ``repr`` lines and ``_repr_html_`` tables.

Every object a user meets in Jupyter (recordings, catalogs, signals, configs, results) builds
its text and HTML from these helpers, so they all read the same way: ``<Kind 'name': facts>``
for a ``repr``, one ``<table>`` with a caption for ``_repr_html_``. Nothing here reads data:
callers pass what they already hold in memory (counts, shapes, metadata).

Configs get a ``repr`` that names only the fields that differ from their defaults
(``POYOConfig(dim=64, depth=1)``), which stays short and still evaluates back to the same
config, and an HTML table of every field with the changed ones in bold.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "config_html",
    "config_repr",
    "count",
    "html_table",
    "names",
    "number",
    "seconds",
    "span",
]

#: Rows an HTML table shows before it says how many more there are.
MAX_ROWS = 20


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 unit"``, ``"38,159 spikes"``: a count with thousands separators and its noun."""
    n = int(n)
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


def seconds(s: float) -> str:
    """A duration: ``"83.0 s"``, ``"12.4 min"`` from two minutes, ``"2.50 h"`` from two hours."""
    s = float(s)
    if not math.isfinite(s):
        return f"{s} s"
    if s >= 7200:
        return f"{s / 3600:.2f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def span(start: float, end: float) -> str:
    """A time range in seconds: ``"0.0-83.0 s"``."""
    return f"{float(start):.1f}-{float(end):.1f} s"


def number(x: Any, digits: int = 3) -> str:
    """A score or value in a few significant digits (NaN as ``"nan"``)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "nan"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def names(values: Iterable[Any], limit: int = 6) -> str:
    """``"x, y"`` or ``"C3, Cz, C4, ... (32)"``: the first few names of a list."""
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f", ... ({len(values)})" if len(values) > limit else "")


def html_table(
    caption: str,
    rows: Sequence[Sequence[Any]],
    header: Sequence[str] | None = None,
    *,
    bold: Iterable[int] = (),
) -> str:
    """An HTML ``<table>`` with a caption; cells are escaped, long tables are cut.

    Parameters
    ----------
    caption : str
        What the table is (the object's one-line summary).
    rows : sequence of sequence
        Cells, converted with ``str``.
    header : sequence of str, optional
        Column names.
    bold : iterable of int
        Rows drawn in bold (e.g. a config's changed fields).
    """
    bold = set(bold)
    out = ["<table>", f"<caption style='text-align:left'>{html.escape(caption)}</caption>"]
    if header:
        cells = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>" for h in header)
        out.append(f"<thead><tr>{cells}</tr></thead>")
    out.append("<tbody>")
    for i, row in enumerate(rows[:MAX_ROWS]):
        cells = "".join(
            f"<td style='text-align:left'>{'<b>' if i in bold else ''}"
            f"{html.escape(str(c))}{'</b>' if i in bold else ''}</td>"
            for c in row
        )
        out.append(f"<tr>{cells}</tr>")
    if len(rows) > MAX_ROWS:
        width = len(header) if header else max(len(r) for r in rows)
        out.append(f"<tr><td colspan='{width}'>... {len(rows) - MAX_ROWS:,} more</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _config_fields(obj: Any) -> list[tuple[str, Any, Any]]:
    """(name, value, default) of every field of a dataclass or a pydantic model."""
    fields = getattr(type(obj), "model_fields", None)
    if fields is not None:  # a pydantic BaseModel
        return [
            (name, getattr(obj, name), info.get_default(call_default_factory=True))
            for name, info in fields.items()
        ]
    out = []
    for f in dataclasses.fields(obj):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append((f.name, getattr(obj, f.name), default))
    return out


def _changed(value: Any, default: Any) -> bool:
    if default is dataclasses.MISSING:
        return True
    try:
        return bool(value != default)
    except Exception:  # values whose comparison is not a bool (arrays)
        return True


def config_repr(obj: Any) -> str:
    """``Name(field=value, ...)`` with only the fields that differ from their defaults."""
    parts = [f"{n}={v!r}" for n, v, d in _config_fields(obj) if _changed(v, d)]
    return f"{type(obj).__name__}({', '.join(parts)})"


def config_html(obj: Any) -> str:
    """Every field of a config in a table, the ones that differ from their defaults in bold."""
    rows, bold = [], []
    for i, (name, value, default) in enumerate(_config_fields(obj)):
        rows.append((name, repr(value)))
        if _changed(value, default):
            bold.append(i)
    caption = f"{type(obj).__name__}: {count(len(bold), 'field')} set (bold), others default"
    return html_table(caption, rows, ("field", "value"), bold=bold)
