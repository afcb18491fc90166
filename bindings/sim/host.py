"""The host's own causes on a simulated GPU (sim faults `gil`, `gc`, `steal`): ground truth for
the host side of the analysis on machines without a GPU.

The simulated GPU runs on a virtual clock, which the host cannot touch: a thread holding the
interpreter lock for 5 ms, or a garbage collection, takes no virtual time. So a simulated GPU
with a host fault runs in real time instead (`PacedClock`): the host's monotonic clock, with the
virtual clock's interface on it. The GPU stays a model (kernels, clocks, governor: the same
SimGPU), but every host step takes real time, at least its modelled cost, and longer where the
host really was slower. The recording then has what a real GPU's has on the host side: the
recording thread's schedstat, the other threads' CPU time and names, garbage collections (the
session records them on a HostClock), the machine's steal time.

- `gil`: a real pure-Python thread of the recording process (`GIL_HOG_NAME`) busy-loops during
  the window, holding the interpreter lock but when the interpreter makes it give the lock up
  (every `sys.getswitchinterval()`, 5 ms by default); outside the window it sleeps in short
  steps. The recording thread waits for the lock, off the CPU, whenever it gave it up (a sleep,
  a wait for the GPU, a forced switch).
- `gc`: the built-in engine's call, inside the region, builds `GC_NODES` objects linked to one
  root, and back (reference cycles), keeping the last `GC_KEEP` roots alive: the cyclic
  collector runs, for real, inside the calls (measured here: a collection about every call,
  ~0.15 ms of a call's ~0.3 ms of building; mostly generation 0, older ones now and then).
- `steal`: the hypervisor cannot be made to steal, so it is injected: the machine's steal time
  (`host_steal_ns`, from /proc/stat) grows as if the hypervisor took `STEAL_SHARE` of each of the
  machine's CPUs, and the engine's host work (its launches and host gaps) takes 1 / (1 -
  STEAL_SHARE) as long: after each step, it busy-waits the stolen share of it.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Mapping, Sequence, Union

from gpuwatch.clock import HostClock, Timer, VirtualClock, _VirtualTimer

__all__ = ["HOST_FAULT_KINDS", "GIL_HOG_NAME", "PacedClock", "SimClock", "SimHost"]

HOST_FAULT_KINDS = ("gil", "gc", "steal")
GIL_HOG_NAME = "sim-gil-hog"
GIL_HOG_IDLE_S = 0.02  # outside its window the thread sleeps this long between looks
GIL_HOG_SLICE_NS = 1_000_000  # inside, it busy-loops this long between looks at the window
GC_NODES = 300  # objects a call builds in a gc fault's window, each linked to the call's root
GC_KEEP = 50  # the latest calls' roots kept alive (older ones become cyclic garbage)
STEAL_SHARE = 0.5  # of each CPU's time, the hypervisor takes this share in a steal window
# A paced wait for the GPU longer than PACE_SLEEP_NS sleeps (off the CPU, the interpreter lock
# released), but for its last PACE_SPIN_NS, which it busy-waits (a sleep wakes up ~60-90 us
# late here); one longer than PACE_RELEASE_NS first yields (the lock released: a thread
# waiting for it takes it), then spins; a shorter one spins, holding the lock (a release that
# short is taken back before a waiting thread wakes up, as measured here with select.poll(0)).
PACE_SLEEP_NS = 300_000
PACE_SPIN_NS = 100_000
PACE_RELEASE_NS = 50_000


class PacedClock(HostClock):
    """A simulated GPU's clock in real time: the host's monotonic clock (HostClock, anchored so
    that time starts at `start_ns`) with the virtual clock's interface, for a simulated GPU
    whose host is real (host faults).

    A modelled host step (`advance(ns)`: a launch's CPU cost, an event record; the interpreter
    lock held, as gpuwatch's timed path and torch's launches hold it) ends at least `ns` after
    the previous one ended, and no earlier than it really did (the sim's own Python takes real
    time too). `advance_to(t)` (a wait for the GPU) waits until t, giving up the interpreter
    lock as the driver's synchronize does where the wait is long enough for that to matter: it
    sleeps where the wait is long, as a blocking synchronize does, else yields, then spins the
    rest (PACE_SLEEP_NS, PACE_RELEASE_NS). Timers (the sampler) fire in the thread that
    advances the clock, when their time has come, as the virtual clock's do: the GPU model is
    not thread-safe. (So a sleep is cut at each of the sampler's ticks, and the thread wakes
    up for it.) A timer that fell behind (the thread was held up) fires once and goes on from
    now, as the thread timer does. `now_ns()` is the host clock's, from any thread."""

    virtual = False

    def __init__(self, start_ns: int, sleep_overshoot: Callable[[int], int] | None = None):
        super().__init__((time.perf_counter_ns(), int(start_ns)))
        self._t = self.now_ns()  # where the last modelled step ended
        self._timers: list[tuple[int, int, _VirtualTimer]] = []  # (due_ns, seq, timer) heap
        self._seq = 0
        self._advancing = False
        # (the virtual clock's oversleep model: called for its side effects, the GPU model's
        # "after a sleep"; a real sleep oversleeps by itself)
        self._after_sleep = sleep_overshoot or (lambda ns: 0)

    def advance_to(self, t_ns: int, how: str = "auto") -> None:
        """Wait until `t_ns`, firing every timer due on the way. `how`: "spin" (busy-wait:
        host work, the interpreter lock held), "sleep" (as time.sleep), "auto" (a wait for the
        GPU: see _wait)."""
        if self._advancing:
            raise RuntimeError("PacedClock advanced from inside one of its own callbacks")
        self._advancing = True
        try:
            while self._timers and self._timers[0][0] <= t_ns:
                due, _, timer = heapq.heappop(self._timers)
                if timer.stopped:
                    continue
                self._wait(due, how)
                timer.callback()
                self._push(max(due + timer.period_ns, self.now_ns()), timer)
            self._wait(t_ns, how)
        finally:
            self._advancing = False
        self._t = max(int(t_ns), self.now_ns())

    def advance(self, ns: int) -> None:
        self.advance_to(self._t + int(ns), "spin")

    def sleep_ns(self, ns: int) -> None:
        if ns > 0:
            self._after_sleep(ns)
            self.advance_to(self.now_ns() + int(ns), "sleep")

    def spin_ns(self, ns: int) -> None:
        if ns > 0:
            self.advance_to(self.now_ns() + int(ns), "spin")

    def every(self, period_ns: int, callback: Callable[[], None], name: str) -> Timer:
        timer = _VirtualTimer(int(period_ns), callback)
        callback()  # first reading at start, as the other clocks do
        self._push(self.now_ns() + timer.period_ns, timer)
        return timer

    def _push(self, due: int, timer: _VirtualTimer) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (due, self._seq, timer))

    def _wait(self, t_ns: int, how: str) -> None:
        left = t_ns - self.now_ns()
        if left <= 0:
            return
        if how == "sleep":
            time.sleep(left / 1e9)
            return
        if how == "auto":  # a wait for the GPU: the driver's synchronize, without the lock
            if left > PACE_SLEEP_NS:
                time.sleep((left - PACE_SPIN_NS) / 1e9)
            elif left > PACE_RELEASE_NS:
                _yield()
        now = self.now_ns
        while now() < t_ns:
            pass


# A thread that gives up the CPU and the interpreter lock for a moment, as the driver's
# synchronize does while it yields (sched_yield: ~2 us here; time.sleep(0) costs ~90 us, a timer)
_yield: Callable[[], Any] = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


SimClock = Union[VirtualClock, PacedClock]  # a simulated GPU's clock: virtual, or the host's


class SimHost:
    """A simulated GPU's host faults (`gil`, `gc`, `steal`), each active in its windows of
    seconds since the device opened, on `clock` (a PacedClock)."""

    def __init__(self, faults: Sequence[Any], clock: PacedClock):
        self.clock = clock
        self._origin = clock.now_ns()
        self._spans = {k: [(self._origin + int(f.start_s * 1e9),
                            self._origin + int(min(f.start_s + f.duration_s, 1e9) * 1e9))
                           for f in faults if f.kind == k] for k in HOST_FAULT_KINDS}
        self._kept: deque[Any] = deque(maxlen=GC_KEEP)
        self._cpus = os.cpu_count() or 1
        self._hog: _GilHog | None = None
        if self._spans["gil"]:
            self._hog = _GilHog(clock, self._spans["gil"])

    def windows(self, kind: str) -> list[tuple[int, int]]:
        """The fault's windows (start, end) on the trace's time base (epoch ns): the truth."""
        return list(self._spans[kind])

    def active(self, kind: str, t_ns: int | None = None) -> bool:
        t = self.clock.now_ns() if t_ns is None else t_ns
        return any(a <= t < b for a, b in self._spans[kind])

    @property
    def has_gc(self) -> bool:
        return bool(self._spans["gc"])

    @property
    def has_steal(self) -> bool:
        return bool(self._spans["steal"])

    # -- gc ---------------------------------------------------------------------------------------
    def garbage(self) -> None:
        """In a gc window: one call's worth of objects in reference cycles (GC_NODES linked to a
        root that lists them); the root of the call GC_KEEP calls ago is let go, as garbage only
        the cyclic collector can free."""
        if not self.active("gc"):
            return
        root = _Node(None)
        root.children = [_Node(root) for _ in range(GC_NODES)]
        self._kept.append(root)

    # -- steal ------------------------------------------------------------------------------------
    def stolen_share(self) -> float:
        """The share of the CPU the hypervisor takes now (STEAL_SHARE in a steal window)."""
        return STEAL_SHARE if self._spans["steal"] and self.active("steal") else 0.0

    def stolen_ns(self, t_ns: int) -> int:
        """The machine's steal time injected up to `t_ns`, summed over its CPUs as /proc/stat
        sums it: STEAL_SHARE of each CPU through each steal window so far."""
        total = 0
        for a, b in self._spans["steal"]:
            total += max(0, min(b, t_ns) - a)
        return int(total * STEAL_SHARE * self._cpus)

    def host_readings(self, read: Callable[[], Mapping[str, Any]]
                      ) -> Callable[[], Mapping[str, Any]]:
        """The sampler's host readings (hoststat.HostStat.read) with the injected steal time
        added to the machine's own, where the reading has it (about every 10 ms)."""
        if not self._spans["steal"]:
            return read
        now, stolen = self.clock.now_ns, self.stolen_ns

        def with_steal() -> Mapping[str, Any]:
            out = read()
            if out.get("host_steal_ns") is not None:
                out = dict(out)
                out["host_steal_ns"] = int(out["host_steal_ns"]) + stolen(now())
            return out
        return with_steal

    def close(self) -> None:
        if self._hog is not None:
            self._hog.stop()
            self._hog = None
        self._kept.clear()


class _Node:
    __slots__ = ("parent", "children")

    def __init__(self, parent: "_Node | None"):
        self.parent = parent
        self.children: list[_Node] = []


class _GilHog:
    """The `gil` fault's thread: pure Python, busy in its windows, asleep in short steps
    outside them, until stopped."""

    def __init__(self, clock: HostClock, spans: list[tuple[int, int]]):
        self._now, self._spans = clock.now_ns, spans
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=GIL_HOG_NAME, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        now, stop = self._now, self._stop
        while not stop.is_set():
            t = now()
            if not any(a <= t < b for a, b in self._spans):
                stop.wait(GIL_HOG_IDLE_S)
                continue
            end, x = t + GIL_HOG_SLICE_NS, 0
            while now() < end:  # (the interpreter's own loop: the lock is held but when it
                for i in range(100):  # makes this thread give it up)
                    x += i * i

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
