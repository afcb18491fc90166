"""The time base: CUDA events and epoch-based clocks mapped onto the trace's clock. A fake
clock and a fake GPU whose event clock runs at a known rate give exact ground truth."""

from __future__ import annotations

import pytest

from gpuwatch.timebase import ANCHOR_MAX_WAIT_NS, EventTimebase, measure_offset


class FakeClock:
    """Host time in ns; every read costs `step` ns (a real read is not free)."""

    virtual = True

    def __init__(self, t: int = 1_700_000_000_000_000_000, step: int = 100):
        self.t, self.step = t, step

    def now_ns(self) -> int:
        self.t += self.step
        return self.t

    def advance(self, ns: int) -> None:
        self.t += ns


class Ev:
    def __init__(self) -> None:
        self.gpu_ns: float | None = None  # on the GPU's event clock
        self.done_host_ns: int | None = None


class FakeGPU:
    """Events complete `latency` ns after they are recorded (an idle stream), or never while
    `stuck`. The GPU's event clock runs (1 + skew) times slower than the host's clock."""

    def __init__(self, clock: FakeClock, skew: float = 20e-6, latency: int = 6_000):
        self.clock, self.skew, self.latency = clock, skew, latency
        self.stuck = False
        self.released: list[Ev] = []

    def stream(self):  # noqa: ANN201 - a stand-in with .handle and .ptr
        class S:
            handle, ptr = "private", 1
        return S()

    def event(self) -> Ev:
        return Ev()

    def record(self, ev: Ev, stream: object) -> None:
        done = self.clock.t + self.latency
        ev.done_host_ns = None if self.stuck else done
        ev.gpu_ns = done / (1 + self.skew)

    def query(self, ev: Ev) -> bool:
        self.clock.advance(300)  # a query costs the host 0.3 us
        return ev.done_host_ns is not None and ev.done_host_ns <= self.clock.t

    def synchronize(self, ev: Ev) -> None:
        if ev.done_host_ns is None:  # a stuck stream drains eventually
            ev.done_host_ns = self.clock.t + 5_000_000
        self.clock.t = max(self.clock.t, ev.done_host_ns) + 15_000  # wake-up

    def elapsed_ms(self, a: Ev, b: Ev) -> float:
        return float((b.gpu_ns - a.gpu_ns) / 1e6)

    def release_event(self, ev: Ev) -> None:
        self.released.append(ev)


def test_measure_offset_finds_another_clocks_offset():
    clock = FakeClock(step=50)
    other = lambda: clock.t - 1_234_567  # noqa: E731 - a clock 1.234567 ms behind
    off, unc = measure_offset(clock.now_ns, other)
    # the other clock is read between two reads 50 ns apart: the mid-point is 25 ns late
    assert off == 1_234_567 + 25 and unc == 25


def test_events_map_onto_the_host_clock_and_the_skew_is_learnt():
    clock = FakeClock()
    gpu = FakeGPU(clock, skew=20e-6)
    tb = EventTimebase(gpu, clock, reanchor_s=1.0)
    assert tb.anchors == 1 and tb.summary()["anchor_uncertainty_us_p50"] < 5
    for _ in range(5):  # five seconds, an anchor a second, an event mapped in each
        clock.advance(500_000_000)
        probe = Ev()
        gpu.record(probe, None)
        tb.to_ns(tb.current, probe)
        clock.advance(500_000_000)
        assert tb.due(clock.t)
        assert tb.anchor()
    assert tb.skew == pytest.approx(20e-6, rel=0.05)
    ev = Ev()
    gpu.record(ev, None)
    clock.advance(400_000_000)  # 0.4 s after the anchor
    assert abs(tb.to_ns(tb.current, ev) - ev.done_host_ns) < 5_000  # within 5 us
    assert tb.span_ns(1000.0) == pytest.approx(1e9 * (1 + 20e-6), abs=1000)
    s = tb.summary()
    assert s["anchors"] == 6 and s["failed_tries"] == 0
    # The first second's mapping had no skew yet (20 ppm x 1 s = 20 us off); once the skew is
    # known, an anchor predicts the next within a few us.
    assert 15 < s["reanchor_drift_us_max"] < 25 and s["reanchor_drift_us_p50"] < 5


def test_an_anchor_is_never_waited_for_between_regions():
    clock = FakeClock()
    gpu = FakeGPU(clock)
    tb = EventTimebase(gpu, clock)
    old = tb.current
    gpu.stuck = True  # the private stream shares a hardware queue with busy work
    t0 = clock.t
    assert tb.anchor() is False
    assert tb.current is old and tb.failed_tries == 3
    assert clock.t - t0 < 4 * ANCHOR_MAX_WAIT_NS  # polled briefly, not synchronised
    assert not tb.due(clock.t) and tb.due(clock.t + 100_000_001)  # retried 0.1 s later


def test_the_first_anchor_waits_if_it_must():
    clock = FakeClock()
    gpu = FakeGPU(clock)
    gpu.stuck = True
    tb = EventTimebase(gpu, clock)  # there must be one: a wide window, honestly reported
    assert tb.anchors == 1 and tb.summary()["anchor_uncertainty_us_max"] > 1000


def test_regions_hold_their_anchor_and_old_anchors_are_released():
    clock = FakeClock()
    gpu = FakeGPU(clock)
    tb = EventTimebase(gpu, clock)
    a0 = tb.current
    ev = Ev()
    gpu.record(ev, None)
    clock.advance(1_000_000_000)
    tb.anchor()
    clock.advance(1_000_000_000)
    tb.anchor()
    assert tb.current is not a0
    assert abs(tb.to_ns(a0, ev) - ev.done_host_ns) < 5_000  # still right with the old anchor
    tb.release_before(a0)  # a region still needs a0: nothing freed
    assert gpu.released == []
    tb.release_before(None)  # none needs any retired anchor
    assert len(gpu.released) == 2 and a0.event in gpu.released
