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

__all__ = ["HostStat", "ThreadSchedStat"]  # the fields they fill: fields.HOST_FIELDS


class ThreadSchedStat:
    """Reads one thread's schedstat; `read()` gives {} where it cannot (not Linux, no such
    thread any more, a kernel without scheduler statistics)."""

    def __init__(self, pid: int, tid: int):
        self.path = f"/proc/{pid}/task/{tid}/schedstat"
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError:
            self._fd = None

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


def _nonvoluntary_switches(path: str) -> int | None:
    """A thread's cumulative involuntary context switches (/proc/<pid>/task/<tid>/status: the
    scheduler took the CPU away while it could still run)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _psi_some_total_us(path: str = "/proc/pressure/cpu") -> int | None:
    """Cumulative time (us) some runnable task waited for a CPU, machine-wide (PSI)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_throttled_us() -> int | None:
    """Cumulative time (us) this process's cgroup was throttled by its CPU quota (cgroup v2
    cpu.stat `throttled_usec`; v1 cpu.stat `throttled_time`, ns)."""
    try:
        with open("/proc/self/cgroup") as f:
            entries = [line.strip().split(":", 2) for line in f]
    except OSError:
        return None
    for hid, ctrls, path in entries:
        base = ("/sys/fs/cgroup" + path) if hid == "0" else (
            f"/sys/fs/cgroup/{ctrls}{path}" if "cpu" in ctrls.split(",") else None)
        if base is None:
            continue
        try:
            with open(base.rstrip("/") + "/cpu.stat") as f:
                stat = dict(line.split() for line in f if len(line.split()) == 2)
        except OSError:
            continue
        if "throttled_usec" in stat:
            return int(stat["throttled_usec"])
        if "throttled_time" in stat:
            return int(stat["throttled_time"]) // 1000
    return None


class HostStat:
    """The sampler's host readings: the recording thread's schedstat at every call, and the
    machine's CPU pressure (PSI), the cgroup's CPU throttling, the 1-minute load and the
    thread's involuntary context switches every `slow_every` calls (about once a second).
    Each reading only where available."""

    def __init__(self, pid: int, tid: int, slow_every: int = 1000):
        self.thread = ThreadSchedStat(pid, tid)
        self._status = f"/proc/{pid}/task/{tid}/status"
        self._slow_every, self._n = max(1, slow_every), 0

    def read(self) -> dict[str, Any]:
        out = self.thread.read()
        if self._n % self._slow_every == 0:
            psi, thr = _psi_some_total_us(), _cgroup_throttled_us()
            if psi is not None:
                out["host_cpu_pressure_us"] = psi
            if thr is not None:
                out["host_cpu_throttled_us"] = thr
            try:
                out["host_load1_tasks"] = os.getloadavg()[0]
            except OSError:
                pass
            nivcsw = _nonvoluntary_switches(self._status)
            if nivcsw is not None:
                out["host_involuntary_switches"] = nivcsw
        self._n += 1
        return out

    def close(self) -> None:
        self.thread.close()
