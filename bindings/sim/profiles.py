"""Simulated GPU profiles: clock ranges, governor constants, power, thermal and host-launch models.

`t4` is tuned so the built-in `small` engine reproduces the field report's staircase (see
DESIGN.md): ~4.7 ms back-to-back; with a 20 ms gap, a jump near iteration 60 and a plateau near 2x
from ~iteration 125; longer gaps jump earlier and settle higher. The constants are a model of a
utilisation-driven DVFS governor, not measurements of a real T4.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    gpu_name: str
    description: str
    # Clocks (MHz). sm_min is the governor's floor under load; sm_idle the parked idle clock.
    sm_max_mhz: int
    sm_min_mhz: int
    sm_idle_mhz: int
    mem_max_mhz: int
    mem_idle_mhz: int
    governor: bool = True  # False: clocks stay at sm_max (locked), no DVFS
    sm_step_mhz: int = 15  # one governor step down
    sm_up_mhz: int = 45  # one step up per tick while busy
    tick_ms: float = 10.0  # governor evaluation period
    util_tau_ms: float = 100.0  # time constant of the governor's utilisation average
    util_low: float = 0.28  # below this (sustained) the governor steps the clock down
    util_high: float = 0.60  # above this it steps back up
    down_delay_ms: float = 900.0  # utilisation must stay low this long before the first step
    down_step_ms: float = 40.0  # then one step per this period
    idle_timeout_ms: float = 1000.0  # fully idle this long: park at sm_idle, P8
    wake_ms: float = 2.0  # from parked to full clock when work arrives
    # Power (W) and thermals.
    power_idle_w: float = 10.0
    power_dynamic_w: float = 55.0  # at full utilisation and sm_max
    power_cap_w: float = 70.0
    temp_ambient_c: float = 35.0
    thermal_c_per_w: float = 0.5
    thermal_tau_s: float = 30.0
    # Host launch model (ns): CPU cost per launch, GPU start latency after a launch, extra CPU
    # cost of the first launch after a sleep (cold caches, wake-up), time.sleep oversleep, and
    # the wake-up latency of a blocking synchronize.
    launch_cpu_ns: int = 4_000
    launch_latency_ns: int = 6_000
    post_sleep_launch_ns: int = 25_000
    sleep_overshoot_ns: int = 60_000
    sleep_jitter_ns: int = 20_000
    sync_wake_ns: int = 15_000
    kernel_jitter: float = 0.01  # relative s.d. of kernel durations
    # Slow-downs that are not clocks, both scaled by how idle the GPU has recently been
    # (1 - the governor's utilisation average): kernels slower at the same clock (cold caches),
    # and host launches slower (CPU power states after sleeping).
    cold_kernel_penalty: float = 0.0
    host_idle_penalty: float = 0.0
    # In-band clock probe and NVML's refresh: the GPU timer's resolution (%globaltimer ticks:
    # 32 ns on an H100), and how often NVML's SM clock reading changes (0: it follows the
    # clock as it changes; ~100 ms on an H100: issue 14's measurement).
    timer_ns: int = 32
    nvml_refresh_ms: float = 0.0
    pcie_gen: int = 3
    pcie_width: int = 16
    mem_total_mib: float = 15360.0


PROFILES: dict[str, Profile] = {
    "t4": Profile(
        name="t4",
        gpu_name="Simulated Tesla T4",
        description="utilisation-driven DVFS: idle gaps make the SM clock step down",
        sm_max_mhz=1590,
        sm_min_mhz=300,
        sm_idle_mhz=300,
        mem_max_mhz=5001,
        mem_idle_mhz=405,
    ),
    "flat": Profile(
        name="flat",
        gpu_name="Simulated GPU (locked clocks)",
        description="clocks locked at maximum (as with nvidia-smi -lgc): no DVFS, no layering",
        sm_max_mhz=1590,
        sm_min_mhz=1590,
        sm_idle_mhz=1590,
        mem_max_mhz=5001,
        mem_idle_mhz=5001,
        governor=False,
    ),
    "capped": Profile(
        name="capped",
        gpu_name="Simulated GPU (power-capped)",
        description="clocks at maximum until power exceeds a low 30 W cap: back-to-back work "
                    "is throttled (reason sw_power_cap); the clock climbs back only under high "
                    "utilisation, so gapped work after it keeps the lowered clock, with no "
                    "reason active",
        sm_max_mhz=1590, sm_min_mhz=300, sm_idle_mhz=1590, mem_max_mhz=5001,
        mem_idle_mhz=5001, power_cap_w=30.0, util_low=0.0,
    ),
    "cold": Profile(
        name="cold",
        gpu_name="Simulated GPU (locked clocks, cold kernels)",
        description="clocks locked; kernels run up to 1.8x slower after idling (cold caches): "
                    "a slow-down clocks do not explain",
        sm_max_mhz=1590, sm_min_mhz=1590, sm_idle_mhz=1590, mem_max_mhz=5001,
        mem_idle_mhz=5001, governor=False, cold_kernel_penalty=1.0,
    ),
    "hostbound": Profile(
        name="hostbound",
        gpu_name="Simulated GPU (locked clocks, slow host)",
        description="clocks locked; each kernel launch costs the host 200 us, up to 2x more "
                    "after idling: the GPU waits for the host inside each inference",
        sm_max_mhz=1590, sm_min_mhz=1590, sm_idle_mhz=1590, mem_max_mhz=5001,
        mem_idle_mhz=5001, governor=False, launch_cpu_ns=200_000, host_idle_penalty=1.0,
    ),
}


@dataclass(frozen=True)
class EnginePreset:
    """A simulated engine: `kernels` kernels totalling `work_ms` at the profile's max clocks,
    of which `compute_fraction` scales with the SM clock and the rest with the memory clock."""

    name: str
    kernels: int
    work_ms: float
    compute_fraction: float = 0.9


ENGINE_PRESETS: dict[str, EnginePreset] = {
    "small": EnginePreset("small", kernels=24, work_ms=4.7),  # seed: localC INT8 768x448
    "large": EnginePreset("large", kernels=48, work_ms=15.2),  # seed: localL INT8 1024x576
    "tiny": EnginePreset("tiny", kernels=8, work_ms=0.25),  # a small service (an MLP)
}
