"""A stand-in for a real GPU on machines without one (`device="standin"`): for tests and CI.

It runs gpuwatch's real-GPU code path: the host clock, the event pool and lazy resolution of the
timed region, and telemetry read in the separate sampler process (the default on a real GPU),
from a stand-in telemetry source instead of NVML. Its "GPU" is infinitely fast: an event
completes when it is recorded, so a region measures the host time between its two events, as
CUDA events on an idle stream do. Traces say `simulated: true` and name the device
"gpuwatch stand-in (no GPU)". For a GPU *model* (clocks, DVFS, a staircase), use `sim:`.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any, Sequence

from gpuwatch.clock import HostClock
from gpuwatch.device import DeviceInfo
from gpuwatch.errors import UsageError

NAME = "gpuwatch stand-in (no GPU)"
_LAUNCH = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *([ctypes.c_uint] * 7), ctypes.c_void_p,
                           ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)  # cuLaunchKernel's
SM_CLOCK_MHZ = 1000


@dataclass(frozen=True)
class StandInStream:
    ptr: int

    @property
    def handle(self) -> "StandInStream":
        return self


class StandInRuntime:
    """Streams and events with no GPU behind them: an event completes when recorded.

    Events are integer handles, as the CUDA runtime's are: each the address of a slot of two
    int64, {recorded at (perf_counter_ns, 0: never), status}. Where gpuwatch's C extension is
    built the runtime offers `record_addr` too, its C cuEventRecord on those slots: so the timed
    path that runs on a real GPU runs here, with no Python inside it. `record_status` makes
    records fail (a CUresult-like status, for tests)."""

    name = "stand-in"

    def __init__(self) -> None:
        self._next = 0x1000  # stream handles (0 is the legacy default stream)
        self.uuid = "GPU-STANDIN-0000"
        self._slots: dict[int, Any] = {}  # event handle (its slot's address) -> the slot
        self._status = 0
        self.record_addr: int | None = None  # for the C timed path (regions/timer.py)
        from .cuda import native_module  # (imports no CUDA library)

        _native = native_module()
        if _native is not None:
            self.record_addr = _native.standin_record_addr()

    @property
    def record_status(self) -> int:
        return self._status

    @record_status.setter
    def record_status(self, status: int) -> None:
        """Every record fails with `status` from now (0: none does)."""
        self._status = int(status)
        for slot in self._slots.values():
            slot[1] = self._status

    def stream(self) -> StandInStream:
        self._next += 0x10
        return StandInStream(self._next)

    def native_stream(self, handle: int) -> int:
        return handle

    def event(self) -> int:
        slot = (ctypes.c_int64 * 2)(0, self._status)
        handle = ctypes.addressof(slot)
        self._slots[handle] = slot
        return handle

    def release_event(self, event: int) -> None:
        self._slots.pop(event, None)

    def record(self, event: int, stream: Any) -> None:
        if self._status:
            self.fail(self._status, "cuEventRecord")
        self._slots[event][0] = time.perf_counter_ns()

    def fail(self, status: int, what: str) -> None:
        raise RuntimeError(f"{what} failed: stand-in status {status}")

    def _recorded(self, event: int, what: str) -> int:
        slot = self._slots.get(event)
        if slot is None or not slot[0]:
            raise RuntimeError(f"{what} on an event that was never recorded")
        return int(slot[0])

    def query(self, event: int) -> bool:
        self._recorded(event, "query")
        return True

    def synchronize(self, event: int) -> None:
        self._recorded(event, "synchronize")

    def synchronize_device(self) -> None:
        pass

    def stream_synchronize(self, stream: Any) -> None:
        pass

    def elapsed_ms(self, start: int, end: int) -> float:
        return (self._recorded(end, "elapsed time") - self._recorded(start, "elapsed time")) / 1e6

    def touch(self, stream: Any) -> None:
        pass

    def versions(self) -> dict[str, str]:
        return {"standin": "1"}

    # -- the in-band clock probe: bindings/probe.py's ClockProbe on a stand-in driver -----------
    def start_probe(self) -> None:
        """The real ClockProbe over _StandInDriver: its "kernel" runs at launch, on an SM 0
        that counts SM_CLOCK_MHZ cycles per us of perf_counter_ns. `probe_sm0 = False`: no block
        ran on SM 0; `probe_status`: launches fail with it; `probe_deferred`: stamps run only
        at run_stamps() (a GPU still busy)."""
        from .probe import ClockProbe

        self.probe_sm0, self.probe_status, self.probe_deferred = True, 0, False
        self._queued: list[tuple[int, int]] = []
        self._driver = _StandInDriver()

        self._raised: BaseException | None = None

        def launch(f: Any, gx: int, gy: int, gz: int, bx: int, by: int, bz: int, shmem: int,
                   stream: Any, params: Any, extra: Any) -> int:
            try:
                if self.probe_status:
                    return self.probe_status
                out = ctypes.cast(params[0], ctypes.POINTER(ctypes.c_uint64))[0]
                self._queued.append((out, int(gx)))
                if not self.probe_deferred:
                    self.run_stamps()
                return 0
            except BaseException as e:  # (a Ctrl-C landing in this Python "driver": ctypes
                self._raised = e  # would print and drop it; probe() raises it instead)
                return 999  # (CUDA_ERROR_UNKNOWN)

        self._c_launch = _LAUNCH(launch)
        self._clock_probe = ClockProbe(self._driver, (9, 0), 4, cubin=b"\0",
                                       launch=ctypes.cast(self._c_launch, ctypes.c_void_p).value)

    def run_stamps(self) -> None:
        """Run the queued stamp kernels (what the kernel writes: timer, cycles, marker)."""
        for out, _ in self._queued:
            slot = (ctypes.c_uint64 * 3).from_address(out)
            if self.probe_sm0:
                t = time.perf_counter_ns()
                slot[0], slot[1], slot[2] = t, t * SM_CLOCK_MHZ // 1000, 1
            else:
                slot[2] = 2
        self._queued.clear()

    def probe(self, stream: Any) -> int:
        try:
            return self._clock_probe.probe(int(getattr(stream, "ptr", stream) or 0))
        except Exception:
            raised, self._raised = self._raised, None
            if raised is not None:  # (what interrupted the launch, not its error code)
                raise raised from None
            raise

    def read_probe(self, slot: int, wait: bool = False) -> tuple[int, float] | None:
        return self._clock_probe.read(slot, wait)

    def close(self) -> None:
        probe = getattr(self, "_clock_probe", None)
        if probe is not None:
            probe.close()
            del self._clock_probe


class _StandInDriver:
    """The driver calls ClockProbe makes, on host memory (the stand-in's device memory)."""

    def __init__(self) -> None:
        self._mem: dict[int, Any] = {}

    def _alloc(self, out: Any, size: Any) -> int:
        buf = ctypes.create_string_buffer(int(getattr(size, "value", size)))
        addr = ctypes.addressof(buf)
        self._mem[addr] = buf
        out._obj.value = addr  # (out: ctypes.byref(a c_void_p or c_uint64))
        return 0

    def cuMemHostAlloc(self, out: Any, size: Any, flags: Any) -> int:
        return self._alloc(out, size)

    def cuMemAlloc_v2(self, out: Any, size: Any) -> int:
        return self._alloc(out, size)

    def cuMemHostGetDevicePointer_v2(self, out: Any, host: Any, flags: Any) -> int:
        out._obj.value = host.value  # unified addressing: the same address
        return 0

    def cuMemsetD8_v2(self, ptr: Any, value: Any, size: Any) -> int:
        ctypes.memset(ptr.value, value.value, size.value)
        return 0

    def cuModuleLoadData(self, out: Any, image: Any) -> int:
        out._obj.value = 0x100
        return 0

    def cuModuleGetFunction(self, out: Any, module: Any, name: bytes) -> int:
        out._obj.value = 0x200
        return 0

    def cuModuleUnload(self, module: Any) -> int:
        return 0

    def cuMemFree_v2(self, ptr: Any) -> int:
        return 0 if self._mem.pop(ptr.value, None) is not None else 1

    def cuMemFreeHost(self, ptr: Any) -> int:
        return 0 if self._mem.pop(ptr.value, None) is not None else 1


class StandInTelemetry:
    """Constant, plausible readings (SM clock SM_CLOCK_MHZ, P0)."""

    def __init__(self, index: int = 0):
        self.info = DeviceInfo(index=index, name=NAME, uuid=f"GPU-STANDIN-{index:04d}",
                               simulated=True, driver_version="stand-in",
                               facts={"sm_max_mhz": SM_CLOCK_MHZ})

    def unsupported(self) -> dict[str, str]:
        return {}

    def read(self, costly: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"sm_clock_mhz": SM_CLOCK_MHZ, "graphics_clock_mhz": SM_CLOCK_MHZ,
                               "mem_clock_mhz": 2000, "pstate": 0, "clock_event_reasons": 0,
                               "power_w": 50.0}
        if costly:
            out.update(gpu_util_pct=0.0, mem_util_pct=0.0, temperature_c=35.0,
                       mem_used_mib=0.0)
        return out

    def read_buffered(self) -> list[tuple[int, str, float]]:
        return []

    def query_costs_us(self) -> dict[str, float]:
        return {}


def open_telemetry(indices: Sequence[int]) -> list[StandInTelemetry]:
    """The sampler process's telemetry factory (see sampler_process)."""
    return [StandInTelemetry(i) for i in indices]


class StandInBackend:
    simulated = True
    # the in-band clock probe is on by default (sampled: region.PROBE_EVERY_NS); where it
    # cannot start (no NVRTC), the session records without it and says why
    probe_default = True

    def __init__(self, spec: str = ""):
        if spec:
            raise UsageError(f"the stand-in device takes no options, got {spec!r}")
        self.clock = HostClock()
        self.runtime = StandInRuntime()
        self.telemetry = open_telemetry([0])
        self.telemetry_factory = ("gpuwatch.bindings.standin:open_telemetry", ([0],))

    def engine(self, spec: str, stream: Any, cuda_graph: bool = False, **options: Any) -> Any:
        raise UsageError("the stand-in device runs no engines: time your own code with "
                         "s.infer(fn) or gpuwatch.timed(fn), or use a simulated GPU (sim:t4)")

    def versions(self) -> dict[str, str]:
        return self.runtime.versions()

    def close(self) -> None:
        pass
