"""Recording -> pynapple: spikes as a ``TsGroup``, series as ``Tsd``/``TsdFrame``, intervals as
``IntervalSet``. :meth:`neurofm.data.Recording.to_pynapple` calls :func:`to_pynapple`.

pynapple is an optional extra (``pip install neurofm[pynapple]``): it is imported only here,
only when a conversion is asked for.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from neurofm.data.signals import Intervals, IrregularSeries, RegularSeries, Spikes
from neurofm.errors import InvalidDataError, MissingExtraError

log = logging.getLogger(__name__)

__all__ = ["to_pynapple"]

INSTALL_HINT = "pip install neurofm[pynapple]"


def _import_pynapple() -> Any:
    try:
        import pynapple
    except ImportError:
        raise MissingExtraError(
            f"to_pynapple needs pynapple, an optional extra: {INSTALL_HINT}"
        ) from None
    return pynapple


def to_pynapple(recording: Any) -> dict[str, Any]:
    """Every signal of a Recording as the pynapple object that fits it.

    Parameters
    ----------
    recording : Recording
        In memory or lazy (each signal is loaded), or a window of one.

    Returns
    -------
    dict of str to pynapple object
        Keyed by signal name, in the recording's order:

        * :class:`~neurofm.data.signals.Spikes` -> ``TsGroup`` keyed by unit index, with the
          units table as metadata (``unit_id`` and every column; a column whose name pynapple
          reserves, such as ``rate``, gets the prefix ``unit_``);
        * a one-channel :class:`RegularSeries` or :class:`IrregularSeries` -> ``Tsd``, several
          channels -> ``TsdFrame`` with the channel names as columns;
        * :class:`Intervals` -> ``IntervalSet`` with ``label`` and the columns as metadata.
          pynapple merges overlapping intervals and drops empty ones, so intervals that
          overlap or have zero length (events) come back as a pandas ``DataFrame`` instead
          (a warning says which).

        Every object's time support is the recording, ``[0, duration]`` (stretched to the
        last sample when a series runs past ``duration``).

    Raises
    ------
    MissingExtraError
        pynapple is not installed.
    """
    nap = _import_pynapple()
    signals = {name: recording[name].load() for name in recording}
    # The recording's span, stretched to cover any sample past ``duration`` (pynapple drops
    # what falls outside an object's time support).
    last = [float(np.max(s.timestamps)) for s in signals.values() if _has_times(s)]
    end = max([recording.duration, *(np.nextafter(t, np.inf) for t in last)])
    support = nap.IntervalSet(start=0.0, end=max(end, np.finfo(float).eps))
    out: dict[str, Any] = {}
    for name, signal in signals.items():
        if isinstance(signal, Spikes):
            out[name] = _tsgroup(nap, signal, support)
        elif isinstance(signal, RegularSeries | IrregularSeries):
            values = signal.data if isinstance(signal, RegularSeries) else signal.values
            t = np.asarray(signal.timestamps, dtype=np.float64)
            if values.shape[1] == 1:
                out[name] = nap.Tsd(t=t, d=np.asarray(values[:, 0]), time_support=support)
            else:
                out[name] = nap.TsdFrame(
                    t=t,
                    d=np.asarray(values),
                    columns=[str(c) for c in signal.channels],
                    time_support=support,
                )
        elif isinstance(signal, Intervals):
            out[name] = _interval_set(nap, recording.id, name, signal)
        else:  # pragma: no cover - every Signal subclass is handled above
            raise InvalidDataError(
                f"recording {recording.id!r}: signal {name!r} ({type(signal).__name__}) has no "
                "pynapple counterpart"
            )
    return out


def _has_times(signal: Any) -> bool:
    return isinstance(signal, Spikes | RegularSeries | IrregularSeries) and len(signal) > 0


def _tsgroup(nap: Any, spikes: Spikes, support: Any) -> Any:
    order = np.argsort(spikes.unit_index, kind="stable")  # time order kept within each unit
    bounds = np.searchsorted(spikes.unit_index[order], np.arange(len(spikes.units) + 1))
    times = np.asarray(spikes.timestamps, dtype=np.float64)[order]
    data = {
        u: nap.Ts(t=times[bounds[u] : bounds[u + 1]], time_support=support)
        for u in range(len(spikes.units))
    }
    group = nap.TsGroup(data, time_support=support)
    columns = {"unit_id": np.asarray(spikes.units.ids, dtype=str), **spikes.units.columns}
    for key, values in columns.items():
        try:
            group.set_info(**{key: np.asarray(values)})
        except (ValueError, TypeError):  # a name pynapple reserves (rate, ...)
            group.set_info(**{f"unit_{key}": np.asarray(values)})
    return group


def _interval_set(nap: Any, rec_id: str, name: str, table: Intervals) -> Any:
    start, end = np.asarray(table.start, np.float64), np.asarray(table.end, np.float64)
    metadata: dict[str, np.ndarray] = {}
    if table.labels is not None:
        metadata["label"] = np.asarray(table.labels, dtype=str)
    for key, col in table.columns.items():
        if np.asarray(col).ndim == 1:
            metadata[key] = np.asarray(col)
        else:
            log.warning("recording %r: %s.%s is not 1-D: left out of pynapple", rec_id, name, key)
    empty = bool((end <= start).any())
    overlapping = bool(len(start) > 1 and (start[1:] < np.maximum.accumulate(end)[:-1]).any())
    if empty or overlapping:
        why = "zero-length intervals" if empty else "overlapping intervals"
        log.warning(
            "recording %r: %s has %s, which a pynapple IntervalSet cannot hold: given as a "
            "pandas DataFrame",
            rec_id,
            name,
            why,
        )
        return table.to_dataframe()
    if not len(start):
        return nap.IntervalSet(start=np.zeros(0), end=np.zeros(0))
    return nap.IntervalSet(start=start, end=end, metadata=metadata or None)
