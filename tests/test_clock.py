import time

import pytest

from gpuwatch.clock import HostClock, VirtualClock


def test_virtual_clock_fires_timers_in_order_at_their_own_time():
    clock = VirtualClock(start_ns=1_000)
    seen = []
    clock.every(10, lambda: seen.append(("a", clock.now_ns())), "a")
    clock.every(25, lambda: seen.append(("b", clock.now_ns())), "b")
    clock.advance_to(1_045)
    assert clock.now_ns() == 1_045
    assert seen == [("a", 1000), ("b", 1000), ("a", 1010), ("a", 1020), ("b", 1025),
                    ("a", 1030), ("a", 1040)]


def test_virtual_clock_never_goes_back_and_stopped_timers_stay_quiet():
    clock = VirtualClock(start_ns=100)
    n = []
    timer = clock.every(10, lambda: n.append(clock.now_ns()), "t")
    clock.advance_to(50)
    assert clock.now_ns() == 100
    timer.stop()
    clock.advance(100)
    assert n == [100]


def test_virtual_clock_refuses_to_advance_from_its_own_callback():
    clock = VirtualClock()
    clock.every(10, lambda: clock.advance(1) if clock.now_ns() else None, "t")
    with pytest.raises(RuntimeError, match="inside one of its own callbacks"):
        clock.advance(20)


def test_virtual_sleep_oversleeps_by_the_model():
    clock = VirtualClock(sleep_overshoot=lambda ns: 7)
    clock.sleep_ns(100)
    clock.spin_ns(100)
    assert clock.now_ns() == 207


def test_host_clock_is_epoch_based_and_monotonic():
    clock = HostClock()
    a = clock.now_ns()
    assert abs(a - time.time_ns()) < 50_000_000  # same epoch as time.time_ns
    b = clock.now_ns()
    assert b >= a


def test_host_timer_runs_on_a_grid_and_stops():
    clock = HostClock()
    ticks = []
    timer = clock.every(2_000_000, lambda: ticks.append(clock.now_ns()), "gpuwatch-test-timer")
    time.sleep(0.05)
    timer.stop()
    assert not timer.alive
    n = len(ticks)
    assert 5 <= n <= 30  # ~25 at 500 Hz in 50 ms, generous for a loaded 2-core CI box
    time.sleep(0.01)
    assert len(ticks) == n
