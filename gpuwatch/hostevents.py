"""Host events of the recording process itself (schema v4's `host_events` table).

- `GcRecorder`: one `gc` row per garbage collection, from `gc.callbacks`. A collection stops
  the thread that triggered it (and, holding the GIL, every other Python thread): inside a
  timed region it is latency the user sees. The session installs it when it starts and removes
  it when it closes; the writer's thread hands its rows to the trace about once a second.
- `ThreadNames`: the recording process's Python thread names, for the sampler's `thread` rows.
  Only this process knows them, and the sampler runs in a process of its own: the writer's
  thread (off the timed path, about once a second) writes {native id: name} of
  `threading.enumerate()` into a small file in the trace's `.partial` directory when it has
  changed, and the sampler re-reads the file when it has changed. (Simpler than a second channel
  to the sampler process: no lock shared with the protocol's stdin, nothing to drain, and a
  recording that dies leaves the names with its chunks.) A thread that starts and ends within
  a second may never be named: its row carries the kernel's name (comm).
"""

from __future__ import annotations

import gc
import json
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["GcRecorder", "ThreadNames", "python_thread_names", "THREAD_NAMES_FILE"]

THREAD_NAMES_FILE = "threads.json"  # in the recording's .partial directory
# Collections kept until the writer takes them (about a second's worth: allocation-heavy code
# collects generation 0 some thousands of times a second); beyond, the oldest are dropped and
# counted in the metadata.
MAX_PENDING_GC = 65_536

# The running threads by threading.get_ident(). threading.current_thread() would create a
# _DummyThread, taking threading's limbo lock, for a thread not started by `threading` (a
# library's C thread that calls into Python): that lock may be held by the very code whose
# allocation triggered the collection. A plain dict lookup cannot block.
_ACTIVE: Mapping[int, threading.Thread] = getattr(threading, "_active", {})


class GcRecorder:
    """Records every garbage collection of this process: when it started and stopped (on the
    raw host counter, as the timed path reads it), its generation, the objects it collected, and
    the thread that triggered it (native id, Python name).

    The callback runs in whichever thread triggered the collection, possibly inside a timed
    region: it reads the counter and appends a tuple to a deque (atomic under the GIL; Python
    runs one collection at a time, so the start time needs one slot and no lock). Measured here
    (2 cores, Python 3.11): ~1.9 us per collection, ~0.9-1.7 us of it CPython building the info
    dict and calling any callback at all; a collection of generation 0 alone costs ~0.1 us.
    """

    def __init__(self, counter: Callable[[], int], offset_ns: int,
                 maxlen: int = MAX_PENDING_GC):
        """`counter`, `offset_ns`: the session's clock (HostClock.counter()): a time on the
        trace's time base is counter() + offset_ns."""
        self._counter, self._offset = counter, offset_ns
        # (start, end, generation, collected, native id, the Python thread or None)
        self._pending: deque[tuple[int, int, int, int, int, threading.Thread | None]] = \
            deque(maxlen=maxlen)
        self._start = 0
        self.collections = 0  # seen while installed (rows taken + pending + dropped)
        self.taken = 0
        self._cb = self._callback  # (one bound method: the one to remove again)
        self._installed = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = self._counter()
            return
        self._pending.append((self._start, self._counter(), info["generation"],
                              info["collected"], threading.get_native_id(),
                              _ACTIVE.get(threading.get_ident())))
        self.collections += 1

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._cb)
            self._installed = True

    def remove(self) -> None:
        if self._installed:
            self._installed = False
            try:
                gc.callbacks.remove(self._cb)
            except ValueError:  # (the program cleared gc.callbacks itself)
                pass

    def take(self, gpu: int) -> list[dict[str, Any]]:
        """The collections recorded since the last call, as `host_events` rows."""
        rows = []
        off, pending = self._offset, self._pending
        while True:
            try:
                start, end, gen, collected, tid, thread = pending.popleft()
            except IndexError:
                break
            rows.append({"gpu": gpu, "t_ns": start + off, "end_ns": end + off, "kind": "gc",
                         "generation": gen, "collected": collected, "tid": tid,
                         "name": thread.name if thread is not None else None})
        self.taken += len(rows)
        return rows

    def summary(self) -> dict[str, int]:
        """For the trace metadata (`host_events`): collections seen, and those dropped."""
        return {"gc_collections": self.collections,
                "gc_dropped": max(0, self.collections - self.taken - len(self._pending))}


def python_thread_names() -> dict[int, str]:
    """This process's Python threads: native thread id -> name."""
    return {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}


class ThreadNames:
    """The recording process's Python thread names in a small JSON file: `publish()` there
    (writes only when they changed; atomically), `read()` in the sampler (re-reads only when
    the file changed; {} where there is none)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()  # (published from the writer's and the timed thread)
        self._written: dict[int, str] | None = None
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._names: dict[int, str] = {}

    def publish(self, names: Mapping[int, str] | None = None) -> None:
        names = dict(python_thread_names() if names is None else names)
        if names == self._written:
            return
        with self._lock:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({str(k): v for k, v in names.items()}))
            os.replace(tmp, self.path)
            self._written = names

    def read(self) -> dict[int, str]:
        try:
            st = os.stat(self.path)
        except OSError:
            return self._names
        if (st.st_mtime_ns, st.st_size) != self._seen:
            try:
                self._names = {int(k): str(v) for k, v in
                               json.loads(self.path.read_bytes()).items()}
                self._seen = (st.st_mtime_ns, st.st_size)
            except (OSError, ValueError, AttributeError):
                pass  # (replaced while read: the next call reads it)
        return self._names
