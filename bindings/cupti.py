"""Kernel and copy timeline through NVIDIA's cupti-python (the `cupti` extra).

CUPTI's Activity API records every kernel, memcpy and memset the GPU runs: name, start and
end, stream and correlation id. Records arrive in buffers on CUPTI's own thread. There they are
converted and handed to the trace writer. The session asks for them about once a second between
timed regions (poll), so converting them never competes with a timed region for the GIL.

With CUDA-event device timestamps on, the GPU's own time of each of gpuwatch's start and end
events is recorded too. The region timer tags them by pushing external correlation ids
(labels.event_tag). They become `cuda_event` rows of the kernels table, with the stream they
were recorded on and the correlation id of the record call: analysis uses them in place of the
anchor-mapped times ("tightened" windows) and to find kernels a region launched on other
streams. That needs CUPTI enabled before the CUDA context is made (RealBackend does so when
asked for kernels) and driver-API records for cuEventRecord, which carry the external ids.

CUPTI timestamps are nanoseconds on CUPTI's own clock (the Unix epoch on Linux). They are moved
onto the trace's time base by an offset measured at start (timebase.measure_offset). The offset
and its uncertainty go into the metadata.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from gpuwatch.clock import Clock
from gpuwatch._version import install_hint
from gpuwatch.errors import DeviceUnavailable
from gpuwatch.labels import region_of_tag
from gpuwatch.timebase import measure_offset

BUFFER_BYTES = 8 << 20
FLUSH_NS = 1_000_000_000  # deliver records about once a second
# (Converting records in chunks with the GIL handed back in between, flushing every 50-200 ms,
# and flushing through ctypes without the GIL were each tried on the H100 with gpuwatch run's
# kernel bursts: none made the program's GPU idle gaps fewer; benchmarks/results/h100_issue18.)
# gpuwatch's own event records: the only driver-API records kept (for external correlation)
EVENT_RECORD_CBIDS = ("cuEventRecord", "cuEventRecord_ptsz", "cuEventRecordWithFlags",
                      "cuEventRecordWithFlags_ptsz")


def _cupti() -> Any:
    try:
        from cupti import cupti
    except ImportError as e:
        raise DeviceUnavailable(
            f"kernel tracing needs cupti-python: {install_hint('cupti')}") from e
    return cupti


class CuptiTracer:
    def __init__(self, clock: Clock):
        self.cupti = _cupti()
        self.clock = clock
        self._kinds = [self.cupti.ActivityKind.CONCURRENT_KERNEL, self.cupti.ActivityKind.MEMCPY,
                       self.cupti.ActivityKind.MEMSET]
        self.records = 0
        self.dropped = 0
        # CUDA-event device timestamps, joined to gpuwatch's region ids by external correlation
        self.events_enabled: bool | str = False
        # Context-switch records: True where CUPTI gives them, else why not (metadata)
        self.ctx_switch: bool | str = False
        # CUPTI correlation id -> (device timestamp, CUPTI stream id)
        self._event_ts: dict[int, tuple[int, int | None]] = {}  # corr -> (GPU ns, stream id)
        self.by_kind: dict[str, int] = {}  # raw records received, per CUPTI activity kind
        self._kind_names: dict[int, str] = {}
        self._sync_names: dict[int, str] = {}
        self._marked = 0
        self.sample: dict[str, str] = {}  # one raw record of each kind, for diagnosis
        self._external: dict[int, int] = {}  # CUPTI correlation id -> gpuwatch external id
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._enabled = False
        self._sink: Callable[[str, list[dict[str, Any]]], None] | None = None
        self._early: list[dict[str, Any]] = []  # records delivered before start() (rare)
        self._gpu = 0
        self.offset_ns = self.offset_uncertainty_ns = 0
        # what tracing costs this process's threads (host ns; in the metadata at stop)
        self.cost = {"callbacks": 0, "convert_ns": 0, "convert_max_ns": 0, "flushes": 0,
                     "flush_ns": 0, "flush_max_ns": 0}

    def _calibrate(self, tries: int = 9) -> tuple[int, int]:
        return measure_offset(self.clock.now_ns, self.cupti.get_timestamp, tries)

    def enable(self) -> None:
        """Switch CUPTI's recording on. Call it before the CUDA context exists: seen on the H100
        (CUDA 13.0), CUDA_EVENT records only come when CUPTI was enabled first, and
        EXTERNAL_CORRELATION records only with driver-API records on (here just cuEventRecord's,
        see benchmarks/results/h100_issue6/cuda_event_probe.txt)."""
        if self._enabled:
            return
        c = self.cupti
        self._enabled = True
        c.activity_register_callbacks(self._requested, self._completed)
        for kind in self._kinds:
            c.activity_enable(kind)
        try:  # the program's waits for the GPU (gpuwatch run's kernel bursts end at them)
            c.activity_enable(c.ActivityKind.SYNCHRONIZATION)
            self._kinds.append(c.ActivityKind.SYNCHRONIZATION)
        except Exception:
            pass
        # This program's context switched in and out of the GPU's compute engine: another
        # context (another process) had its time slice meanwhile. Not every GPU and driver
        # gives them: on the lent H100 (driver 580, a Firecracker VM) enabling them fails with
        # ERROR_NOT_COMPATIBLE (benchmarks/results/h100_issue27/ctx_switch_probe.txt); the
        # metadata says which.
        kind = getattr(c.ActivityKind, "COMPUTE_ENGINE_CTX_SWITCH", None)
        if kind is None:
            self.ctx_switch = "this CUPTI has no COMPUTE_ENGINE_CTX_SWITCH records"
        else:
            try:
                c.activity_enable(kind)
                self._kinds.append(kind)
                self.ctx_switch = True
            except Exception as e:
                self.ctx_switch = f"{type(e).__name__}: {e}"
        try:
            c.activity_enable_cuda_event_device_timestamps(1)
            for kind in (c.ActivityKind.CUDA_EVENT, c.ActivityKind.EXTERNAL_CORRELATION,
                         c.ActivityKind.DRIVER):
                c.activity_enable(kind)
                self._kinds.append(kind)
            self._driver_api_only(EVENT_RECORD_CBIDS)
            self.events_enabled = True
        except Exception as e:  # older CUPTI: windows stay anchor-mapped
            self._events_off()  # (whatever of it was switched on: DRIVER records every call)
            self.events_enabled = f"{type(e).__name__}: {e}"

    def _driver_api_only(self, names: tuple[str, ...]) -> None:
        """Keep driver-API records for these calls only: each record costs host time."""
        c = self.cupti
        # (cupti-python 13.0 names the enum driver_api_trace_cbid; keep both spellings)
        cbids = getattr(c, "DriverApiTraceCbid", None) or getattr(c, "driver_api_trace_cbid")
        keep = {getattr(cbids, n) for n in names if hasattr(cbids, n)}
        if not keep:
            raise RuntimeError("CUPTI names none of the event-record driver calls")
        for cbid in cbids:
            if cbid.name in ("INVALID", "SIZE", "FORCE_INT"):
                continue
            try:
                c.activity_enable_driver_api(int(cbid), 1 if cbid in keep else 0)
            except Exception:
                pass  # a cbid this CUPTI does not know

    def start(self, sink: Callable[[str, list[dict[str, Any]]], None], gpu_index: int) -> None:
        self.enable()  # no-op when the backend enabled CUPTI before its context
        self._gpu = gpu_index
        self.offset_ns, self.offset_uncertainty_ns = self._calibrate()
        self._sink = sink
        self._last_flush_ns = self.clock.now_ns()
        self._flusher = threading.Thread(target=self._flush_loop, name="gpuwatch-cupti",
                                         daemon=True)
        self._flusher.start()

    def pause(self) -> None:
        """Stop recording (for the overhead benchmark); resume() starts again."""
        for kind in self._kinds:
            self.cupti.activity_disable(kind)

    def resume(self) -> None:
        for kind in self._kinds:
            self.cupti.activity_enable(kind)

    def poll(self) -> None:
        """Called between timed regions: deliver the records about once a second, here, so
        that converting them never holds the GIL while a timed region launches work."""
        if self.clock.now_ns() - self._last_flush_ns >= FLUSH_NS:
            self._flush()

    def _flush(self) -> None:
        with self._flush_lock:  # poll() and the fallback thread
            t0 = time.perf_counter_ns()
            self._last_flush_ns = self.clock.now_ns()
            self.cupti.activity_flush_all(0)
            dt = time.perf_counter_ns() - t0  # (the conversion it triggered included)
            c = self.cost
            c["flushes"] += 1
            c["flush_ns"] += dt
            c["flush_max_ns"] = max(c["flush_max_ns"], dt)
            # Enabling CUDA-event device timestamps can succeed while no CUDA_EVENT records come
            # (seen on the H100 when CUPTI was enabled after the CUDA context). Then stop
            # tagging regions, which would only cost time inside them, and say why.
            if self.events_enabled is True and self._marked >= 64 and \
                    "CUDA_EVENT" not in self.by_kind and "KERNEL" in str(self.by_kind):
                self._give_up_on_events()

    def mark(self, external_id: int) -> None:
        """Tag the next CUDA calls (an event record) with gpuwatch's id for them."""
        if self.events_enabled is True:
            self._marked += 1
            self.cupti.activity_push_external_correlation_id(
                self.cupti.ExternalCorrelationKind.CUSTOM0, external_id)

    def unmark(self) -> None:
        if self.events_enabled is True:
            self.cupti.activity_pop_external_correlation_id(
                self.cupti.ExternalCorrelationKind.CUSTOM0)

    def _flush_loop(self) -> None:
        """A fallback for code that times no regions for a while: flush from this thread only
        when poll() has not for 2 s (records must not pile up inside CUPTI)."""
        while not self._stop.wait(0.5):
            if self.clock.now_ns() - self._last_flush_ns >= 2 * FLUSH_NS:
                self._flush()

    def _give_up_on_events(self) -> None:
        """Event records were asked for but none came: switch that collection off again (it
        still costs time at every event record) and keep the windows anchor-mapped."""
        self.events_enabled = ("enabled, but CUPTI delivered no CUDA_EVENT records (CUPTI was "
                               "enabled after the CUDA context): switched off, windows stay "
                               "anchor-mapped")
        self._events_off()

    def _events_off(self) -> None:
        """Switch CUDA_EVENT, EXTERNAL_CORRELATION and DRIVER collection off again."""
        c = self.cupti
        for kind in (c.ActivityKind.CUDA_EVENT, c.ActivityKind.EXTERNAL_CORRELATION,
                     c.ActivityKind.DRIVER):
            if kind in self._kinds:
                self._kinds.remove(kind)
                try:
                    c.activity_disable(kind)
                except Exception:
                    pass
        try:
            c.activity_enable_cuda_event_device_timestamps(0)
        except Exception:
            pass

    def _requested(self) -> tuple[int, int]:
        return BUFFER_BYTES, 0

    def _completed(self, activities: list[Any]) -> None:
        t0 = time.perf_counter_ns()
        c, off, gpu = self.cupti, self.offset_ns, self._gpu
        K = c.ActivityKind
        rows = []
        names, by_kind = self._kind_names, self.by_kind
        for a in activities:
            kind = a.kind
            kname = names.get(kind)
            if kname is None:  # (an enum lookup per record costs more than the rest)
                kname = names[kind] = K(kind).name
            by_kind[kname] = by_kind.get(kname, 0) + 1
            if kname not in self.sample and kname in ("CUDA_EVENT", "EXTERNAL_CORRELATION"):
                self.sample[kname] = repr({f: getattr(a, f, None) for f in (
                    "correlation_id", "external_id", "device_timestamp", "event_id",
                    "stream_id", "cuda_event_sync_id")})
            if kind in (K.CONCURRENT_KERNEL, K.KERNEL):
                rows.append({"gpu": gpu, "t_ns": a.start + off, "kind": "kernel", "name": a.name,
                             "start_ns": a.start + off, "end_ns": a.end + off,
                             "stream_id": a.stream_id, "correlation_id": a.correlation_id})
            elif kind == K.MEMCPY:
                rows.append({"gpu": gpu, "t_ns": a.start + off, "kind": "memcpy",
                             "name": c.ActivityMemcpyKind(a.copy_kind).name.lower(),
                             "start_ns": a.start + off, "end_ns": a.end + off,
                             "stream_id": a.stream_id, "correlation_id": a.correlation_id,
                             "bytes": a.bytes})
            elif kind == K.DRIVER:
                continue  # kept only so that EXTERNAL_CORRELATION records come
            elif kind == K.SYNCHRONIZATION:
                what = self._sync_names.get(a.type)
                if what is None:
                    what = self._sync_names[a.type] = \
                        c.ActivitySynchronizationType(a.type).name.lower()
                if what != "stream_wait_event":  # (a GPU-side wait, not the host's)
                    rows.append({"gpu": gpu, "t_ns": a.start + off, "kind": "sync",
                                 "name": what, "start_ns": a.start + off, "end_ns": a.end + off,
                                 "stream_id": a.stream_id, "correlation_id": a.correlation_id})
            elif kind == K.CUDA_EVENT:
                if a.device_timestamp:
                    self._event_ts[a.correlation_id] = (a.device_timestamp,
                                                        getattr(a, "stream_id", None))
            elif kind == K.EXTERNAL_CORRELATION:
                self._external[a.correlation_id] = a.external_id
            elif kname == "COMPUTE_ENGINE_CTX_SWITCH":
                op = getattr(c, "ComputeEngineCtxSwitchOperationType", None)
                try:  # CUPTI's name of the operation: "start" or "end" of a context switch
                    what = op(a.operation_type).name.lower() if op is not None else None
                except ValueError:
                    what = None
                rows.append({"gpu": gpu, "t_ns": a.timestamp + off, "kind": "ctx_switch",
                             "name": what or f"operation {int(a.operation_type)}",
                             "start_ns": a.timestamp + off, "end_ns": a.timestamp + off,
                             "stream_id": None, "correlation_id": a.context_id})
            elif kind == K.MEMSET:
                rows.append({"gpu": gpu, "t_ns": a.start + off, "kind": "memset", "name": "memset",
                             "start_ns": a.start + off, "end_ns": a.end + off,
                             "stream_id": a.stream_id, "correlation_id": a.correlation_id,
                             "bytes": a.bytes})
        with self._lock:
            for corr in [k for k in self._event_ts if k in self._external]:
                (ts, stream), ext = self._event_ts.pop(corr), self._external.pop(corr)
                ts += off
                rows.append({"gpu": gpu, "t_ns": ts, "kind": "cuda_event",
                             "name": "end" if region_of_tag(ext)[1] else "start",
                             "start_ns": ts, "end_ns": ts, "stream_id": stream,
                             "correlation_id": ext, "api_correlation_id": corr})
            for d in (self._event_ts, self._external):  # unmatched (anchor events): bounded
                while len(d) > 100_000:
                    d.pop(next(iter(d)))
            self.records += len(rows)
        rows.sort(key=lambda r: r["t_ns"])
        if self._sink is None:
            self._early += rows
        elif rows:
            if self._early:
                rows, self._early = self._early + rows, []
            self._sink("kernels", rows)
        dt = time.perf_counter_ns() - t0
        cost = self.cost
        cost["callbacks"] += 1
        cost["convert_ns"] += dt
        cost["convert_max_ns"] = max(cost["convert_max_ns"], dt)

    def stop(self) -> dict[str, Any]:
        c = self.cupti
        self._stop.set()
        self._flusher.join()
        c.activity_flush_all(1)  # forced: deliver the incomplete buffers too
        if self.events_enabled is True and self._marked and "CUDA_EVENT" not in self.by_kind:
            self._give_up_on_events()
        for kind in self._kinds:
            c.activity_disable(kind)
        try:
            self.dropped = int(c.activity_get_num_dropped_records(None, 0))
        except Exception:
            self.dropped = -1  # not answerable here; -1 means unknown
        return {"source": "CUPTI activity API (cupti-python)", "records": self.records,
                "cuda_event_device_timestamps": self.events_enabled,
                "context_switches": self.ctx_switch,
                "records_by_kind": dict(self.by_kind), "record_samples": dict(self.sample),
                "dropped_records": self.dropped if self.dropped >= 0 else None,
                "host_cost": {"callbacks": self.cost["callbacks"],
                              "convert_s": self.cost["convert_ns"] / 1e9,
                              "convert_max_ms": self.cost["convert_max_ns"] / 1e6,
                              "flushes": self.cost["flushes"],
                              "flush_s": self.cost["flush_ns"] / 1e9,
                              "flush_max_ms": self.cost["flush_max_ns"] / 1e6},
                "timestamp_offset_ns": self.offset_ns,
                "timestamp_offset_uncertainty_ns": self.offset_uncertainty_ns}
