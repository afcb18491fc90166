"""The analysis's linear algebra on one BLAS thread.

Its matrix products are small (200 bootstrap draws x a few thousand rows x a dozen columns):
OpenBLAS's worker threads hardly shorten them, and spin while they wait for the next call. On
the 2-core CI machine that doubled the CPU time of analysing a real trace (cotenant_light:
6.6 s CPU for 3.5 s wall, against 3.2 s for 3.2 s on one thread) and took the second core
from whatever ran beside it (a parallel test, another trace of a fleet). threadpoolctl limits
the BLAS pool while the analysis runs and gives it back after; where it is not installed,
nothing is limited.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside the block (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # (an offline install without it: correct, only slower)
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
