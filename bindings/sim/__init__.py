"""A simulated GPU for machines without one (`device="sim:t4"`), and ground truth for tests.

It implements the same Backend protocol as the real bindings, on a virtual clock: an
800-iteration run with 20 ms gaps takes a fraction of a second, and the same seed gives the same
latencies. Every trace it produces says `simulated: true`.

Spec: `sim:PROFILE[,gpus=N][,index=I][,fault=KIND@START[+DURATION][/GPU]]...`

- `gpus=N` makes N GPUs on one virtual clock (inference runs on GPU `index`; the others idle).
- `fault=` injects what NVML or CUDA can do to a real recording, from START seconds after the
  device opened, for DURATION seconds (default: for good), on GPU (default: the inference GPU):
  `gpu_lost` (every NVML read fails, "GPU is lost"), `timeout`, `unknown` (NVML errors),
  `not_supported` (NVML answers "not supported": the fields read as NA), `cuda_error` (a sticky
  CUDA error: every CUDA call on that GPU fails, as after an illegal memory access).
- host faults (`gil`, `gc`, `steal`; no /GPU): the host's own causes, made for real where they
  can be (a thread holding the interpreter lock, garbage collection) and injected where they
  cannot (VM steal); the simulated GPU then runs in real time on the host's clock (host.py).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gpuwatch.clock import VirtualClock
from gpuwatch.device import DeviceInfo
from gpuwatch.errors import GpuwatchError, UsageError
from gpuwatch.fields import COSTLY_FIELDS, FIELD_NAMES, FIELDS_BY_NAME, GroupSchedule

from .host import HOST_FAULT_KINDS, PacedClock, SimClock, SimHost
from .model import SimGPU
from .profiles import ENGINE_PRESETS, PROFILES, EnginePreset, Profile

__all__ = ["PROFILES", "ENGINE_PRESETS", "FAULT_KINDS", "SimBackend", "SimFault", "open_backend"]


# "cotenant": another process shares the GPU (COTENANT_SHARE of its time, as time-slicing
# gives it): this program's kernels run that much slower, and NVML's utilisation counts both.
# "timeslice": a light co-tenant (an inference service under a fifth of the SMs) whose time
# slices make work that arrives at an idle GPU wait: every TIMESLICE_PERIOD_NS it holds the GPU
# for TIMESLICE_NS; this program's kernels, once started, run as fast as before.
# The host's faults (host.py, which has their constants): "gil", a pure-Python thread of the
# recording process (host.GIL_HOG_NAME) busy-looping, holding the interpreter lock; "gc", the
# built-in engine's call building objects in reference cycles (host.GC_NODES a call), so that
# the cyclic collector runs inside the calls; "steal", the hypervisor taking host.STEAL_SHARE of
# each CPU (injected into the machine's steal time; the engine's host work takes that much
# longer). With any of them the simulated GPU runs in real time (host.PacedClock).
FAULT_KINDS = ("gpu_lost", "timeout", "unknown", "not_supported", "cuda_error", "cotenant",
               "thermal", "timeslice") + HOST_FAULT_KINDS
COTENANT_SHARE = 0.6
TIMESLICE_PERIOD_NS, TIMESLICE_NS = 2_000_000, 350_000  # 17.5% of the GPU's time
COTENANT_PID = 4242
_NVML_MESSAGES = {"gpu_lost": "GPU is lost", "timeout": "Timeout", "unknown": "Unknown Error"}


class SimNVMLError(Exception):
    """What pynvml raises, for the simulated GPU (the message is NVML's own)."""


class SimCudaError(GpuwatchError):
    """A CUDA error on the simulated GPU (named like the driver's error code), as
    bindings.cuda.CudaError is on a real one."""


@dataclass(frozen=True)
class SimFault:
    kind: str
    start_s: float
    duration_s: float = float("inf")
    gpu: int | None = None  # None: the inference GPU

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.start_s + self.duration_s

    @classmethod
    def parse(cls, text: str) -> "SimFault":
        """KIND@START[+DURATION][/GPU], times in seconds since the device opened."""
        kind, at, rest = text.partition("@")
        if kind not in FAULT_KINDS or not at:
            raise UsageError(f"bad sim fault {text!r}: use KIND@START[+DURATION][/GPU] with KIND one "
                             f"of {', '.join(FAULT_KINDS)}, e.g. fault=timeout@2+0.5")
        rest, _, gpu = rest.partition("/")
        start, _, dur = rest.partition("+")
        try:
            f = cls(kind, float(start), float(dur) if dur else float("inf"),
                    int(gpu) if gpu else None)
        except ValueError:
            raise UsageError(f"bad sim fault {text!r}: START and DURATION are seconds, GPU an "
                             "index, e.g. fault=gpu_lost@5/1") from None
        if not (0 <= f.start_s < float("inf")) or not f.duration_s > 0 or \
                (f.gpu is not None and f.gpu < 0):  # (NaN fails both comparisons)
            raise UsageError(f"bad sim fault {text!r}: times must be >= 0 and the duration > 0")
        if f.kind in HOST_FAULT_KINDS and f.gpu is not None:
            raise UsageError(f"bad sim fault {text!r}: {f.kind} is the host's, not a GPU's; "
                             f"give no /GPU, e.g. fault={f.kind}@2+3")
        return f


def _cotenant_share(faults: "_Faults") -> Any:
    """The share of the GPU another process takes at GPU time t (ns), from cotenant faults."""
    active = _fault_window(faults, "cotenant")
    return lambda t_ns: COTENANT_SHARE if active(t_ns) else 0.0


def _fault_window_active(gpu: SimGPU, t_ns: int) -> bool:
    """Is the light co-tenant's fault window open at t (whether or not it holds a slice)?"""
    w = getattr(gpu, "timeslice_window", None)
    return bool(w is not None and w(t_ns))


def _timeslice(faults: "_Faults") -> Any:
    """When the light co-tenant's slice in progress at GPU time t (ns) ends; None outside its
    slices or its fault window."""
    active = _fault_window(faults, "timeslice")

    def slice_end(t_ns: int) -> int | None:
        if not active(t_ns):
            return None
        phase = (t_ns - faults._origin) % TIMESLICE_PERIOD_NS
        return t_ns - phase + TIMESLICE_NS if phase < TIMESLICE_NS else None
    return slice_end


def _fault_window(faults: "_Faults", kind: str) -> Any:
    """Is a fault of `kind` active at GPU time t (ns)?"""
    spans = [(f.start_s, f.start_s + f.duration_s) for f in faults.faults if f.kind == kind]

    def active(t_ns: int) -> bool:
        t = (t_ns - faults._origin) / 1e9
        return any(a <= t < b for a, b in spans)
    return active


class _Faults:
    """The faults of one simulated GPU, checked against the virtual clock."""

    def __init__(self, faults: list[SimFault], clock: SimClock):
        self.faults, self.clock = faults, clock
        self._origin = clock.now_ns()

    def active(self, *kinds: str) -> str | None:
        if not self.faults:
            return None
        t = (self.clock.now_ns() - self._origin) / 1e9
        for f in self.faults:
            if f.kind in kinds and f.active(t):
                return f.kind
        return None


@dataclass
class SimEvent:
    t_ns: int | None = None  # when the GPU reached the event (ground truth)


PROBE_KERNEL = "gpuwatch_clock_probe"  # kernels table: kind "probe" (gpuwatch's own)


@dataclass
class SimProbe:
    """An in-band clock stamp: a tiny kernel on the stream that reads the GPU timer and the SM
    cycle counter when it runs."""

    t_ns: int  # when the probe kernel ran (ground truth, before the timer's quantisation)


@dataclass(frozen=True)
class SimStream:
    """A simulated CUDA stream. Id 0 is the legacy default stream: it waits for every blocking
    stream's work, and they for its; a non-blocking stream waits for nothing but its own."""

    id: int
    non_blocking: bool = True

    @property
    def handle(self) -> "SimStream":  # as bindings.cuda.Stream: the binding's own object...
        return self

    @property
    def ptr(self) -> int:  # ...and the raw handle
        return self.id


LEGACY = SimStream(0, non_blocking=False)


class SimRuntime:
    """Streams and events over a SimGPU. Events time-stamp the GPU's progress exactly."""

    def __init__(self, gpu: SimGPU, clock: SimClock, faults: "_Faults | None" = None):
        self.gpu, self.clock = gpu, clock
        self._streams: dict[int, SimStream] = {0: LEGACY}
        self._faults = faults
        self.tag: int | None = None  # the kernel tracer's external id for the next record

    def _check(self) -> None:
        if self._faults is not None and self._faults.active("cuda_error"):
            raise SimCudaError("CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was "
                               "encountered (injected sim fault)")

    def stream(self, non_blocking: bool = True) -> SimStream:
        """A new stream: non-blocking, as gpuwatch's engines make theirs; blocking as a user's
        plain cudaStreamCreate would."""
        s = SimStream(len(self._streams), non_blocking)
        self._streams[s.id] = s
        return s

    def native_stream(self, handle: int) -> SimStream:
        s = self._streams.get(handle)
        if s is None:
            raise UsageError(f"the simulated GPU has no stream {handle}")
        return s

    def event(self) -> SimEvent:
        return SimEvent()

    def release_event(self, event: SimEvent) -> None:
        pass

    def _waits_for(self, stream: SimStream) -> list[int]:
        if stream.id == 0:  # legacy: after every blocking stream's work
            return [i for i, s in self._streams.items() if not s.non_blocking]
        return [stream.id] if stream.non_blocking else [stream.id, 0]

    def record(self, event: SimEvent, stream: SimStream) -> None:
        self._check()
        self.clock.advance(1_000)  # cudaEventRecord costs the host ~1 us
        event.t_ns = t = self.gpu.stream_position_ns(self._waits_for(stream))
        if self.tag is not None and self.gpu.trace is not None:
            self.gpu.api_calls += 1
            self.gpu.event_trace.append((t, self.tag, stream.id, self.gpu.api_calls))

    def query(self, event: SimEvent) -> bool:
        self._check()
        self.clock.advance(500)  # cudaEventQuery costs the host ~0.5 us
        if event.t_ns is None:
            raise RuntimeError("query on an event that was never recorded")
        return event.t_ns <= self.clock.now_ns()

    def completed(self, event: SimEvent) -> bool:
        """As query(), but costs no virtual time (from another thread: the virtual clock
        moves only in the recording thread)."""
        return event.t_ns is not None and event.t_ns <= self.clock.now_ns()

    def synchronize_device(self) -> None:
        self._wait_until(self.gpu.stream_position_ns(), "context_synchronize", -1)

    def stream_synchronize(self, stream: SimStream) -> None:
        self._wait_until(self.gpu.stream_position_ns(self._waits_for(stream)),
                         "stream_synchronize", stream.id)

    def _wait_until(self, done_ns: int, what: str | None = None, stream: int = -1) -> None:
        """A blocking synchronisation: sleep until the GPU is done, then wake up (a stream or
        device synchronize, `what`, is kept in the kernel tracer's sync_trace, as CUPTI's
        SYNCHRONIZATION records keep it)."""
        self._check()
        t0 = self.clock.now_ns()
        if done_ns > t0:
            self.clock.advance_to(done_ns + self.gpu.p.sync_wake_ns)
        else:
            self.clock.advance(500)
        if self.gpu.trace is not None and what is not None:
            self.gpu.sync_trace.append((t0, self.clock.now_ns(), what, stream))

    def synchronize(self, event: SimEvent) -> None:
        self._check()
        if event.t_ns is None:
            raise RuntimeError("synchronize on an event that was never recorded")
        if event.t_ns > self.clock.now_ns():  # blocking sync: sleep until done, then wake up
            self.clock.advance_to(event.t_ns + self.gpu.p.sync_wake_ns)
        else:
            self.clock.advance(500)

    def touch(self, stream: SimStream) -> None:
        """A keep-alive: a 2 us kernel."""
        self._check()
        self.gpu.launch(2_000, 0, name="keepalive", stream=stream.id)

    # -- the in-band clock probe (see regions/timer.py) -------------------------------------------
    def probe(self, stream: SimStream) -> SimProbe:
        """Enqueue a stamp kernel on `stream`: the host pays a launch; on the GPU it runs ~1 us
        once the stream's earlier work is done, beside other streams' kernels (one thread per
        SM: it fits next to them), so it is ordered like an event record."""
        self._check()
        gpu = self.gpu
        self.clock.advance(gpu.p.launch_cpu_ns)
        t = gpu.stream_position_ns(self._waits_for(stream))
        gpu.stream_end[stream.id] = max(gpu.stream_end.get(stream.id, 0), t + 1_000)
        if gpu.trace is not None:
            gpu.api_calls += 1
            gpu.trace.append((t, t + 1_000, PROBE_KERNEL, stream.id, gpu.api_calls))
        return SimProbe(t)

    def read_probe(self, probe: SimProbe, wait: bool = False) -> tuple[int, float] | None:
        """(GPU timer ns, SM cycles) the stamp read, or None while it has not run (`wait`:
        wait for it). The timer counts in `timer_ns` ticks, as %globaltimer does."""
        if probe.t_ns > self.clock.now_ns():
            if not wait:
                return None
            self._wait_until(probe.t_ns)
        self.gpu._process_ticks(probe.t_ns)
        cycles = self.gpu.clock_history.cycles_at(probe.t_ns)
        if cycles is None:
            return None
        q = max(1, self.gpu.p.timer_ns)
        # (ticks counted from the GPU's start, as the model's: a phase taken from the wall
        # clock would make the in-band clock, and so a verdict's last digit, differ run to run)
        o = self.gpu.origin_ns
        return o + (probe.t_ns - o) // q * q, cycles

    def elapsed_ms(self, start: SimEvent, end: SimEvent) -> float:
        self._check()
        if start.t_ns is None or end.t_ns is None:
            raise RuntimeError("elapsed time between events that were never recorded")
        return (end.t_ns - start.t_ns) / 1e6


class SimEngine:
    """A simulated inference engine: a fixed sequence of kernels of uneven size."""

    def __init__(self, preset: EnginePreset, gpu: SimGPU, cuda_graph: bool = False,
                 host_gap_us: int = 0, name: str | None = None, stream: SimStream = LEGACY,
                 runtime: "SimRuntime | None" = None, host: SimHost | None = None):
        self.stream, self._rt = stream, runtime
        self._host = host  # the host's faults (gc, steal: they act inside the call)
        self.name = name or (f"builtin:{preset.name}" + (f"@{host_gap_us}" if host_gap_us else "")
                             + ("+graph" if cuda_graph else ""))
        self.cuda_graph, self.host_gap_ns = cuda_graph, host_gap_us * 1000
        self.preset, self.gpu = preset, gpu
        w = 1.0 + 0.6 * np.sin(np.arange(preset.kernels) * 1.7)  # uneven layers, deterministic
        total_ns = preset.work_ms * 1e6 * w / w.sum()
        self._compute_ns = (total_ns * preset.compute_fraction).tolist()
        self._memory_ns = (total_ns * (1.0 - preset.compute_fraction)).tolist()

    def infer(self, x: Any = None) -> Any:
        launch = self.gpu.launch
        host = self._host
        if host is not None and host.has_gc:  # (a gc fault: the call's inputs, in cycles)
            host.garbage()
        # In a steal window each host step (a launch, a host gap) takes 1 / (1 - share) as
        # long: after it, the thread busy-waits the share the hypervisor took.
        stolen = host.stolen_share() if host is not None and host.has_steal else 0.0
        now, spin = self.gpu.clock.now_ns, self.gpu.clock.spin_ns
        # A CUDA graph is one launch: only its first kernel pays the host's launch cost.
        sid = self.stream.id
        for i, (c, m) in enumerate(zip(self._compute_ns, self._memory_ns)):
            t0 = now() if stolen else 0
            launch(c, m, host_cost=not self.cuda_graph or i == 0, name="layer", stream=sid)
            if self.host_gap_ns:
                spin(self.host_gap_ns)
            if stolen:
                spin(int((now() - t0) * stolen / (1.0 - stolen)))
        return x

    def preprocess(self) -> None:  # H2D frame and normalise (~0.5 ms)
        self.gpu.launch(150_000, 350_000, name="normalise", stream=self.stream.id)

    def postprocess(self) -> None:  # reduce and D2H copy (~0.2 ms)
        self.gpu.launch(50_000, 150_000, name="reduce_rows", stream=self.stream.id)

    def synchronize(self) -> None:
        """Wait for this engine's stream (as the program's own cudaStreamSynchronize)."""
        if self._rt is None:
            raise RuntimeError("this simulated engine has no runtime to synchronise with")
        self._rt.stream_synchronize(self.stream)


class SimTelemetry:
    def __init__(self, index: int, gpu: SimGPU, faults: _Faults | None = None):
        p = gpu.p
        self.gpu = gpu
        self._faults = faults
        self._schedule = GroupSchedule({"costly": "costly", "slow": "slow"})
        self.info = DeviceInfo(
            index=index,
            name=p.gpu_name,
            uuid=f"GPU-SIM-{p.name.upper()}-{index:04d}",
            simulated=True,
            driver_version="sim",
            cuda_version=None,
            facts={
                "profile": p.name,
                "profile_description": p.description,
                "sm_max_mhz": p.sm_max_mhz,
                "mem_max_mhz": p.mem_max_mhz,
                "power_limit_w": p.power_cap_w,
                "governor": p.governor,
            },
        )

    def unsupported(self) -> dict[str, str]:
        return {f: "not modelled by the simulated GPU" for f in FIELD_NAMES
                if f.startswith(("violation_", "host_"))}

    def read(self, costly: bool = True) -> dict[str, Any]:
        """As NVML: cheap fields every time, costly ones by tier (see fields.GroupSchedule)."""
        fault = self._faults.active(*_NVML_MESSAGES, "not_supported") if self._faults else None
        if fault in _NVML_MESSAGES:  # (reads take no virtual time, failing ones neither)
            raise SimNVMLError(_NVML_MESSAGES[fault])
        values = self.gpu.read()
        if fault == "not_supported":  # the wrapper turns NVML's "not supported" into NA
            return {k: None for k in values if k not in COSTLY_FIELDS}
        due = self._schedule.due(self.gpu.clock.now_ns()) if costly else None
        for name in COSTLY_FIELDS:
            if FIELDS_BY_NAME[name].cost != due:
                values.pop(name, None)
        return values

    def processes(self) -> list[dict[str, Any]]:
        """This process, and the other one while a `cotenant` fault is active (pid
        COTENANT_PID, COTENANT_SHARE of the SM time)."""
        gpu = self.gpu
        t = gpu.clock.now_ns()
        other = gpu.cotenant(t) if gpu.cotenant is not None else 0.0
        light = gpu.timeslice is not None and _fault_window_active(gpu, t)
        util: Any = gpu.read()["gpu_util_pct"]
        own = max(0.0, float(util) - 100.0 * other)
        out = [{"pid": os.getpid(), "used_mib": 1250.0, "sm_util_pct": own,
                "mem_util_pct": 0.4 * own}]
        if other:
            out.append({"pid": COTENANT_PID, "used_mib": 2048.0, "sm_util_pct": 100.0 * other,
                        "mem_util_pct": 20.0})
        if light:
            out.append({"pid": COTENANT_PID + 1, "used_mib": 900.0,
                        "sm_util_pct": 100.0 * TIMESLICE_NS / TIMESLICE_PERIOD_NS,
                        "mem_util_pct": 5.0})
        return out

    def read_buffered(self) -> list[tuple[int, str, float]]:
        return []

    def query_costs_us(self) -> dict[str, float]:
        return {}


class SimKernelTracer:
    """Every simulated kernel and tagged event record, exactly (the ground truth CUPTI
    approximates on a real GPU): kernels with their stream, and each region's start and end
    events as `cuda_event` rows, as CUPTI's CUDA-event records give them."""

    def __init__(self, gpu: SimGPU, runtime: SimRuntime):
        self.gpu, self.runtime = gpu, runtime

    def start(self, sink: Any, gpu_index: int) -> None:
        self._sink, self._gpu_index = sink, gpu_index
        self.gpu.trace, self.gpu.event_trace, self.gpu.sync_trace = [], [], []

    def mark(self, external_id: int) -> None:
        self.runtime.tag = external_id

    def unmark(self) -> None:
        self.runtime.tag = None

    def pause(self) -> None:
        self.flush()
        self.gpu.trace = None

    def resume(self) -> None:
        self.gpu.trace = []

    def poll(self) -> None:
        """Called between timed regions: hand rows over in batches, so memory stays bounded."""
        if self.gpu.trace is not None and len(self.gpu.trace) >= 10_000:
            self.flush()

    def flush(self) -> None:
        if self.gpu.trace is None:
            return
        from gpuwatch.labels import region_of_tag

        trace, self.gpu.trace = self.gpu.trace, []
        events, self.gpu.event_trace = self.gpu.event_trace, []
        g = self._gpu_index
        rows = [{"gpu": g, "t_ns": s, "kind": "probe" if n == PROBE_KERNEL else "kernel",
                 "name": n, "start_ns": s, "end_ns": e, "stream_id": sid, "correlation_id": c}
                for s, e, n, sid, c in trace]
        syncs, self.gpu.sync_trace = self.gpu.sync_trace, []
        rows += [{"gpu": g, "t_ns": s, "kind": "sync", "name": what, "start_ns": s, "end_ns": e,
                  "stream_id": sid} for s, e, what, sid in syncs]
        rows += [{"gpu": g, "t_ns": t, "kind": "cuda_event",
                  "name": "end" if region_of_tag(tag)[1] else "start", "start_ns": t,
                  "end_ns": t, "stream_id": sid, "correlation_id": tag,
                  "api_correlation_id": c}
                 for t, tag, sid, c in events]
        if rows:
            self._sink("kernels", sorted(rows, key=lambda r: r["t_ns"]))

    def stop(self) -> dict[str, Any]:
        if self.gpu.trace is not None:
            self.flush()
        self.gpu.trace = None
        return {"source": "simulated GPU (exact)", "cuda_event_device_timestamps": True}


class SimBackend:
    simulated = True
    telemetry_factory = None  # the virtual clock lives in this process
    probe_default = True  # the in-band clock probe costs a simulated GPU nothing real
    probe_every_ms = 0.0  # ...so it stamps every region

    def __init__(self, profile: Profile, seed: int, start_ns: int, gpus: int = 1, index: int = 0,
                 faults: Sequence[SimFault] = (), sample_gpus: str | Sequence[int] | None = None):
        self.profile = profile
        rng = np.random.default_rng(seed)
        self._rng = rng
        # The host's faults make the host part of the simulation: it then runs in real time
        host_faults = [f for f in faults if f.kind in HOST_FAULT_KINDS]
        faults = [f for f in faults if f.kind not in HOST_FAULT_KINDS]
        self.clock: SimClock
        self.host: SimHost | None = None
        if host_faults:
            self.clock = PacedClock(start_ns, sleep_overshoot=self._oversleep)
            self.host = SimHost(host_faults, self.clock)
        else:
            self.clock = VirtualClock(start_ns, sleep_overshoot=self._oversleep)
        # One model per GPU, each with its own random stream (spawned, so GPU 0 of a many-GPU
        # sim is not the same as a one-GPU sim's; the inference GPU's stream is the seed's own).
        streams = [rng if i == index else np.random.default_rng([seed, i]) for i in range(gpus)]
        self.gpus = [SimGPU(profile, self.clock, r) for r in streams]
        self.gpu = self.gpus[index]
        faults_of = {i: _Faults([f for f in faults if (index if f.gpu is None else f.gpu) == i],
                                self.clock) for i in range(gpus)}
        self.telemetry = [SimTelemetry(i, self.gpus[i], faults_of[i])
                          for i in _sampled(index, gpus, sample_gpus)]
        self.runtime = SimRuntime(self.gpu, self.clock, faults_of[index])
        self.faults = list(faults) + host_faults
        for i, g in enumerate(self.gpus):
            if any(f.kind == "cotenant" for f in faults_of[i].faults):
                g.cotenant = _cotenant_share(faults_of[i])
            if any(f.kind == "timeslice" for f in faults_of[i].faults):
                g.timeslice = _timeslice(faults_of[i])
                g.timeslice_window = _fault_window(faults_of[i], "timeslice")
            if any(f.kind == "thermal" for f in faults_of[i].faults):
                g.thermal = _fault_window(faults_of[i], "thermal")

    def _oversleep(self, ns: int) -> int:
        # time.sleep wakes late; the next launch then pays for a cold CPU (see Profile).
        self.gpu.after_sleep = True
        p = self.profile
        return p.sleep_overshoot_ns + int(abs(self._rng.standard_normal()) * p.sleep_jitter_ns)

    def engine(self, spec: str, stream: Any, cuda_graph: bool = False,
               **options: Any) -> SimEngine:
        from gpuwatch.bindings.builtin import PRESETS, engine_name, parse_spec

        if spec.partition(":")[0] != "builtin":
            raise UsageError(
                f"engine {spec!r} cannot run on a simulated GPU (TensorRT, ONNX and PyTorch "
                "need a real one); use builtin:small or builtin:large"
            )
        real, host_gap_us = parse_spec(spec)  # the same spec as the real built-in engine
        own = ENGINE_PRESETS[real.name]
        scale = real.elements / PRESETS[real.name].elements  # another frame size: more work
        preset = own if scale == 1 else dataclasses.replace(own, work_ms=own.work_ms * scale)
        return SimEngine(preset, self.gpu, cuda_graph=cuda_graph, host_gap_us=host_gap_us,
                         name=engine_name(real, host_gap_us, cuda_graph),
                         stream=stream if isinstance(stream, SimStream) else LEGACY,
                         runtime=self.runtime, host=self.host)

    def versions(self) -> dict[str, str]:
        return {"sim_profile": self.profile.name}

    def kernel_tracer(self) -> "SimKernelTracer":
        return SimKernelTracer(self.gpu, self.runtime)

    def host_readings(self, read: Any) -> Any:
        """The sampler's host readings (hoststat.HostStat.read, taken where the clock is the
        host's: host faults) as this simulated host gives them: with a `steal` fault's steal
        time added to the machine's own (host.SimHost.host_readings)."""
        return read if self.host is None else self.host.host_readings(read)

    def close(self) -> None:
        if self.host is not None:  # (the gil fault's thread stops here)
            self.host.close()


def _sampled(index: int, gpus: int, sample_gpus: str | Sequence[int] | None) -> list[int]:
    """The GPUs to sample, the inference GPU first (as RealBackend orders them)."""
    if sample_gpus in (None, "", "self"):
        return [index]
    listed = range(gpus) if sample_gpus == "all" else [int(i) for i in sample_gpus]
    bad = [i for i in listed if not 0 <= i < gpus]
    if bad:
        raise UsageError(f"there is no GPU {bad[0]}: this simulated machine has {gpus} "
                         f"(0..{gpus - 1}); make more with sim:PROFILE,gpus=N")
    return [index] + [i for i in listed if i != index]


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """"t4,gpus=8,index=3,fault=timeout@2+0.5" -> ("t4", {gpus, index, faults});
    nvml_refresh_ms=100 makes NVML's SM clock reading change only that often (an H100's)."""
    profile, *opts = [x.strip() for x in spec.split(",")]
    if not profile:
        raise UsageError(f"sim:{spec} names no profile; use sim:PROFILE, e.g. sim:t4")
    out: dict[str, Any] = {"gpus": 1, "index": 0, "faults": []}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq or key not in ("gpus", "index", "fault", "nvml_refresh_ms"):
            raise UsageError(f"bad sim option {opt!r} in sim:{spec}; use gpus=N, index=I, "
                             "nvml_refresh_ms=MS or fault=KIND@START[+DURATION][/GPU]")
        if key == "fault":
            out["faults"].append(SimFault.parse(value))
            continue
        if not value.isdigit():
            raise UsageError(f"sim option {key} takes a whole number, got {value!r}")
        out[key] = int(value)
    if not 1 <= out["gpus"] <= 1024:
        raise UsageError(f"sim gpus must be 1..1024, got {out['gpus']}")
    if not out["index"] < out["gpus"]:
        raise UsageError(f"sim index {out['index']} is out of range for gpus={out['gpus']} "
                         f"(0..{out['gpus'] - 1})")
    for f in out["faults"]:
        if f.gpu is not None and f.gpu >= out["gpus"]:
            raise UsageError(f"sim fault on GPU {f.gpu}, but there are only {out['gpus']}")
    return profile, out


def open_backend(spec: str, seed: int = 0, start_ns: int | None = None,
                 sample_gpus: str | Sequence[int] | None = None) -> SimBackend:
    """Open a simulated GPU (or several): "t4", "t4,gpus=8,index=3", "t4,fault=gpu_lost@5".
    `start_ns` fixes the virtual epoch (the default is now, so traces from sim sit at a
    plausible wall-clock time)."""
    profile, opts = parse_spec(spec)
    if profile not in PROFILES:
        raise UsageError(
            f"unknown simulated GPU profile {profile!r}; choose one of "
            + ", ".join(f"sim:{n}" for n in sorted(PROFILES))
        )
    import time

    prof = PROFILES[profile]
    if "nvml_refresh_ms" in opts:
        prof = dataclasses.replace(prof, nvml_refresh_ms=float(opts["nvml_refresh_ms"]))
    return SimBackend(prof, seed, time.time_ns() if start_ns is None else start_ns,
                      opts["gpus"], opts["index"], opts["faults"], sample_gpus)
