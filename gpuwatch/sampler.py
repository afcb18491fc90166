"""The telemetry sampler: polls every selected GPU on a fixed grid and hands rows to the writer.

Cheap fields (clocks, P-state, reasons, power) are read every poll; at `costly_hz` slots the
telemetry adds one costly group, each group at most at its tier's rate (fields.TIER_PERIOD_S);
the driver's own buffered samples (nvmlDeviceGetSamples) are fetched every `driver_every_s`.
`Sampler` runs in-process on the clock's periodic timer (a thread, or the virtual timer on sim).
`sampler_process.ProcessSampler` runs the same loop in a separate process, which never competes
with a Python-heavy inference loop for the GIL (the default on a real GPU).

A failing read becomes an `events` row and sampling goes on. After `max_consecutive_errors`
failures in a row a GPU is read only every `retry_s` (timeouts and unknown errors can pass), or
dropped for good if NVML says the GPU is lost; both are recorded, and never stop the recording.
Each field's refresh is tracked: how often its value really changed, so nobody mistakes 1 kHz
polling of a value the driver refreshes every 100 ms for 1 kHz data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .clock import Clock, Timer
from .device import Telemetry
from .timebase import realtime_offset_ns

_MAX_INTERVALS = 4096  # change intervals kept per field for the refresh estimate


@dataclass
class SamplerStats:
    polls: int = 0
    samples: int = 0
    driver_samples: int = 0
    errors: int = 0
    paused_polls: int = 0
    first_ns: int | None = None
    last_ns: int | None = None

    def achieved_hz(self) -> float | None:
        """Ticks kept per second, paused ones included (pausing is not falling behind)."""
        ticks = self.polls + self.paused_polls
        if self.first_ns is None or self.last_ns is None or ticks < 2 or \
                self.last_ns == self.first_ns:
            return None
        return (ticks - 1) / ((self.last_ns - self.first_ns) / 1e9)


class _RefreshTracker:
    """Per field: reads, value changes, and the intervals between changes (bounded)."""

    def __init__(self) -> None:
        self.last: dict[tuple[int, str], tuple[Any, int]] = {}
        self.reads: dict[str, int] = {}
        self.intervals: dict[str, list[int]] = {}
        self.missing: set[tuple[int, str]] = set()  # fields that had values and now read NA

    def update(self, gpu: int, t_ns: int, values: dict[str, Any]) -> list[str] | None:
        """Track each value; returns what changed availability (a field that had values now
        reads NA, or reads again), or None."""
        changed = None
        for name, v in values.items():
            key = (gpu, name)
            if v is None:
                if key in self.last and key not in self.missing:  # it had values: now NA
                    self.missing.add(key)
                    changed = (changed or []) + [f"{name} reads NA from here (NVML: not supported)"]
                continue
            if self.missing and key in self.missing:
                self.missing.discard(key)
                changed = (changed or []) + [f"{name} reads again"]
            self.reads[name] = self.reads.get(name, 0) + 1
            prev = self.last.get(key)
            if prev is None:
                self.last[key] = (v, t_ns)
            elif prev[0] != v:
                iv = self.intervals.setdefault(name, [])
                if len(iv) < _MAX_INTERVALS:
                    iv.append(t_ns - prev[1])
                self.last[key] = (v, t_ns)
        return changed

    def summary(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, n in self.reads.items():
            iv = np.asarray(self.intervals.get(name, []), dtype=np.float64) / 1e6
            out[name] = {
                "reads": n,
                "changes": int(iv.size),
                "change_interval_ms_p50": float(np.median(iv)) if iv.size else None,
                "change_interval_ms_p10": float(np.percentile(iv, 10)) if iv.size else None,
                "change_interval_ms_min": float(iv.min()) if iv.size else None,
            }
        return out


class Sampler:
    def __init__(
        self,
        telemetry: Sequence[Telemetry],
        clock: Clock,
        sink: Callable[[str, list[dict[str, Any]]], None],
        hz: float = 1000.0,
        costly_hz: float = 100.0,
        driver_every_s: float = 0.5,
        batch: int = 500,
        max_consecutive_errors: int = 100,
        retry_s: float = 1.0,
        is_paused: Callable[[], bool] | None = None,
        host: Callable[[], dict[str, Any]] | None = None,
        own_pid: int | None = None,
        processes_every_s: float = 1.0,
        host_events: Callable[[], list[dict[str, Any]]] | None = None,
        host_final: Callable[[], list[dict[str, Any]]] | None = None,
    ):
        """`host`: host readings added to the inference GPU's rows (hoststat.HostStat.read);
        `host_events`: `host_events` rows made meanwhile (HostStat.take_events), written with
        the inference GPU and the reading's time; `host_final`: the last ones, at stop
        (HostStat.final_events: the last second's threads)."""
        if not hz > 0:
            raise ValueError("sample rate must be positive")
        self._devices = list(telemetry)
        self._clock, self._sink, self.hz = clock, sink, hz
        self._costly_every = max(1, round(hz / costly_hz))
        self._driver_every = max(1, round(hz * driver_every_s))
        self._batch, self._max_errors = batch, max_consecutive_errors
        self._buf: list[dict[str, Any]] = []
        self._consecutive = [0] * len(self._devices)
        self._dropped = [False] * len(self._devices)
        self._retry_at = [0] * len(self._devices)  # backing off until this t_ns (0: not)
        self._retry_s = retry_s
        self._timer: Timer | None = None
        self._paused = False
        self._is_paused = is_paused or (lambda: self._paused)
        self._host, self._host_events, self._host_final = host, host_events, host_final
        # the GPU's running processes, every processes_every_s (own_pid: the recording process)
        self._own_pid = own_pid
        self._processes_every = max(1, round(hz * processes_every_s))
        self._refresh = _RefreshTracker()
        self.stats = SamplerStats()
        self.last_sm_clock_mhz: float | None = None

    def start(self) -> None:
        if self._timer is not None:
            raise RuntimeError("sampler already started")
        self._timer = self._clock.every(int(1e9 / self.hz), self._poll, "gpuwatch-sampler")

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def stop(self) -> SamplerStats:
        """Stop polling and flush. Raises what killed the sampler thread, if something did."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
        if self._host_final is not None and self._devices:
            try:
                rows = self._host_final()
            except Exception:  # (the host's last rows are not worth failing the stop for)
                rows = []
            if rows:
                gpu, t = self._devices[0].info.index, self._clock.now_ns()
                for r in rows:
                    r["gpu"], r["t_ns"] = gpu, t
                self._sink("host_events", rows)
        self._flush()
        err = getattr(timer, "error", None)
        if err is not None:
            raise RuntimeError("gpuwatch sampler thread died") from err
        return self.stats

    def summary(self) -> dict[str, Any]:
        """Stats and per-field refresh, for the trace metadata."""
        return {**asdict(self.stats), "requested_hz": self.hz,
                "achieved_hz": self.stats.achieved_hz(),
                "costly_every_polls": self._costly_every,
                "field_refresh": self._refresh.summary()}

    def _poll(self) -> None:
        if self._is_paused():
            self.stats.paused_polls += 1
            t = self._clock.now_ns()
            if self.stats.first_ns is None:
                self.stats.first_ns = t
            self.stats.last_ns = t
            return
        now = self._clock.now_ns
        n = self.stats.polls
        costly = n % self._costly_every == 0
        for i, dev in enumerate(self._devices):
            if self._dropped[i]:
                continue
            gpu = dev.info.index
            t0 = now()
            if self._retry_at[i] and t0 < self._retry_at[i]:
                continue  # backing off after a run of errors
            try:
                values = dev.read(costly)
            except Exception as e:  # NVML timeouts, GPU lost...: record and go on
                self._error(i, t0, e)
                continue
            t1 = now()
            if self._consecutive[i]:
                self._recovered(i, gpu, t0)
            if n % self._driver_every == 0:
                self._driver(gpu, dev, t1)
            if n % self._processes_every == 0 and hasattr(dev, "processes"):
                self._processes(gpu, dev, t1)
            t = (t0 + t1) // 2  # mid-point of the read: the best estimate of when
            changed = self._refresh.update(gpu, t, values)
            if changed:
                self._sink("events", [{"gpu": gpu, "t_ns": t, "kind": "warning",
                                       "name": "telemetry", "message": m} for m in changed])
            if i == 0:
                self.last_sm_clock_mhz = values.get("sm_clock_mhz")
                if self._host is not None:
                    values.update(self._host())
                if self._host_events is not None:
                    rows = self._host_events()
                    if rows:
                        for r in rows:
                            r["gpu"], r["t_ns"] = gpu, t
                        self._sink("host_events", rows)
            values["gpu"], values["t_ns"], values["poll_ns"] = gpu, t, t1 - t0
            self._buf.append(values)
            self.stats.samples += 1
        self.stats.polls = n + 1
        t = now()
        if self.stats.first_ns is None:
            self.stats.first_ns = t
        self.stats.last_ns = t
        if len(self._buf) >= self._batch:
            self._flush()

    def _recovered(self, i: int, gpu: int, t_ns: int) -> None:
        if self._retry_at[i]:
            self._sink("events", [{"gpu": gpu, "t_ns": t_ns, "kind": "note", "name": "telemetry",
                                   "message": f"GPU {gpu} reads again after "
                                              f"{self._consecutive[i]} failed reads"}])
        self._consecutive[i], self._retry_at[i] = 0, 0

    def _driver(self, gpu: int, dev: Telemetry, t_ns: int) -> None:
        try:
            buffered = dev.read_buffered()
        except Exception as e:  # a failed buffer read costs those samples, not the poll
            self.stats.errors += 1
            self._sink("events", [{"gpu": gpu, "t_ns": t_ns, "kind": "error",
                                   "name": "driver_samples", "message": f"{type(e).__name__}: {e}"}])
            return
        # The driver's timestamps are CLOCK_REALTIME: move them onto the trace's clock.
        off = realtime_offset_ns(self._clock) if buffered and not self._clock.virtual else 0
        rows = [{"gpu": gpu, "t_ns": t + off, "field": f, "value": v} for t, f, v in buffered]
        if rows:
            self.stats.driver_samples += len(rows)
            self._sink("driver_samples", rows)

    def _processes(self, gpu: int, dev: Telemetry, t_ns: int) -> None:
        try:
            procs = dev.processes()  # type: ignore[attr-defined]
        except Exception as e:  # (process queries are optional: note it once a while, go on)
            self.stats.errors += 1
            self._sink("events", [{"gpu": gpu, "t_ns": t_ns, "kind": "error",
                                   "name": "processes", "message": f"{type(e).__name__}: {e}"}])
            return
        rows = [{"gpu": gpu, "t_ns": t_ns, "pid": p["pid"],
                 "own": self._own_pid is not None and p["pid"] == self._own_pid,
                 "used_mib": p.get("used_mib"), "sm_util_pct": p.get("sm_util_pct"),
                 "mem_util_pct": p.get("mem_util_pct")} for p in procs]
        if rows:
            self._sink("processes", rows)

    def _error(self, i: int, t_ns: int, e: Exception) -> None:
        self.stats.errors += 1
        self._consecutive[i] += 1
        gpu = self._devices[i].info.index
        msg = f"{type(e).__name__}: {e}"
        rows = [] if self._retry_at[i] else [
            {"gpu": gpu, "t_ns": t_ns, "kind": "error", "name": "telemetry", "message": msg}]
        if self._consecutive[i] >= self._max_errors and not self._retry_at[i]:
            if _gpu_lost(e):  # NVML_ERROR_GPU_IS_LOST does not come back: stop for good
                self._dropped[i] = True
                rows.append({"gpu": gpu, "t_ns": t_ns, "kind": "error", "name": "telemetry",
                             "message": f"stopped sampling GPU {gpu} after "
                                        f"{self._max_errors} consecutive errors"})
            else:  # timeouts, unknown errors: may pass; try again, rarely, and say so
                rows.append({"gpu": gpu, "t_ns": t_ns, "kind": "error", "name": "telemetry",
                             "message": f"GPU {gpu} failed {self._max_errors} reads in a row: "
                                        f"retrying every {self._retry_s:g} s"})
        if self._retry_at[i] or (self._consecutive[i] >= self._max_errors and not self._dropped[i]):
            self._retry_at[i] = t_ns + int(self._retry_s * 1e9)
        if rows:
            self._sink("events", rows)

    def _flush(self) -> None:
        if self._buf:
            buf, self._buf = self._buf, []
            self._sink("samples", buf)


def _gpu_lost(e: Exception) -> bool:
    """NVML_ERROR_GPU_IS_LOST (pynvml's NVMLError_GPUIsLost, or its message)."""
    return "GPUIsLost" in type(e).__name__ or "GPU is lost" in str(e)
