"""The host side of a recording: how long the recording thread waited for a CPU.

Linux keeps, per thread, the time it ran and the time it waited runnable in a run queue
(`/proc/<pid>/task/<tid>/schedstat`: ns on CPU, ns waiting, timeslices). The sampler reads the
recording thread's at every poll, from its own process (a read costs ~16 us on the H100
machine: never on the timed path), so analysis can tell a host whose CPUs are oversubscribed
(the inference thread waits to run) from one that is merely slow to launch.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ThreadSchedStat", "FIELDS"]

FIELDS = ("host_run_ns", "host_wait_ns")  # cumulative; see fields.py


class ThreadSchedStat:
    """Reads one thread's schedstat; `read()` gives {} where it cannot (not Linux, no such
    thread any more, a kernel without scheduler statistics)."""

    def __init__(self, pid: int, tid: int):
        self.path = f"/proc/{pid}/task/{tid}/schedstat"
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError:
            self._fd = None

    @property
    def available(self) -> bool:
        return self._fd is not None

    def read(self) -> dict[str, Any]:
        if self._fd is None:
            return {}
        try:
            run, wait, _ = os.pread(self._fd, 128, 0).split()[:3]
        except (OSError, ValueError):  # the thread is gone
            self.close()
            return {}
        return {"host_run_ns": int(run), "host_wait_ns": int(wait)}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
