"""_autoregions.c's GapRegions, RangeHook and NestedCall (beside this file) in Python: the
reference the C code follows, and what `gpuwatch run`'s hooks (autoregions) use where the C
module was not built or GPUWATCH_NATIVE=0. GapRegions owns the hooks' regions: one open at a
time, by the thread that opened it; nested ranges and calls counted, not timed; other threads'
counted as concurrent; each region labelled by the host gap before it.
tests/test_autoregions.py runs every test on both (the `impl` fixture)."""

from __future__ import annotations

import bisect
import sys
import threading
import time
from typing import Any, Callable


class _Gaps:
    """gpuwatch/regions/_autoregions.c's GapRegions in Python, where the C module was not built (see
    there for what each method does)."""

    def __init__(self, edges_ms: tuple[float, ...], labels: tuple[str, ...],
                 counts: dict[str, int], names: dict[type, str], kind: str):
        self._edges, self._labels = edges_ms, labels
        self._counts, self._kind = counts, kind
        self._iterations = [0] * len(labels)
        self._depth = self.live = 0
        self._owner = 0  # the thread whose region is open
        self.concurrent = 0  # ranges and calls of other threads meanwhile: not timed
        self._foreign: dict[int, int] = {}  # thread -> its ranges pushed meanwhile, open
        self.last_end_ns = -1  # perf_counter_ns; -1: no region yet
        self._timed: Any = None
        self._open_slow: Any = None
        self._close_slow: Any = None
        self._open: Any = None  # the open region's pending record

    def arm(self, timed: Callable[..., Any], fs: Any, open_slow: Callable[..., Any],
            close_slow: Callable[..., Any]) -> None:
        self._timed, self._open_slow, self._close_slow = timed, open_slow, close_slow

    @property
    def depth(self) -> int:
        """Regions open (read-only: only these methods open and close them)."""
        return self._depth

    @property
    def owner(self) -> int:
        """The thread whose region is open (read-only)."""
        return self._owner

    @property
    def is_open(self) -> bool:
        return self._open is not None

    def mine(self) -> bool:
        return bool(self._depth) and threading.get_ident() == self._owner

    def close_open(self, error: BaseException | None) -> None:
        if self._depth > 1:
            self._depth = 1
        self._owner = threading.get_ident()  # (whichever thread opened it)
        self.end(error)

    def labels(self) -> tuple[Any, ...]:
        last = self.last_end_ns
        if last < 0:
            gap, i = None, len(self._edges)
        else:
            gap = (time.perf_counter_ns() - last) / 1e6
            i = max(0, bisect.bisect_right(self._edges, gap) - 1)
        it = self._iterations[i]
        self._iterations[i] = it + 1
        return (self._labels[i], gap, it, gap is None, None)

    def ended(self) -> None:
        self.last_end_ns = time.perf_counter_ns()

    def _count(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1

    def _where(self, me: int) -> int:
        """1 nested in its own region, 2 inside its own untimed work, 3 another thread's region
        is open, 0 free to open one."""
        if self._depth and me == self._owner:
            return 1
        if self._foreign.get(me, 0):
            return 2
        return 3 if self._depth else 0

    def busy(self) -> bool:
        return self._where(threading.get_ident()) > 0

    def begin(self, name: str, key: str) -> bool:
        if not self.live and not self._depth:
            return False
        me = threading.get_ident()
        where = self._where(me)
        if where == 1:
            self._depth += 1
            return False
        if where:
            self.concurrent += where == 3
            self._foreign[me] = self._foreign.get(me, 0) + 1
            return False
        if not self.live:
            return False
        labels = self.labels()
        self._depth = 1
        self._owner = threading.get_ident()
        try:
            p = self._open_slow(self._kind, name, labels)
        except BaseException as e:
            self._depth = 0
            if isinstance(e, Exception):  # a failed start event: its row says so
                self._count(key)
            raise
        if p is None:  # no session
            self._depth = 0
            return False
        self._open = p
        self._count(key)
        return True

    def end(self, error: BaseException | None) -> None:
        depth = self._depth
        if self._foreign or (depth and threading.get_ident() != self._owner):
            me = threading.get_ident()
            n = self._foreign.pop(me, 0)
            if n > 1:
                self._foreign[me] = n - 1
            if n or (depth and me != self._owner):
                return
        if depth > 1:
            self._depth = depth - 1
        if depth != 1:
            return
        p, self._open = self._open, None
        try:
            if p is not None:
                self._close_slow(p, error)
        finally:
            self._depth = 0
            self.ended()

    def call(self, name: str, key: str, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any] | None, handle: int | None = None,
             source: str | None = None) -> Any:
        if not self.live or self._timed is None:
            return fn(*args, **(kwargs or {}))
        me = threading.get_ident()
        where = self._where(me)
        if where == 3:  # another thread's region is open: untimed, counted
            self.concurrent += 1
            self._foreign[me] = self._foreign.get(me, 0) + 1
            try:
                return fn(*args, **(kwargs or {}))
            finally:
                n = self._foreign.pop(me, 1) - 1
                if n:
                    self._foreign[me] = n
        if where:
            return fn(*args, **(kwargs or {}))
        labels = self.labels()
        self._depth = 1
        self._owner = threading.get_ident()
        self._count(key)
        try:
            return self._timed(self._kind, name, labels, fn, args, kwargs, handle, source)
        finally:
            self._depth = 0
            self.ended()


def _nested_call(orig: Callable[..., Any], call: Callable[..., Any],
                 g: Any) -> Callable[..., Any]:
    """_autoregions.c's NestedCall in Python: torch.nn.Module.__call__ made a region by `call`
    (orig, (module, *args), kwargs), unless a region is open on this thread (a submodule, or a
    model inside an NVTX range): then orig alone."""
    def outer(module: Any, *args: Any, **kwargs: Any) -> Any:
        if g.mine():
            return orig(module, *args, **kwargs)
        return call(orig, (module, *args), kwargs)
    return outer


def _range_hook(g: Any, orig: Callable[..., Any], prefix: str | None,
                key: str | None) -> Callable[..., Any]:
    """gpuwatch/regions/_autoregions.c's RangeHook in Python: a push (orig, then a region opens; its
    name is `prefix` and the message) or, with prefix None, a pop (the region closes, then
    orig). (The push before the start event and the pop after the end event.)"""
    if prefix is None:
        def popped(*args: Any, **kwargs: Any) -> Any:
            try:
                g.end(_range_error(sys.exc_info()[1]))  # (being handled: the region's)
            except BaseException:
                orig(*args, **kwargs)  # the program's pop still runs (its error wins)
                raise
            return orig(*args, **kwargs)
        return popped

    def pushed(*args: Any, **kwargs: Any) -> Any:
        out = orig(*args, **kwargs)
        msg = args[0] if args else kwargs.get("message", kwargs.get("msg"))
        g.begin(prefix + ("range" if msg is None else str(msg)), key)
        return out
    return pushed


def _range_error(e: BaseException | None) -> BaseException | None:
    """The exception being handled as a range pops, if it is an error of the region's: not a
    generator closed (GeneratorExit), nor sys.exit(0) or sys.exit() (RangeHook's range_error)."""
    if isinstance(e, GeneratorExit) or (isinstance(e, SystemExit) and e.code in (None, 0)):
        return None
    return e
