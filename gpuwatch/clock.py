"""Time bases. Every timestamp gpuwatch writes is int64 nanoseconds since the Unix epoch.

`HostClock` reads a monotonic counter and maps it onto the epoch with one anchor taken at start,
so NTP steps during a recording cannot tear the timeline (NVML and CUPTI timestamps are epoch
based too, which is why the epoch is the common base). `VirtualClock` is the simulated GPU's
clock: time moves only when the simulation says so, which makes sim runs deterministic and fast.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Callable, Protocol


class Timer(Protocol):
    def stop(self) -> None: ...


class Clock(Protocol):
    """What the session, sampler and arrival loop need from time."""

    virtual: bool

    def now_ns(self) -> int:
        """Current time on the trace's time base (ns since the Unix epoch)."""
        ...

    def sleep_ns(self, ns: int) -> None:
        """Sleep (yield the CPU) for about `ns`; may oversleep, as time.sleep does."""
        ...

    def spin_ns(self, ns: int) -> None:
        """Busy-wait for `ns`: no oversleep, costs a CPU core."""
        ...

    def every(self, period_ns: int, callback: Callable[[], None], name: str) -> Timer:
        """Call `callback` every `period_ns` until the returned timer is stopped."""
        ...


class HostClock:
    """Monotonic host clock (perf_counter_ns) anchored once to the epoch (time_ns)."""

    virtual = False

    def __init__(self, anchor: tuple[int, int] | None = None) -> None:
        # Take the anchor pair back to back; their skew (~100 ns) bounds the epoch offset error.
        # perf_counter_ns is CLOCK_MONOTONIC on Linux, shared by all processes, so a sampler
        # process given the same anchor maps its times exactly as the recording process does.
        if anchor is None:
            anchor = (time.perf_counter_ns(), time.time_ns())
        self.anchor_perf_ns, self.anchor_epoch_ns = anchor

    def now_ns(self) -> int:
        return self.anchor_epoch_ns + (time.perf_counter_ns() - self.anchor_perf_ns)

    def counter(self) -> tuple[Callable[[], int], int]:
        """The raw counter behind now_ns, and its offset: now_ns() == counter() + offset. (The
        timed path reads the counter, a builtin, and adds the offset later.)"""
        return time.perf_counter_ns, self.anchor_epoch_ns - self.anchor_perf_ns

    def sleep_ns(self, ns: int) -> None:
        if ns > 0:
            time.sleep(ns / 1e9)

    def spin_ns(self, ns: int) -> None:
        end = time.perf_counter_ns() + ns
        while time.perf_counter_ns() < end:
            pass

    def every(self, period_ns: int, callback: Callable[[], None], name: str) -> Timer:
        return _ThreadTimer(self, period_ns, callback, name)


class _ThreadTimer:
    """A daemon thread calling back on a fixed grid (no drift: deadlines, not sleeps, add up)."""

    def __init__(self, clock: HostClock, period_ns: int, cb: Callable[[], None], name: str):
        self._clock, self._period, self._cb = clock, period_ns, cb
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_t = time.perf_counter_ns()
        try:
            while not self._stop.is_set():
                self._cb()
                next_t += self._period
                delay = next_t - time.perf_counter_ns()
                if delay < 0:  # fell behind: skip missed ticks rather than burst to catch up
                    next_t = time.perf_counter_ns()
                    continue
                self._stop.wait(delay / 1e9)
        except BaseException as e:  # surfaced by stop(); a sampler must not die silently
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class VirtualClock:
    """Simulated time. Periodic callbacks fire, in time order, as the clock is advanced past them.

    While a callback runs, now_ns() returns the callback's own scheduled time, so a sampler that
    reads the simulated GPU inside it sees the GPU as it was at that instant.
    """

    virtual = True

    def __init__(self, start_ns: int = 0, sleep_overshoot: Callable[[int], int] | None = None):
        self._t = int(start_ns)
        self._timers: list[tuple[int, int, _VirtualTimer]] = []  # (due_ns, seq, timer) heap
        self._seq = 0
        self._advancing = False
        # Oversleep model for sleep_ns (a real time.sleep wakes late by tens of microseconds).
        self._overshoot = sleep_overshoot or (lambda ns: 0)
        self.anchor_epoch_ns = int(start_ns)

    def now_ns(self) -> int:
        return self._t

    def advance_to(self, t_ns: int) -> None:
        """Move time forward to `t_ns`, firing every timer due on the way. Never goes back."""
        t_ns = int(t_ns)
        if t_ns <= self._t:
            return
        if self._advancing:
            raise RuntimeError("VirtualClock advanced from inside one of its own callbacks")
        self._advancing = True
        try:
            while self._timers and self._timers[0][0] <= t_ns:
                due, _, timer = heapq.heappop(self._timers)
                if timer.stopped:
                    continue
                self._t = due
                timer.callback()
                self._push(due + timer.period_ns, timer)
            self._t = t_ns
        finally:
            self._advancing = False

    def advance(self, ns: int) -> None:
        self.advance_to(self._t + int(ns))

    def sleep_ns(self, ns: int) -> None:
        if ns > 0:
            self.advance(ns + self._overshoot(ns))

    def spin_ns(self, ns: int) -> None:
        self.advance(ns)

    def every(self, period_ns: int, callback: Callable[[], None], name: str) -> Timer:
        timer = _VirtualTimer(int(period_ns), callback)
        callback()  # first reading at start, as the thread timer does
        self._push(self._t + timer.period_ns, timer)
        return timer

    def _push(self, due: int, timer: "_VirtualTimer") -> None:
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, timer))


class _VirtualTimer:
    error: BaseException | None = None

    def __init__(self, period_ns: int, callback: Callable[[], None]):
        if period_ns <= 0:
            raise ValueError("timer period must be positive")
        self.period_ns, self.callback, self.stopped = period_ns, callback, False

    def stop(self) -> None:
        self.stopped = True
