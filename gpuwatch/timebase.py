"""The trace's one time base, and how every other clock domain is mapped onto it.

The base is int64 nanoseconds since the Unix epoch, read from `clock.HostClock` (the monotonic
host counter, anchored once to the epoch at start; a sampler process shares the anchor) or, on
a simulated GPU, from its virtual clock. The other domains:

- **CUDA events** (`EventTimebase`): a CUDA event only gives elapsed milliseconds between two
  events. An anchor event, recorded on a private idle stream between two host clock reads, ties
  the GPU's event clock to the host clock; an event's time is the anchor's plus the elapsed time
  between them, corrected for the rate difference between the two clocks (skew).
- **Epoch-based clocks** (`measure_offset`): CUPTI's timestamps (ns) and NVML's sample
  timestamps (us, CLOCK_REALTIME) count from the epoch on clocks of their own. Their offset to
  the trace's clock is measured as the tightest of several back-to-back read pairs.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .clock import Clock

__all__ = ["Anchor", "EventTimebase", "measure_offset", "realtime_offset_ns"]

# An anchor whose GPU event takes longer than this to be seen complete is not trusted: the
# private stream shared a hardware queue with busy work, or the host was preempted (another
# thread held the GIL). ~10 us is usual on an H100.
ANCHOR_MAX_WAIT_NS = 50_000


def measure_offset(trace_ns: Callable[[], int], other_ns: Callable[[], int],
                   tries: int = 9) -> tuple[int, int]:
    """(offset, uncertainty) in ns such that trace time = other clock's time + offset. Each try
    reads the trace clock around one read of the other; the tightest pair wins and its
    half-width is the uncertainty."""
    best: tuple[int, int] | None = None
    for _ in range(tries):
        h0 = trace_ns()
        c = other_ns()
        h1 = trace_ns()
        if best is None or h1 - h0 < best[1]:
            best = ((h0 + h1) // 2 - c, h1 - h0)
    assert best is not None
    return best[0], best[1] // 2


def realtime_offset_ns(clock: Clock) -> int:
    """Trace time minus CLOCK_REALTIME (time.time_ns), now. NVML's timestamps are realtime
    microseconds; the host clock was anchored to realtime once, so the offset starts near 0 and
    follows NTP's slewing of the realtime clock during a run."""
    return measure_offset(clock.now_ns, time.time_ns, tries=3)[0]


class Anchor:
    """A CUDA event whose completion time on the trace's base is known (within uncertainty)."""

    __slots__ = ("event", "host_ns")

    def __init__(self, event: Any, host_ns: int):
        self.event, self.host_ns = event, host_ns


class EventTimebase:
    """Maps CUDA events onto the trace's time base.

    An anchor event is recorded on a private, otherwise idle stream between two host clock
    reads; it completed between them, so its time is their mid-point, within half their
    distance. Completion is polled, never waited for, so an anchor adds no synchronisation with
    the user's streams; a try that does not complete within ANCHOR_MAX_WAIT_NS is dropped and
    retried at the next region. The skew (the GPU event clock's rate against the host clock's,
    ~10-20 ppm on an H100) is estimated from all anchors so far. Every `reanchor_s` a new anchor
    is taken: it keeps float32 elapsed times precise and measures the mapping's error (the new
    anchor against where the previous one predicted it: the re-anchor drift).

    Regions hold the anchor current when they began, so they map correctly even when resolved
    after a re-anchor; older anchors are released once `release_before` says no region needs
    them.
    """

    def __init__(self, runtime: Any, clock: Clock, reanchor_s: float = 1.0, tries: int = 3):
        self._rt, self._clock = runtime, clock
        self.stream = runtime.stream()  # private: nothing but anchors (and "device" regions)
        self._reanchor_ns = int(reanchor_s * 1e9)
        self._tries = tries
        self._candidates = [runtime.event() for _ in range(tries)]
        self.uncertainty_ns: list[int] = []
        self.drift_ns: list[int] = []
        self.failed_tries = 0
        self.skew = 0.0  # host ns per GPU-event ns, minus 1
        self._gpu_span_ns = 0.0  # GPU-event time from the first anchor to the current one
        self._first_host_ns = 0
        self._mapped = False  # did any event use the current anchor?
        self.current: Anchor = None  # type: ignore[assignment]  # anchor(wait=True) sets it
        self._retired: list[Anchor] = []
        self.next_anchor_ns = 0
        self.anchor(wait=True)

    @property
    def anchors(self) -> int:
        return len(self.uncertainty_ns)

    def anchor(self, wait: bool = False) -> bool:
        """Take up to `tries` anchors back to back and keep the tightest (a preemption or a late
        wake-up widens one try, rarely all). `wait`: if none completes promptly, wait for one
        (at start: there must be an anchor). Returns whether a new anchor was taken."""
        clock, rt = self._clock, self._rt
        best: tuple[int, int, int] | None = None  # (width, h0, candidate index)
        for i, ev in enumerate(self._candidates):
            h0 = clock.now_ns()
            rt.record(ev, self.stream.handle)
            while not rt.query(ev):
                if clock.now_ns() - h0 > ANCHOR_MAX_WAIT_NS:
                    break
            h1 = clock.now_ns()
            if h1 - h0 > ANCHOR_MAX_WAIT_NS:
                if not wait:
                    self.failed_tries += 1
                    continue
                rt.synchronize(ev)  # the first anchor must exist: take a wide one
                h1 = clock.now_ns()
            if best is None or h1 - h0 < best[0]:
                best = (h1 - h0, h0, i)
        if best is None:  # none completed promptly: keep the current anchor, retry soon
            self.next_anchor_ns = clock.now_ns() + self._reanchor_ns // 10
            return False
        width, h0, i = best
        ev, host = self._candidates[i], h0 + width // 2
        new = Anchor(ev, host)
        old = self.current
        if old is None:
            self._first_host_ns = host
        else:
            if self._mapped and len(self.drift_ns) < 100_000:  # the error where it mattered
                self.drift_ns.append(host - self.to_ns(old, ev))
            self._gpu_span_ns += rt.elapsed_ms(old.event, ev) * 1e6
            if self._gpu_span_ns > 5e8:  # half a second of baseline before trusting a rate
                self.skew = (host - self._first_host_ns) / self._gpu_span_ns - 1.0
            self._retired.append(old)
        self._candidates[i] = rt.event()
        self.current, self._mapped = new, False
        self.next_anchor_ns = host + self._reanchor_ns
        if len(self.uncertainty_ns) < 100_000:
            self.uncertainty_ns.append(width // 2)
        return True

    def due(self, now_ns: int) -> bool:
        """Is the current anchor `reanchor_s` old (re-anchor between regions)? (The timed path
        compares with `next_anchor_ns` itself.)"""
        return now_ns >= self.next_anchor_ns

    def to_ns(self, anchor: Anchor, event: Any) -> int:
        """When `event` completed, on the trace's time base."""
        self._mapped = True
        return anchor.host_ns + round(self._rt.elapsed_ms(anchor.event, event) * 1e6
                                      * (1 + self.skew))

    def scale(self) -> float:
        """Host ns per GPU-event ns, for a batch of regions about to be mapped with the current
        anchors: time = anchor.host_ns + round(elapsed_ms(anchor, event) * 1e6 * scale)."""
        self._mapped = True
        return 1 + self.skew

    def span_ns(self, ms: float) -> int:
        """A GPU-event duration in host nanoseconds."""
        return round(ms * 1e6 * (1 + self.skew))

    def release_before(self, oldest_needed: Anchor | None) -> None:
        """Free retired anchors older than `oldest_needed` (None: every retired anchor)."""
        if not self._retired:
            return
        keep = []
        if oldest_needed is not None:
            try:
                keep = self._retired[self._retired.index(oldest_needed):]
            except ValueError:
                keep = []
        for a in self._retired[:len(self._retired) - len(keep)]:
            self._rt.release_event(a.event)
        self._retired = keep

    def summary(self) -> dict[str, Any]:
        u = np.abs(np.asarray(self.uncertainty_ns, dtype=np.float64)) / 1e3
        d = np.abs(np.asarray(self.drift_ns, dtype=np.float64)) / 1e3
        return {
            "anchors": self.anchors,
            "anchor_stream": "private, non-blocking (anchors add no synchronisation)",
            "failed_tries": self.failed_tries,
            "reanchor_s": self._reanchor_ns / 1e9,
            "anchor_uncertainty_us_p50": float(np.median(u)) if u.size else None,
            "anchor_uncertainty_us_max": float(u.max()) if u.size else None,
            "reanchor_drift_us_p50": float(np.median(d)) if d.size else None,
            "reanchor_drift_us_max": float(d.max()) if d.size else None,
            "skew_ppm": self.skew * 1e6,
        }
