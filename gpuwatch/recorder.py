"""`gpuwatch.session()`: time inferences with GPU events while a sampler logs telemetry.

    with gpuwatch.session() as s:
        y = s.infer(model, x)     # timed on the stream model's work goes on (streams.py)
        engine.infer(x)           # gpuwatch engines and gpuwatch.timed() objects: timed too
    trace = s.trace               # the written trace, loaded

The session composes the parts and owns the recording's lifecycle: the backend (a GPU, or a
simulated one), the timed region (regions/timer.py: events, lazy resolution, stream checks), the
sampler (in a process of its own on a real GPU: sampler_process.py) and the writer (trace.writer).
One session at a time per process: a nested or concurrent one fails with SessionError.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import platform
import shlex
import signal
import socket
import sys
import threading
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np

from . import _version
from . import active as _active
from .backends import open_backend
from . import streams
from .clock import Clock, HostClock
from .device import Backend
from .errors import GpuwatchError, SessionError, Terminated, UsageError, described
from .fields import FIELDS
from .log import logger
from .interrupts import deliver_later as _deliver_later
from .interrupts import importing as _importing
from .regions.timer import CHECK_EVERY, PROBE_EVERY_NS, PROBE_REGION_NS, RegionTimer, callable_name
from .sampler import Sampler
from .sampler_process import ProcessSampler, SamplerStartError
from .streams import StreamRef
from .timebase import EventTimebase
from .hostevents import THREAD_NAMES_FILE, GcRecorder, ThreadNames, python_thread_names
from .hoststat import HostStat, cpu_max_mhz
from .trace import (SCHEMA_VERSION, Trace, TraceWriter, check_output, default_out, load,
                    partition_value)

if TYPE_CHECKING:
    from .engines import TimedEngine

T = TypeVar("T")

SAMPLER_MODES = ("auto", "thread", "process", "off")
MAX_SAMPLE_HZ = 20_000.0  # NVML answers in ~1 us, but clocks refresh far slower (README)
MIN_SAMPLE_HZ = 1.0  # slower says nothing about a clock that moves within a second
# What "auto" means on a real GPU; chosen by the overhead benchmark (benchmarks/results/).
DEFAULT_REAL_SAMPLER = "process"

_SIGHUP: int = getattr(signal, "SIGHUP", 0)  # (0: not on this platform)


def active() -> "Session | None":
    """The session recording in this process now, if any."""
    return _active.session


def _after_fork_in_child() -> None:
    """A process forked while a session records (a multiprocessing worker, say) records
    nothing, and dies of SIGTERM as it would without gpuwatch: a worker that unwound through
    Python's exit code instead could hang its pool's shutdown."""
    s, _active.session = _active.session, None
    _active.lock = threading.Lock()  # (another thread may have held it at the fork)
    if s is not None:
        if s._gc is not None:  # (its rows would pile up with no writer to take them)
            s._gc.remove()
        for signum, prev in ((signal.SIGTERM, s._prev_sigterm), (signal.SIGINT, s._prev_sigint),
                             (_SIGHUP, s._prev_sighup)):
            if not signum:
                continue
            if prev is not None:
                try:
                    signal.signal(signum, prev)
                except (ValueError, OSError):
                    pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Session:
    """One recording: a backend, a sampler, a writer, and the timed regions reported to it."""

    def __init__(
        self,
        device: str | None = None,
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
        stream: Any = None,
        check_every: int = CHECK_EVERY,
        probe: bool | None = None,
        overwrite: bool = False,
        probe_every_ms: float | None = None,
    ):
        if device is not None and not isinstance(device, str):
            raise UsageError(f"device takes a device spec string (\"auto\", \"cuda:0\", "
                             f"\"sim:t4\"), got {type(device).__name__} {device!r}")
        if not (sample_gpus is None or sample_gpus in ("all", "self", "") or (
                isinstance(sample_gpus, (list, tuple, range)) and all(
                    isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 0
                    for i in sample_gpus))):
            raise UsageError(f"sample_gpus takes None (the inference GPU), \"all\", or a list "
                             f"of NVML indices like [0, 1], got {sample_gpus!r}")
        if isinstance(sample_gpus, (list, tuple, range)) and \
                len(set(map(int, sample_gpus))) != len(sample_gpus):
            raise UsageError(f"sample_gpus lists a GPU twice ({list(sample_gpus)!r}): name each "
                             f"once")
        if isinstance(sample_hz, bool) or not isinstance(sample_hz, (int, float)) or \
                not MIN_SAMPLE_HZ <= sample_hz <= MAX_SAMPLE_HZ:  # (NaN fails it too)
            raise UsageError(f"sample rate must be {MIN_SAMPLE_HZ:g}..{MAX_SAMPLE_HZ:g} Hz (the "
                             f"clock changes faster than once a second), got {sample_hz!r}")
        if sampler not in SAMPLER_MODES:
            raise UsageError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLER_MODES)}")
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 0:
            raise UsageError(f"check_every takes a whole number >= 0 (0: no stream checks), "
                             f"got {check_every!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UsageError(f"seed takes a whole number >= 0, got {seed!r}")
        if out is not None and not isinstance(out, (str, os.PathLike)):
            raise UsageError(f"out takes a file path (str or os.PathLike), got "
                             f"{type(out).__name__} {out!r}")
        if out is not None and not str(out).strip():
            raise UsageError("out is empty; give a trace file name like run.parquet")
        for name, flag in (("overwrite", overwrite), ("kernels", kernels)):
            if not isinstance(flag, (bool, np.bool_)):  # ("no" is true: it would replace)
                raise UsageError(f"{name} takes True or False, got {type(flag).__name__} "
                                 f"{flag!r}")
        if options is not None and not isinstance(options, dict):
            raise UsageError(f"options takes a dict of JSON-able items, got "
                             f"{type(options).__name__} {options!r}")
        if probe is not None and not isinstance(probe, bool):
            raise UsageError(f"probe takes True, False or None (the device's default), got "
                             f"{probe!r}")
        if probe_every_ms is not None and (
                isinstance(probe_every_ms, bool) or not isinstance(probe_every_ms, (int, float))
                or not 0 <= probe_every_ms <= 60_000):  # (NaN fails it too)
            raise UsageError(f"probe_every_ms (--probe-every) takes milliseconds 0..60000 (0: "
                             f"stamp every region), got {probe_every_ms!r}")
        self.probe = probe
        self.probe_every_ms = None if probe_every_ms is None else float(probe_every_ms)
        self.probe_error: str | None = None  # why the default probe is off, where it is
        self.overwrite = bool(overwrite)
        self.sampler_mode, self.sample_gpus, self.binding = sampler, sample_gpus, binding
        self.kernels = bool(kernels)
        self._tracer: Any = None
        # gpuwatch run's kernel bursts: a wrapper of the kernel tracer's sink, and what runs
        # at close once every kernel record is in (it adds rows, returns metadata)
        self._kernel_tap: Callable[[Any], Any] | None = None
        self._on_close: list[Callable[[Callable[..., None], int], dict[str, Any]]] = []
        self._hoststat: HostStat | None = None  # the thread sampler's, if any
        self._gc: GcRecorder | None = None  # this process's garbage collections (host_events)
        self._thread_names: ThreadNames | None = None  # for the sampler process (hostevents)
        # The device: the argument, else $GPUWATCH_DEVICE (e.g. sim:t4 for a program run on a
        # machine without a GPU), else the first NVIDIA GPU.
        self.device_spec = device or os.environ.get("GPUWATCH_DEVICE") or "auto"
        self._device_from_env = not device and bool(os.environ.get("GPUWATCH_DEVICE"))
        # (a simulated GPU: the first region around the user's own code says what it is not)
        self._sim_user_note = str(self.device_spec).strip().startswith("sim")
        self._stream_ref = streams.resolve(stream, "session")  # None: the current stream
        self._check_every = check_every
        if dataset is not None and not str(dataset).strip():
            raise UsageError("dataset (--dataset) is empty; give a directory for the fleet "
                             "dataset (e.g. runs/), or a trace file as out (--out)")
        if out is not None and dataset is not None:
            raise UsageError("give either out (one trace file) or dataset (a directory), not both")
        self.dataset = Path(dataset).absolute() if dataset is not None else None
        if self.dataset is not None and self.dataset.exists() and not self.dataset.is_dir():
            raise UsageError(f"dataset {self.dataset} is a file, not a directory; give a "
                             f"directory (it is created if it does not exist)")
        # With a dataset, the file's place depends on the GPU: known once the backend is open.
        # (absolute: a program that changes directory while recording writes where it began)
        self.out = (Path(out) if out is not None else default_out()).absolute()
        self.sample_hz, self.seed = float(sample_hz), seed
        self.options = dict(options or {})
        self._close_meta: dict[str, Any] = {}  # annotate(): written into the metadata at close
        self.condition: str | None = None
        self.gap_ms: float | None = None
        self._iteration = 0  # index given to the next inference (and to spans before it)
        self._warmup = False  # rows recorded while True are marked warmup
        self._backend: Backend | None = None
        self._writer: TraceWriter | None = None
        self._sampler: Sampler | ProcessSampler | None = None
        self._sampler_note: dict[str, Any] = {}
        self._timebase: EventTimebase | None = None
        self._timer: RegionTimer | None = None
        self._ordinal = 0
        self._trace: Trace | None = None
        self._closed = False
        self._closing = False
        self._presses = 0  # Ctrl-C presses since closing began
        self._term_pending = 0  # a SIGTERM/SIGHUP held while the trace is written: its number
        self._opening = False  # the writer is opening the trace (signals come again after)
        self._prev_sigterm: Any = None
        self._prev_sighup: Any = None
        self._prev_sigint: Any = None
        self._pid = os.getpid()  # the recording process (SIGTERM handling is its alone)
        self.left_previous = False  # close() kept the trace at `out` it was to replace
        self.discarded = False  # close() wrote no trace: nothing was timed (see _close)
        # A recording that timed nothing is kept (an API user may record telemetry alone),
        # except where its caller says it is worth nothing: `gpuwatch run`, whose next
        # command (--kernels, another --regions) would be refused by the empty trace
        self.keep_empty = True
        self._uncaught: BaseException | None = None  # what ended the program (_catch_exit)
        self._prev_excepthook: Any = None
        self._excepthook: Any = None

    def __repr__(self) -> str:  # (what a notebook shows for the session's name)
        state = "ended" if self._closed else "recording" if self._writer is not None else \
            "not started"
        return f"<gpuwatch Session on {self.device_spec} -> {self.out}: {state}>"

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> "Session":
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or (isinstance(exc, SystemExit) and not isinstance(exc, Terminated)
                           and exc.code in (None, 0)):
            status = "complete"  # (sys.exit(0) inside the with-block ends it normally)
        elif isinstance(exc, (KeyboardInterrupt, Terminated)):
            status = "interrupted"
        else:
            status = "failed"  # an exception, or sys.exit(N) with N != 0
            self._close_meta["failed_by"] = "program"  # (the block's code, not the recording)
        self.close(status=status, error=None if status == "complete" or exc is None else
                   described(exc))

    def annotate(self, **items: Any) -> None:
        """Add JSON-able items to the trace's metadata (written when the session closes), e.g.
        what a tool built on the session found."""
        self._close_meta.update(items)

    def start(self) -> None:
        if self._closed or self._writer is not None:
            raise SessionError(f"this session (to {self.out}) has already "
                               f"{'ended' if self._closed else 'started'}; a session records "
                               f"once: make a new one (gpuwatch.session(...))")
        with _active.lock:
            if _active.session is not None:
                raise SessionError(
                    f"a gpuwatch session is already recording to {_active.session.out}; nested or "
                    "concurrent sessions are not supported: end it first, or time more regions "
                    "with s.span()"
                )
            _active.session = self
        self._catch_sigterm()
        self._catch_sigint()
        try:
            self._start()
            self._catch_exit()
        except BaseException as e:
            if self._writer is not None:  # it failed part-way: write what there is, say why
                stopped = isinstance(e, (KeyboardInterrupt, Terminated))  # (Ctrl-C, SIGTERM)
                try:
                    self.close(status="interrupted" if stopped else "failed",
                               error=described(e))
                except Exception:
                    pass
            else:
                self._closed = True
                self._release()
                self._restore_sigterm()
                self._restore_sigint()
                if self._backend is not None:
                    self._backend.close()
            raise

    def _start(self) -> None:
        if self.dataset is None:  # before the GPU is opened: a bad --out fails at once
            # (the advice in the caller's words: the CLI's flags, or session()'s arguments)
            cli = self.options.get("command") in ("record", "run")
            check_output(self.out, self.overwrite,
                         option="--out" if cli else "session(out=...)",
                         force="-f/--force" if cli else "session(..., overwrite=True)")
        try:
            self._backend = backend = open_backend(self.device_spec, seed=self.seed,
                                                   sample_gpus=self.sample_gpus,
                                                   binding=self.binding, kernels=self.kernels)
        except UsageError as e:
            if not self._device_from_env:
                raise
            raise UsageError(f"GPUWATCH_DEVICE={self.device_spec} (the environment's device: "
                             f"none was given): {e}") from None
        if self.kernels and getattr(backend, "kernel_tracer", None) is None:
            # (checked before anything is written: a usage error leaves no trace behind)
            raise UsageError(f"kernel tracing (--kernels, kernels=True) is not available on "
                             f"the {self.device_spec} device: it needs a real NVIDIA GPU "
                             f"with cupti-python (pip install cupti-python), or a simulated "
                             f"one (sim:t4)")
        self._ordinal = getattr(backend.runtime, "ordinal", 0)
        clock = backend.clock
        mode = self.sampler_mode
        if mode == "auto":
            mode = "thread" if backend.telemetry_factory is None else DEFAULT_REAL_SAMPLER
        if mode == "process" and backend.telemetry_factory is None:
            raise UsageError("the simulated GPU samples on its virtual clock in this process; "
                             "sampler='process' needs a real GPU (use thread or auto)")
        self.sampler_mode = mode
        asked = self.probe
        if self.probe_every_ms is None:  # (the simulated GPU stamps every region: it is free)
            self.probe_every_ms = float(getattr(backend, "probe_every_ms",
                                                PROBE_EVERY_NS / 1e6))
        if asked is None:  # the device's default: on wherever it can stamp (sim, real GPUs)
            self.probe = bool(getattr(backend, "probe_default", False)) and \
                hasattr(backend.runtime, "read_probe")
        elif asked and not hasattr(backend.runtime, "read_probe"):
            raise UsageError("the in-band clock probe is not available on this device; "
                             "record without it (probe=False, --no-probe)")
        if self.probe and hasattr(backend.runtime, "start_probe"):
            try:
                backend.runtime.start_probe()
            except GpuwatchError as e:
                if asked:
                    raise UsageError(f"the in-band clock probe could not start: {e}; record "
                                     f"without it (probe=False, --no-probe)") from e
                # on by default only: record without it, and say why (metadata, stderr)
                self.probe, self.probe_error = False, str(e)
                logger.warning("the in-band SM clock probe is off: %s; clocks come from NVML "
                               "only", e)
        if self.dataset is not None:
            self.out = dataset_path(self.dataset, backend.telemetry[0].info.name)
            try:
                self.out.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # read-only, full, not a real filesystem (/proc)
                raise UsageError(f"cannot create {self.out.parent} in the dataset "
                                 f"{self.dataset}: {e.strerror or e}; pick another --dataset") \
                    from e
        # (a Ctrl-C or SIGTERM while the writer opens the trace comes again once it has: it
        # landed where the .partial existed but was not yet the session's to close)
        self._opening = True
        try:
            self._writer = writer = TraceWriter(self.out, self._metadata(backend),
                                                overwrite=self.overwrite)
        finally:
            self._opening = False
        self.stream = backend.runtime.stream()  # for engines made by s.engine()
        self._timebase = EventTimebase(backend.runtime, clock)
        if isinstance(clock, HostClock):  # (a simulated GPU's timeline is not the host's)
            self._gc = GcRecorder(*clock.counter())
            self._gc.install()
        if mode == "process":
            self._thread_names = ThreadNames(writer.partial_dir / THREAD_NAMES_FILE)
            try:
                self._thread_names.publish()  # (before the sampler's first thread rows)
            except OSError:
                pass
            assert backend.telemetry_factory is not None and isinstance(clock, HostClock)
            factory, args = backend.telemetry_factory
            proc = ProcessSampler(factory, args, clock, writer.partial_dir, hz=self.sample_hz,
                                  host_thread=(os.getpid(), threading.get_native_id()))
            try:
                proc.start()
                self._sampler = proc
            except SamplerStartError as e:  # never crash, never hang: sample from a thread
                self.sampler_mode = mode = "thread"
                self._thread_names = None  # (the thread sampler knows the names itself)
                self._sampler_note = {"requested": "process", "fallback": str(e)}
                logger.warning("warning: sampling from a thread instead of a separate process: "
                               "%s", e)
        if mode == "thread":
            host = None
            host_events = host_final = None
            if not clock.virtual:  # (a simulated GPU's timeline is not the host's)
                self._hoststat = stat = HostStat(os.getpid(), threading.get_native_id(),
                                                 slow_every=max(1, round(self.sample_hz)),
                                                 mid_every=max(1, round(self.sample_hz / 100)),
                                                 names=python_thread_names)
                host, host_events, host_final = stat.read, stat.take_events, stat.final_events
                simulated_host = getattr(backend, "host_readings", None)  # (sim host faults:
                if simulated_host is not None:  # the readings as the simulated host has them)
                    host = simulated_host(host)
            self._sampler = Sampler(backend.telemetry, clock, writer.add, hz=self.sample_hz,
                                    host=host, own_pid=os.getpid(), host_events=host_events,
                                    host_final=host_final)
            self._sampler.start()
        if self.kernels:
            self._tracer = getattr(backend, "kernel_tracer")()  # (checked at the start)
            sink = writer.add if self._kernel_tap is None else self._kernel_tap(writer.add)
            self._tracer.start(sink, backend.telemetry[0].info.index)
        self._timer = RegionTimer(backend.runtime, clock, self._timebase, writer.add_columns,
                                  self._gpu(), tracer=self._tracer,
                                  check_every=self._check_every, probe=bool(self.probe),
                                  stream=self._stream_ref, ordinal=self._ordinal,
                                  probe_every_ns=int((self.probe_every_ms or 0) * 1e6),
                                  # (0 ms: every region; else also ~10 ms of regions between)
                                  probe_region_ns=PROBE_REGION_NS if self.probe_every_ms else 0,
                                  hook=(self._thread_names.publish
                                        if self._thread_names is not None else None))
        self._timer.learn_streams()
        writer.set_before_flush(self._housekeeping)

    def _housekeeping(self) -> None:
        """In the writer's thread before each flush (about once a second; off the timed path):
        the garbage collections recorded meanwhile go to the trace, the Python thread names to
        the sampler process (when they changed), and the region timer resolves what has
        completed."""
        try:
            if self._gc is not None and self._writer is not None and self._backend is not None:
                rows = self._gc.take(self._backend.telemetry[0].info.index)
                if rows:
                    self._writer.add("host_events", rows)
            if self._thread_names is not None:
                self._thread_names.publish()
        finally:
            if self._timer is not None:
                self._timer.background_poll()

    def _stop_host_events(self) -> dict[str, Any]:
        """Stop recording garbage collections; the last ones go to the trace. Metadata."""
        gc_rec = self._gc
        if gc_rec is None:
            return {}
        gc_rec.remove()
        if self._writer is not None and self._backend is not None:
            rows = gc_rec.take(self._backend.telemetry[0].info.index)
            if rows:
                self._writer.add("host_events", rows)
        return gc_rec.summary()

    def close(self, status: str = "complete", error: str | None = None) -> Path:
        """Wait for the outstanding regions, stop sampling and write the trace. Safe to call
        twice; returns the trace path."""
        if self._closed:
            return self.out
        if os.getpid() != self._pid:  # a forked child ran to its end: the trace is the parent's
            self._closed = True
            return self.out
        self._closed = self._closing = True  # a SIGTERM from here on waits for the trace
        self._restore_exit()
        # A Ctrl-C from here on (a second press, 10 ms after the one that stopped the
        # program, lands here) says what is happening and lets the trace be finished; one
        # more stops, keeping the recording in its .partial, and says so.
        try:
            with _patient_sigint(self._writer, self._presses) if self._writer is not None \
                    else contextlib.nullcontext():
                return self._close(status, error)
        finally:  # (after the patient handler is gone: only our own handler is given back)
            self._restore_sigint()

    def _close(self, status: str, error: str | None) -> Path:
        meta: dict[str, Any] = {**self._close_meta, "status": status, "error": error}
        if status != "failed":  # (failed_by: what failed, "program" where the code timed
            meta.pop("failed_by", None)  # raised; said only of a failed recording)
        gpu_error: Exception | None = None
        try:
            if self._timer is not None:
                try:
                    self._timer.drain()
                except Exception as e:  # a GPU error found only now: recorded, then raised
                    gpu_error = e
                    if meta["status"] != "failed":  # (the program's own error comes first)
                        meta["failed_by"] = "gpu"
                    meta["status"] = "failed"
                    meta["error"] = meta["error"] or described(e)
                meta["regions"] = self._timer.summary()
            if self._tracer is not None:
                try:
                    meta["kernel_trace"] = self._tracer.stop()
                except Exception as e:  # tracing failed: the rest of the trace still counts
                    meta["kernel_trace"] = {"error": f"{type(e).__name__}: {e}"}
            meta["sampler"] = {"mode": self.sampler_mode, **self._sampler_note}
            if self._sampler is not None:
                try:
                    self._sampler.stop()
                    meta["sampler"] = {"mode": self.sampler_mode, **self._sampler.summary(),
                                       **self._sampler_note}
                except RuntimeError as e:
                    meta["sampler"]["error"] = f"{e}: {e.__cause__!r}" if e.__cause__ else str(e)
            if self._hoststat is not None:
                self._hoststat.close()
            host_events = self._stop_host_events()
            if host_events:
                meta["host_events"] = host_events
            if self._writer is not None:
                added = 0  # inference rows the callbacks made (gpuwatch run's kernel bursts)

                def add(table: str, cols: Mapping[str, Any]) -> None:
                    nonlocal added
                    assert self._writer is not None
                    self._writer.add_columns(table, cols)
                    if table == "inferences":
                        added += len(next(iter(cols.values()), ()))

                for finish in self._on_close:  # every record is in: rows made from them
                    try:
                        meta.update(finish(add, self._timer.seq if self._timer is not None
                                           else 0))
                    except Exception as e:
                        logger.warning("warning: %s: %s", type(e).__name__, e)
                assert self._backend is not None
                meta["ended_ns"] = self._backend.clock.now_ns()
                if self._timebase is not None:
                    meta["timebase"] = self._timebase.summary()
                regions = added + (self._timer.stats["regions"] if self._timer is not None
                                   else 0)
                worthless = not regions and (meta["status"] != "complete" or not self.keep_empty)
                if worthless and self._writer.replacing:
                    # failed (or, where an empty trace is worth nothing, ended) before timing
                    # anything, over a trace it was asked to replace: an empty trace is not
                    # worth the one that is there
                    self._writer.abandon(discard=True)
                    self.left_previous = self.discarded = True
                    logger.warning("nothing was timed%s; %s was left as it was",
                                   " before the failure" if meta["status"] == "failed" else "",
                                   self.out)
                elif not regions and (meta["status"] == "interrupted" or not self.keep_empty):
                    # stopped (Ctrl-C, SIGTERM) before timing anything, or a run that timed
                    # nothing: an empty trace would only block the same command run again
                    self._writer.abandon(discard=True)
                    self.discarded = True
                    logger.warning("%s: no trace was written to %s", "stopped before anything "
                                   "was timed" if meta["status"] == "interrupted" else
                                   "nothing was timed", self.out)
                else:
                    self._writer.close(meta)
        finally:
            if self._gc is not None:  # (whatever failed above: never left installed)
                self._gc.remove()
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
            raise Terminated(self._term_pending)
        if gpu_error is not None and status == "complete":
            raise gpu_error  # the program must learn that its GPU work failed
        return self.out

    def _catch_exit(self) -> None:
        """A program that ends without closing the session (no with-block, no close()) or
        with os._exit() would lose the rows not yet flushed and leave no trace: at
        interpreter exit the session is closed, and os._exit() (which skips atexit) closes
        it first, as coverage.py's `patch = _exit` does. Both say so on stderr."""
        atexit.register(self._at_exit)
        global _real_os_exit
        if _real_os_exit is None:
            _real_os_exit = os._exit
            os._exit = _os_exit_closing_session  # type: ignore[assignment]
        # What ended the program, if an exception did (Ctrl-C, SIGTERM, an error): the trace
        # closed at exit says so (interrupted, failed), not "complete".
        previous = sys.excepthook

        def excepthook(tp: Any, value: Any, tb: Any) -> None:
            self._uncaught = value
            previous(tp, value, tb)

        self._prev_excepthook, self._excepthook = previous, excepthook
        sys.excepthook = excepthook

    def _restore_exit(self) -> None:
        atexit.unregister(self._at_exit)
        if sys.excepthook is self._excepthook:
            sys.excepthook = self._prev_excepthook
        global _real_os_exit
        if _real_os_exit is not None and os._exit is _os_exit_closing_session:
            os._exit, _real_os_exit = _real_os_exit, None  # type: ignore[assignment]

    def _at_exit(self, why: str = "the program ended without closing the session",
                 status: str | None = None) -> None:
        if self._closed or os.getpid() != self._pid:
            return
        ended = self._uncaught
        if status is None:  # (at interpreter exit: how did the program end?)
            status = "complete" if ended is None else "interrupted" if isinstance(
                ended, (KeyboardInterrupt, Terminated)) else "failed"
            if isinstance(ended, Terminated):
                name = signal.Signals(ended.signum).name
                why = f"the program was stopped by {name}, without closing the session"
            elif ended is not None:
                why = f"the program ended with {described(ended)}, without closing the session"
        if status == "failed":  # (an uncaught error, or os._exit(N) with N != 0: the program's)
            self._close_meta["failed_by"] = "program"
        try:
            self.close(status=status, error=None if status == "complete" else why)
            done = "nothing was timed, so no trace was written" if self.discarded and not \
                self.left_previous else f"the trace was closed then: {self.out}"
            print(f"gpuwatch: {why}; {done}", file=sys.stderr, flush=True)
        except BaseException as e:  # (at exit: say where the recording is, never raise)
            where = self._writer.partial_dir if self._writer is not None else self.out
            try:
                print(f"gpuwatch: {why}, and closing the trace failed ({type(e).__name__}: "
                      f"{e}); what was recorded is in {where} (python -m gpuwatch.finish "
                      f"{where})", file=sys.stderr, flush=True)
            except Exception:
                pass

    def _catch_sigterm(self) -> None:
        """SIGTERM's default action (and SIGHUP's, when the terminal goes away) kills the
        process without cleanup, losing the buffered rows and the final file. While
        recording, turn them into an exception in the main thread (where Python runs signal
        handlers), so the with-block closes the trace. A handler the program installed itself
        is left alone."""
        self._prev_sigterm = _take_signal(signal.SIGTERM, signal.SIG_DFL, self._on_sigterm)
        if _SIGHUP:
            self._prev_sighup = _take_signal(_SIGHUP, signal.SIG_DFL, self._on_sigterm)
        if self._prev_sigterm is not None or self._prev_sighup is not None:
            self._pid = os.getpid()

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked child (a multiprocessing worker): not ours
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self._closing:
            self._term_pending = signum  # finish writing the trace first
            return
        if _importing(frame) or self._opening:
            _deliver_later(signum)
            return
        e = Terminated(signum)
        # (a SystemExit: sys.excepthook never sees it, so a session the program never closed
        # learns here what ended the program, for the trace it closes at exit)
        self._uncaught = e
        raise e

    def _catch_sigint(self) -> None:
        """A Ctrl-C while the program's thread moves finished regions to the writer (a few
        microseconds at a time) would lose them: Python raises KeyboardInterrupt between any
        two bytecodes. While recording, in the main thread, with Python's own SIGINT handler
        in place, a Ctrl-C that lands there is raised right after the move instead
        (RegionTimer.critical); anywhere else, at once, as Python would."""
        self._prev_sigint = _take_signal(signal.SIGINT, signal.default_int_handler,
                                         self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        timer = self._timer
        if timer is not None and timer.critical and os.getpid() == self._pid:
            timer.interrupt_held = True
            return
        if self._closing and self._writer is not None and os.getpid() == self._pid:
            self._presses += 1  # (about to close: a first press waits for the trace)
            if self._presses == 1:
                _say_finishing(self._writer)
                return
        if _importing(frame) or (self._opening and os.getpid() == self._pid):
            _deliver_later(signum)
            return
        raise KeyboardInterrupt

    def prepare_close(self) -> None:
        """The program has ended (or was stopped) and close() follows: from now on a Ctrl-C
        or SIGTERM waits for the trace as during close() (`gpuwatch run` calls this before
        it tidies up the program's open regions)."""
        self._closing = True

    def _restore_sigint(self) -> None:
        prev, self._prev_sigint = self._prev_sigint, None
        _give_back_signal(signal.SIGINT, prev, ours=self._on_sigint)  # (not the program's)

    def _restore_sigterm(self) -> None:
        prev, self._prev_sigterm = self._prev_sigterm, None
        _give_back_signal(signal.SIGTERM, prev)
        if _SIGHUP:
            prev, self._prev_sighup = self._prev_sighup, None
            _give_back_signal(_SIGHUP, prev)

    def _release(self) -> None:
        with _active.lock:
            if _active.session is self:
                _active.session = None

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
               **options: Any) -> "TimedEngine":
        """An engine on this session's GPU whose infer() is timed (by whichever session is
        active when it is called): "builtin:small", "builtin:large", "torch:module:factory"
        (factory() returns (model, example_input)), a TensorRT engine ("model.plan" or
        "tensorrt:PATH"), or "onnx:model.onnx" built to one first (options precision="fp16",
        workspace_mb=1024). `cuda_graph` launches each inference as one CUDA graph (builtin
        and torch). It runs on `s.stream`, and lives as long as the session."""
        from .engines import TimedEngine

        if not isinstance(spec, str):
            raise UsageError(f"engine takes a spec string (\"builtin:small\", \"model.plan\", "
                             f"\"torch:module:factory\"), got {type(spec).__name__} {spec!r}")
        backend = self._require()
        return TimedEngine(backend.engine(spec, self.stream, cuda_graph=cuda_graph, **options),
                           backend)

    def infer(self, fn: Callable[..., T], *args: Any, stream: Any = None, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` as one timed inference and return what it returns.

        The events go on `stream` if given (any stream object or handle, or "device"), else
        the session's `stream=`, else the stream the work goes on now: torch's (or CuPy's)
        current stream, or the legacy default stream. A given `stream` is also passed on to
        `fn` when `fn` has a parameter of that name. Nothing is synchronised: the region is
        resolved once its end event has completed."""
        if not callable(fn):  # (before a region opens: no row for what never ran)
            raise UsageError(f"s.infer takes the function to time (and its arguments), got "
                             f"{type(fn).__name__} {fn!r}")
        if self._sim_user_note:
            self._note_user_code_on_sim(fn)
        timer = self._timer
        if stream is None and timer is not None and not self._closed:  # the common case
            try:  # (the region's name is made from fn when its row is: not on the timed path)
                return timer.fast("inference", fn, (self.condition, self.gap_ms,
                                  self._iteration, self._warmup, None), fn, args, kwargs,
                                  None, None)
            finally:
                self._iteration += 1
        given: StreamRef | None = None
        if stream is not None:
            given = streams.resolve(stream)
            if _takes_stream(fn):
                kwargs["stream"] = stream
        return self._timed("inference", fn, fn, args, kwargs, given)

    def span(self, name: str, stream: Any = None) -> "_Span":
        """Time any region (pre/post-processing): `with s.span("preprocess"): ...`. Events go
        on `stream` as for infer()."""
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"span takes a name (a non-empty str, e.g. \"preprocess\"), got "
                             f"{type(name).__name__} {name!r}")
        if self._sim_user_note:
            self._note_user_code_on_sim(None)
        return _Span(self, str(name), None if stream is None else streams.resolve(stream))

    def _note_user_code_on_sim(self, fn: Any, stacklevel: int = 3) -> None:
        """Once per session on a simulated GPU, where the user times code of their own
        (s.infer(fn) of anything but a gpuwatch engine, s.span): a warning, and the same in
        the trace's metadata (the report's header shows it). The simulator's clock times those
        regions: a 2 ms sleep reads as a few microseconds."""
        from .engines import TimedEngine

        owner = getattr(fn, "__self__", None)
        if isinstance(owner, TimedEngine) or type(owner).__module__.startswith(
                "gpuwatch.bindings.sim"):
            return  # (an engine's method passed in: the simulator runs it)
        self._sim_user_note = False
        text = ("a simulated GPU cannot time your own code: regions around it (s.infer(fn), "
                "s.span) are timed on the simulator's clock, so their latencies (a 2 ms sleep "
                "reads as microseconds) and verdicts say nothing about it; use a real GPU, or "
                "the stand-in (device='standin') to try the code path")
        warnings.warn(text, UserWarning, stacklevel=stacklevel)
        self._close_meta.setdefault("warning", text)

    def synchronize(self) -> None:
        """Wait until every timed region so far has finished on the GPU, and record them (the
        profiler never does this by itself until the session ends)."""
        timer = self._require_timer()
        timer.drain()

    @property
    def iteration(self) -> int:
        """The index the next inference gets (spans before it share it); set it to number
        your own (negative for warm-up, as `record` does)."""
        return self._iteration

    @iteration.setter
    def iteration(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
                not -2**62 <= value < 2**62:  # (the trace's column is int64; room to count)
            raise UsageError(f"s.iteration takes a whole number (within +-2**62), got "
                             f"{type(value).__name__} {value!r}")
        self._iteration = int(value)

    @property
    def warmup(self) -> bool:
        """While True, the rows recorded are marked warm-up (analysis leaves them out)."""
        return self._warmup

    @warmup.setter
    def warmup(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise UsageError(f"s.warmup takes True or False, got {type(value).__name__} "
                             f"{value!r}")
        self._warmup = bool(value)

    def set_condition(self, name: str, gap_ms: float | None = None) -> None:
        """Label the rows that follow (e.g. "gap=20ms"); restarts the iteration count."""
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"set_condition takes a name (a non-empty str, e.g. \"gap=20ms\"), "
                             f"got {type(name).__name__} {name!r}")
        if gap_ms is not None and (isinstance(gap_ms, bool) or not isinstance(gap_ms, (int, float))
                                   or not 0 <= gap_ms < float("inf")):
            raise UsageError(f"gap_ms takes milliseconds >= 0 (or None), got {gap_ms!r}")
        self.condition, self.gap_ms, self._iteration = name, gap_ms, 0
        self._require_writer().add(
            "events", [{"gpu": self._gpu(), "t_ns": self.clock.now_ns(), "kind": "condition",
                        "name": name, "message": f"gap_ms={gap_ms}"}])

    @property
    def write_error(self) -> str | None:
        """Why the trace could not be written (disk full, I/O error): recording has stopped,
        and the program runs on untimed; None while all is well."""
        e = None if self._writer is None else self._writer.error
        return None if e is None else described(e)

    @property
    def last_ms(self) -> float | None:
        """Latency of the latest inference resolved so far (for live displays)."""
        return None if self._timer is None else self._timer.last_ms

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
        if isinstance(ms, bool) or not isinstance(ms, (int, float, np.integer, np.floating)) \
                or not 0 <= ms <= 3_600_000:
            raise UsageError(f"wait takes 0..3600000 ms (a number), got {type(ms).__name__} "
                             f"{ms!r}")
        if how not in ("sleep", "spin"):
            raise UsageError(f"unknown wait {how!r}; use sleep or spin")
        if keepalive_ms is not None and (
                isinstance(keepalive_ms, bool)
                or not isinstance(keepalive_ms, (int, float, np.integer, np.floating))
                or not 0 < keepalive_ms < float("inf")):
            raise UsageError(f"keepalive_ms takes a number of ms > 0, got {keepalive_ms!r}")
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
    def _timed(self, kind: str, name: Any, fn: Callable[..., T], args: Any, kwargs: Any,
               ref: StreamRef | None = None,
               around: Callable[[], contextlib.AbstractContextManager[Any]] | None = None) -> T:
        """`fn(*args, **kwargs)` between two events on `ref` (None: the session's stream or the
        current one). `around`: an adapter's context (e.g. torch's stream and inference mode),
        entered before the start event and left after the end event. (The timed path: kept
        flat, every call here is host time the program pays.)"""
        timer = self._timer
        if timer is None or self._closed:
            self._require_timer()
        assert timer is not None
        if around is not None:
            with around():
                return self._timed(kind, name, fn, args, kwargs, ref)
        labels = (self.condition, self.gap_ms, self._iteration, self._warmup, None)
        try:
            if ref is None:  # the session's stream, or where the work goes now
                return timer.fast(kind, name, labels, fn, args, kwargs, None, None)
            return timer.call(kind, name, ref, labels, fn, args, kwargs)
        finally:  # after the region: spans inside an inference share its iteration
            if kind == "inference":
                self._iteration += 1

    def _synced(self, handle: int) -> None:
        """A gpuwatch engine synchronised its stream: its regions are done (host_end_ns)."""
        if self._timer is not None and not self._closed:
            self._timer.synced(handle, self.clock.now_ns())

    # -- helpers -----------------------------------------------------------------------------------
    def _gpu(self) -> int:
        return self._require().telemetry[0].info.index

    def _require(self) -> Backend:
        if self._backend is None or self._closed:
            raise SessionError("this gpuwatch session is not recording (use it inside its with-block)")
        return self._backend

    def _require_timer(self) -> RegionTimer:
        self._require()
        if self._timer is None:
            raise SessionError("this gpuwatch session is still starting")
        return self._timer

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
                "gpu_events": "CUDA-event elapsed times added to an anchor event (on a private "
                              "idle stream, between two host clock reads), re-anchored every "
                              "second; see gpuwatch/timebase.py",
            },
            "simulated": backend.simulated,
            "devices": [dict(asdict(t.info), facts=dict(t.info.facts)) for t in backend.telemetry],
            "unsupported_fields": {str(t.info.index): dict(t.unsupported()) for t in backend.telemetry},
            "fields": [{"name": f.name, "unit": f.unit, "description": f.description}
                       for f in FIELDS],
            "options": {"device": self.device_spec, "sample_hz": self.sample_hz,
                        "sampler": self.sampler_mode, "binding": self.binding,
                        "kernels": self.kernels, "seed": self.seed,
                        "stream": None if self._stream_ref is None else
                        list(self._stream_ref), "check_every": self._check_every,
                        "probe": self.probe,
                        "probe_every_ms": self.probe_every_ms if self.probe else None,
                        **({"probe_error": self.probe_error} if self.probe_error else {}),
                        **self.options},
            "field_query_cost_us": {str(t.info.index): dict(t.query_costs_us())
                                    for t in backend.telemetry},
            "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                     "python": sys.version.split()[0], "pid": os.getpid(),
                     "user": _user(), "argv": sys.argv,
                     # (the CPUs the machine has: /proc/stat's steal is summed over them)
                     "cpu_count": os.cpu_count(),
                     # (its nominal maximum CPU clock, MHz: cpu0's cpufreq cpuinfo_max_freq;
                     # null where cpufreq is not exposed)
                     "cpu_max_mhz": cpu_max_mhz()},
            "versions": _versions(backend),
            "started_ns": clock.now_ns(),
            "status": "recording",
        }


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:
        return None


def _versions(backend: Backend) -> dict[str, str]:
    import importlib.metadata

    import numpy
    import pyarrow

    try:  # (from its metadata: importing pandas costs a recording ~0.3 s and ~40 MB)
        pandas_version = importlib.metadata.version("pandas")
    except importlib.metadata.PackageNotFoundError:
        pandas_version = "not installed"
    return {"gpuwatch": _version.__version__, "numpy": numpy.__version__,
            "pandas": pandas_version, "pyarrow": pyarrow.__version__, **backend.versions()}


def session(device: str | None = None, out: str | os.PathLike[str] | None = None, *,
            sample_hz: float = 1000.0, sampler: str = "auto",
            sample_gpus: str | Sequence[int] | None = None, binding: str = "cuda",
            kernels: bool = False, seed: int = 0,
            options: dict[str, Any] | None = None,
            dataset: str | os.PathLike[str] | None = None, stream: Any = None,
            check_every: int = CHECK_EVERY, probe: bool | None = None,
            overwrite: bool = False, probe_every_ms: float | None = None) -> Session:
    """Start recording on `device` ("auto", "cuda:N", "sim:t4", "standin"; default
    $GPUWATCH_DEVICE or "auto"); the trace goes to `out`.
    `sampler`: "auto" (a separate process on a real GPU, the virtual clock on sim), "thread",
    "process" or "off". `sample_gpus`: None (the inference GPU), "all", or NVML indices.
    `binding`: the CUDA library on a real GPU, "cuda" (cuda-python) or "pycuda".
    `kernels`: also record every kernel and copy (CUPTI on a real GPU) into the kernels table.
    `dataset`: instead of `out`, write into a hive-partitioned directory of traces,
    DATASET/host=H/gpu_model=M/run=R/trace.parquet (see docs/fleets.md).
    `stream`: where regions' events go when a call names none (default: the stream the work
    goes on; "device" brackets the whole device). `check_every`: one region in this many (and
    the first few) is checked for GPU work outside its stream; 0 turns the checks off.
    `probe`: stamp the in-band SM clock around regions (`sm_clock_inband_mhz`, a tiny kernel
    before and after it: bindings/probe.py), a region once `probe_every_ms` (5) have passed
    since the last stamped one began and the regions since lasted ~10 ms of GPU time (0:
    every region; None: the device's, 0 on simulated GPUs); `probe` None is the device's
    default: on wherever the device can stamp (real GPUs with NVRTC, simulated ones), and where
    it cannot start, off with the reason in the metadata (options.probe_error).
    `overwrite`: replace an existing trace at `out` (by default that is refused)."""
    return Session(device, out, sample_hz=sample_hz, sampler=sampler, sample_gpus=sample_gpus,
                   binding=binding, kernels=kernels, seed=seed, options=options,
                   dataset=dataset, stream=stream, check_every=check_every, probe=probe,
                   overwrite=overwrite, probe_every_ms=probe_every_ms)


class _Span:
    """`with s.span(name):` - a timed region around a block (a class, not a generator: it is
    on the timed path)."""

    __slots__ = ("_s", "_name", "_ref", "_p")

    def __init__(self, s: Session, name: str, ref: StreamRef | None):
        self._s, self._name, self._ref = s, name, ref
        self._p: Any = None  # the open region

    def __enter__(self) -> None:
        s = self._s
        timer = s._require_timer()
        ref = self._ref or s._stream_ref or streams.current(s._ordinal)
        self._p = timer.begin("span", self._name, ref,
                              (s.condition, s.gap_ms, s._iteration, s._warmup, None))

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        p, self._p = self._p, None
        if p is not None:
            self._s._require_timer().end(p, exc)


_real_os_exit: Callable[[int], Any] | None = None  # os._exit while a session replaces it


def _os_exit_closing_session(status: int) -> None:
    """os._exit while a session records: close the session (its trace written), then exit."""
    s, real = _active.session, _real_os_exit
    if s is not None:
        s._at_exit(f"os._exit({status}) ended the program while recording",
                   "complete" if status == 0 else "failed")
    (real or os._exit)(status)


def _take_signal(signum: int, default: Any, handler: Callable[[int, Any], None]) -> Any:
    """Install `handler` for `signum` if the current handler is `default` and this is the main
    thread (where Python runs signal handlers); returns the previous handler, else None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        if signal.getsignal(signum) is not default:
            return None  # the program's own handler: left alone
        return signal.signal(signum, handler)
    except (ValueError, OSError):  # no signals here (embedded interpreter)
        return None


def _give_back_signal(signum: int, prev: Any, ours: Any = None) -> None:
    """Put `prev` back as `signum`'s handler (nothing if None); with `ours`, only while the
    handler is still ours."""
    if prev is None:
        return
    try:
        if ours is None or signal.getsignal(signum) == ours:
            signal.signal(signum, prev)
    except (ValueError, OSError):
        pass


def _say_finishing(writer: TraceWriter) -> None:
    print(f"gpuwatch: finishing the trace {writer.path}; Ctrl-C again to stop now and keep "
          f"the recording in {writer.partial_dir}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _patient_sigint(writer: TraceWriter, already: int = 0) -> Iterator[None]:
    """While the final trace is written (seconds for a long recording), a first Ctrl-C says
    what is happening and lets it finish; a second one stops, and says truthfully where the
    recording is (its .partial directory: nothing was lost, the final file was not made);
    any more are ignored while that is done. `already`: presses counted before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = [already]

    def on_sigint(signum: int, frame: Any) -> None:
        presses[0] += 1
        if presses[0] == 1:
            _say_finishing(writer)
            return
        if presses[0] > 2:  # (stopping already: let it keep the recording)
            return
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        yield
        return
    try:
        yield
    except KeyboardInterrupt:
        done = writer.written()
        writer.abandon(discard=done)
        if done:
            print(f"gpuwatch: interrupted after the trace was written: {writer.path} is complete",
                  file=sys.stderr, flush=True)
        else:
            # (a file that was there before, -f: still there, as it was; finish refuses to
            # replace it unasked)
            there = (f"; {writer.path}, the file that was there before, is as it was: add -f "
                     f"to replace it, or give another OUT" if writer.path.exists() else "")
            print(f"gpuwatch: stopped before the trace was finished: {writer.path} was not "
                  f"written; what reached the disk is kept in {writer.partial_dir} (python -m "
                  f"gpuwatch.finish {shlex.quote(str(writer.partial_dir))} finishes it{there})",
                  file=sys.stderr, flush=True)
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


_TAKES_STREAM: dict[Any, bool] = {}


def _takes_stream(fn: Any) -> bool:
    """Does `fn` have a parameter named `stream` (so s.infer passes a given stream on)?"""
    key = getattr(fn, "__func__", fn)
    try:
        return _TAKES_STREAM[key]
    except (KeyError, TypeError):
        pass
    import inspect

    try:
        params = inspect.signature(fn).parameters
        got = "stream" in params and params["stream"].kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    except (TypeError, ValueError):
        got = False
    try:
        if len(_TAKES_STREAM) < 1024:
            _TAKES_STREAM[key] = got
    except TypeError:
        pass
    return got


def dataset_path(root: Path, gpu_name: str) -> Path:
    """Where a run goes in a fleet dataset: hive partitions host / GPU model / run."""
    import time

    run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.time_ns() % 1_000_000:06d}"
    return (root / f"host={partition_value(socket.gethostname())}"
            / f"gpu_model={partition_value(gpu_name)}" / f"run={run}" / "trace.parquet")
