"""`gpuwatch.session()`: time inferences with GPU events while a sampler logs telemetry.

    with gpuwatch.session(device="sim:t4", out="run.parquet") as s:
        engine = s.engine("builtin:small")
        for _ in range(800):
            engine.infer()        # timed with events on the session's stream
            s.wait(20)            # an idle gap (a real sleep; virtual time on sim)
    trace = s.trace               # the written trace, loaded

One session at a time per process: a nested or concurrent one fails with SessionError.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import platform
import signal
import socket
import sys
import threading
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

from . import _version
from .backends import open_backend
from .clock import Clock
from .device import Backend, Engine
from .errors import SessionError, Terminated, UsageError
from .fields import FIELDS
from .clock import HostClock
from .sampler import ProcessSampler, Sampler
from .trace import SCHEMA_VERSION, Trace, TraceWriter, default_out, load

T = TypeVar("T")

SAMPLER_MODES = ("auto", "thread", "process", "off")
MAX_SAMPLE_HZ = 20_000.0  # NVML answers in ~1 us, but clocks refresh far slower (README)
# What "auto" means on a real GPU; chosen by the overhead benchmark (benchmarks/results/).
DEFAULT_REAL_SAMPLER = "process"

_active_lock = threading.Lock()
_active: "Session | None" = None


class _EventTimebase:
    """Maps GPU events onto the trace's time base.

    An anchor event is recorded on the idle stream between two host clock reads; it completed
    somewhere between them, so its host time is their mid-point, within +-half their distance
    (the anchor uncertainty). Event times are anchor + CUDA-event elapsed time, corrected for
    skew: the GPU's event clock and the host's monotonic clock run at slightly different rates
    (~18 ppm measured on an H100), estimated from all anchors so far (host time over GPU time
    since the first). Every `reanchor_s` a new anchor is taken, which keeps float32 elapsed
    times precise and measures the mapping's error: the new anchor's mid-point minus where the
    previous anchor predicted it (the re-anchor drift).
    """

    def __init__(self, backend: Backend, stream: Any, reanchor_s: float = 1.0, tries: int = 3):
        self._rt, self._stream, self._clock = backend.runtime, stream, backend.clock
        self._reanchor_ns = int(reanchor_s * 1e9)
        self._pool = [self._rt.event() for _ in range(tries)]  # candidates for the next anchor
        self.uncertainty_ns: list[int] = []
        self.drift_ns: list[int] = []
        self.skew = 0.0  # host ns per GPU-event ns, minus 1
        self._gpu_span_ns = 0.0  # GPU-event time from the first anchor to the current one
        self._first_host_ns = 0
        self._mapped = False  # did any event use the current anchor?
        self._ev: Any = None
        self.anchor()

    @property
    def anchors(self) -> int:
        return len(self.uncertainty_ns)

    def anchor(self) -> None:
        """Take several anchors back to back and keep the tightest window: a preemption or a
        late wake-up widens one try, rarely all of them."""
        clock, rt = self._clock, self._rt
        windows = []
        for ev in self._pool:
            h0 = clock.now_ns()
            rt.record(ev, self._stream)
            rt.synchronize(ev)
            windows.append((clock.now_ns() - h0, h0))
        i = min(range(len(windows)), key=lambda j: windows[j][0])
        width, h0 = windows[i]
        ev, host = self._pool[i], h0 + width // 2
        if self._ev is None:
            self._first_host_ns = host
            self._pool[i] = rt.event()
        else:
            # The mapping's error, where it mattered: only intervals that mapped events count.
            if self._mapped and len(self.drift_ns) < 100_000:
                self.drift_ns.append(host - self.to_ns(ev))
            self._gpu_span_ns += rt.elapsed_ms(self._ev, ev) * 1e6
            if self._gpu_span_ns > 5e8:  # half a second of baseline before trusting a rate
                self.skew = (host - self._first_host_ns) / self._gpu_span_ns - 1.0
            self._pool[i] = self._ev  # the old anchor event becomes a candidate again
        self._ev, self._host_ns, self._mapped = ev, host, False
        if len(self.uncertainty_ns) < 100_000:
            self.uncertainty_ns.append(width // 2)

    def to_ns(self, event: Any) -> int:
        self._mapped = True
        return self._host_ns + round(self._rt.elapsed_ms(self._ev, event) * 1e6 * (1 + self.skew))

    def span_ns(self, ms: float) -> int:
        """A GPU-event duration in host nanoseconds."""
        return round(ms * 1e6 * (1 + self.skew))

    def maybe_reanchor(self) -> None:
        """Call only when the stream is idle (before an outermost timed region)."""
        if self._clock.now_ns() - self._host_ns >= self._reanchor_ns:
            self.anchor()

    def summary(self) -> dict[str, Any]:
        u = np.abs(np.asarray(self.uncertainty_ns, dtype=np.float64)) / 1e3
        d = np.abs(np.asarray(self.drift_ns, dtype=np.float64)) / 1e3
        return {
            "anchors": self.anchors,
            "reanchor_s": self._reanchor_ns / 1e9,
            "anchor_uncertainty_us_p50": float(np.median(u)) if u.size else None,
            "anchor_uncertainty_us_max": float(u.max()) if u.size else None,
            "reanchor_drift_us_p50": float(np.median(d)) if d.size else None,
            "reanchor_drift_us_max": float(d.max()) if d.size else None,
            "skew_ppm": self.skew * 1e6,
        }


class TimedEngine:
    """An engine whose every `infer` is timed by the session that made it."""

    def __init__(self, session: "Session", engine: Engine):
        self._session, self.raw = session, engine
        self.name = engine.name

    def infer(self, x: Any = None) -> Any:
        return self._session._timed("inference", self.name, self.raw.infer, (x,), {})

    def preprocess(self) -> Any:
        """The engine's input step (host->device copy and a small kernel), timed as a span."""
        return self._session._timed("span", "preprocess", self.raw.preprocess, (), {})

    def postprocess(self) -> Any:
        """The engine's output step (a small kernel and device->host copy), timed as a span."""
        return self._session._timed("span", "postprocess", self.raw.postprocess, (), {})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class Session:
    """One recording: a backend, a sampler, a writer, and the timed regions reported to it."""

    def __init__(
        self,
        device: str = "auto",
        out: str | os.PathLike[str] | None = None,
        *,
        sample_hz: float = 1000.0,
        sampler: str = "auto",
        sample_gpus: str | Sequence[int] | None = None,
        binding: str = "cuda",
        kernels: bool = False,
        seed: int = 0,
        options: dict[str, Any] | None = None,
        dataset: str | os.PathLike[str] | None = None,
    ):
        if not 0 < sample_hz <= MAX_SAMPLE_HZ:
            raise UsageError(f"sample rate must be in (0, {MAX_SAMPLE_HZ:g}] Hz, got {sample_hz}")
        if sampler not in SAMPLER_MODES:
            raise UsageError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLER_MODES)}")
        self.sampler_mode, self.sample_gpus, self.binding = sampler, sample_gpus, binding
        self.kernels = kernels
        self._tracer: Any = None
        self.device_spec = device
        if out is not None and dataset is not None:
            raise UsageError("give either out (one trace file) or dataset (a directory), not both")
        self.dataset = Path(dataset) if dataset is not None else None
        if self.dataset is not None and not self.dataset.is_dir():
            raise UsageError(f"dataset directory {self.dataset} does not exist; create it first")
        # With a dataset, the file's place depends on the GPU: known once the backend is open.
        self.out = Path(out) if out is not None else default_out()
        self.sample_hz, self.seed = float(sample_hz), seed
        self.options = dict(options or {})
        self.condition: str | None = None
        self.gap_ms: float | None = None
        self.iteration = 0  # index given to the next inference (and to spans before it)
        self.warmup = False  # rows recorded while True are marked warmup
        self.last_ms: float | None = None  # latency of the last inference (for live displays)
        self._backend: Backend | None = None
        self._writer: TraceWriter | None = None
        self._sampler: Sampler | ProcessSampler | None = None
        self._events: list[tuple[Any, Any]] = []  # reusable (start, end) event pairs
        self._timebase: _EventTimebase | None = None
        self._depth = 0  # timed regions open (spans may nest inside inferences)
        self._region_seq = 0
        self._trace: Trace | None = None
        self._closed = False
        self._closing = False
        self._term_pending = False
        self._prev_sigterm: Any = None

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> "Session":
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            status = "complete"
        elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
            status = "interrupted"
        else:
            status = "failed"
        self.close(status=status, error=None if exc is None else f"{type(exc).__name__}: {exc}")

    def start(self) -> None:
        global _active
        with _active_lock:
            if _active is not None:
                raise SessionError(
                    f"a gpuwatch session is already recording to {_active.out}; nested or concurrent "
                    "sessions are not supported: end it first, or time more regions with s.span()"
                )
            _active = self
        self._catch_sigterm()
        try:
            self._start()
        except BaseException as e:
            if self._writer is not None:  # it failed part-way: write what there is, say why
                try:
                    self.close(status="failed", error=f"{type(e).__name__}: {e}")
                except Exception:
                    pass
            else:
                self._closed = True
                self._release()
                self._restore_sigterm()
                if self._backend is not None:
                    self._backend.close()
            raise

    def _start(self) -> None:
        self._backend = backend = open_backend(self.device_spec, seed=self.seed,
                                               sample_gpus=self.sample_gpus, binding=self.binding,
                                               kernels=self.kernels)
        clock = backend.clock
        mode = self.sampler_mode
        if mode == "auto":
            mode = "thread" if backend.telemetry_factory is None else DEFAULT_REAL_SAMPLER
        if mode == "process" and backend.telemetry_factory is None:
            raise UsageError("the simulated GPU samples on its virtual clock in this process; "
                             "sampler='process' needs a real GPU (use thread or auto)")
        self.sampler_mode = mode
        if self.dataset is not None:
            self.out = dataset_path(self.dataset, backend.telemetry[0].info.name)
            self.out.parent.mkdir(parents=True, exist_ok=True)
        self._writer = writer = TraceWriter(self.out, self._metadata(backend))
        self.stream = backend.runtime.stream()
        self._timebase = _EventTimebase(backend, self.stream)
        if mode == "thread":
            self._sampler = Sampler(backend.telemetry, clock, writer.add, hz=self.sample_hz)
        elif mode == "process":
            assert backend.telemetry_factory is not None and isinstance(clock, HostClock)
            factory, args = backend.telemetry_factory
            self._sampler = ProcessSampler(factory, args, clock, writer.partial_dir,
                                           hz=self.sample_hz)
        if self._sampler is not None:
            self._sampler.start()
        if self.kernels:
            make = getattr(backend, "kernel_tracer", None)
            if make is None:
                raise UsageError("kernel tracing is not available on this device")
            self._tracer = make()
            self._tracer.start(writer.add, backend.telemetry[0].info.index)

    def close(self, status: str = "complete", error: str | None = None) -> Path:
        """Stop sampling and write the trace. Safe to call twice; returns the trace path."""
        if self._closed:
            return self.out
        self._closed = self._closing = True  # a SIGTERM from here on waits for the trace
        meta: dict[str, Any] = {"status": status, "error": error}
        try:
            if self._tracer is not None:
                try:
                    meta["kernel_trace"] = self._tracer.stop()
                except Exception as e:  # tracing failed: the rest of the trace still counts
                    meta["kernel_trace"] = {"error": f"{type(e).__name__}: {e}"}
            meta["sampler"] = {"mode": self.sampler_mode}
            if self._sampler is not None:
                try:
                    self._sampler.stop()
                    meta["sampler"] = {"mode": self.sampler_mode, **self._sampler.summary()}
                except RuntimeError as e:
                    meta["sampler"]["error"] = f"{e}: {e.__cause__!r}"
            if self._writer is not None:
                assert self._backend is not None
                meta["ended_ns"] = self._backend.clock.now_ns()
                if self._timebase is not None:
                    meta["timebase"] = self._timebase.summary()
                self._writer.close(meta)
        finally:
            try:
                if self._backend is not None:
                    self._backend.close()
            except Exception as e:  # a broken CUDA context (e.g. a sticky error in user code)
                warnings.warn(f"gpuwatch: releasing the GPU failed after the trace was written: "
                              f"{type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)
            finally:
                self._release()
                self._restore_sigterm()
        if self._term_pending:  # SIGTERM came while the trace was being written: exit now
            raise Terminated()
        return self.out

    def _catch_sigterm(self) -> None:
        """SIGTERM's default action kills the process without cleanup, losing the buffered
        rows and the final file. While recording, turn it into an exception in the main thread
        (where Python runs signal handlers), so the with-block closes the trace. A handler the
        program installed itself is left alone."""
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                return
            self._prev_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):  # no signals here (embedded interpreter)
            self._prev_sigterm = None

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self._closing:
            self._term_pending = True  # finish writing the trace first
            return
        raise Terminated()

    def _restore_sigterm(self) -> None:
        if self._prev_sigterm is not None:
            prev, self._prev_sigterm = self._prev_sigterm, None
            try:
                signal.signal(signal.SIGTERM, prev)
            except (ValueError, OSError):
                pass

    def _release(self) -> None:
        global _active
        with _active_lock:
            if _active is self:
                _active = None

    @property
    def clock(self) -> Clock:
        return self._require().clock

    @property
    def trace(self) -> Trace:
        """The written trace (available once the session has ended)."""
        if not self._closed:
            raise SessionError("the trace is written when the session ends; leave the with-block first")
        if self._trace is None:
            self._trace = load(self.out)
        return self._trace

    # -- what user code calls -----------------------------------------------------------------
    def engine(self, spec: str = "builtin:small", cuda_graph: bool = False,
               **options: Any) -> TimedEngine:
        """An engine whose infer() this session times: "builtin:small", "builtin:large",
        "torch:module:factory" (factory() returns (model, example_input)), a TensorRT engine
        ("model.plan" or "tensorrt:PATH"), or "onnx:model.onnx" built to one first (options
        precision="fp16", workspace_mb=1024). `cuda_graph` launches each inference as one
        CUDA graph (builtin and torch)."""
        return TimedEngine(self, self._require().engine(spec, self.stream, cuda_graph=cuda_graph,
                                                        **options))

    def infer(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` as one timed inference. `fn` must enqueue its GPU work on
        `s.stream` (or a stream ordered with it) for the events to bracket it."""
        name = getattr(fn, "name", None) or getattr(fn, "__qualname__", None) or repr(fn)
        return self._timed("inference", str(name), fn, args, kwargs)

    def span(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Time any region (pre/post-processing) with events on the session's stream."""
        return self._region("span", name)

    def set_condition(self, name: str, gap_ms: float | None = None) -> None:
        """Label the rows that follow (e.g. "gap=20ms"); restarts the iteration count."""
        self.condition, self.gap_ms, self.iteration = name, gap_ms, 0
        self._require_writer().add(
            "events", [{"gpu": self._gpu(), "t_ns": self.clock.now_ns(), "kind": "condition",
                        "name": name, "message": f"gap_ms={gap_ms}"}])

    @property
    def last_sm_clock_mhz(self) -> float | None:
        """The SM clock of the latest telemetry reading (for live displays)."""
        return None if self._sampler is None else self._sampler.last_sm_clock_mhz

    def pause_sampling(self) -> None:
        """Stop reading telemetry until resume_sampling() (e.g. to measure gpuwatch's overhead).
        Both are recorded in the `events` table."""
        self._sampling_event("paused")
        if self._sampler is not None:
            self._sampler.pause()

    def resume_sampling(self) -> None:
        if self._sampler is not None:
            self._sampler.resume()
        self._sampling_event("resumed")

    def _sampling_event(self, what: str) -> None:
        self._require_writer().add("events", [{"gpu": self._gpu(), "t_ns": self.clock.now_ns(),
                                               "kind": "note", "name": "sampler",
                                               "message": what}])

    def pause_kernel_tracing(self) -> None:
        """Stop recording kernels until resume_kernel_tracing() (for the overhead benchmark)."""
        if self._tracer is None:
            raise SessionError("this session does not trace kernels (session(kernels=True))")
        self._sampling_event("kernel tracing paused")
        self._tracer.pause()

    def resume_kernel_tracing(self) -> None:
        if self._tracer is None:
            raise SessionError("this session does not trace kernels (session(kernels=True))")
        self._tracer.resume()
        self._sampling_event("kernel tracing resumed")

    def wait(self, ms: float, how: str = "sleep", keepalive_ms: float | None = None) -> None:
        """Leave the GPU idle for `ms`: "sleep" yields the CPU (as time.sleep), "spin" busy-waits.
        `keepalive_ms`: instead of idle, give the GPU a trivial piece of work (a 4-byte memset,
        untimed) every that many ms of the gap: does a busy GPU avoid the slow-down?"""
        if not 0 <= ms <= 3_600_000:
            raise UsageError(f"wait takes 0..3600000 ms, got {ms}")
        if how not in ("sleep", "spin"):
            raise UsageError(f"unknown wait {how!r}; use sleep or spin")
        if keepalive_ms is not None and not keepalive_ms > 0:
            raise UsageError(f"keepalive_ms must be positive, got {keepalive_ms}")
        idle = self.clock.sleep_ns if how == "sleep" else self.clock.spin_ns
        end = self.clock.now_ns() + int(ms * 1e6)
        if keepalive_ms is None:
            idle(int(ms * 1e6))
            return
        rt, step = self._require().runtime, int(keepalive_ms * 1e6)
        while (left := end - self.clock.now_ns()) > 0:
            rt.touch(self.stream)
            idle(min(step, left))

    # -- the timed region ------------------------------------------------------------------------
    def _timed(self, kind: str, name: str, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        with self._region(kind, name):
            return fn(*args, **kwargs)

    @contextlib.contextmanager
    def _region(self, kind: str, name: str) -> Iterator[None]:
        rt = self._require().runtime
        rid, self._region_seq = self._region_seq, self._region_seq + 1
        h0 = 0  # read just before the start event is enqueued (once: this is the timed path)
        try:
            if self._depth == 0:  # the stream is idle here: refresh a stale anchor, untimed
                self._timebase.maybe_reanchor()  # type: ignore[union-attr]
                if self._tracer is not None:
                    self._tracer.poll()
            ev0, ev1 = self._events.pop() if self._events else (rt.event(), rt.event())
            h0 = self.clock.now_ns()
            self._record(ev0, 2 * rid)  # CUPTI: this event record is region rid's start
        except Exception as e:  # the GPU failed before the region began: a row says so
            self._add_row(self._row(kind, name, h0 or self.clock.now_ns(), rid, e))
            raise
        self._depth += 1
        try:
            yield
        except BaseException as e:
            self._depth -= 1
            self._finish(kind, name, ev0, ev1, h0, e, rid)
            raise
        self._depth -= 1
        self._finish(kind, name, ev0, ev1, h0, None, rid)
        self._events.append((ev0, ev1))  # reused only once finished (a failed pair is dropped)

    def _record(self, event: Any, external_id: int) -> None:
        """Record `event` on the session's stream, tagged for the kernel tracer."""
        tracer = self._tracer
        if tracer is None:
            self._backend.runtime.record(event, self.stream)  # type: ignore[union-attr]
            return
        tracer.mark(external_id)
        try:
            self._backend.runtime.record(event, self.stream)  # type: ignore[union-attr]
        finally:
            tracer.unmark()

    def _row(self, kind: str, name: str, h0: int, rid: int,
             error: BaseException | None) -> dict[str, Any]:
        return {
            "gpu": self._gpu(), "kind": kind, "name": name, "condition": self.condition,
            "gap_ms": self.gap_ms, "iteration": self.iteration, "warmup": self.warmup,
            "host_start_ns": h0, "t_ns": h0, "region_id": rid,
            "error": None if error is None else f"{type(error).__name__}: {error}",
        }

    def _add_row(self, row: dict[str, Any]) -> None:
        if row["kind"] == "inference":
            self.iteration += 1
        self._require_writer().add("inferences", [row])

    def _finish(self, kind: str, name: str, ev0: Any, ev1: Any, h0: int,
                error: BaseException | None, rid: int) -> None:
        rt, clock = self._require().runtime, self.clock
        row = self._row(kind, name, h0, rid, error)
        failed: Exception | None = None
        try:
            self._record(ev1, 2 * rid + 1)
            row["host_enqueued_ns"] = clock.now_ns()
            rt.synchronize(ev1)
            row["host_end_ns"] = clock.now_ns()
            row["gpu_ms"] = ms = rt.elapsed_ms(ev0, ev1)
            tb = self._timebase
            assert tb is not None
            row["start_ns"] = start = tb.to_ns(ev0)
            row["end_ns"] = start + tb.span_ns(ms)
            row["t_ns"] = start
            if kind == "inference":
                self.last_ms = ms
        except Exception as e:  # the GPU work itself failed: keep the row, with what we know
            if error is None:
                row["error"] = f"{type(e).__name__}: {e}"
                failed = e  # (the user's own exception, if any, is already on its way)
        self._add_row(row)
        if failed is not None:
            raise failed  # the caller must learn that its GPU work failed

    # -- helpers -----------------------------------------------------------------------------------
    def _gpu(self) -> int:
        return self._require().telemetry[0].info.index

    def _require(self) -> Backend:
        if self._backend is None or self._closed:
            raise SessionError("this gpuwatch session is not recording (use it inside its with-block)")
        return self._backend

    def _require_writer(self) -> TraceWriter:
        self._require()
        assert self._writer is not None
        return self._writer

    def _metadata(self, backend: Backend) -> dict[str, Any]:
        clock = backend.clock
        return {
            "format": "gpuwatch-trace",
            "schema_version": SCHEMA_VERSION,
            "time_base": {
                "unit": "ns",
                "epoch": "unix",
                "clock": "virtual (simulated)" if clock.virtual
                else "host monotonic (perf_counter_ns) anchored once to time_ns",
                "gpu_events": "CUDA-event elapsed times added to an anchor event synchronised "
                              "with the host clock, re-anchored every second",
            },
            "simulated": backend.simulated,
            "devices": [dict(asdict(t.info), facts=dict(t.info.facts)) for t in backend.telemetry],
            "unsupported_fields": {str(t.info.index): dict(t.unsupported()) for t in backend.telemetry},
            "fields": [{"name": f.name, "unit": f.unit, "description": f.description}
                       for f in FIELDS],
            "options": {"device": self.device_spec, "sample_hz": self.sample_hz,
                        "sampler": self.sampler_mode, "binding": self.binding,
                        "kernels": self.kernels,
                        "seed": self.seed, **self.options},
            "field_query_cost_us": {str(t.info.index): dict(t.query_costs_us())
                                    for t in backend.telemetry},
            "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                     "python": sys.version.split()[0], "pid": os.getpid(),
                     "user": _user(), "argv": sys.argv},
            "versions": _versions(backend),
            "started_ns": clock.now_ns(),
            "status": "recording",
        }


def TensorRTEngine(path: str | os.PathLike[str],  # noqa: N802 - reads as the class it makes
                   input_shapes: dict[str, tuple[int, ...]] | None = None) -> TimedEngine:
    """A TensorRT engine (.plan/.engine) on the active session's GPU, stream and CUDA binding;
    its infer() is timed by that session. Use it inside `with gpuwatch.session() as s:`."""
    with _active_lock:
        s = _active
    if s is None:
        raise SessionError("gpuwatch.TensorRTEngine runs on a session's GPU: create it inside "
                           "`with gpuwatch.session() as s:` (or use s.engine('model.plan'))")
    return s.engine(f"tensorrt:{os.fspath(path)}", input_shapes=input_shapes)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def _versions(backend: Backend) -> dict[str, str]:
    import numpy
    import pandas
    import pyarrow

    return {"gpuwatch": _version.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "pyarrow": pyarrow.__version__, **backend.versions()}


def session(device: str = "auto", out: str | os.PathLike[str] | None = None, *,
            sample_hz: float = 1000.0, sampler: str = "auto",
            sample_gpus: str | Sequence[int] | None = None, binding: str = "cuda",
            kernels: bool = False, seed: int = 0,
            options: dict[str, Any] | None = None,
            dataset: str | os.PathLike[str] | None = None) -> Session:
    """Start recording on `device` ("auto", "cuda:N", "sim:t4"); the trace goes to `out`.
    `sampler`: "auto" (a separate process on a real GPU, the virtual clock on sim), "thread",
    "process" or "off". `sample_gpus`: None (the inference GPU), "all", or NVML indices.
    `binding`: the CUDA library on a real GPU, "cuda" (cuda-python) or "pycuda".
    `kernels`: also record every kernel and copy (CUPTI on a real GPU) into the kernels table.
    `dataset`: instead of `out`, write into a hive-partitioned directory of traces,
    DATASET/host=H/gpu_model=M/run=R/trace.parquet (see README, "Fleets")."""
    return Session(device, out, sample_hz=sample_hz, sampler=sampler, sample_gpus=sample_gpus,
                   binding=binding, kernels=kernels, seed=seed, options=options,
                   dataset=dataset)


def dataset_path(root: Path, gpu_name: str) -> Path:
    """Where a run goes in a fleet dataset: hive partitions host / GPU model / run, values
    kept to [A-Za-z0-9._-] so every engine reads them back the same."""
    import re
    import time

    def clean(v: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", v).strip("_") or "unknown"

    run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.time_ns() % 1_000_000:06d}"
    return (root / f"host={clean(socket.gethostname())}" / f"gpu_model={clean(gpu_name)}"
            / f"run={run}" / "trace.parquet")
