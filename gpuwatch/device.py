"""The small protocol between the core and a GPU: telemetry reads, and stream/event timing.

Both the real bindings (NVML + CUDA) and the simulated GPU implement it; the core never imports a
vendor library. A `Backend` bundles what one recording needs: a clock, the GPUs to sample, and the
runtime that times work on the GPU running inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from .clock import Clock


@dataclass(frozen=True)
class DeviceInfo:
    """Static facts about one GPU, written to the trace metadata."""

    index: int
    name: str
    uuid: str
    simulated: bool
    driver_version: str | None = None
    cuda_version: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)  # max clocks, power limit, profile...


class Telemetry(Protocol):
    """Reads one GPU's telemetry. `read` returns values for the fields it supports."""

    info: DeviceInfo

    def unsupported(self) -> Mapping[str, str]:
        """Fields this GPU cannot report, each with the reason (they are written as NA)."""
        ...

    def read(self, costly: bool = True) -> dict[str, Any]:
        """One reading, taken now, of the cheap fields, plus the costly ones if `costly`.
        A value may be None (NA)."""
        ...

    def read_buffered(self) -> list[tuple[int, str, float]]:
        """Values the driver buffered since the last call, as (t_ns, field, value); t_ns is
        the driver's own timestamp, ns since the epoch on CLOCK_REALTIME (the sampler maps it
        onto the trace's clock, see timebase.realtime_offset_ns)."""
        ...

    def query_costs_us(self) -> Mapping[str, float]:
        """Measured cost of reading each field once (median, microseconds)."""
        ...

    # Optional: processes() -> list of {"pid", "used_mib", "sm_util_pct", "mem_util_pct"} (NA
    # as None): the GPU's running processes; read about once a second by the sampler (process
    # queries take milliseconds and hold a driver lock: never in the 1 kHz loop).


class Runtime(Protocol):
    """Stream/event timing on the GPU that runs inference (CUDA events, or simulated ones).

    A stream is the binding's object; `stream()` returns one with `.handle` (that object) and
    `.ptr` (the raw CUstream handle), and `native_stream(ptr)` gives the object for any raw
    handle a user has (0: the legacy default stream)."""

    def stream(self) -> Any:
        """A new non-blocking stream (ordered with nothing but itself)."""

    def native_stream(self, handle: int) -> Any: ...

    def event(self) -> Any: ...

    def release_event(self, event: Any) -> None: ...

    def record(self, event: Any, stream: Any) -> None: ...

    def query(self, event: Any) -> bool:
        """Has the event completed? Never waits."""

    def synchronize(self, event: Any) -> None: ...

    def synchronize_device(self) -> None:
        """Wait for all work of this context, on every stream."""

    def stream_synchronize(self, stream: Any) -> None: ...

    def elapsed_ms(self, start: Any, end: Any) -> float: ...

    def touch(self, stream: Any) -> None:
        """Enqueue a trivial piece of GPU work (for keep-alives)."""


class Engine(Protocol):
    """Something that enqueues one inference on a stream (built-in, TensorRT, PyTorch, sim)."""

    name: str

    def infer(self, x: Any = None) -> Any: ...


class Backend(Protocol):
    """Everything one recording needs from a device: clock, telemetry, timing, engines."""

    # (read-only members: a backend's own clock or runtime class satisfies them)
    @property
    def clock(self) -> Clock: ...

    @property
    def telemetry(self) -> Sequence[Telemetry]: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def simulated(self) -> bool: ...

    # How the sampler process rebuilds `telemetry`: ("module:function", JSON-able args); None
    # where telemetry cannot leave this process (the simulated GPU's virtual clock).
    @property
    def telemetry_factory(self) -> tuple[str, tuple[Any, ...]] | None: ...

    def engine(self, spec: str, stream: Any, cuda_graph: bool = False, **options: Any) -> Engine: ...

    def versions(self) -> dict[str, str]: ...

    def close(self) -> None: ...
