"""The analysis's linear algebra on one BLAS thread.

Its matrix products are small (200 bootstrap draws x a few thousand rows x a dozen columns):
OpenBLAS's worker threads hardly shorten them, and spin while they wait for the next call. On
the 2-core CI machine that doubled the CPU time of analysing a real trace (cotenant_light:
6.6 s CPU for 3.5 s wall, against 3.2 s for 3.2 s on one thread) and took the second core
from whatever ran beside it (a parallel test, another trace of a fleet). threadpoolctl limits
the BLAS pool while the analysis runs and gives it back after; where it is not installed,
nothing is limited.

The analyze command goes further (one_blas_thread_at_load): OpenBLAS starts a thread per core
as numpy loads, ~70 ms of CPU on the CI machine, a fifth of a small fleet's whole command, for
threads the analysis never uses; the command has it load with one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

# OpenBLAS (pip's numpy) and MKL (conda's): the thread count they start with
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread_at_load() -> None:
    """BLAS loaded with one thread, where numpy is not loaded yet and the user set no count.
    For the analyze command's process (and its children) only: `gpuwatch run` runs the
    user's program in its process, and a library call must not change the user's BLAS."""
    if "numpy" in sys.modules:  # (too late: the library has started its threads)
        return
    for var in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(var, "1")


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
