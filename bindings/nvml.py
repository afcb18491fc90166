"""NVML telemetry through nvidia-ml-py (`import pynvml`), imported lazily.

Every NVML call goes through `_call`, which turns "not supported" / "no permission" answers
into the `NA` sentinel instead of an exception (as nvitop does); real failures (GPU lost,
timeout, unknown) are raised for the sampler to record. Fields are declared in one table of
readers; a reader the GPU does not support is dropped at start and its column stays NA, with the
reason in the trace metadata.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

from gpuwatch.device import DeviceInfo
from gpuwatch.errors import DeviceUnavailable
from gpuwatch.fields import COSTLY_FIELDS, FIELDS_BY_NAME, GroupSchedule

NA: Any = object()  # an NVML answer of "this GPU cannot tell you that"


def nvml() -> Any:
    """The pynvml module, initialised once per process."""
    global _pynvml
    if _pynvml is None:
        try:
            import pynvml
        except ImportError as e:
            raise DeviceUnavailable("nvidia-ml-py is not installed: pip install nvidia-ml-py") from e
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise DeviceUnavailable(f"NVML could not start ({e}); is the NVIDIA driver loaded?") from e
        _pynvml = pynvml
    return _pynvml


_pynvml: Any = None


def probe() -> str | None:
    """None if NVML initialises and sees a GPU, else why not (one short phrase). Leaves NVML
    as it found it (initialised and shut down again: the count of inits is NVML's own)."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed: pip install nvidia-ml-py"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return f"NVML: {e}"
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return "NVML found no GPU"
    finally:
        pynvml.nvmlShutdown()
    return None


def _call(fn: Callable[..., Any] | None, *args: Any) -> Any:
    """fn(*args), NA (None) where NVML says unsupported (or pynvml lacks the function)."""
    if fn is None:
        return None
    n = nvml()
    try:
        return fn(*args)
    except n.NVMLError as e:
        if e.value in (n.NVML_ERROR_NOT_SUPPORTED, n.NVML_ERROR_NO_PERMISSION,
                       n.NVML_ERROR_INVALID_ARGUMENT, n.NVML_ERROR_FUNCTION_NOT_FOUND,
                       getattr(n, "NVML_ERROR_NOT_FOUND", -1)):
            return NA
        raise


def _str(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def _field_values(handle: Any, ids: Sequence[int]) -> list[Any]:
    """nvmlDeviceGetFieldValues: one call for several fields; each value has its own status."""
    n = nvml()
    vals = _call(n.nvmlDeviceGetFieldValues, handle, list(ids))
    if vals is NA:
        return [NA] * len(ids)
    out = []
    for v in vals:
        if v.nvmlReturn != n.NVML_SUCCESS:
            out.append(NA)
            continue
        vt = v.valueType
        val = {n.NVML_VALUE_TYPE_DOUBLE: "dVal", n.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
               n.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
               n.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
               n.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal"}.get(vt, "ullVal")
        out.append(getattr(v.value, val))
    return out


class _Readers:
    """The field table: each entry reads one or more fields from a handle, in one NVML call."""

    def __init__(self) -> None:
        n = nvml()
        self.power_ids = [n.NVML_FI_DEV_POWER_INSTANT, n.NVML_FI_DEV_POWER_AVERAGE]
        self.violation_ids = [
            n.NVML_FI_DEV_PERF_POLICY_POWER, n.NVML_FI_DEV_PERF_POLICY_THERMAL,
            n.NVML_FI_DEV_PERF_POLICY_SYNC_BOOST, n.NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT,
            n.NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION, n.NVML_FI_DEV_PERF_POLICY_RELIABILITY,
            n.NVML_FI_DEV_PERF_POLICY_TOTAL_APP_CLOCKS, n.NVML_FI_DEV_PERF_POLICY_TOTAL_BASE_CLOCKS,
        ]
        reasons = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons",
                          getattr(n, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
        # (fields it fills, function(handle) -> tuple of values; NA where unsupported)
        self.table: list[tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = [
            (("sm_clock_mhz",), lambda h: (_call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),)),
            (("graphics_clock_mhz",),
             lambda h: (_call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_GRAPHICS),)),
            (("mem_clock_mhz",), lambda h: (_call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM),)),
            (("pstate",), lambda h: (_call(n.nvmlDeviceGetPerformanceState, h),)),
            (("clock_event_reasons",), lambda h: (_call(reasons, h),)),
            (("power_w", "power_avg_w"), self._power),
            (("energy_mj",), lambda h: (_call(n.nvmlDeviceGetTotalEnergyConsumption, h),)),
            (("gpu_util_pct", "mem_util_pct"), self._util),
            (("temperature_c",),
             lambda h: (_call(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),)),
            (("pcie_gen",), lambda h: (_call(n.nvmlDeviceGetCurrPcieLinkGeneration, h),)),
            (("pcie_width",), lambda h: (_call(n.nvmlDeviceGetCurrPcieLinkWidth, h),)),
            (("mem_used_mib",), self._mem),
            (("violation_power_ns", "violation_thermal_ns", "violation_sync_boost_ns",
              "violation_board_limit_ns", "violation_low_util_ns", "violation_reliability_ns",
              "violation_app_clocks_ns", "violation_base_clocks_ns"),
             lambda h: tuple(_field_values(h, self.violation_ids))),
        ]

    def _power(self, h: Any) -> tuple[Any, ...]:
        inst, avg = _field_values(h, self.power_ids)  # milliwatts
        if inst is NA:  # older GPUs: nvmlDeviceGetPowerUsage (mW)
            inst = _call(nvml().nvmlDeviceGetPowerUsage, h)
        return tuple(NA if v is NA else v / 1000.0 for v in (inst, avg))

    @staticmethod
    def _util(h: Any) -> tuple[Any, ...]:
        u = _call(nvml().nvmlDeviceGetUtilizationRates, h)
        return (NA, NA) if u is NA else (float(u.gpu), float(u.memory))

    @staticmethod
    def _mem(h: Any) -> tuple[Any, ...]:
        m = _call(nvml().nvmlDeviceGetMemoryInfo, h)
        return (NA,) if m is NA else (m.used / 2**20,)


# Driver-buffered sample types (nvmlDeviceGetSamples) -> (field, scale to the field's unit).
_BUFFERED = (("NVML_TOTAL_POWER_SAMPLES", "power_w", 1e-3),
             ("NVML_GPU_UTILIZATION_SAMPLES", "gpu_util_pct", 1.0),
             ("NVML_MEMORY_UTILIZATION_SAMPLES", "mem_util_pct", 1.0))


class NvmlTelemetry:
    """Telemetry of one GPU, by NVML index."""

    def __init__(self, index: int):
        n = nvml()
        count = n.nvmlDeviceGetCount()
        if not 0 <= index < count:
            raise DeviceUnavailable(f"there is no GPU {index}: NVML sees {count} (0..{count - 1})")
        self.handle = h = n.nvmlDeviceGetHandleByIndex(index)
        self.info = _device_info(index, h)
        readers = _Readers()
        self._unsupported: dict[str, str] = {}
        self._costs: dict[str, float] = {}
        self._cheap: list[tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = []
        self._costly: dict[int, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}
        for names, fn in readers.table:
            values = fn(h)  # also pays NVML's slow first call before the clock starts
            for name, v in zip(names, values):
                if v is NA:
                    self._unsupported[name] = "not supported on this GPU/driver (NVML)"
            if all(v is NA for v in values):
                continue
            costs = []
            for _ in range(7):
                t0 = time.perf_counter_ns()
                fn(h)
                costs.append(time.perf_counter_ns() - t0)
            for name in names:
                self._costs[name] = statistics.median(costs) / 1e3
            if names[0] in COSTLY_FIELDS:
                self._costly[len(self._costly)] = (names, fn)
            else:
                self._cheap.append((names, fn))
        self._schedule = GroupSchedule({k: FIELDS_BY_NAME[names[0]].cost
                                        for k, (names, _) in self._costly.items()})
        self._buffered = []
        for const, field, scale in _BUFFERED:
            stype = getattr(n, const, None)
            if stype is not None and _call(n.nvmlDeviceGetSamples, h, stype, 0) is not NA:
                self._buffered.append((stype, field, scale))
        self._last_buffered_us = {stype: int(time.time() * 1e6) for stype, _, _ in self._buffered}
        self._last_process_us = int(time.time() * 1e6)  # process utilisation samples after this

    def unsupported(self) -> dict[str, str]:
        return dict(self._unsupported)

    def processes(self) -> list[dict[str, Any]]:
        """The GPU's compute processes (pid, memory) with, where the driver keeps them, their
        SM and memory utilisation since the last call (nvmlDeviceGetProcessUtilization; its
        "not found" means no new samples). A pid from another container is kept as NVML gives
        it: it may not name a process here, but it counts."""
        n, h = nvml(), self.handle
        out: dict[int, dict[str, Any]] = {}
        procs = _call(n.nvmlDeviceGetComputeRunningProcesses, h)
        for p in ([] if procs is NA else procs):
            mem = getattr(p, "usedGpuMemory", None)
            out[int(p.pid)] = {"pid": int(p.pid), "sm_util_pct": None, "mem_util_pct": None,
                               "used_mib": None if mem is None or mem >= 2**63 else mem / 2**20}
        util = _call(n.nvmlDeviceGetProcessUtilization, h, self._last_process_us)
        for u in ([] if util is NA else util):
            self._last_process_us = max(self._last_process_us, int(u.timeStamp))
            d = out.setdefault(int(u.pid), {"pid": int(u.pid), "used_mib": None})
            d["sm_util_pct"], d["mem_util_pct"] = float(u.smUtil), float(u.memUtil)
        return list(out.values())

    def query_costs_us(self) -> dict[str, float]:
        return dict(self._costs)

    def read(self, costly: bool = True) -> dict[str, Any]:
        """Cheap fields, plus at a costly slot the one costly group most overdue."""
        h, out = self.handle, {}
        readers = self._cheap
        if costly:
            key = self._schedule.due(time.perf_counter_ns())
            if key is not None:
                readers = readers + [self._costly[key]]  # type: ignore[index]
        for names, fn in readers:
            for name, v in zip(names, fn(h)):
                out[name] = None if v is NA else v
        return out

    def read_buffered(self) -> list[tuple[int, str, float]]:
        n, rows = nvml(), []
        for stype, field, scale in self._buffered:
            got = _call(n.nvmlDeviceGetSamples, self.handle, stype, self._last_buffered_us[stype])
            if got is NA:
                continue
            vtype, samples = got
            attr = {n.NVML_VALUE_TYPE_DOUBLE: "dVal", n.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
                    n.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
                    n.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal"}.get(vtype, "uiVal")
            last = self._last_buffered_us[stype]
            for smp in samples:
                if smp.timeStamp > last:  # NVML timestamps: microseconds since the epoch
                    rows.append((smp.timeStamp * 1000, field,
                                 getattr(smp.sampleValue, attr) * scale))
                    last = max(last, smp.timeStamp)
            self._last_buffered_us[stype] = last
        return rows


def _device_info(index: int, h: Any) -> DeviceInfo:
    n = nvml()

    def clock(fn: Callable[..., Any], kind: int) -> Any:
        v = _call(fn, h, kind)
        return None if v is NA else v

    limit = _call(n.nvmlDeviceGetEnforcedPowerLimit, h)
    persist = _call(n.nvmlDeviceGetPersistenceMode, h)
    get_supported = getattr(n, "nvmlDeviceGetSupportedClocksEventReasons",
                            getattr(n, "nvmlDeviceGetSupportedClocksThrottleReasons", None))
    supported = _call(get_supported, h) if get_supported is not None else None
    cuda = _call(n.nvmlSystemGetCudaDriverVersion)
    facts = {
        "nvml_index": index,
        "pci_bus_id": _str(n.nvmlDeviceGetPciInfo(h).busId),
        "sm_max_mhz": clock(n.nvmlDeviceGetMaxClockInfo, n.NVML_CLOCK_SM),
        "mem_max_mhz": clock(n.nvmlDeviceGetMaxClockInfo, n.NVML_CLOCK_MEM),
        "sm_app_mhz": clock(n.nvmlDeviceGetApplicationsClock, n.NVML_CLOCK_SM),
        "mem_app_mhz": clock(n.nvmlDeviceGetApplicationsClock, n.NVML_CLOCK_MEM),
        "sm_default_app_mhz": clock(n.nvmlDeviceGetDefaultApplicationsClock, n.NVML_CLOCK_SM),
        "power_limit_w": None if limit is NA else limit / 1000.0,
        "persistence_mode": None if persist is NA else bool(persist),
        "supported_clock_event_reasons": (None if supported is NA or supported is None
                                          else int(supported)),
    }
    return DeviceInfo(
        index=index,
        name=_str(n.nvmlDeviceGetName(h)),
        uuid=_str(n.nvmlDeviceGetUUID(h)),
        simulated=False,
        driver_version=_str(n.nvmlSystemGetDriverVersion()),
        cuda_version=None if cuda is NA else f"{cuda // 1000}.{cuda % 1000 // 10}",
        facts=facts,
    )


def open_telemetry(indices: Sequence[int]) -> list[NvmlTelemetry]:
    """Telemetry for the given NVML indices (module level, so a sampler process can call it)."""
    return [NvmlTelemetry(i) for i in indices]


def device_count() -> int:
    return int(nvml().nvmlDeviceGetCount())


def index_of_uuid(uuid: str) -> int:
    n = nvml()
    return int(n.nvmlDeviceGetIndex(n.nvmlDeviceGetHandleByUUID(uuid)))


def index_of_pci_bus_id(bus_id: str) -> int:
    n = nvml()
    return int(n.nvmlDeviceGetIndex(n.nvmlDeviceGetHandleByPciBusId(bus_id)))
