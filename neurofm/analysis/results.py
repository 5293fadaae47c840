"""Analysis configs and results folders.

Configs (``pipelines/learning_regime.yaml``, ``pipelines/bias_only.yaml``) are validated by
pydantic models with the same one-line errors as pipeline specs
(:func:`neurofm.specs.load_yaml`): an unknown key or a wrong type raises
:class:`~neurofm.errors.SpecError` naming the file and the key.

A results folder holds the tables (CSV), the plots (PNG) and a verbatim copy of the config. It
is written under a temporary name beside its final path and renamed into place only when
complete, so an interrupted analysis never leaves a half-written folder under the final name;
an older folder of the same name is replaced only at that moment.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from neurofm.display import config_html, config_repr
from neurofm.errors import NeuroFMError, SpecError
from neurofm.specs import load_yaml

__all__ = [
    "StrictModel",
    "format_table",
    "load_config",
    "summarise",
    "check_results_folder",
    "write_results",
]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of analysis config models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr__(self) -> str:  # only the fields that differ from the defaults
        return config_repr(self)

    def _repr_html_(self) -> str:
        return config_html(self)


def load_config(model: type[M], path: str | os.PathLike[str]) -> tuple[M, str]:
    """Load and validate a YAML config; returns the model and the file's text (for the copy).

    Raises
    ------
    SpecError
        Missing file, invalid YAML, unknown key, wrong type: one line naming the file and key.
    """
    path = Path(path)
    return load_yaml(path, model), path.read_text(encoding="utf-8")


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return "" if math.isnan(float(value)) else repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, list | tuple | np.ndarray):
        return json.dumps(np.asarray(value).tolist())
    return value


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def summarise(
    rows: Sequence[Mapping[str, Any]], by: Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Mean and standard deviation of ``metrics`` over rows grouped by the ``by`` columns.

    Groups keep their first-seen order; NaN values (e.g. diverged runs) are left out of the
    mean, and ``n`` counts the rows of each group.
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        key = tuple(row[k] if not _isnan(row[k]) else "nan" for k in by)
        groups.setdefault(key, []).append(row)
    out = []
    for key, members in groups.items():
        entry: dict[str, Any] = dict(zip(by, key, strict=True))
        entry["n"] = len(members)
        for m in metrics:
            values = np.asarray([float(r[m]) for r in members], float)
            values = values[np.isfinite(values)]
            entry[f"{m}_mean"] = float(values.mean()) if values.size else math.nan
            entry[f"{m}_sd"] = float(values.std()) if values.size else math.nan
        out.append(entry)
    return out


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table (for the CLI and logs): floats with 4 significant digits."""
    if not rows:
        return "(empty)"
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "nan" if math.isnan(float(v)) else f"{float(v):.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(lines)


#: What an analysis writes into its results folder (an existing folder holding anything else
#: is not one of them, and is never replaced).
_RESULT_SUFFIXES = frozenset({".csv", ".png", ".json", ".yaml", ".yml"})


def check_results_folder(out: str | os.PathLike[str]) -> Path:
    """Refuse an ``out`` that a results folder must not replace: a file, a folder holding
    anything but an earlier analysis's results (its ``summary.json`` or ``config.yaml``,
    tables, plots), or the working directory (or a folder above it). An empty folder is fine.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    NeuroFMError
        Naming what is there.
    """
    out = Path(out)
    if not out.exists():
        return out
    where = f"--out {out}"
    if not out.is_dir():
        raise NeuroFMError(f"{where}: a file is there; give a folder for the results")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise NeuroFMError(
            f"{where}: the working directory (or a folder above it); give the results a "
            "folder of their own, e.g. --out results"
        )
    entries = list(out.iterdir())
    others = sorted(p.name for p in entries if not p.is_file() or p.suffix not in _RESULT_SUFFIXES)
    ours = any(p.name in ("summary.json", "config.yaml") for p in entries)
    if entries and (others or not ours):
        held = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        held = held or "no summary.json or config.yaml"
        raise NeuroFMError(
            f"{where}: exists and is not an earlier analysis's results folder ({held}); the "
            "results replace the folder as a whole, so give a new one or remove it first"
        )
    return out


def write_results(
    out: str | os.PathLike[str],
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    figures: Mapping[str, Any],
    config_text: str,
    config_name: str = "config.yaml",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a results folder atomically.

    Parameters
    ----------
    out : path
        Final folder; an earlier results folder there is replaced as a whole (anything else
        there is refused: :func:`check_results_folder`).
    tables : mapping of str to rows
        ``name -> list of dicts``, written as ``name.csv``.
    figures : mapping of str to matplotlib Figure
        ``name -> figure``, written as ``name.png`` (and closed).
    config_text : str
        Verbatim copy of the config, written as ``config_name``.
    extra : mapping, optional
        JSON-ready values written to ``summary.json``.

    Returns
    -------
    Path
        The folder.
    """
    import matplotlib.pyplot as plt

    out = check_results_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, rows in tables.items():
            (tmp / f"{name}.csv").write_text(_csv_text(rows))
        for name, fig in figures.items():
            fig.savefig(tmp / f"{name}.png", dpi=110, format="png")
            plt.close(fig)
        (tmp / config_name).write_text(config_text)
        if extra is not None:
            (tmp / "summary.json").write_text(json.dumps(extra, indent=1, default=_json_default))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; honour the user's umask
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "previous")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise SpecError(f"summary.json: cannot serialise {type(value).__name__}")
