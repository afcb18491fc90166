"""The timed region: two CUDA events around the user's call, on the stream the work goes on.

What happens between the events is the user's call and nothing else: the stream is resolved,
adapters entered, events taken from the pool and telemetry left to the sampler, all before the
start event; the end event is recorded first thing after the call, and the row is built later.
The profiler adds no synchronisation: regions are resolved lazily, by querying their end
events between regions (`poll`), and synchronised only when the event pool wraps
(`MAX_PENDING` regions outstanding) or the session ends (`drain`).

Where the C extension is built, a region with nothing due is one C call (`fast`: _native.c's
FastRegion, beside this file, which also keeps the hot path's counters): stream, start event, call,
end event, and a tuple appended to `_out`. Everything else (housekeeping, nesting, checked or
traced regions) takes the Python path (`_slow_call`, begin/end). Ended regions wait in `_out`
until `_absorb` moves them to `_pending` for resolution.

Two regions of every `check_every` are *checked* (the first few too): the device is synchronised
before and after the region, and the host time at which the whole device went idle is kept. If
that is well after the region's end event, the region launched GPU work on a stream its events
did not bracket (`outside_ms`). With `stream="device"` every region brackets the whole device
that way: for programs that spread one inference over many streams (it synchronises).

Region ids: region `rid`'s start and end events are tagged for the kernel tracer with external
correlation ids `event_tag(rid, end)`; `region_of_tag` inverts it (labels.py: analysis.merge,
cupti).
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import time
import types
from collections import deque
from typing import Any, Callable

from .. import streams
from ..bindings.cuda import native_module
from ..clock import Clock
from ..labels import event_tag
from ..streams import DEVICE, StreamRef
from ..timebase import Anchor, EventTimebase
from ..trace import table_columns

__all__ = ["C_OPEN", "RegionTimer"]

BATCH = 16  # resolve once this many regions are outstanding...
# ...or this long after the last resolution. Between, the trace writer's thread resolves what
# has completed before each flush (background_poll, about once a second), so rows keep coming
# while the program idles. (At 100 ms, a program with 20 ms gaps paid for a resolution at its
# inference every 5th region, not every 16th: benchmarks/run_host_cost.py.)
POLL_NS = 1_000_000_000
HOOK_NS = 250_000_000  # housekeeping's hook, at most this often (see RegionTimer)
MAX_PENDING = 1024  # regions outstanding before the oldest is waited for (the pool wraps)
CHECK_FIRST = 3  # the first regions are checked for work outside their stream...
CHECK_EVERY = 200  # ...and then one in this many (0: never)
# The in-band clock stamps (bindings/probe.py) go around a region when at least
# PROBE_EVERY_NS (host ns) have passed since the last stamped one began AND the regions since
# add up to about PROBE_REGION_NS of GPU time (counted as regions of the latest resolved one's
# gpu_ms): every region when regions are that long, one in PROBE_REGION_NS / region time when
# they are short, whatever the gaps between them. A stamped region costs 40 us of
# call -> result on the H100 back to back (two stamps: ~8 us of host and ~9 us of GPU time,
# and the slow path's Python) and 45-110 us after a 20 ms idle gap (the host runs cold): at
# most ~1% of the regions' own time (benchmarks/results/h100_issue28). Unstamped regions carry
# no reading (NA); analysis.merge may lend them the nearest stamp's, labelled as such.
PROBE_EVERY_NS = 5_000_000
PROBE_REGION_NS = 10_000_000


# The inferences table's columns, in the order rows are kept here (as tuples: cheap to make,
# untracked by the garbage collector, handed to the writer as columns).
COLUMNS = ("gpu", "t_ns", "kind", "name", "condition", "gap_ms", "iteration", "warmup",
           "start_ns", "end_ns", "gpu_ms", "host_start_ns", "host_enqueued_ns", "host_end_ns",
           "error", "region_id", "stream", "stream_source", "outside_ms", "sm_clock_inband_mhz")
assert list(COLUMNS) == table_columns("inferences"), "region.COLUMNS must follow trace.schema"


def callable_name(fn: Any) -> str:
    """A region's name for `fn`: its own `name` attribute, a function's qualified name, else
    its class's name (a torch Module: "Sequential"). Looks only at the instance's __dict__:
    a torch Module's __getattr__ raises, slowly, for names it lacks."""
    d = getattr(fn, "__dict__", None)
    if isinstance(d, dict) and isinstance(d.get("name"), str):
        return d["name"]
    if isinstance(fn, functools.partial):
        return callable_name(fn.func)
    if isinstance(fn, (types.FunctionType, types.MethodType, types.BuiltinFunctionType,
                       types.BuiltinMethodType)):
        return fn.__qualname__
    return type(fn).__qualname__


class _Pending:
    """One open or outstanding region: what its row will say, and its events. Host times are
    kept as the clock's fast counter (`RegionTimer._counter`) and put on the trace's base when
    the row is built."""

    __slots__ = ("kind", "name", "handle", "source", "labels", "rid", "ev0", "ev1", "stream",
                 "anchor", "h0", "h1", "host_end_ns", "idle_ns", "plain", "probe0", "probe1",
                 "inband_mhz")

    def __init__(self, kind: str, name: Any, handle: int, source: str,
                 labels: tuple[Any, ...], rid: int, ev0: Any, ev1: Any, stream: Any,
                 anchor: Anchor, h0: int):
        self.kind, self.name, self.handle, self.source = kind, name, handle, source
        self.labels, self.rid, self.ev0, self.ev1, self.stream = labels, rid, ev0, ev1, stream
        self.anchor, self.h0, self.h1 = anchor, h0, 0
        self.host_end_ns: int | None = None
        self.idle_ns: int | None = None  # checked regions: when the whole device was idle
        self.plain = True  # not checked, not "device", no tracer: end() has nothing else to do
        self.probe0: Any = None  # in-band clock stamps before the start / after the end event
        self.probe1: Any = None
        self.inband_mhz: float | None = None  # the mean SM clock between them

    def row(self, gpu: int, epoch: int, error: str | None = None, start: int | None = None,
            end: int | None = None, ms: float | None = None) -> tuple[Any, ...]:
        """The region's row (COLUMNS order); without GPU times until resolved. `epoch`: the
        host counter's offset to the trace's base."""
        condition, gap_ms, iteration, warmup, err = self.labels
        name = self.name if self.name.__class__ is str else callable_name(self.name)
        h0 = self.h0 + epoch
        h1 = self.h1 + epoch if self.h1 else None
        outside = None
        if self.idle_ns is not None and end is not None:
            outside = (self.idle_ns + epoch - end) / 1e6
        return (gpu, h0 if start is None else start, self.kind, name, condition,
                gap_ms, iteration, warmup, start, end, ms, h0, h1,
                self.host_end_ns, err or error, self.rid, self.handle, self.source, outside,
                self.inband_mhz)


class RegionTimer:
    """Times regions with pooled CUDA events and resolves them lazily into `inferences` rows."""

    def __init__(self, runtime: Any, clock: Clock, timebase: EventTimebase,
                 sink: Callable[[str, dict[str, list[Any]]], None], gpu: int,
                 tracer: Any = None, check_every: int = CHECK_EVERY,
                 max_pending: int = MAX_PENDING, probe: bool = False,
                 stream: StreamRef | None = None, ordinal: int = 0,
                 probe_every_ns: int = PROBE_EVERY_NS,
                 probe_region_ns: int = PROBE_REGION_NS,
                 hook: Callable[[], None] | None = None):
        """`sink(table, columns)` takes the resolved rows (the writer's add_columns). `probe`:
        stamp the in-band SM clock around regions (the runtime's probe/read_probe), a region
        when `probe_every_ns` has passed since the last stamped one began and the regions since
        lasted about `probe_region_ns` of GPU time (both 0: every region).
        `stream`: where regions go when none is given (None: where the work goes now, on CUDA
        device `ordinal`; see streams.py). `hook`: called from housekeeping on the timed
        thread, at most every HOOK_NS (the session's thread names for the sampler process:
        a thread holding the interpreter lock can starve every other thread but this one,
        which the analysis is about)."""
        self._rt, self._clock, self._tb, self._sink = runtime, clock, timebase, sink
        self._hook = hook
        self._hook_ns: int | None = None
        self._gpu, self._tracer = gpu, tracer
        self._check_every, self._max_pending = check_every, max_pending
        self._stream, self._ordinal = stream, ordinal
        # The host clock's raw counter (perf_counter_ns: one builtin call on the timed path)
        # and its offset to the trace's base (clock.now_ns() == counter() + epoch).
        counter = getattr(clock, "counter", None)
        self._counter: Callable[[], int]
        self._epoch: int
        self._counter, self._epoch = counter() if counter is not None else (clock.now_ns, 0)
        self._record = runtime.record
        self._probe = runtime.probe if probe else None
        self._read_probe = runtime.read_probe if probe else None
        self._probe_every_ns = int(probe_every_ns)
        self._probe_region_ns = int(probe_region_ns)
        # the next region is stamped from this host ns (the counter's) and region id on
        self._stamp_due_ns = self._stamp_due_rid = 0
        self._check_due_rid = 0  # the next region id checked for work outside its stream
        self._free: list[tuple[Any, Any]] = []  # event pairs to reuse
        self._out: list[Any] = []  # regions ended, oldest first, not yet in _pending (below)
        self._pending: deque[_Pending] = deque()  # regions ended, not yet resolved
        self._streams: dict[int, Any] = {}  # handle -> the binding's stream object
        # The hot path's state. Where the C extension is built and the runtime offers a
        # C-callable cuEventRecord (`record_addr`; its streams are their raw handles) and the
        # clock is CLOCK_MONOTONIC, a whole region is one C call (gpuwatch/regions/_native.c's
        # FastRegion, which keeps this state); else the same fields in Python.
        record_addr = getattr(runtime, "record_addr", None)
        native = native_module() if record_addr and self._counter is time.perf_counter_ns \
            and sys.platform == "linux" else None
        fs: Any
        if native is not None:
            fs = native.FastRegion(record_addr, self._slow_call, self._fast_failed, self._free,
                                   self._out, _WATCH)
            self.fast: Callable[..., Any] = fs
        else:
            fs = _State(self._free, self._out)
            self.fast = self._slow_call
        self._fs = fs
        self._c_path = native is not None
        fs.batch, fs.poll_ns, fs.anchor = BATCH, POLL_NS, timebase.current
        # every region takes the slow path: tagged for the kernel tracer, the whole device
        # bracketed (stamped regions take it when due: _set_due)
        fs.hold = int(tracer is not None or (stream is not None and stream.source == DEVICE))
        if stream is not None and stream.source != DEVICE:
            fs.fixed_handle, fs.fixed_source = stream.handle, stream.source
        self._torch_path: str | None = None  # how the C path reads torch's current stream
        # While the program's thread moves regions between lists (and rows to the writer), a
        # Ctrl-C waits: the session's SIGINT handler sees `critical` and sets
        # `interrupt_held`, raised once the move is done (see _hold/_release).
        self.critical = 0
        self.interrupt_held = False
        self.last_ms: float | None = None
        self.stats = {"regions": 0, "checked": 0, "forced_waits": 0, "event_pairs": 0,
                      "background_polls": 0}
        # One resolver at a time: this thread, or the writer's thread (background_poll) while
        # the program does nothing gpuwatch sees. Anchors change under it too.
        self._lock = threading.Lock()
        self._completed = getattr(runtime, "completed", runtime.query)  # costs no host time
        self._bound = threading.local()

    @property
    def depth(self) -> int:
        """Regions open (spans may nest inside inferences)."""
        return int(self._fs.depth)

    def outstanding(self) -> int:
        """Regions ended and not yet resolved."""
        return len(self._pending) + len(self._out)

    @property
    def seq(self) -> int:
        """Regions begun: the next region's id."""
        return int(self._fs.seq)

    @property
    def c_region(self) -> Any:
        """The C path's FastRegion (None: no C path), for GapRegions.arm: `gpuwatch run`'s
        ranges open and close through it in C."""
        return self._fs if self._c_path else None

    # -- the hot path ---------------------------------------------------------------------------
    def begin(self, kind: str, name: Any, ref: StreamRef, labels: tuple[Any, ...]) -> _Pending:
        """Everything before the start event, then the start event. Raises (with a row kept)
        if the GPU fails before the region starts. `labels`: (condition, gap_ms, iteration,
        warmup, error) for its row. (Kept flat: every line here is host time the program
        pays; the rare work is in _housekeeping.)"""
        fs = self._fs
        rid = fs.seq
        fs.seq = rid + 1
        handle, source = ref
        p = _Pending(kind, name, handle, source, labels, rid, None, None, None,
                     self._tb.current, 0)
        check = stamp = False
        probe = self._probe
        if not fs.depth and probe is not None and rid >= self._stamp_due_rid:
            now = self._counter()  # (stamps bracket top-level regions)
            if now >= self._stamp_due_ns:
                stamp = True
                self._stamp_due_ns = now + self._probe_every_ns
                self._stamp_due_rid = rid + self._stamp_regions()
        if not fs.depth and (self._counter() >= fs.due_ns or rid >= fs.next_check
                             or len(self._pending) + len(self._out) >= BATCH):
            check = self._housekeeping(p)  # a GPU error there is raised with its row
        free = self._free
        try:
            p.ev0, p.ev1 = free.pop() if free else self._new_pair()
            device = source == DEVICE
            if device:  # events on the private idle stream, the device synchronised around
                p.stream, p.handle = self._tb.stream.handle, self._tb.stream.ptr
            else:
                p.stream = self._streams.get(handle)
                if p.stream is None:
                    p.stream = self._streams[handle] = self._rt.native_stream(handle)
            if device or check or self._tracer is not None or stamp:
                p.plain = False
                if device or check:
                    self._rt.synchronize_device()
                    p.idle_ns = None if device else -1  # -1: find out at end()
                if stamp and probe is not None:  # before the start event: not in gpu_ms
                    p.probe0 = probe(p.stream)
                p.h0 = self._counter()
                self._record_tagged(p.ev0, event_tag(rid, False), p.stream)
            else:
                p.h0 = self._counter()
                self._record(p.ev0, p.stream)
        except Exception as e:  # the GPU failed before the region began: a row says so
            p.h0 = p.h0 or self._counter()
            self._emit([p.row(self._gpu, self._epoch, _text(e))])
            raise
        fs.depth += 1
        return p

    def end(self, p: _Pending, error: BaseException | None) -> None:
        """The end event first, then bookkeeping. Raises a GPU failure of the end event (after
        the row is kept) unless the call itself raised."""
        self._fs.depth -= 1
        try:
            if p.plain:
                self._record(p.ev1, p.stream)
                p.h1 = self._counter()
            else:
                self._end_special(p)
        except Exception as e:
            self._end_failed(p, e, error)
            return
        self._ended(p, error)

    def call(self, kind: str, name: Any, ref: StreamRef, labels: tuple[Any, ...],
             fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """begin(), fn(*args, **kwargs), end(): a whole region on `ref`. `name`: the region's
        name, or the callable to name it after when its row is made. (The common case, no
        stream given, calls `fast` directly: see Session.infer.)"""
        if ref.source == DEVICE:
            return self._slow_call(kind, name, labels, fn, args, kwargs, ref.handle, DEVICE)
        return self.fast(kind, name, labels, fn, args, kwargs, ref.handle, ref.source)

    def open(self, kind: str, name: Any, labels: tuple[Any, ...], handle: int | None = None,
             source: str | None = None) -> Any:
        """begin() for a region whose end is a separate call (NVTX push/pop), on stream
        `handle` (None: as for `fast`): through the C path when nothing is due. Returns what
        close() takes."""
        fs = self._fs
        if self._c_path and source != DEVICE and fs.begin(kind, name, labels, handle, source):
            return C_OPEN
        return self.open_slow(kind, name, labels, handle, source)

    def open_slow(self, kind: str, name: Any, labels: tuple[Any, ...], handle: int | None = None,
                  source: str | None = None) -> _Pending:
        """open() where the C path declined (or was not asked: gpuwatch/regions/_autoregions.c asked
        it already); close() (or end()) takes what it returns."""
        if handle is None:
            ref = self._stream or self._current()
        else:
            ref = StreamRef(handle, source or "argument")
        return self.begin(kind, name, ref, labels)

    def close(self, p: Any, error: BaseException | None = None) -> None:
        """end() for a region open() opened."""
        if p is C_OPEN:
            self._fs.end(error)
        else:
            self.end(p, error)

    def _slow_call(self, kind: str, name: Any, labels: tuple[Any, ...], fn: Callable[..., Any],
                   args: tuple[Any, ...], kwargs: dict[str, Any] | None, handle: int | None,
                   source: str | None) -> Any:
        """`fast`'s signature, in Python: a region with housekeeping due, nested, checked,
        tagged, or on a stream the C path cannot find by itself. `handle` None: the timer's
        stream, else where the work goes now."""
        if handle is None:
            ref = self._stream or self._current()
        else:
            ref = StreamRef(handle, source or "argument")
        p = self.begin(kind, name, ref, labels)
        try:
            out = fn(*args, **(kwargs or {}))
        except BaseException as e:
            self.end(p, e)
            raise
        self.end(p, None)
        return out

    def _current(self) -> StreamRef:
        """streams.current, and once torch has started CUDA, the C path told how to read
        torch's current stream itself."""
        ref = streams.current(self._ordinal)
        if not self._c_path:
            return ref
        if ref.source == "torch" and self._torch_path is None:
            from ..bindings.torch import torch_stream_source

            self._torch_path = torch_stream_source(self._fs, streams.torch_getter(),
                                                   self._ordinal)
        elif ref.source == "default" and self._fs.torch_cuda is None:
            # torch imported, CUDA not started in it (a TensorRT program with torch for its
            # tensors on the CPU): the C path may stay on the default stream until it starts
            cuda = getattr(sys.modules.get("torch"), "cuda", None)
            if getattr(cuda, "_initialized", None) is False:
                self._fs.torch_cuda = cuda.__dict__
        return ref

    def learn_streams(self) -> None:
        """At the session's start, where torch has started CUDA already: learn how the C path
        reads torch's current stream now, not in the program's first region, whose call ->
        result it made 30 ms longer on the H100 (c10's check in a forked child: 19 ms;
        benchmarks/results/h100_issue31/rerun_d74d17b). A failure here is met again, and
        reported, at the first region."""
        if self._stream is None:
            try:
                self._current()
            except Exception:
                pass

    def _fast_failed(self, kind: str, name: Any, labels: tuple[Any, ...], rid: int,
                     pair: tuple[Any, Any], handle: int, source: str, anchor: Anchor, h0: int,
                     h1: int, rc0: int, rc1: int, error: BaseException | None) -> None:
        """The C path's region that failed: its start event (rc0; the call never ran), the
        call (`error`) or its end event (rc1). Keeps the row, then raises the event's error
        unless the call's own error is to propagate (the C path raises it on return)."""
        p = _Pending(kind, name, handle, source, labels, rid, pair[0], pair[1], handle,
                     anchor, h0)
        if rc0:  # the start event failed: the call never ran; a row says so
            try:
                self._rt.fail(rc0, "cuEventRecord")
            except Exception as err:
                self._emit([p.row(self._gpu, self._epoch, _text(err))])
                raise err from None
        p.h1 = h1
        if rc1:
            try:
                self._rt.fail(rc1, "cuEventRecord")
            except Exception as e:
                self._end_failed(p, e, error)
                return
        self._ended(p, error)

    def _end_failed(self, p: _Pending, e: BaseException, error: BaseException | None) -> None:
        """The end event failed: the region's row says why (the call's own error wins), its
        events are dropped, not reused. Raises `e` unless the call itself raised."""
        self.stats["regions"] += 1
        self._emit([p.row(self._gpu, self._epoch, _text(e if error is None else error))])
        if error is None:
            raise e

    def _ended(self, p: _Pending, error: BaseException | None) -> None:
        """Bookkeeping after a region's end event: it joins the outstanding regions."""
        if error is not None:
            p.labels = p.labels[:4] + (_text(error),)
        self.stats["regions"] += 1
        fs, out = self._fs, self._out
        if not self._pending and not out:  # the first outstanding region: resolve it soon
            fs.due_ns = min(fs.due_ns, fs.last_poll_ns + POLL_NS)
        out.append(p)  # (after any of the C path's, in order)
        if len(self._pending) + len(out) > self._max_pending:
            self._wait_oldest()

    def _absorb(self) -> None:
        """Move the regions ended since (`_out`: the C path's tuples, _ended's _Pending) into
        `_pending`, in order. Under the lock, from either thread: the C path only appends.
        One at a time, each left in `_out` until it is in `_pending`: a region is never lost
        and, if the move was cut short, never added twice."""
        out, pending = self._out, self._pending
        while out:
            r = out[0]
            if r.__class__ is tuple:
                if not pending or pending[-1].rid != r[5]:
                    kind, name, handle, source, labels, rid, (ev0, ev1), anchor, h0, h1 = r
                    p = _Pending(kind, name, handle, source, labels, rid, ev0, ev1, handle,
                                 anchor, h0)
                    p.h1 = h1
                    self.stats["regions"] += 1
                    pending.append(p)
            elif not pending or pending[-1] is not r:
                pending.append(r)
            del out[0]
        self._fs.outstanding = len(pending)

    def _absorb_held(self) -> None:
        """_absorb from the program's thread: under the lock, a Ctrl-C held until it is done."""
        self._hold()
        try:
            with self._lock:
                self._absorb()
        finally:
            self._release()

    def _hold(self) -> None:
        """The program's thread starts moving regions: a Ctrl-C now waits for _release."""
        self.critical += 1

    def _release(self) -> None:
        self.critical -= 1
        if not self.critical and self.interrupt_held:
            self.interrupt_held = False
            raise KeyboardInterrupt

    def _end_special(self, p: _Pending) -> None:
        """end() of a checked or whole-device region, or one tagged for the kernel tracer."""
        if p.source == DEVICE:
            self._rt.synchronize_device()
        self._record_tagged(p.ev1, event_tag(p.rid, True), p.stream)
        p.h1 = self._counter()
        if p.probe0 is not None and self._probe is not None:
            p.probe1 = self._probe(p.stream)  # after the end event: not in gpu_ms
        if p.idle_ns is not None:  # checked: when did the whole device go idle?
            self._rt.synchronize_device()
            p.idle_ns = self._counter()
            self.stats["checked"] += 1

    def _stamp_regions(self) -> int:
        """Regions from one stamped region to the next: about PROBE_REGION_NS of GPU time at
        the latest resolved region's gpu_ms (1 while none is known)."""
        ms, every = self.last_ms, self._probe_region_ns
        if not every or ms is None or not ms > 0:  # (NaN: no)
            return 1 if every else 0
        return int(min(max(math.ceil(every / (ms * 1e6)), 1), 10_000))

    def _housekeeping(self, p: _Pending) -> bool:
        """Before region `p` (top level), when due: resolve what has completed (a batch is
        outstanding, or POLL_NS passed), re-anchor the time base, read the kernel tracer's
        records. Returns whether `p` is checked for work outside its stream. A GPU error is
        raised with the row of the region it concerns (an outstanding one, or `p`)."""
        now, fs = self._counter(), self._fs
        if self._hook is not None and (self._hook_ns is None or now - self._hook_ns >= HOOK_NS):
            self._hook_ns = now
            try:
                self._hook()
            except Exception:  # (bookkeeping for the sampler: never the region's failure)
                pass
        if self._out:
            self._absorb_held()
        if self._pending and (len(self._pending) >= BATCH or now - fs.last_poll_ns >= POLL_NS):
            self.poll()
        try:
            if self._tb.due(now + self._epoch):
                with self._lock:
                    self._tb.anchor()
                p.anchor = fs.anchor = self._tb.current
            if self._tracer is not None:
                self._tracer.poll()
        except Exception as e:  # the GPU failed before the region began: a row says so
            p.h0 = self._counter()
            self._emit([p.row(self._gpu, self._epoch, _text(e))])
            raise
        rid, check = p.rid, False
        if rid >= self._check_due_rid:
            every = self._check_every
            check = every > 0 and (rid < CHECK_FIRST or rid % every == 0)
            self._check_due_rid = (rid + 1 if rid + 1 < CHECK_FIRST else
                                   (rid // every + 1) * every if every > 0 else 1 << 62)
        self._set_due()
        return check

    def _set_due(self) -> None:
        """When the hot path must next call _housekeeping: by the clock (a traced session: at
        every region) and by region id (a stream check; a stamp: its region count first, then
        its time)."""
        fs = self._fs
        stamp_by_rid = self._probe is not None and fs.seq < self._stamp_due_rid
        fs.next_check = min(self._check_due_rid, self._stamp_due_rid) if stamp_by_rid \
            else self._check_due_rid
        if self._tracer is not None:
            fs.due_ns = 0
            return
        due = self._tb.next_anchor_ns - self._epoch
        if self._pending or self._out:
            due = min(due, fs.last_poll_ns + POLL_NS)
        if self._probe is not None and not stamp_by_rid:  # the next stamped region
            due = min(due, self._stamp_due_ns)
        fs.due_ns = due

    # -- resolution -----------------------------------------------------------------------------
    def poll(self) -> None:
        """Resolve every region whose end event has completed, oldest first; stop at the first
        that has not (rows stay in order). Raises a GPU error found on the way, after the rows
        before it (and its own, with the error) are kept."""
        self._hold()
        try:
            with self._lock:
                self._poll(self._rt.query, background=False)
        finally:
            self._release()

    def background_poll(self) -> None:
        """From another thread (the trace writer's, about once a second): resolve what has
        completed, so that a crash loses only the last moments even when the program has
        stopped timing regions. Leaves GPU errors for the program's own thread to find."""
        if not (self._pending or self._out) or not self._lock.acquire(blocking=False):
            return
        try:
            ctx = getattr(self._rt, "thread_context", None)  # (pycuda: push, poll, pop)
            if ctx is None and not getattr(self._bound, "done", False):
                bind = getattr(self._rt, "bind_thread", None)
                if bind is not None:
                    bind()
                self._bound.done = True
            self.stats["background_polls"] += 1
            if ctx is not None:
                with ctx():
                    self._poll(self._completed, background=True)
            else:
                self._poll(self._completed, background=True)
        except Exception:
            pass  # the program's thread meets it at its next region or at close
        finally:
            self._lock.release()

    def _poll(self, done: Callable[[Any], bool], background: bool) -> None:
        self._absorb()
        self._fs.last_poll_ns = self._counter()
        pending, rows = self._pending, []
        try:
            if pending:
                # Events on one stream complete in order: if the newest region's end event has
                # completed, so has every older one on its stream (one query, not a batch's).
                newest = pending[-1]
                same = newest.handle if done(newest.ev1) else None
                elapsed, gpu, epoch = self._rt.elapsed_ms, self._gpu, self._epoch
                free, scale = self._free, self._tb.scale()
                while pending:
                    p = pending[0]
                    if p.handle != same and not done(p.ev1):
                        break
                    if p.probe1 is not None and not self._clock_of(p):
                        break  # its end stamp (after the end event) has not run yet
                    ms = elapsed(p.ev0, p.ev1)
                    # EventTimebase.to_ns and span_ns, inlined: this loop is the batch's cost
                    a = p.anchor
                    start = a.host_ns + round(elapsed(a.event, p.ev0) * 1e6 * scale)
                    end = start + round(ms * 1e6 * scale)
                    rows.append(p.row(gpu, epoch, None, start, end, ms))
                    free.append((p.ev0, p.ev1))  # (only this thread pops: list ops are atomic)
                    pending.popleft()
                    if p.kind == "inference":
                        self.last_ms = ms
        except Exception as e:
            if pending and not background:
                bad = pending.popleft()
                # (the call's own error wins)
                rows.append(bad.row(self._gpu, self._epoch, _text(e)))
            raise
        finally:
            self._emit(rows)
            self._tb.release_before(pending[0].anchor if pending else None)
            self._fs.outstanding = len(pending)
            self._set_due()

    def drain(self) -> None:
        """Wait for and resolve every outstanding region (the session is ending). If the GPU
        fails (a sticky error: no event can be read any more), every outstanding region is
        still written, with the error, and the error is raised."""
        while True:
            self._hold()
            try:
                with self._lock:
                    self._absorb()
                    if not self._pending:
                        return
                    oldest = self._pending[0]
            finally:
                self._release()
            try:
                self._wait_for(oldest)
                self.poll()
            except Exception as e:
                with self._lock:
                    self._absorb()
                    left = list(self._pending)
                    self._pending.clear()
                    self._fs.outstanding = 0
                # their times cannot be read any more: say why
                self._emit([p.row(self._gpu, self._epoch, _text(e)) for p in left])
                raise

    def synced(self, handle: int, host_ns: int) -> None:
        """The program synchronised stream `handle` (a gpuwatch engine's synchronize()): its
        regions are complete, and `host_ns` is when the host learnt it (host_end_ns)."""
        self._absorb_held()
        with self._lock:
            for p in reversed(self._pending):  # (the newest first: older ones were marked)
                if p.handle == handle:
                    if p.host_end_ns is not None:
                        break
                    p.host_end_ns = host_ns
        # Resolved now, while its events can still be read: a sticky CUDA error later loses
        # no measured region of a program that synchronises. The price, after the host has
        # its result: ~0.035 ms per synchronize on the H100 (benchmarks/results/h100_issue27).
        self.poll()

    def _emit(self, rows: list[tuple[Any, ...]]) -> None:
        """Hand rows to the writer, as columns."""
        if rows:
            self._sink("inferences", dict(zip(COLUMNS, map(list, zip(*rows)))))

    def _wait_oldest(self) -> None:
        self._absorb_held()
        self.stats["forced_waits"] += 1
        self._wait_for(self._pending[0])
        self.poll()

    def _wait_for(self, p: _Pending) -> None:
        """Wait until region `p` can be resolved: its end event, and its end stamp if any."""
        self._rt.synchronize(p.ev1)
        if p.probe1 is not None and self._read_probe is not None:
            self._read_probe(p.probe1, wait=True)

    def _clock_of(self, p: _Pending) -> bool:
        """Read region `p`'s clock stamps into `p.inband_mhz` (the mean SM clock between
        them: cycles / ns, in MHz); False while the end stamp has not run."""
        read = self._read_probe
        assert read is not None
        s1 = read(p.probe1)
        if s1 is None:
            return False
        s0 = read(p.probe0) if p.probe0 is not None else None
        if s0 is not None and s0[0] > 0 and s1[0] > s0[0]:  # (timer 0: no reading)
            p.inband_mhz = (s1[1] - s0[1]) / (s1[0] - s0[0]) * 1e3
        return True

    def _new_pair(self) -> tuple[Any, Any]:
        self.stats["event_pairs"] += 1
        return self._rt.event(), self._rt.event()

    def _record_tagged(self, event: Any, tag: int, stream: Any) -> None:
        """Record `event`, tagged for the kernel tracer if there is one (CUPTI: this record is
        region rid's start or end)."""
        tracer = self._tracer
        if tracer is None:
            self._record(event, stream)
            return
        tracer.mark(tag)
        try:
            self._rt.record(event, stream)
        finally:
            tracer.unmark()

    def summary(self) -> dict[str, Any]:
        fast = getattr(self._fs, "fast_regions", None)  # (None: no C path)
        return {**self.stats, "pending_max": self._max_pending, "check_every": self._check_every,
                "probe_every_ms": (self._probe_every_ns / 1e6 if self._probe is not None
                                   else None),
                "check_first": CHECK_FIRST, "c_path_regions": fast,
                "torch_stream_read": self._torch_path}


C_OPEN = object()  # open()'s answer when the C path holds the open region

# Frameworks with a current stream of their own: while one is imported and the C path has not
# been told how to read its stream, regions with no stream given take the slow path.
_WATCH = ("torch", "cupy")


class _State:
    """The hot path's state where the C path is not available: the fields of
    _native.FastRegion that RegionTimer keeps."""

    __slots__ = ("free", "out", "due_ns", "last_poll_ns", "poll_ns", "seq", "next_check",
                 "outstanding", "batch", "depth", "hold", "anchor", "fixed_handle",
                 "fixed_source")

    def __init__(self, free: list[Any], out: list[Any]):
        self.free, self.out = free, out
        self.due_ns = self.last_poll_ns = self.poll_ns = self.seq = self.next_check = 0
        self.outstanding = self.batch = self.depth = self.hold = 0
        self.anchor: Any = None
        self.fixed_handle: Any = None
        self.fixed_source: Any = None


def _text(e: BaseException) -> str:
    """An error as a row says it: "ValueError: bad", or the name alone ("KeyboardInterrupt")."""
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
