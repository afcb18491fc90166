"""The telemetry field catalogue: every column a sampler may write, with its unit and meaning.

Declared as a table (as nvitop does) so the trace schema, the README and the bindings all read
the same list. Units are in the names; an unknown value is NA (null), never 0.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pyarrow as pa


class ClockEventReason(enum.IntFlag):
    """NVML's clock-event ("throttle") reason bits, as in nvml.h (nvmlClocksEventReason*).

    Stored in the trace as the raw int64 bitmask in `clock_event_reasons`.
    """

    NONE = 0
    GPU_IDLE = 0x1
    APPLICATIONS_CLOCKS_SETTING = 0x2
    SW_POWER_CAP = 0x4
    HW_SLOWDOWN = 0x8
    SYNC_BOOST = 0x10
    SW_THERMAL_SLOWDOWN = 0x20
    HW_THERMAL_SLOWDOWN = 0x40
    HW_POWER_BRAKE_SLOWDOWN = 0x80
    DISPLAY_CLOCK_SETTING = 0x100

    @classmethod
    def names(cls, mask: int) -> list[str]:
        """Names of the bits set in `mask`, lower-case, e.g. ['gpu_idle', 'sw_power_cap']."""
        return [m.name.lower() for m in cls if m.value and mask & m.value and m.name]


@dataclass(frozen=True)
class Field:
    """One telemetry column: its name (unit in the name), Arrow type, and what it means."""

    name: str
    type: pa.DataType
    unit: str
    description: str
    cost: str = "cheap"  # a key of TIER_PERIOD_S: how often the sampler reads it


# Order is the column order in the trace. NVML equivalents are named so nobody has to guess.
FIELDS: tuple[Field, ...] = (
    Field("sm_clock_mhz", pa.int32(), "MHz", "SM clock (nvmlDeviceGetClockInfo, NVML_CLOCK_SM)"),
    Field("graphics_clock_mhz", pa.int32(), "MHz", "graphics clock (NVML_CLOCK_GRAPHICS)"),
    Field("mem_clock_mhz", pa.int32(), "MHz", "memory clock (NVML_CLOCK_MEM)"),
    Field("pstate", pa.int8(), "", "performance state, 0 (P0, fastest) .. 15; NA if unknown"),
    Field("clock_event_reasons", pa.int64(), "bitmask", "ClockEventReason bits active"),
    Field("power_w", pa.float64(), "W", "instant power draw"),
    Field("power_avg_w", pa.float64(), "W", "power averaged by the driver (~1 s window)"),
    Field("energy_mj", pa.int64(), "mJ", "energy counter since driver load", cost="slow"),
    Field("gpu_util_pct", pa.float64(), "%", "time a kernel ran, over the driver's window",
          cost="costly"),
    Field("mem_util_pct", pa.float64(), "%", "time device memory was read/written, same window",
          cost="costly"),
    Field("temperature_c", pa.float64(), "degC", "GPU core temperature", cost="costly"),
    Field("pcie_gen", pa.int8(), "", "current PCIe link generation", cost="costly"),
    Field("pcie_width", pa.int8(), "lanes", "current PCIe link width", cost="costly"),
    Field("mem_used_mib", pa.float64(), "MiB", "device memory in use", cost="costly"),
    # Cumulative time (ns) the clocks were held below the requested clocks, per cause
    # (nvmlDeviceGetFieldValues NVML_FI_DEV_PERF_POLICY_*, as nvmlDeviceGetViolationStatus).
    # Differences between two samples give the throttled time in between.
    Field("violation_power_ns", pa.int64(), "ns", "cumulative time limited by power", "slow"),
    Field("violation_thermal_ns", pa.int64(), "ns", "cumulative time limited by thermals",
          "slow"),
    Field("violation_sync_boost_ns", pa.int64(), "ns", "cumulative time limited by sync boost",
          "slow"),
    Field("violation_board_limit_ns", pa.int64(), "ns", "cumulative time limited by the board",
          "slow"),
    Field("violation_low_util_ns", pa.int64(), "ns", "cumulative time limited by low utilisation",
          "slow"),
    Field("violation_reliability_ns", pa.int64(), "ns", "cumulative time limited for reliability",
          "slow"),
    Field("violation_app_clocks_ns", pa.int64(), "ns",
          "cumulative time below application clocks (any cause)", "slow"),
    Field("violation_base_clocks_ns", pa.int64(), "ns",
          "cumulative time below base clocks (any cause)", "slow"),
    # The host, not the GPU: the recording thread's cumulative time on a CPU and waiting in a
    # run queue for one (/proc/<pid>/task/<tid>/schedstat; gpuwatch/hoststat.py). Real GPUs
    # and the stand-in only; on the inference GPU's rows.
    Field("host_run_ns", pa.int64(), "ns", "recording thread: cumulative time on a CPU"),
    Field("host_wait_ns", pa.int64(), "ns",
          "recording thread: cumulative time runnable but waiting for a CPU"),
    # ...and about once a second, the machine and the container
    Field("host_cpu_pressure_us", pa.int64(), "us",
          "machine: cumulative time some task waited for a CPU (/proc/pressure/cpu)"),
    Field("host_cpu_throttled_us", pa.int64(), "us",
          "the recording process's cgroup: cumulative time throttled by its CPU quota "
          "(cpu.stat; about every 10 ms from v4)"),
    Field("host_load1_tasks", pa.float64(), "tasks", "machine: 1-minute load average"),
    Field("host_involuntary_switches", pa.int64(), "switches",
          "recording thread: cumulative involuntary context switches (preempted while runnable)"),
    # ...and about every 10 ms (schema v4): what else in the process ran, what the hypervisor
    # took, and the recording thread's page faults and voluntary sleeps (the involuntary
    # switches above come at this rate too from v4)
    Field("host_others_run_ns", pa.int64(), "ns",
          "recording process: cumulative CPU time of all its other threads (schedstat; "
          "threads that exited keep their last value)"),
    Field("host_steal_ns", pa.int64(), "ns",
          "machine: cumulative steal time, CPU time the hypervisor gave to others (/proc/stat)"),
    Field("host_minflt", pa.int64(), "faults",
          "recording thread: cumulative minor page faults (no disk I/O)"),
    Field("host_majflt", pa.int64(), "faults",
          "recording thread: cumulative major page faults (waited for disk I/O)"),
    Field("host_voluntary_switches", pa.int64(), "switches",
          "recording thread: cumulative voluntary context switches (it blocked or slept)"),
    # ...and at the same rate, a level, not a counter (added within v4: a v4 trace from before
    # it loads with it NA, which is what it is where the machine does not expose cpufreq)
    Field("host_cpu_freq_mhz", pa.float64(), "MHz",
          "recording thread: current clock of the CPU it last ran on (cpufreq "
          "scaling_cur_freq); NA where the machine does not expose cpufreq"),
)
# read by the sampler (hoststat), not by GPU telemetry
HOST_FIELDS = ("host_run_ns", "host_wait_ns", "host_cpu_pressure_us", "host_cpu_throttled_us",
               "host_load1_tasks", "host_involuntary_switches", "host_others_run_ns",
               "host_steal_ns", "host_minflt", "host_majflt", "host_voluntary_switches",
               "host_cpu_freq_mhz")

# How often each tier is read. Cheap fields (~3 us each on an H100) are read every poll; the
# others one group per "costly slot" (Sampler.costly_hz), each group no more often than this,
# so a 2.4 ms energy-counter read never stalls the 1 kHz grid for more than one poll.
TIER_PERIOD_S: dict[str, float] = {"cheap": 0.0, "costly": 0.1, "slow": 1.0}

CHEAP_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS
                                      if f.cost == "cheap" and f.name not in HOST_FIELDS)
COSTLY_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.cost != "cheap")

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


class GroupSchedule:
    """Which costly reader group to read at a costly slot: the most overdue one, each group no
    more often than its tier's period. Keys are whatever the binding uses to name a group."""

    def __init__(self, groups: dict[object, str]):
        self._period = {k: int(TIER_PERIOD_S[tier] * 1e9) for k, tier in groups.items()}
        self._next = {k: 0 for k in groups}

    def due(self, now_ns: int) -> object | None:
        if not self._next:
            return None
        key = min(self._next, key=self._next.__getitem__)
        if self._next[key] > now_ns:
            return None
        self._next[key] = now_ns + self._period[key]
        return key
