"""One thread (torch and BLAS) while an analysis trains and measures its small networks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block (or, as ``@single_thread()``, the function) with one thread.

    The analyses multiply matrices of a few hundred rows: splitting them over threads costs
    more than it saves, and on a busy machine two threads per process ran 10-50x slower than
    one in our measurements (torch's intra-op pool and numpy's BLAS pool alike; a 100 x 100
    SVD took 150 ms instead of 3). The previous settings are restored on exit.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _blas_limit():
            yield
    finally:
        torch.set_num_threads(before)


def _blas_limit() -> contextlib.AbstractContextManager[object]:
    try:  # threadpoolctl comes with scikit-learn; without it numpy keeps its own pool
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)
