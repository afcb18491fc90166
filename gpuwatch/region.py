"""The timed region: two CUDA events around the user's call, on the stream the work goes on.

What happens between the events is the user's call and nothing else: the stream is resolved,
adapters entered, events taken from the pool and telemetry left to the sampler, all before the
start event; the end event is recorded first thing after the call, and the row is built later.
The profiler adds no synchronisation: regions are resolved lazily, by querying their end
events between regions (`poll`), and synchronised only when the event pool wraps
(`MAX_PENDING` regions outstanding) or the session ends (`drain`).

Two regions of every `check_every` are *checked* (the first few too): the device is synchronised
before and after the region, and the host time at which the whole device went idle is kept. If
that is well after the region's end event, the region launched GPU work on a stream its events
did not bracket (`outside_ms`). With `stream="device"` every region brackets the whole device
that way: for programs that spread one inference over many streams (it synchronises).

Region ids: region `rid`'s start and end events are tagged for the kernel tracer with external
correlation ids `event_tag(rid, end)`; `region_of_tag` inverts it (analysis.merge, cupti).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

from .clock import Clock
from .streams import DEVICE, StreamRef
from .timebase import Anchor, EventTimebase
from .trace import table_columns

__all__ = ["RegionTimer", "event_tag", "region_of_tag"]

BATCH = 16  # resolve once this many regions are outstanding...
POLL_NS = 100_000_000  # ...or this long after the last resolution (live displays stay fresh)
MAX_PENDING = 1024  # regions outstanding before the oldest is waited for (the pool wraps)
CHECK_FIRST = 3  # the first regions are checked for work outside their stream...
CHECK_EVERY = 200  # ...and then one in this many (0: never)


def event_tag(rid: Any, end: bool) -> Any:
    """The external correlation id of region `rid`'s start (or end) event (numpy arrays of
    region ids too)."""
    return 2 * rid + int(end)


def region_of_tag(tag: Any) -> tuple[Any, Any]:
    """(region id, is the end event) of an external correlation id made by event_tag; works
    on numpy arrays of tags too."""
    return tag // 2, tag % 2 == 1


# The inferences table's columns, in the order rows are kept here (as tuples: cheap to make,
# untracked by the garbage collector, handed to the writer as columns).
COLUMNS = ("gpu", "t_ns", "kind", "name", "condition", "gap_ms", "iteration", "warmup",
           "start_ns", "end_ns", "gpu_ms", "host_start_ns", "host_enqueued_ns", "host_end_ns",
           "error", "region_id", "stream", "stream_source", "outside_ms")
assert list(COLUMNS) == table_columns("inferences"), "region.COLUMNS must follow trace.py"


class _Pending:
    """One open or outstanding region: what its row will say, and its events."""

    __slots__ = ("kind", "name", "source", "labels", "rid", "ev0", "ev1", "anchor", "handle",
                 "stream", "h0", "h1", "host_end_ns", "idle_ns")

    def __init__(self, kind: str, name: str, ref: StreamRef, labels: tuple[Any, ...], rid: int):
        self.kind, self.name, self.labels, self.rid = kind, name, labels, rid
        self.handle, self.source = ref  # the raw stream handle, and why that stream
        self.ev0: Any = None
        self.ev1: Any = None
        self.anchor: Anchor | None = None
        self.stream: Any = None  # the binding's stream object
        self.h0 = self.h1 = 0  # host: before the start event, after the end event was enqueued
        self.host_end_ns: int | None = None
        self.idle_ns: int | None = None  # checked regions: when the whole device was idle

    def row(self, gpu: int, error: str | None = None, start: int | None = None,
            end: int | None = None, ms: float | None = None) -> tuple[Any, ...]:
        """The region's row (COLUMNS order); without GPU times until resolved."""
        condition, gap_ms, iteration, warmup, err = self.labels
        outside = None if self.idle_ns is None or end is None else (self.idle_ns - end) / 1e6
        return (gpu, self.h0 if start is None else start, self.kind, self.name, condition,
                gap_ms, iteration, warmup, start, end, ms, self.h0, self.h1 or None,
                self.host_end_ns, err or error, self.rid, self.handle, self.source, outside)


class RegionTimer:
    """Times regions with pooled CUDA events and resolves them lazily into `inferences` rows."""

    def __init__(self, runtime: Any, clock: Clock, timebase: EventTimebase,
                 sink: Callable[[str, dict[str, list[Any]]], None], gpu: int,
                 tracer: Any = None, check_every: int = CHECK_EVERY,
                 max_pending: int = MAX_PENDING):
        """`sink(table, columns)` takes the resolved rows (the writer's add_columns)."""
        self._rt, self._clock, self._tb, self._sink = runtime, clock, timebase, sink
        self._gpu, self._tracer = gpu, tracer
        self._check_every, self._max_pending = check_every, max_pending
        self._free: list[tuple[Any, Any]] = []
        self._pending: deque[_Pending] = deque()
        self._streams: dict[int, Any] = {}  # handle -> the binding's stream object
        self._last_poll_ns = 0
        self._seq = 0
        self.depth = 0  # regions open (spans may nest inside inferences)
        self.last_ms: float | None = None
        self.stats = {"regions": 0, "checked": 0, "forced_waits": 0, "event_pairs": 0,
                      "background_polls": 0}
        # One resolver at a time: this thread, or the writer's thread (background_poll) while
        # the program does nothing gpuwatch sees. Anchors change under it too.
        self._lock = threading.Lock()
        self._completed = getattr(runtime, "completed", runtime.query)  # costs no host time
        self._bound = threading.local()

    # -- the hot path ---------------------------------------------------------------------------
    def begin(self, kind: str, name: str, ref: StreamRef, labels: tuple[Any, ...]) -> _Pending:
        """Everything before the start event, then the start event. Raises (with a row kept)
        if the GPU fails before the region starts. `labels`: (condition, gap_ms, iteration,
        warmup, error) for its row."""
        rid = self._seq
        self._seq = rid + 1
        p = _Pending(kind, name, ref, labels, rid)
        now = self._clock.now_ns
        check = top = self.depth == 0
        if top:
            t = now()
            pending = self._pending  # a GPU error found here is raised with its region's row
            if pending and (len(pending) >= BATCH or t - self._last_poll_ns >= POLL_NS):
                self.poll()
            every = self._check_every
            check = every > 0 and (rid < CHECK_FIRST or rid % every == 0)
        device = p.source == DEVICE
        try:
            if top and (t >= self._tb.next_anchor_ns or self._tracer is not None):
                self._between_regions(t)
            p.ev0, p.ev1 = self._free.pop() if self._free else self._new_pair()
            if device:  # events on the private idle stream, the device synchronised around
                p.stream, p.handle = self._tb.stream.handle, self._tb.stream.ptr
            else:
                p.stream = self._streams.get(p.handle)
                if p.stream is None:
                    p.stream = self._streams[p.handle] = self._rt.native_stream(p.handle)
            if device or check:
                self._rt.synchronize_device()
                p.idle_ns = None if device else -1  # -1: find out at end()
            p.anchor = self._tb.current
            p.h0 = now()
            if self._tracer is None:
                self._rt.record(p.ev0, p.stream)
            else:
                self._record_tagged(p.ev0, event_tag(rid, False), p.stream)
        except Exception as e:  # the GPU failed before the region began: a row says so
            p.h0 = p.h0 or now()
            self._emit([p.row(self._gpu, _text(e))])
            raise
        self.depth += 1
        return p

    def end(self, p: _Pending, error: BaseException | None) -> None:
        """The end event first, then bookkeeping. Raises a GPU failure of the end event (after
        the row is kept) unless the call itself raised."""
        self.depth -= 1
        try:
            if p.source == DEVICE:
                self._rt.synchronize_device()
            if self._tracer is None:
                self._rt.record(p.ev1, p.stream)
            else:
                self._record_tagged(p.ev1, event_tag(p.rid, True), p.stream)
            p.h1 = self._clock.now_ns()
            if p.idle_ns is not None:  # checked: when did the whole device go idle?
                self._rt.synchronize_device()
                p.idle_ns = self._clock.now_ns()
                self.stats["checked"] += 1
        except Exception as e:
            self.stats["regions"] += 1
            # its events are dropped, not reused
            self._emit([p.row(self._gpu, _text(e if error is None else error))])
            if error is None:
                raise
            return
        if error is not None:
            p.labels = p.labels[:4] + (_text(error),)
        self.stats["regions"] += 1
        self._pending.append(p)
        if len(self._pending) > self._max_pending:
            self._wait_oldest()

    def _between_regions(self, now_ns: int) -> None:
        """Housekeeping while no region is open: a stale anchor, the kernel tracer's records."""
        if self._tb.due(now_ns):
            with self._lock:
                self._tb.anchor()
        if self._tracer is not None:
            self._tracer.poll()

    # -- resolution -----------------------------------------------------------------------------
    def poll(self) -> None:
        """Resolve every region whose end event has completed, oldest first; stop at the first
        that has not (rows stay in order). Raises a GPU error found on the way, after the rows
        before it (and its own, with the error) are kept."""
        with self._lock:
            self._poll(self._rt.query, background=False)

    def background_poll(self) -> None:
        """From another thread (the trace writer's, about once a second): resolve what has
        completed, so that a crash loses only the last moments even when the program has
        stopped timing regions. Leaves GPU errors for the program's own thread to find."""
        if not self._pending or not self._lock.acquire(blocking=False):
            return
        try:
            if not getattr(self._bound, "done", False):
                bind = getattr(self._rt, "bind_thread", None)
                if bind is not None:
                    bind()
                self._bound.done = True
            self.stats["background_polls"] += 1
            self._poll(self._completed, background=True)
        except Exception:
            pass  # the program's thread meets it at its next region or at close
        finally:
            self._lock.release()

    def _poll(self, done: Callable[[Any], bool], background: bool) -> None:
        self._last_poll_ns = self._clock.now_ns()
        pending, rows = self._pending, []
        try:
            while pending:
                p = pending[0]
                if not done(p.ev1):
                    break
                row = self._resolve(p)
                pending.popleft()
                rows.append(row)
        except Exception as e:
            if pending and not background:
                bad = pending.popleft()
                rows.append(bad.row(self._gpu, _text(e)))  # (the call's own error wins)
            raise
        finally:
            self._emit(rows)
            self._tb.release_before(pending[0].anchor if pending else None)

    def drain(self) -> None:
        """Wait for and resolve every outstanding region (the session is ending). If the GPU
        fails (a sticky error: no event can be read any more), every outstanding region is
        still written, with the error, and the error is raised."""
        while True:
            with self._lock:
                if not self._pending:
                    return
                ev = self._pending[0].ev1
            try:
                self._rt.synchronize(ev)
                self.poll()
            except Exception as e:
                with self._lock:
                    left = list(self._pending)
                    self._pending.clear()
                # their times cannot be read any more: say why
                self._emit([p.row(self._gpu, _text(e)) for p in left])
                raise

    def synced(self, handle: int, host_ns: int) -> None:
        """The program synchronised stream `handle` (a gpuwatch engine's synchronize()): its
        regions are complete, and `host_ns` is when the host learnt it (host_end_ns)."""
        with self._lock:
            for p in self._pending:
                if p.handle == handle and p.host_end_ns is None:
                    p.host_end_ns = host_ns
        self.poll()

    def _resolve(self, p: _Pending) -> tuple[Any, ...]:
        tb = self._tb
        ms = self._rt.elapsed_ms(p.ev0, p.ev1)
        start = tb.to_ns(p.anchor, p.ev0)  # type: ignore[arg-type]
        row = p.row(self._gpu, None, start, start + tb.span_ns(ms), ms)
        self._free.append((p.ev0, p.ev1))  # (only this thread pops: list ops are atomic)
        if p.kind == "inference":
            self.last_ms = ms
        return row

    def _emit(self, rows: list[tuple[Any, ...]]) -> None:
        """Hand rows to the writer, as columns."""
        if rows:
            self._sink("inferences", dict(zip(COLUMNS, map(list, zip(*rows)))))

    def _wait_oldest(self) -> None:
        self.stats["forced_waits"] += 1
        self._rt.synchronize(self._pending[0].ev1)
        self.poll()

    def _new_pair(self) -> tuple[Any, Any]:
        self.stats["event_pairs"] += 1
        return self._rt.event(), self._rt.event()

    def _record_tagged(self, event: Any, tag: int, stream: Any) -> None:
        """Record `event`, tagged for the kernel tracer (CUPTI: this record is region rid's
        start or end)."""
        tracer = self._tracer
        tracer.mark(tag)
        try:
            self._rt.record(event, stream)
        finally:
            tracer.unmark()

    def summary(self) -> dict[str, Any]:
        return {**self.stats, "pending_max": self._max_pending, "check_every": self._check_every,
                "check_first": CHECK_FIRST}


def _text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
