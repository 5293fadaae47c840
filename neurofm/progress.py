"""Progress that suits where it goes: tqdm bars on a terminal, whole lines in a log file.

A tqdm bar redraws itself with carriage returns; written to a file (``neurofm run ... 2> log``,
a batch job's output) that is kilobytes of ``\\r`` and a log nobody can read. :func:`progress_bar`
returns a tqdm bar when the stream is a terminal and a :class:`LineProgress` otherwise: the
same small API (``update``, ``set_postfix``, ``set_description``, ``close``, iteration, ``with``),
writing one finished line every so often (a tenth of the total, or ``interval`` seconds) and one
when it closes.

Every module may import this one (it imports nothing of neurofm); the Lightning side, one line
per epoch, is :mod:`neurofm.training.progress`.

Examples
--------
>>> for rec in progress_bar(recordings, desc="ingest", unit="file"):
...     ...
>>> with progress_bar(total=300, desc="GRU sub-1", unit="step") as bar:
...     bar.update(1)
...     bar.set_postfix(valid_r2="0.81")
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

__all__ = ["LineProgress", "format_duration", "is_terminal", "progress_bar", "progress_note"]


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def format_duration(seconds: float) -> str:
    """``42.0 s``, ``3 min 05 s``, ``1 h 02 min``: short and unambiguous in a log."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class LineProgress:
    """A tqdm stand-in for non-terminals: whole lines, never a redraw.

    A line (``desc: n/total unit (pct%), elapsed, postfix``) is written when the count crosses
    the next tenth of ``total`` (``every`` of it), or when ``interval`` seconds have passed
    since the last line (the only trigger without a total); and one final line on
    :meth:`close`.

    Parameters
    ----------
    iterable : iterable, optional
        Iterate over it, counting one per item (as ``tqdm(iterable)``).
    total : int, optional
        Expected count (default ``len(iterable)`` when it has one).
    desc, unit : str
        Label and unit, as in tqdm.
    disable : bool
        Write nothing at all.
    file : file-like, optional
        Where lines go (default ``sys.stderr``, where tqdm writes).
    every : float
        Fraction of ``total`` between lines.
    interval : float
        Seconds between lines when there is no total (or for very slow steps: a line is also
        written when this much time passed, whatever the count).
    leave : bool
        Accepted for tqdm compatibility; lines always stay.
    **_ : Any
        Other tqdm options (``dynamic_ncols``, ``position``...) are ignored.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        total: int | float | None = None,
        desc: str | None = None,
        unit: str = "it",
        disable: bool = False,
        file: IO[str] | None = None,
        every: float = 0.1,
        interval: float = 60.0,
        leave: bool = True,
        **_: Any,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc or ""
        self.unit = unit.strip() or "it"
        self.disable = bool(disable)
        self.file = file
        self.every = float(every)
        self.interval = float(interval)
        self.n = 0
        self.postfix = ""
        self.start_t = time.monotonic()
        self._last_t = self.start_t
        self._next = self._step_size() if total else math.inf
        self._closed = False

    # ---- tqdm's API ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress: nothing to iterate over (no iterable given)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        except BaseException as exc:
            self._close(type(exc))
            raise
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._close(exc_type)

    def __len__(self) -> int:
        return int(self.total or 0)

    def update(self, n: int | float = 1) -> None:
        """Add ``n`` to the count; write a line if a tenth (or ``interval`` s) went by."""
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        if self.total and self.n >= self.total:
            return  # the closing line says it
        if self.n >= self._next or now - self._last_t >= self.interval:
            self._write(now)
            if self.total:
                step = self._step_size()
                self._next = (math.floor(self.n / step) + 1) * step

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Values shown at the end of the next line (``loss=0.12, valid_r2=0.80``)."""
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={_fmt(v)}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """The postfix as a ready-made string."""
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Change the label of the following lines."""
        self.desc = desc or ""

    def refresh(self) -> None:
        """Nothing to redraw: lines are final."""

    def reset(self, total: int | float | None = None) -> None:
        """Start counting again (optionally with a new total)."""
        self.n = 0
        if total is not None:
            self.total = total
        self.start_t = self._last_t = time.monotonic()
        self._next = self._step_size() if self.total else math.inf

    def close(self) -> None:
        """Write the final line (count, elapsed time, postfix) once."""
        self._close(None)

    def _close(self, exc_type: type[BaseException] | None) -> None:
        # A run cut short says so: its last count must not read like a finished one. A
        # consumer leaving a loop early (GeneratorExit) is not an error.
        if self._closed:
            return
        self._closed = True
        if self.disable:
            return
        if exc_type is None or issubclass(exc_type, GeneratorExit):
            self._write(time.monotonic())
        else:
            interrupted = issubclass(exc_type, KeyboardInterrupt)
            self._write(time.monotonic(), "interrupted" if interrupted else "stopped by an error")

    # ---- lines -----------------------------------------------------------------------------

    def _step_size(self) -> float:
        return max(float(self.total or 0) * self.every, 1.0)

    def _write(self, now: float, note: str = "") -> None:
        count = f"{_fmt(self.n)}"
        if self.total:
            count += f"/{_fmt(self.total)} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            count += f" {self.unit}"
        parts = [f"{self.desc}: {count}" if self.desc else count]
        parts.append(format_duration(now - self.start_t))
        if self.postfix:
            parts.append(self.postfix)
        if note:
            parts.append(note)
        line = ", ".join(parts)
        self._last_t = now
        stream = self.file if self.file is not None else sys.stderr
        stream.write(line + "\n")
        stream.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if not value.is_integer() else str(int(value))
    return str(value)


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    disable: bool = False,
    file: IO[str] | None = None,
    **kwargs: Any,
) -> Any:
    """A tqdm bar on a terminal, a :class:`LineProgress` elsewhere (log files, pipes, CI).

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over.
    disable : bool
        No output at all (``progress=False``).
    file : file-like, optional
        The stream (default ``sys.stderr``); whether it is a terminal decides.
    **kwargs : Any
        tqdm options (``total``, ``desc``, ``unit``, ``leave``...).

    Returns
    -------
    tqdm.tqdm or LineProgress
    """
    stream = sys.stderr if file is None else file
    if disable or not is_terminal(stream):
        return LineProgress(iterable, disable=disable, file=file, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, file=file, **kwargs)


def progress_note(message: str, *, disable: bool = False, file: IO[str] | None = None) -> None:
    """One line of progress (a pipeline step's header, ``[2/4] ingest``) on the progress
    stream, ``sys.stderr``: beside the bars, never mixed into results on stdout. On a terminal
    it goes through ``tqdm.write`` so that an open bar is redrawn below it.

    Parameters
    ----------
    message : str
        The line.
    disable : bool
        Write nothing (``progress=False``).
    file : file-like, optional
        The stream (default ``sys.stderr``).
    """
    if disable:
        return
    stream = sys.stderr if file is None else file
    if is_terminal(stream):
        from tqdm.auto import tqdm

        tqdm.write(message, file=stream)
        return
    stream.write(message + "\n")
    stream.flush()
