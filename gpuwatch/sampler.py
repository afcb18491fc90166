"""The telemetry sampler: polls every selected GPU on a fixed grid and hands rows to the writer.

Runs on the clock's periodic timer: a background thread on a real GPU, the virtual clock's timer
on sim. A failing read is recorded as an `events` row and sampling goes on; a device that fails
`max_consecutive_errors` times in a row is dropped (also recorded), never the whole recording.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .clock import Clock, Timer
from .device import Telemetry


@dataclass
class SamplerStats:
    polls: int = 0
    samples: int = 0
    errors: int = 0
    first_ns: int | None = None
    last_ns: int | None = None

    def achieved_hz(self) -> float | None:
        if self.first_ns is None or self.last_ns is None or self.polls < 2:
            return None
        return (self.polls - 1) / ((self.last_ns - self.first_ns) / 1e9)


class Sampler:
    def __init__(
        self,
        telemetry: Sequence[Telemetry],
        clock: Clock,
        sink: Callable[[str, list[dict[str, Any]]], None],
        hz: float = 1000.0,
        batch: int = 500,
        max_consecutive_errors: int = 100,
    ):
        if not hz > 0:
            raise ValueError("sample rate must be positive")
        self._devices = list(telemetry)
        self._clock, self._sink, self.hz = clock, sink, hz
        self._batch, self._max_errors = batch, max_consecutive_errors
        self._buf: list[dict[str, Any]] = []
        self._consecutive = [0] * len(self._devices)
        self._dropped = [False] * len(self._devices)
        self._timer: Timer | None = None
        self.stats = SamplerStats()

    def start(self) -> None:
        if self._timer is not None:
            raise RuntimeError("sampler already started")
        self._timer = self._clock.every(int(1e9 / self.hz), self._poll, "gpuwatch-sampler")

    @property
    def running(self) -> bool:
        return self._timer is not None

    def stop(self) -> SamplerStats:
        """Stop polling and flush. Raises what killed the sampler thread, if something did."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
        self._flush()
        err = getattr(timer, "error", None)
        if err is not None:
            raise RuntimeError("gpuwatch sampler thread died") from err
        return self.stats

    def _poll(self) -> None:
        now = self._clock.now_ns
        for i, dev in enumerate(self._devices):
            if self._dropped[i]:
                continue
            t0 = now()
            try:
                values = dev.read()
            except Exception as e:  # NVML timeouts, GPU lost...: record and go on
                self._error(i, t0, e)
                continue
            t1 = now()
            self._consecutive[i] = 0
            values["gpu"] = dev.info.index
            values["t_ns"] = (t0 + t1) // 2  # mid-point of the read: best estimate of when
            values["poll_ns"] = t1 - t0
            self._buf.append(values)
            self.stats.samples += 1
        self.stats.polls += 1
        t = now()
        if self.stats.first_ns is None:
            self.stats.first_ns = t
        self.stats.last_ns = t
        if len(self._buf) >= self._batch:
            self._flush()

    def _error(self, i: int, t_ns: int, e: Exception) -> None:
        self.stats.errors += 1
        self._consecutive[i] += 1
        dev = self._devices[i]
        rows = [{"gpu": dev.info.index, "t_ns": t_ns, "kind": "error", "name": "telemetry",
                 "message": f"{type(e).__name__}: {e}"}]
        if self._consecutive[i] >= self._max_errors:
            self._dropped[i] = True
            rows.append({"gpu": dev.info.index, "t_ns": t_ns, "kind": "error", "name": "telemetry",
                         "message": f"stopped sampling GPU {dev.info.index} after "
                                    f"{self._max_errors} consecutive errors"})
        self._sink("events", rows)

    def _flush(self) -> None:
        if self._buf:
            buf, self._buf = self._buf, []
            self._sink("samples", buf)
