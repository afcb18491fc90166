"""The simulated GPU: a kernel timeline plus a DVFS governor, evaluated on a virtual clock.

Kernels run one at a time in launch order; each runs at the clocks in force when it starts.
Every `tick_ms` the governor looks at how busy the GPU was during the last tick and moves the SM
clock (see profiles.Profile for the rules). Governor state is kept as a history of snapshots so
a telemetry read at time t sees the GPU as it was at t, even when kernels queued for later have
already been scheduled.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from gpuwatch.fields import ClockEventReason

from .profiles import Profile

if TYPE_CHECKING:
    from .host import SimClock


THERMAL_FRACTION = 0.6  # a "thermal" fault holds the SM clock at this fraction of its maximum


class ClockHistory:
    """The SM clock's change points (t_ns, MHz) and the cycles counted up to each: what a
    probe reading the SM cycle counter against the GPU timer sees. Points may arrive out of
    time order (a clock change dated at the end of a kernel already scheduled); the running
    cycle counts are brought up to date lazily."""

    MAX_POINTS = 200_000  # older points are folded into the first (an hour at 50 changes/s)

    def __init__(self, t0: int, mhz: float):
        self.t, self.f, self.c = [t0], [float(mhz)], [0.0]
        self._valid = 1  # c[:_valid] are up to date

    def set(self, t: int, mhz: float) -> None:
        """From `t` on (until the next point), the clock is `mhz`."""
        i = bisect.bisect_right(self.t, t)
        if i == 0:
            return  # before the history starts
        if self.f[i - 1] == mhz and (i == len(self.t) or self.f[i] == mhz):
            return
        self.t.insert(i, t)
        self.f.insert(i, float(mhz))
        self.c.insert(i, 0.0)
        self._valid = min(self._valid, i)
        if len(self.t) > self.MAX_POINTS:
            keep = len(self.t) // 2
            self._fix(len(self.t) - keep)
            del self.t[:-keep], self.f[:-keep], self.c[:-keep]
            self._valid = max(1, self._valid - (len(self.t) - keep))

    def cycles_at(self, t: int) -> float | None:
        """SM cycles counted from the start of the history to `t` (None before it)."""
        i = bisect.bisect_right(self.t, t) - 1
        if i < 0:
            return None
        self._fix(i)
        return self.c[i] + self.f[i] * (t - self.t[i]) * 1e-3  # MHz * ns = 1e-3 cycles

    def _fix(self, upto: int) -> None:
        t, f, c = self.t, self.f, self.c
        for j in range(self._valid, upto + 1):
            c[j] = c[j - 1] + f[j - 1] * (t[j] - t[j - 1]) * 1e-3
        self._valid = max(self._valid, upto + 1)


@dataclass(frozen=True)
class _Snapshot:
    t_ns: int
    sm_clock_mhz: int
    mem_clock_mhz: int
    pstate: int
    reasons: int  # governor-imposed reasons (power cap); GPU_IDLE is added at read time
    gpu_util_pct: float
    power_busy_w: float  # instant power while a kernel runs at this clock
    power_idle_w: float
    power_avg_w: float
    energy_mj: float
    temperature_c: float


class SimGPU:
    """One simulated GPU bound to a virtual clock. Deterministic for a given numpy Generator."""

    def __init__(self, profile: Profile, clock: "SimClock", rng: np.random.Generator):
        self.p, self.clock, self.rng = profile, clock, rng
        # Another process's share of the GPU at time t (a "cotenant" fault), or None; whether
        # the GPU is too hot at time t (a "thermal" fault: the clock held at THERMAL_FRACTION)
        self.cotenant: Callable[[int], float] | None = None
        # A light co-tenant's time slices (a "timeslice" fault): is another context holding the
        # GPU at time t? Returns when its slice ends (t where it holds none), else None.
        self.timeslice: Callable[[int], int | None] | None = None
        self.timeslice_window: Callable[[int], bool] | None = None
        self.thermal: Callable[[int], bool] | None = None
        self._hot = False
        self._tick_ns = int(profile.tick_ms * 1e6)
        now = clock.now_ns()
        # Ticks count from the GPU's own start, so results do not depend on the wall clock.
        self._origin = now
        self._next_tick = now + self._tick_ns
        self._busy_by_tick: dict[int, int] = {}  # tick index -> busy ns inside its window
        self.origin_ns = now  # (the GPU's start: its timer's ticks count from it too)
        self.gpu_free_ns = now
        self.stream_end: dict[int, int] = {}  # stream id -> when its last kernel ends
        self.after_sleep = False
        # Governor state. A GPU at the start of a process sits parked at its idle clock.
        self.parked = profile.governor
        self.f_sm = profile.sm_idle_mhz if self.parked else profile.sm_max_mhz
        self.util_avg = 0.0
        self._low_since: int | None = None
        self._last_down = -(10**18)
        self._last_active = now
        self._capped = False
        self._util_window: deque[float] = deque(maxlen=max(1, int(round(166.7 / profile.tick_ms))))
        self._power_avg = profile.power_idle_w
        self._energy_mj = 0.0
        self._temp = profile.temp_ambient_c + profile.thermal_c_per_w * profile.power_idle_w
        self._snaps: list[_Snapshot] = [self._snapshot(now)]
        self._snap_times: list[int] = [now]
        self._intervals: deque[tuple[int, int]] = deque()  # recent kernels, for "running at t"
        self.clock_history = ClockHistory(now, self.f_sm)
        self._nvml_clock = (now, self.f_sm)  # (when NVML last refreshed its reading, value)
        self.kernels_run = 0
        # When tracing, what CUPTI reports on a real GPU: kernels as (start, end, name, stream,
        # correlation id) and tagged event records as (GPU time, tag, stream, correlation id).
        # Correlation ids number the host's API calls in order, as CUPTI's do.
        self.trace: list[tuple[int, int, str, int, int]] | None = None
        self.event_trace: list[tuple[int, int, int, int]] = []
        # the host's waits for the GPU while tracing: (start, end, what, stream)
        self.sync_trace: list[tuple[int, int, str, int]] = []
        self.api_calls = 0

    # -- kernels ---------------------------------------------------------------------------
    def launch(self, compute_ns: float, memory_ns: float, host_cost: bool = True,
               name: str = "kernel", stream: int = 0) -> tuple[int, int]:
        """Host launches one kernel on `stream` now; returns its (start, end) on the GPU.
        Advances host time by the launch's CPU cost (none for the later kernels of a CUDA
        graph). Kernels run one at a time, in launch order, whatever their stream."""
        p = self.p
        idle = 1.0 - min(1.0, max(0.0, self.util_avg))
        if host_cost:
            cpu = p.launch_cpu_ns * (1.0 + p.host_idle_penalty * idle)
            cpu += p.post_sleep_launch_ns if self.after_sleep else 0
            self.after_sleep = False
            self.clock.advance(int(cpu))
        start = self._after_slice(max(self.clock.now_ns() + p.launch_latency_ns,
                                      self.gpu_free_ns))
        self._process_ticks(start)
        unparked = self.parked
        if self.parked:  # work arrives: unpark; this first kernel still runs at the idle clock
            self.parked = False
            f_sm, f_mem = self.f_sm, p.mem_idle_mhz
            self.f_sm = p.sm_max_mhz
        else:
            f_sm, f_mem = self.f_sm, p.mem_max_mhz
        jitter = 1.0 + p.kernel_jitter * float(self.rng.standard_normal())
        dur = (compute_ns * p.sm_max_mhz / f_sm + memory_ns * p.mem_max_mhz / f_mem) * jitter
        dur *= 1.0 + p.cold_kernel_penalty * idle
        if self.cotenant is not None:  # time-sliced with another process's kernels
            dur /= 1.0 - self.cotenant(start)
        end = start + max(1, int(dur))
        if unparked:  # the clock rises once that first kernel is done
            self.clock_history.set(start, f_sm)
            self.clock_history.set(end, self.f_sm)
        self._add_busy(start, end)
        self.gpu_free_ns = self.stream_end[stream] = end
        self._last_active = max(self._last_active, end)
        self._intervals.append((start, end))
        self.kernels_run += 1
        if self.trace is not None:
            self.api_calls += 1
            self.trace.append((start, end, name, stream, self.api_calls))
        return start, end

    def stream_position_ns(self, waits_for: "list[int] | None" = None) -> int:
        """When an event recorded now will complete on the GPU: once the work of the streams
        in `waits_for` is done (None: all work, as one stream)."""
        ends = (self.gpu_free_ns,) if waits_for is None else \
            [self.stream_end.get(s, 0) for s in waits_for]
        arrive = self.clock.now_ns() + self.p.launch_latency_ns
        done = max(arrive, *ends)
        # work arriving at an idle GPU inside another context's time slice waits for its end
        return self._after_slice(done) if done == arrive else done

    def _after_slice(self, t: int) -> int:
        """When work that could start at `t` starts: at once, or once another context's time
        slice in progress at `t` ends (a "timeslice" fault). Work already queued behind ours
        keeps our slice (the scheduler does not switch between back-to-back kernels)."""
        if self.timeslice is None or t > self.gpu_free_ns:
            end = self.timeslice(t) if self.timeslice is not None else None
            return t if end is None else max(t, end)
        return t

    def _add_busy(self, start: int, end: int) -> None:
        tick, o = self._tick_ns, self._origin
        n = (start - o) // tick + 1
        while o + (n - 1) * tick < end:
            lo, hi = max(start, o + (n - 1) * tick), min(end, o + n * tick)
            if hi > lo:
                self._busy_by_tick[n] = self._busy_by_tick.get(n, 0) + (hi - lo)
            n += 1

    # -- governor ----------------------------------------------------------------------------
    def _process_ticks(self, until_ns: int) -> None:
        p, tick = self.p, self._tick_ns
        while self._next_tick <= until_ns:
            t = self._next_tick
            frac = self._busy_by_tick.pop((t - self._origin) // tick, 0) / tick
            self._util_window.append(frac)
            self.util_avg += (frac - self.util_avg) * min(1.0, p.tick_ms / p.util_tau_ms)
            if frac > 0:
                self._last_active = max(self._last_active, t)
            rel = self.f_sm / p.sm_max_mhz
            power = p.power_idle_w + p.power_dynamic_w * frac * rel**3
            self._energy_mj += power * p.tick_ms  # W * ms = mJ
            self._power_avg += (power - self._power_avg) * min(1.0, p.tick_ms / 1000.0)
            self._temp += (p.temp_ambient_c + p.thermal_c_per_w * power - self._temp) * (
                1.0 - math.exp(-p.tick_ms / (p.thermal_tau_s * 1000.0))
            )
            hot = self.thermal is not None and self.thermal(t)
            if hot:  # thermal slowdown overrides the governor
                self.f_sm = min(self.f_sm, int(p.sm_max_mhz * THERMAL_FRACTION))
            elif self._hot and not p.governor:
                self.f_sm = p.sm_max_mhz  # locked clocks come back when it cools
            self._hot = hot
            if p.governor and not hot:
                self._govern(t, frac)
            self._push_snapshot(t)
            self._next_tick += tick

    def _govern(self, t: int, frac: float) -> None:
        p = self.p
        if self.parked:
            return
        if t - self._last_active >= p.idle_timeout_ms * 1e6:
            self.parked, self.f_sm, self._low_since = True, p.sm_idle_mhz, None
            return
        if self._power_avg > p.power_cap_w:
            self._capped, self._low_since = True, None
            self.f_sm = max(p.sm_min_mhz, self.f_sm - p.sm_step_mhz)
            return
        self._capped = False
        if self.util_avg > p.util_high:
            self._low_since = None
            self.f_sm = min(p.sm_max_mhz, self.f_sm + p.sm_up_mhz)
        elif self.util_avg < p.util_low:
            if self._low_since is None:
                self._low_since = t
            ready = t - self._low_since >= p.down_delay_ms * 1e6
            if ready and t - self._last_down >= p.down_step_ms * 1e6 and self.f_sm > p.sm_min_mhz:
                self.f_sm = max(p.sm_min_mhz, self.f_sm - p.sm_step_mhz)
                self._last_down = t

    def _snapshot(self, t: int) -> _Snapshot:
        p = self.p
        rel = self.f_sm / p.sm_max_mhz
        util = 100.0 * (sum(self._util_window) / len(self._util_window)) if self._util_window else 0.0
        return _Snapshot(
            t_ns=t,
            sm_clock_mhz=self.f_sm,
            mem_clock_mhz=p.mem_idle_mhz if self.parked else p.mem_max_mhz,
            pstate=8 if self.parked else 0,
            reasons=(int(ClockEventReason.SW_POWER_CAP) if self._capped else 0)
            | (int(ClockEventReason.SW_THERMAL_SLOWDOWN) if self._hot else 0),
            gpu_util_pct=min(100.0, util + (100.0 * self.cotenant(t) if self.cotenant else 0.0)),
            power_busy_w=p.power_idle_w + p.power_dynamic_w * rel**3,
            power_idle_w=p.power_idle_w * (0.6 if self.parked else 1.0),
            power_avg_w=self._power_avg,
            energy_mj=self._energy_mj,
            temperature_c=self._temp,
        )

    def _push_snapshot(self, t: int) -> None:
        self.clock_history.set(t, self.f_sm)
        self._snaps.append(self._snapshot(t))
        self._snap_times.append(t)
        if len(self._snaps) > 4096:  # nobody read for a while (sampling off): bound the history
            del self._snaps[:-64], self._snap_times[:-64]

    # -- telemetry ---------------------------------------------------------------------------
    def read(self) -> dict[str, object]:
        """Telemetry as NVML would report it at the clock's current time."""
        t = self.clock.now_ns()
        self._process_ticks(t)
        i = bisect.bisect_right(self._snap_times, t) - 1
        s = self._snaps[i]
        if i > 64:  # reads are monotonic in time: drop history nobody can ask for again
            del self._snaps[: i - 1], self._snap_times[: i - 1]
        while self._intervals and self._intervals[0][1] < t:
            self._intervals.popleft()
        running = bool(self._intervals) and self._intervals[0][0] <= t < self._intervals[0][1]
        reasons = s.reasons | (0 if running else int(ClockEventReason.GPU_IDLE))
        p = self.p
        clock = s.sm_clock_mhz
        if p.nvml_refresh_ms > 0:  # NVML's reading changes only every refresh period
            t_pub, value = self._nvml_clock
            if t - t_pub >= p.nvml_refresh_ms * 1e6:
                self._nvml_clock = (t, clock)
            else:
                clock = value
        return {
            "sm_clock_mhz": clock,
            "graphics_clock_mhz": clock,
            "mem_clock_mhz": s.mem_clock_mhz,
            "pstate": s.pstate,
            "clock_event_reasons": reasons,
            "power_w": round(s.power_busy_w if running else s.power_idle_w, 3),
            "power_avg_w": round(s.power_avg_w, 3),
            "energy_mj": int(s.energy_mj),
            "gpu_util_pct": round(s.gpu_util_pct, 1),
            "mem_util_pct": round(0.4 * s.gpu_util_pct, 1),
            "temperature_c": round(s.temperature_c, 1),
            "pcie_gen": p.pcie_gen,
            "pcie_width": p.pcie_width,
            "mem_used_mib": 1250.0,
        }
