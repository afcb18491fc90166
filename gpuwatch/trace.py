"""Trace format v1: one Parquet file per run, several tables in it, one time base.

Layout (documented in docs/trace-format.md):
- Every row has `table_name` (`table` before v3: "inferences", "samples", "driver_samples",
  "kernels", "events", "processes" or "host_events"), `gpu` and `t_ns`.
- Each table has its own further columns (TABLE_COLUMNS); the file's schema is their union, and
  each row group holds rows of one table only, so a reader that filters on `table` skips the rest.
- Times are int64 nanoseconds since the Unix epoch (metadata `time_base`).
- Run metadata is JSON under the Parquet key-value metadata key `gpuwatch`.

While recording, rows are streamed as small self-contained Parquet chunks into `<out>.partial/`
(bounded memory; a crash loses at most the unflushed tail). Closing merges the chunks into
`<out>` through a temporary file and an atomic rename, then removes the directory. `load()` reads
a finished file, or recovers a `.partial` directory left by a crash, with a warning.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import tablecolumns
from .lazy import Later, Lazy, pending
from .errors import TraceFormatError, TraceWriteError, UsageError
from .fields import FIELDS
from .log import logger

if TYPE_CHECKING:  # (pandas is imported by the reader only: recording never needs it)
    import pandas as pd

# v2: inferences.sm_clock_inband_mhz. v3: the discriminator column is `table_name` (was `table`,
# a word SQL reserves), every column's unit is in its Arrow field metadata, and time columns are
# delta-encoded. v4: the host's own causes: samples.host_others_run_ns, host_steal_ns,
# host_minflt, host_majflt, host_voluntary_switches, and the host_events table (garbage
# collections, the other threads' CPU time); within v4 later, samples.host_cpu_freq_mhz (NA
# where unknown: a v4 file from before it lacks the column and loads with it NA, which is all
# that absence can mean). Every older trace keeps loading.
SCHEMA_VERSION = 4
META_KEY = b"gpuwatch"
TABLES = ("inferences", "samples", "driver_samples", "kernels", "events", "processes",
          "host_events")
# kinds of kernels-table rows that are not the program's GPU work: gpuwatch's own records, and
# the program's waits for the GPU
NOT_WORK_KINDS = ("cuda_event", "probe", "sync", "ctx_switch")  # (ctx_switch: CUPTI, not work)

KIND = "table_name"  # which table a row belongs to
LEGACY_KIND = "table"  # its name in schema v1-v2 traces and chunks
_COMMON: list[tuple[str, pa.DataType]] = [
    (KIND, pa.dictionary(pa.int8(), pa.string())),
    ("gpu", pa.int16()),  # device index within the run (metadata `devices`)
    ("t_ns", pa.int64()),  # the row's time: inference/kernel start, sample reading time
]

TABLE_COLUMNS: dict[str, list[tuple[str, pa.DataType]]] = {
    "inferences": [
        ("kind", pa.string()),  # "inference" or "span"
        ("name", pa.string()),  # engine or span name
        ("condition", pa.string()),  # e.g. "gap=20ms"
        ("gap_ms", pa.float64()),  # the condition's target idle gap; NA outside a sweep
        ("iteration", pa.int64()),  # negative for warm-up iterations
        ("warmup", pa.bool_()),
        ("start_ns", pa.int64()),  # GPU start (CUDA event), time base
        ("end_ns", pa.int64()),  # GPU end (CUDA event), time base
        ("gpu_ms", pa.float64()),  # CUDA-event elapsed time: the latency gpuwatch reports
        ("host_start_ns", pa.int64()),  # host, just before the start event was enqueued
        ("host_enqueued_ns", pa.int64()),  # host, after the end event was enqueued
        ("host_end_ns", pa.int64()),  # host, when a gpuwatch engine's synchronize() returned
        ("error", pa.string()),  # exception raised inside the timed region, if any
        ("region_id", pa.int64()),  # the session's sequence number of this region
        ("stream", pa.int64()),  # the raw CUstream handle the events went on (0: legacy)
        ("stream_source", pa.string()),  # why that stream (streams.StreamRef.source)
        # Checked regions only: how long after the end event the whole device went idle (ms):
        # GPU work the events did not bracket. NA where the region was not checked.
        ("outside_ms", pa.float64()),
        # The mean SM clock between in-band stamps just before the start event and just after
        # the end event (SM cycles over GPU-timer ns; schema v2). NA where not probed.
        ("sm_clock_inband_mhz", pa.float64()),
    ],
    "samples": [("poll_ns", pa.int64())]  # how long the telemetry read took
    + [(f.name, f.type) for f in FIELDS],
    # Values the driver buffered with its own timestamps (nvmlDeviceGetSamples), long format.
    "driver_samples": [
        ("field", pa.string()),  # a samples column name, e.g. "power_w", "gpu_util_pct"
        ("value", pa.float64()),
    ],
    "kernels": [
        # "kernel", "memcpy", "memset", "cuda_event"; "probe": gpuwatch's own clock stamps;
        # "sync": the program waited for the GPU (start/end: the host call; name: what it
        # waited for, e.g. "context_synchronize")
        ("kind", pa.string()),
        ("name", pa.string()),
        ("start_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("stream_id", pa.int64()),
        # kernels and copies: CUPTI's correlation id of the launching API call; cuda_event
        # rows: the region's tag (labels.event_tag: 2 * region_id, + 1 for the end event)
        ("correlation_id", pa.int64()),
        ("bytes", pa.int64()),
        # cuda_event rows: CUPTI's correlation id of the event-record call (API calls are
        # numbered in order, so kernels launched inside a region fall between its two)
        ("api_correlation_id", pa.int64()),
    ],
    # The GPU's running processes, about once a second (schema v2): this one (`own`) and any
    # other, with NVML's per-process SM and memory utilisation where the driver gives it.
    "processes": [
        ("pid", pa.int64()),
        ("own", pa.bool_()),  # the recording process itself
        ("used_mib", pa.float64()),
        ("sm_util_pct", pa.float64()),
        ("mem_util_pct", pa.float64()),
    ],
    "events": [
        ("kind", pa.string()),  # "error", "warning", "condition", "note"
        ("name", pa.string()),  # e.g. the field or subsystem concerned
        ("message", pa.string()),
    ],
    # The recording process's own host events (schema v4; real GPUs and the stand-in):
    # "gc": a garbage collection, t_ns..end_ns, in thread `tid` (`name`: its Python name);
    # "thread": about once a second, each other thread that ran since its previous row, with
    # its cumulative CPU time (`name`: its Python name, else the kernel's comm).
    "host_events": [
        ("kind", pa.string()),  # "gc" or "thread"
        ("end_ns", pa.int64()),  # gc: when the collection stopped
        ("tid", pa.int64()),  # the thread's native id (threading.get_native_id)
        ("name", pa.string()),
        ("generation", pa.int64()),  # gc: the generation collected
        ("collected", pa.int64()),  # gc: objects it freed
        ("run_ns", pa.int64()),  # thread: cumulative CPU time (schedstat)
    ],
}


# Units by name suffix (the telemetry fields carry their own, fields.FIELDS); in each field's
# metadata as b"unit" (schema v3), so tools need not parse names.
_SUFFIX_UNITS = (("_ns", "ns"), ("_ms", "ms"), ("_mhz", "MHz"), ("_w", "W"), ("_pct", "%"),
                 ("_mib", "MiB"), ("_c", "degC"), ("_mj", "mJ"))
# Times on the trace's time base: ns since the Unix epoch (see the metadata's `time_base`)
TIME_COLUMNS = ("t_ns", "start_ns", "end_ns", "host_start_ns", "host_enqueued_ns", "host_end_ns")


def _field(name: str, typ: pa.DataType) -> pa.Field:
    units = {f.name: (f.unit, f.description) for f in FIELDS}
    meta: dict[bytes, bytes] = {}
    if name in units:
        unit, what = units[name]
        meta[b"description"] = what.encode()
    else:
        unit = next((u for suffix, u in _SUFFIX_UNITS if name.endswith(suffix)), "")
    if name == "bytes":
        unit = "bytes"
    if unit:
        meta[b"unit"] = unit.encode()
    if name in TIME_COLUMNS:
        meta[b"time_base"] = b"ns since the Unix epoch (UTC)"
    return pa.field(name, typ, metadata=meta or None)


def _union_schema() -> pa.Schema:
    cols: dict[str, pa.DataType] = dict(_COMMON)
    for table_cols in TABLE_COLUMNS.values():
        for name, typ in table_cols:
            if name in cols and cols[name] != typ:
                raise AssertionError(f"column {name} has two types in the trace schema")
            cols.setdefault(name, typ)
    return pa.schema([_field(n, t) for n, t in cols.items()])


SCHEMA = _union_schema()
# Each table's own columns (as typed in SCHEMA): what a chunk holds. Readers read chunks with
# SCHEMA, which fills the other tables' columns with nulls; converting rows against 20 columns
# instead of 50 halves the writer's time (it holds the recording process's GIL meanwhile).
TABLE_SCHEMAS = {t: pa.schema([SCHEMA.field(n) for n in [KIND] + table_cols])
                 for t, table_cols in ((t, [n for n, _ in _COMMON if n != KIND]
                                        + [n for n, _ in cols])
                                       for t, cols in TABLE_COLUMNS.items())}


STRING_COLUMNS = [f.name for f in SCHEMA if pa.types.is_string(f.type)]
# Rows per row group of a finished trace: big enough for fast scans, small enough that the
# final merge of an hour's recording stays light (benchmarks/results/long_run).
ROW_GROUP_ROWS = 65_536


def table_columns(table: str) -> list[str]:
    """Column names of one table, common columns first."""
    return [n for n, _ in _COMMON if n != KIND] + [n for n, _ in TABLE_COLUMNS[table]]


MAX_PENDING_ROWS = 20_000  # rows waiting for the writer before producers wait for it


class ChunkWriter:
    """Streams rows into self-contained Parquet chunk files in a directory.

    Thread-safe: the sampler thread and the inference thread both append; a background thread
    writes, so recording threads only extend lists. A separate sampler process runs its own
    ChunkWriter on the same directory with another `prefix`.
    """

    def __init__(self, directory: Path, prefix: str = "c", flush_rows: int = 5_000,
                 flush_interval_s: float = 1.0):
        self.directory, self._prefix = Path(directory), prefix
        self._flush_rows, self._flush_interval = flush_rows, flush_interval_s
        self._buffers: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
        # Column batches (add_columns): cheaper to build and to convert than dict rows.
        self._columns: dict[str, list[Mapping[str, Sequence[Any]]]] = {t: [] for t in TABLES}
        self._column_rows = 0
        self._pending = 0  # rows buffered, of both kinds (what _hold_back bounds)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._drained = threading.Condition(self._lock)  # the writer took the buffers
        self._seq = 0
        self._closed = False
        self.error: BaseException | None = None
        # Called in the writer's thread before each flush (the region timer resolves what has
        # completed, so a crash loses only the last moments); its errors are ignored.
        self.before_flush: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._flusher, name="gpuwatch-writer", daemon=True)
        self._thread.start()

    def add(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("trace writer is closed")
            if self.error is not None:  # writing failed: recording has stopped (never buffer)
                return
            buf = self._buffers[table]
            before = len(buf)
            buf.extend(rows)
            self._pending += len(buf) - before
            if len(buf) >= self._flush_rows:
                self._wake.notify()
            if self._pending > MAX_PENDING_ROWS:
                self._hold_back()

    def add_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Rows given as equally long columns, by name (columns left out are null)."""
        n = len(next(iter(columns.values()), ()))
        if not n:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("trace writer is closed")
            if self.error is not None:
                return
            self._columns[table].append(columns)
            self._column_rows += n
            self._pending += n
            if self._column_rows >= self._flush_rows:
                self._wake.notify()
            if self._pending > MAX_PENDING_ROWS:
                self._hold_back()

    def _hold_back(self) -> None:
        """(Lock held.) If rows pile up faster than they are written (a simulated GPU runs
        faster than real time; a slow disk), wait for the writer: memory stays bounded, and a
        crash loses at most MAX_PENDING_ROWS rows. At a real GPU's rates it never waits. The
        writer's own thread (rows added by its before_flush hook) never waits: only it could
        end the wait."""
        if threading.current_thread() is self._thread:
            return
        while (self._pending > MAX_PENDING_ROWS and self.error is None and not self._closed
               and self._thread.is_alive()):
            self._wake.notify()
            self._drained.wait(0.5)

    def _take(self) -> tuple[dict[str, list[dict[str, Any]]],
                             dict[str, list[Mapping[str, Sequence[Any]]]]]:
        """(Lock held.) Everything buffered, by table, and the buffers emptied."""
        batches = {t: b for t, b in self._buffers.items() if b}
        col_batches = {t: b for t, b in self._columns.items() if b}
        self._buffers = {t: [] for t in TABLES}
        self._columns = {t: [] for t in TABLES}
        self._column_rows = self._pending = 0
        return batches, col_batches

    def _flusher(self) -> None:
        while True:
            with self._lock:
                if not self._closed:
                    self._wake.wait(self._flush_interval)
                closed = self._closed
            hook = self.before_flush
            if hook is not None and not closed:
                try:
                    hook()
                except Exception:
                    pass
            with self._lock:
                batches, col_batches = self._take()
                closed = self._closed
                self._drained.notify_all()
            try:
                for table in TABLES:
                    if table in batches or table in col_batches:
                        self._write_chunk(table, batches.get(table, []),
                                          col_batches.get(table, []))
            except BaseException as e:  # disk full, I/O error, quota: recording stops here
                with self._lock:
                    self.error = e
                    self._take()  # dropped: nothing more is buffered
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                logger.error("cannot write the trace to %s: %s; recording stops here (what was "
                             "written before is kept)", self.directory, why)
                return
            if closed:
                return

    def _write_chunk(self, table: str, rows: list[dict[str, Any]],
                     col_batches: Sequence[Mapping[str, Sequence[Any]]] = ()) -> None:
        schema = TABLE_SCHEMAS[table]
        parts = []
        if rows:
            for row in rows:
                row[KIND] = table
            parts.append(pa.Table.from_pylist(rows, schema=schema))
        for cols in col_batches:
            n = len(next(iter(cols.values())))
            parts.append(pa.Table.from_arrays(
                [_table_column(table, n, f.type) if f.name == KIND else
                 pa.array(cols[f.name], type=f.type) if f.name in cols else
                 pa.nulls(n, f.type) for f in schema], schema=schema))
        tbl = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        self._seq += 1
        name = self.directory / f"{self._prefix}{self._seq:07d}-{table}.parquet"
        tmp = name.with_suffix(".tmp")
        pq.write_table(tbl, tmp)
        os.replace(tmp, name)  # a chunk is either whole or absent

    def close(self) -> None:
        """Write what is buffered and stop. Raises if a chunk could not be written."""
        with self._lock:
            already, self._closed = self._closed, True
            self._wake.notify()
        if not already:
            self._thread.join()
        if self.error is not None:
            e = self.error
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise TraceWriteError(f"could not write the trace to {self.directory}: {why}; "
                                  f"recording stopped there") from e


def _table_column(table: str, n: int, typ: pa.DataType) -> pa.Array:
    """The `table_name` column of a chunk: one dictionary value, n times."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int8)),
                                          pa.array([table], type=typ.value_type))


def use_system_allocator() -> Any:
    """Make the system allocator pyarrow's default while recording; returns the previous pool
    (None if left alone). Arrow's default (mimalloc) keeps what it frees for reuse, so chunk
    writing left the recording process bigger (benchmarks/results/long_run). Buffers remember
    their own pool, so switching is safe; an explicit ARROW_DEFAULT_MEMORY_POOL is respected."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return None
    prev = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    return prev


class TraceWriter:
    """The trace being recorded: chunks plus metadata in `<out>.partial/`, merged on close."""

    def __init__(self, path: str | os.PathLike[str], meta: Mapping[str, Any],
                 flush_interval_s: float = 1.0, overwrite: bool = False):
        self.path = Path(path)
        check_output(self.path, overwrite)
        # pyarrow imports pandas (where installed) on its first pa.array(): now, before there
        # is a .partial to leave behind (the import takes ~0.3 s: a Ctrl-C may land in it),
        # and not in the first flush, which may come at interpreter exit (a session never
        # closed), where pandas' import fails ("can't register atexit after shutdown")
        pa.array(np.zeros(1, np.int8))
        self.partial_dir = partial_path(self.path)
        self._lock_fd = _claim_partial(self.partial_dir, self.path)
        self.meta: dict[str, Any] = dict(meta)
        self.meta.setdefault("schema_version", SCHEMA_VERSION)
        # Who writes this .partial: `finish` refuses it while that process lives, even with
        # its lock file removed (a pid alone could be a later process's: its start time too).
        self.meta["writer"] = {"hostname": socket.gethostname(), "pid": os.getpid(),
                               "pid_start_ticks": _proc_start_ticks(os.getpid())}
        self.replacing = os.path.lexists(self.path)  # (overwrite=True over an existing trace)
        self._out_at_start = _identity(self.path)  # (the only file close() may replace)
        try:
            self._write_meta()
        except OSError as e:  # a full disk or quota from the start: nothing to keep
            _release(self._lock_fd)
            remove_partial(self.partial_dir)
            raise TraceWriteError(f"cannot write the trace to {self.partial_dir}: "
                                  f"{e.strerror or e}; free some space or pick another --out") \
                from e
        self._prev_pool = use_system_allocator()
        self._chunks = ChunkWriter(self.partial_dir, flush_interval_s=flush_interval_s)
        self.finished = False  # close() has put the final file in place
        self.started_ns = time.time_ns()
        self.add = self._chunks.add
        self.add_columns = self._chunks.add_columns
        self._closed = False

    def set_before_flush(self, hook: Callable[[], None]) -> None:
        """Run `hook` in the writer's thread before each flush (see ChunkWriter)."""
        self._chunks.before_flush = hook

    def _write_meta(self) -> None:
        tmp = self.partial_dir / "meta.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=1, default=str))
        os.replace(tmp, self.partial_dir / "meta.json")

    def close(self, meta_updates: Mapping[str, Any] | None = None) -> Path:
        """Flush everything, write the final file atomically, remove the chunks. Idempotent."""
        if self._closed:
            return self.path
        self._closed = True
        stopped: TraceWriteError | None = None
        try:
            self._chunks.close()
        except TraceWriteError as e:  # the trace keeps what was written, and says why
            stopped = e
        self.meta.update(meta_updates or {})
        if stopped is not None:
            self.meta["status"], self.meta["error"] = "failed", str(stopped)
        try:
            self._write_meta()
        except OSError:  # (a full disk may not take it either; the chunks load without it)
            pass
        try:
            if not self._still_ours():
                raise _NotOurs()
            rows = _merge_in_helper(self.partial_dir, self.path, self._out_at_start)
            if rows is None:
                rows = _merge_chunks(self.partial_dir, self.path, self.meta,
                                     may_replace=self._out_at_start)
            self.meta["rows"] = rows
            self.finished = True  # the final file is in place
        except _NotOurs:
            raise TraceWriteError(
                f"{self.partial_dir} was removed or taken over by another process during the "
                f"recording (its lock file is not this recording's); gpuwatch did not write "
                f"{self.path}: what was recorded is in {self.partial_dir} if it is still there "
                f"(python -m gpuwatch.finish {self.partial_dir} once no process writes it), or "
                f"in whatever that process made of it") from None
        except OutputTakenError as e:
            raise TraceWriteError(
                f"{e}; gpuwatch did not replace it: the recording is kept in "
                f"{self.partial_dir}; finish it under another name (python -m gpuwatch.finish "
                f"{self.partial_dir} OTHER.parquet)") from e
        except OSError as e:
            why = e.strerror or str(e)
            raise TraceWriteError(
                f"the trace could not be finished ({why}): what was recorded is kept in "
                f"{self.partial_dir}; analyse it there (python -m gpuwatch.analyze "
                f"{self.partial_dir}), or finish it once there is room (python -m gpuwatch.finish "
                f"{self.partial_dir})") from e
        finally:
            if self._prev_pool is not None:
                pa.set_memory_pool(self._prev_pool)
            _release(self._lock_fd)  # (finished or not, this process lets the .partial go)
            self._lock_fd = None
        remove_partial(self.partial_dir)
        if stopped is not None:
            raise TraceWriteError(f"{stopped}; {self.path} holds what was written before")
        return self.path

    def _still_ours(self) -> bool:
        """Is the .partial still this recording's: its lock file the one this process locked
        (not removed, not replaced by another process's)?"""
        if self._lock_fd is None:  # (no flock on this system: nothing to compare)
            return self.partial_dir.is_dir()
        try:
            mine, there = os.fstat(self._lock_fd), os.stat(self.partial_dir / LOCK_NAME)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    def written(self) -> bool:
        """Is the final file in place (put there by close(), or by its merge helper process
        even if close() was interrupted after)?"""
        if self.finished:
            return True
        try:
            return self.path.stat().st_mtime_ns >= self.started_ns
        except OSError:
            return False

    @property
    def error(self) -> BaseException | None:
        """Why writing failed (recording has stopped), or None."""
        return self._chunks.error

    def abandon(self, discard: bool = False) -> None:
        """Stop without (finishing) the final file: the chunks stay in `.partial`, unlocked
        (`discard`: removed too). A merge cut short leaves no temporary file behind."""
        self._closed = True
        try:
            self._chunks.close()
        except Exception:
            pass
        _release(self._lock_fd)
        self._lock_fd = None
        for tmp in self.path.parent.glob(f"{self.path.name}.tmp-*"):
            tmp.unlink(missing_ok=True)
        if discard:
            remove_partial(self.partial_dir)


def partial_path(path: Path) -> Path:
    """Where a recording to `path` keeps its chunks until it is finished."""
    return path.with_name(path.name + ".partial")


def check_output(path: Path, overwrite: bool = False, check_partial: bool = True) -> None:
    """Refuse, with one line saying what to do, an output gpuwatch must not write: a directory
    or any other non-regular file (a device such as /dev/null: the final rename would replace
    it), an existing trace unless `overwrite`, a place that cannot be written, or one where an
    unfinished recording is (see _claim_partial)."""
    if len(path.name.encode()) + len(".partial") > 255:
        raise UsageError(f"output file name is too long ({len(path.name)} characters): the "
                         f"recording needs room for a '.partial' suffix; pick a shorter --out")
    if path.is_dir():
        raise UsageError(f"output {path} is a directory; give a file name like run.parquet")
    if os.path.lexists(path):
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError:  # a dangling link: it would be replaced, not followed
            regular = False
        if not regular:
            raise UsageError(f"output {path} exists and is not a regular file (a device, pipe, "
                             f"socket or broken link); give a trace file name like run.parquet")
        if not overwrite:
            raise UsageError(f"output {path} already exists; pick another --out, or replace it "
                             f"with --force (session(..., overwrite=True))")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"output directory {parent} does not exist; create it or pick another --out")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output directory {parent} is not writable; pick another --out")
    partial = partial_path(path)
    if check_partial and partial.exists():
        _refuse_partial(partial, path)


def _refuse_partial(partial: Path, path: Path) -> None:
    """An unfinished recording to `path` is in `partial`: another process writing it now
    (its lock is held), or one that crashed. Never deleted here: say what to do."""
    owner = _lock_owner(partial)
    if owner is not None:
        raise UsageError(f"another gpuwatch process ({owner}) is recording to {path} now; "
                         f"pick another --out, or wait for it to finish")
    if not any(partial.glob("*.parquet")):  # it recorded nothing (it failed at its start)
        remove_partial(partial)
        if not partial.exists():
            return
    raise UsageError(f"{partial} holds an unfinished recording (a crash?), which gpuwatch will "
                     f"not delete: analyse it as it is (python -m gpuwatch.analyze {partial}), "
                     f"finish it into a trace (python -m gpuwatch.finish {partial}), or "
                     f"remove it, then record again")


LOCK_NAME = "lock"  # in .partial: locked (lockf) by the recording process, names it


def _lock_owner(partial: Path) -> str | None:
    """'pid N on HOST' if a live process holds `partial`'s lock, else None (no lock file, or
    a stale one: its process is gone, as the kernel drops a dead process's flock)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: a lock cannot be tested; treat the directory as stale
        return None
    try:
        fd = os.open(partial / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1)
    except OSError:  # held by a live process
        try:
            who = os.pread(fd, 200, 0).decode(errors="replace").split()
        except OSError:
            who = []
        return f"pid {who[0]} on {who[1]}" if len(who) >= 2 else "another process"
    finally:
        os.close(fd)
    return None


def _claim_partial(partial: Path, path: Path) -> int | None:
    """Create `partial` and hold its lock for this recording (released by close()/abandon()).
    Returns the lock's file descriptor (None where flock does not exist)."""
    try:
        partial.mkdir()
    except FileExistsError:  # another recording started between the check and now
        _refuse_partial(partial, path)
    except OSError as e:
        raise UsageError(f"cannot create {partial} for the recording: {e.strerror}; pick "
                         f"another --out") from e
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(partial / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        # A POSIX record lock (lockf): held by this process alone, not by a child it forks (a
        # DataLoader worker must not keep the path locked after this process is gone), and
        # dropped by the kernel when the process dies.
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1)
    except OSError as e:  # cannot happen unless another process raced us into the directory
        os.close(fd)
        raise UsageError(f"another process is recording to {path} now; pick another --out") from e
    try:
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except OSError as e:  # a full disk or quota from the start: nothing to keep
        os.close(fd)
        remove_partial(partial)
        raise TraceWriteError(f"cannot write the trace to {partial}: {e.strerror or e}; free "
                              f"some space or pick another --out") from None
    return fd


# What a recording puts in its .partial besides its chunks (PREFIXnnnnnnn-TABLE.parquet):
# only these are ever removed from it; anything else there is someone else's and stays.
PARTIAL_FILES = ("meta.json", "meta.json.tmp", LOCK_NAME, "threads.json", "threads.json.tmp",
                 "sampler.ctl", "sampler.log")


_CHUNK_NAME = re.compile(r"[A-Za-z]+\d{7}-(%s)\.(parquet|tmp)" % "|".join(TABLES))


def remove_partial(partial: Path) -> list[str]:
    """Remove what gpuwatch wrote into `partial` (its chunks and PARTIAL_FILES), then the
    directory if that leaves it empty. Returns the names of what was left (not ours)."""
    try:
        entries = list(partial.iterdir())
    except OSError:
        return []
    left = []
    for f in entries:
        if _CHUNK_NAME.fullmatch(f.name) or f.name in PARTIAL_FILES:
            try:
                f.unlink()
            except IsADirectoryError:
                left.append(f.name)
            except OSError:
                pass
        else:
            left.append(f.name)
    try:
        partial.rmdir()
    except OSError:
        pass
    return sorted(left)


def _proc_start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (/proc/PID/stat field 22); None
    if it is not running or there is no /proc. With the pid it names one process for good: a
    pid the kernel hands out again belongs to a process that started later."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        # (field 2, the command, is in parentheses and may hold spaces or ')': split after it)
        return int(raw[raw.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def live_writer(meta: Mapping[str, Any]) -> str | None:
    """'pid N on HOST' if the process that wrote a .partial's metadata is still running on
    this host (its lock file may have been removed), else None."""
    w = meta.get("writer")
    if not isinstance(w, dict) or w.get("hostname") != socket.gethostname():
        return None
    pid, ticks = w.get("pid"), w.get("pid_start_ticks")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid == os.getpid():
        return None
    now = _proc_start_ticks(pid)
    if now is None or (isinstance(ticks, int) and ticks != now):
        return None
    return f"pid {pid} on {w['hostname']}"


Identity = tuple[int, int, int]  # (st_dev, st_ino, st_mtime_ns) of a file


def _identity(path: Path) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


class _NotOurs(Exception):
    """(close(): the .partial's lock file is no longer the one this recording holds.)"""


class OutputTakenError(OSError):
    """The output path holds a file gpuwatch may not replace (put there after the start)."""


def publish(tmp: Path, dest: Path, may_replace: Identity | None | bool = None) -> None:
    """Put the finished file `tmp` at `dest` atomically, never over a file we may not replace:
    `may_replace` is the identity of the file that was there when we began (the one
    --force/overwrite allowed), True for any, None for none. A file found there otherwise
    raises OutputTakenError and `tmp` is left for the caller to remove."""
    if may_replace is True:
        os.replace(tmp, dest)
        return
    current = _identity(dest)
    if current is not None or os.path.lexists(dest):
        if may_replace is None or current != may_replace:
            raise OutputTakenError(f"{dest} was created or changed by another process while "
                                   f"gpuwatch was writing it")
        os.replace(tmp, dest)  # (the very file --force allowed)
        return
    try:  # a hard link fails if dest appeared since: no check-then-replace race
        os.link(tmp, dest)
    except FileExistsError:
        raise OutputTakenError(f"{dest} was created by another process while gpuwatch was "
                               f"writing it") from None
    except OSError:  # a file system without hard links: the check above must do
        if os.path.lexists(dest):
            raise OutputTakenError(f"{dest} was created by another process while gpuwatch "
                                   f"was writing it") from None
        os.replace(tmp, dest)
        return
    tmp.unlink()


def _release(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)  # (closing the descriptor drops the flock)
        except OSError:
            pass


# A recording bigger than this is merged by a short-lived helper process: an hour at 1 kHz is
# 3.6 M rows, and merging them in the recording process left it ~80 MB bigger for good (Arrow's
# C++ Parquet code allocates from its own default pool, whatever pyarrow's is). The helper
# starts with the system allocator and gives everything back when it exits.
HELPER_MERGE_ROWS = 1_000_000


def _merge_in_helper(partial_dir: Path, dest: Path,
                     may_replace: Identity | None = None) -> dict[str, int] | None:
    """Merge in a helper process if the recording is big; None if it was not (or failed, in
    which case the caller merges in-process: the chunks are still there)."""
    import subprocess

    from .helper_process import SamplerStartError, helper_command

    n = sum(_rows_or_0(f) for fs in _chunk_files(partial_dir).values() for f in fs)
    if n < HELPER_MERGE_ROWS:
        return None
    try:
        argv, env = helper_command("gpuwatch.trace", str(partial_dir), str(dest),
                                   json.dumps(may_replace))
    except SamplerStartError:  # no interpreter to start: merge here
        return None
    env["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    if r.returncode == 3:  # (the helper found --out taken: so would the merge here)
        raise OutputTakenError(r.stderr.strip() or f"{dest} was created by another process")
    if r.returncode != 0 or not dest.exists():
        return None
    out = json.loads(r.stdout)
    LAST_HELPER_MERGE.clear()
    LAST_HELPER_MERGE.update(out)
    return out["rows"]


LAST_HELPER_MERGE: dict[str, Any] = {}  # the last helper merge: rows, its peak RSS (benchmarks)


def _rows_or_0(chunk: Path) -> int:
    """A chunk's row count from its footer; 0 for one that cannot be read (it is left out
    of the merge, and named there)."""
    try:
        return int(pq.ParquetFile(chunk).metadata.num_rows)
    except (pa.ArrowInvalid, OSError):
        return 0


def read_partial_meta(partial: Path) -> dict[str, Any]:
    """The metadata of an unfinished recording, checked: one line naming the problem for a
    missing, damaged or foreign meta.json, or one written by a newer gpuwatch."""
    try:
        raw = (partial / "meta.json").read_bytes()
    except OSError as e:
        raise TraceFormatError(f"{partial} is not an unfinished gpuwatch recording ("
                               f"meta.json: {e.strerror or e})") from e
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise TraceFormatError(f"{partial}/meta.json is damaged ({type(e).__name__}): restore "
                               f"it from a copy to finish or analyse the recording; its chunks "
                               f"read as they are with pyarrow.dataset.dataset('{partial}')"
                               ) from e
    _check_meta(meta, partial)
    return meta


def claim_for_finish(partial: Path) -> int | None:
    """Lock `partial` for finishing it (a second `finish` of it, or a recording that removed
    nothing, is refused with one line). Returns the lock's descriptor for _release."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(partial / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise UsageError(f"cannot lock {partial} to finish it: {e.strerror or e}") from e
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1)
    except OSError:
        who = os.pread(fd, 200, 0).decode(errors="replace").split()
        os.close(fd)
        raise UsageError(f"{partial} is being recorded or finished by "
                         f"{'pid ' + who[0] if who else 'another process'} now; let it finish"
                         ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass
    return fd


def finish_partial(partial: Path, dest: Path, overwrite: bool = False,
                   meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trace of an unfinished recording: its chunks merged into `dest` (atomically; never
    over a file that appeared meanwhile, nor any file unless `overwrite`), its status
    "interrupted" unless it had one, then what gpuwatch wrote in the .partial removed.
    Returns rows per table, and the chunks skipped as unreadable and files left (not ours)."""
    if meta is None:
        meta = read_partial_meta(partial)
    if meta.get("status") in (None, "recording"):
        meta["status"] = "interrupted"
        meta["error"] = meta.get("error") or ("the recording stopped before it was finished; "
                                              "finished from its .partial afterwards")
    skipped: list[str] = []
    rows = _merge_chunks(partial, dest, meta, may_replace=True if overwrite else None,
                         skipped=skipped)
    left = remove_partial(partial)
    return {"rows": rows, "skipped_chunks": skipped, "left_in_partial": left}


def _helper_main(argv: Sequence[str]) -> None:
    """`python -m gpuwatch.trace PARTIAL_DIR DEST [MAY_REPLACE]`: merge a finished recording's
    chunks (the helper process of TraceWriter.close; users finish a recording with
    gpuwatch.finish). Exit status 3: DEST was taken meanwhile (nothing replaced)."""
    partial_dir, dest = Path(argv[0]), Path(argv[1])
    may = json.loads(argv[2]) if len(argv) > 2 else None
    meta = json.loads((partial_dir / "meta.json").read_bytes())
    try:
        rows = _merge_chunks(partial_dir, dest, meta,
                             may_replace=tuple(may) if isinstance(may, list) else None)
    except OutputTakenError as e:
        print(e, file=sys.stderr)
        raise SystemExit(3) from None
    peak = None
    try:  # VmHWM: this process's own peak (ru_maxrss would include the parent's, from fork)
        with open("/proc/self/status") as f:
            peak = next(int(x.split()[1]) / 1024 for x in f if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    print(json.dumps({"rows": rows, "peak_rss_mb": peak}))


def _chunk_files(partial_dir: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {t: [] for t in TABLES}
    for f in sorted(partial_dir.glob("*.parquet")):
        _, sep, table = f.stem.partition("-")  # chunks are PREFIXnnnnnnn-TABLE.parquet
        if sep and table in out:  # (anything else in the directory is not ours: left alone)
            out[table].append(f)
    return out


def _merge_chunks(partial_dir: Path, dest: Path, meta: dict[str, Any],
                  group_rows: int = ROW_GROUP_ROWS, may_replace: Identity | None | bool = None,
                  skipped: list[str] | None = None) -> dict[str, int]:
    """Chunks -> one file, one table after another, row groups of up to `group_rows`, put at
    `dest` by publish() (`may_replace`). Returns the row count per table (also written into
    the file's metadata as `rows`). A chunk that cannot be read (cut by a crash, empty, not
    Parquet) is left out and named in `skipped` and in the metadata's `skipped_chunks`."""
    files = _chunk_files(partial_dir)
    readable: dict[str, list[tuple[Path, int]]] = {t: [] for t in files}
    bad: list[str] = []
    for table, fs in files.items():
        for f in fs:
            try:
                readable[table].append((f, pq.ParquetFile(f).metadata.num_rows))
            except (pa.ArrowInvalid, OSError):
                bad.append(f.name)
    meta["rows"] = rows = {t: sum(n for _, n in fs) for t, fs in readable.items()}
    if bad:
        meta["skipped_chunks"] = bad
    if skipped is not None:
        skipped.extend(bad)
    meta["schema_version"] = SCHEMA_VERSION  # (the file is written in this layout, whatever
    # gpuwatch wrote the chunks: read_chunk brings older ones to it)
    schema = SCHEMA.with_metadata({META_KEY: json.dumps(meta, default=str).encode()})
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    try:
        # Dictionary-encode only the string columns: the numeric ones gain nothing from it
        # but cost memory while a row group is built, and the file came out twice as big.
        # Time columns delta-encoded: nearly a regular grid, they cost ~1 byte a row, not 8.
        with pq.ParquetWriter(tmp, schema, compression="zstd", use_dictionary=STRING_COLUMNS,
                              column_encoding={c: "DELTA_BINARY_PACKED"
                                               for c in TIME_COLUMNS}) as w:
            for table, table_files in readable.items():
                pending: list[pa.Table] = []
                n = 0
                for f, _ in table_files:
                    try:
                        t = read_chunk(f)
                    except (pa.ArrowInvalid, OSError):  # (its footer read, its data did not)
                        rows[table] -= pq.ParquetFile(f).metadata.num_rows
                        bad.append(f.name)
                        if skipped is not None:
                            skipped.append(f.name)
                        continue
                    pending.append(t)
                    n += t.num_rows
                    if n >= group_rows:
                        w.write_table(pa.concat_tables(pending), row_group_size=group_rows)
                        pending, n = [], 0
                if pending:
                    w.write_table(pa.concat_tables(pending), row_group_size=group_rows)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        publish(tmp, dest, may_replace)
    finally:
        if tmp.exists():
            tmp.unlink()
    return rows


def partition_value(v: str) -> str:
    """A fleet dataset's hive partition value (host, GPU model) as `record --dataset` spells
    it: [A-Za-z0-9._-], so every engine reads it back the same."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", v).strip("_") or "unknown"


def read_chunk(path: Path) -> pa.Table:
    """One chunk of a recording, as SCHEMA (columns it lacks read as nulls); a chunk written by
    a gpuwatch before schema v3 has its `table` column renamed."""
    # (ParquetFile, not pq.read_table: read_table imports pyarrow.dataset, and an import while
    # a session is closed at exit after an uncaught Ctrl-C lost the exit status, 130)
    return conform(pq.ParquetFile(path).read())


def conform(tbl: pa.Table) -> pa.Table:
    """An Arrow table of trace rows in any schema version, as SCHEMA: the v1-v2 `table` column
    renamed, missing columns as nulls, types as SCHEMA's."""
    if LEGACY_KIND in tbl.column_names and KIND not in tbl.column_names:
        tbl = tbl.rename_columns([KIND if c == LEGACY_KIND else c for c in tbl.column_names])
    cols = [tbl[f.name].cast(f.type) if f.name in tbl.column_names
            else pa.nulls(tbl.num_rows, f.type) for f in SCHEMA]
    return pa.Table.from_arrays(cols, schema=SCHEMA)


def _one_line(e: BaseException) -> str:
    """An exception's text on one line (pyarrow's messages span several)."""
    return " ".join(str(e).split())


class RecoveredTraceWarning(UserWarning):
    """Loaded a trace that was never finalised (the recording crashed or was killed)."""


@dataclass(repr=False)
class Trace(Lazy):
    """A loaded trace: one DataFrame per table and the run metadata. A table loaded with
    `load(defer=...)` is read from the file when first used; `columns(name)` reads it one
    column at a time instead."""

    meta: dict[str, Any]
    inferences: pd.DataFrame
    samples: pd.DataFrame  # (a Later where load() deferred it: lazy.Lazy)
    driver_samples: pd.DataFrame
    kernels: pd.DataFrame
    events: pd.DataFrame
    processes: pd.DataFrame = field(default_factory=lambda: _pd().DataFrame())  # before v2: none
    host_events: pd.DataFrame = field(default_factory=lambda: _pd().DataFrame())  # before v4
    path: Path | None = None
    recovered: bool = False
    tables: Sequence[str] = field(default=TABLES)

    @property
    def simulated(self) -> bool:
        return bool(self.meta.get("simulated"))

    @property
    def schema_version(self) -> int:
        return int(self.meta.get("schema_version", 0))

    def __repr__(self) -> str:  # (a notebook shows this, not every table)
        devs = ", ".join(str(d.get("name", "?")) for d in self.meta.get("devices", []))
        rows = f"{len(self.inferences)} regions"
        if "kind" in self.inferences:
            kinds = self.inferences["kind"]
            rows = f"{int((kinds == 'inference').sum())} inferences, " \
                   f"{int((kinds == 'span').sum())} spans"
        return (f"<gpuwatch Trace {self.path if self.path is not None else '(not from a file)'}: "
                f"{devs or 'unknown GPU'}{' (simulated)' if self.simulated else ''}, status "
                f"{self.meta.get('status', 'unknown')}{', recovered' if self.recovered else ''}; "
                f"{rows}, {self.rows('samples')} samples, {len(self.kernels)} kernels, "
                f"{len(self.events)} events>")

    def columns(self, table: str) -> tablecolumns.FileColumns | tablecolumns.FrameColumns:
        """Table `table`'s columns, each read when asked for where the table was deferred and
        not read yet; else the loaded table's."""
        later = pending(self, table)
        if later is not None and later.source is not None:
            return later.source
        return tablecolumns.FrameColumns(getattr(self, table))

    def rows(self, table: str) -> int:
        """How many rows table `table` has (a deferred table is not read for it)."""
        later = pending(self, table)
        if later is not None and later.source is not None:
            return len(later.source)
        return len(getattr(self, table))

    def measured(self) -> pd.DataFrame:
        """Inference rows outside warm-up (spans excluded)."""
        df = self.inferences
        return df[(df["kind"] == "inference") & ~df["warmup"].astype(bool)]


def _pd() -> Any:
    """pandas, imported on first use: the reader needs it, the writer (and so a program under
    `gpuwatch run`) does not."""
    import pandas

    return pandas


def _types_mapper(t: pa.DataType) -> Any:
    # Integers and booleans become pandas' nullable dtypes so NA stays NA (never 0 or 0.0).
    pd = _pd()
    if pa.types.is_integer(t):
        return {8: pd.Int8Dtype(), 16: pd.Int16Dtype(), 32: pd.Int32Dtype(), 64: pd.Int64Dtype()}[
            t.bit_width
        ]
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


Columns = Mapping[str, Sequence[str]]


def _wanted(name: str, columns: Columns | None) -> list[str]:
    cols = table_columns(name)
    if columns is not None and name in columns:
        keep = set(columns[name]) | {"gpu", "t_ns"}
        cols = [c for c in cols if c in keep]
    return cols


def _to_frame(name: str, part: pa.Table, columns: Columns | None,
              numpy_dtypes: Collection[str] = ()) -> pd.DataFrame:
    wanted = _wanted(name, columns)
    # A v1 file written before a column was added lacks it: the column reads as NA.
    for c in wanted:
        if c not in part.column_names:
            part = part.append_column(SCHEMA.field(c), pa.nulls(part.num_rows, SCHEMA.field(c).type))
    cols = wanted
    t = part["t_ns"].to_numpy() if "t_ns" in part.column_names and part.num_rows else None
    ordered = t is not None and part["t_ns"].null_count == 0 and bool(np.all(t[1:] >= t[:-1]))
    del t
    # self_destruct frees each Arrow column as it is converted: peak memory ~1x, not 2x.
    tbl = part.select(cols)
    del part  # (tbl alone holds the buffers now, so that self_destruct can free them)
    df = tbl.to_pandas(types_mapper=None if name in numpy_dtypes else _types_mapper,
                       self_destruct=True, split_blocks=True)
    del tbl
    if name == "inferences" and "warmup" in df and df["warmup"].isna().any():
        n = int(df["warmup"].isna().sum())  # (gpuwatch always writes it: damaged data)
        warnings.warn(f"{n} inference rows have no warm-up flag (damaged data); they were read "
                      f"as measured", DamagedTraceWarning, stacklevel=4)
        df["warmup"] = df["warmup"].fillna(False)
    return df if ordered else _ordered(name, df, known=False)


def _ordered(name: str, df: pd.DataFrame, known: bool | None = None) -> pd.DataFrame:
    """`df` in time order (gpuwatch writes it so: then no 10M-row sort is paid); `known`:
    whether it is already known to be (None: look)."""
    if known is None:
        t = df["t_ns"]
        known = not t.isna().any() and t.is_monotonic_increasing
    if known:
        return df
    sort = ["t_ns", "gpu"] if name in ("samples", "driver_samples") else ["t_ns"]
    return df.sort_values(sort, kind="stable").reset_index(drop=True)


def _numpy_frame(pf: pq.ParquetFile, groups: list[int], name: str,
                 cols: list[str]) -> pd.DataFrame | None:
    """Table `name` read one row group at a time into preallocated numpy columns: peak memory
    about the frame plus one group (reading all groups first holds the compressed file, the
    Arrow table and the frame at once). An integer column that may hold nulls (its row-group
    statistics say so, or have no count) becomes float64 with NaN. None where a column is not
    a number (the generic path reads it)."""
    dtypes = tablecolumns.numpy_dtypes(pf, groups, cols)
    if dtypes is None:
        return None
    n = sum(pf.metadata.row_group(g).num_rows for g in groups)
    out = {c: np.full(n, np.nan) if c not in pf.schema_arrow.names else np.empty(n, dtypes[c])
           for c in cols}
    read = [c for c in cols if c in pf.schema_arrow.names]
    at = 0
    for g in groups:
        rg = pf.read_row_group(g, columns=read)
        k = rg.num_rows
        for c in read:
            out[c][at:at + k] = rg.column(c).to_numpy()  # (ints with nulls: float64, NaN)
        at += k
        del rg
    return _pd().DataFrame(out, copy=False)


def _deferred(pf: pq.ParquetFile, groups: list[int], cols: list[str],
              where: str = "trace") -> Later | None:
    """Table columns `cols` of these row groups, to be read when used (tablecolumns); None
    where they cannot be: a column that is not a number, or rows not in time order (load
    sorts those, which needs the whole table)."""
    dtypes = tablecolumns.numpy_dtypes(pf, groups, cols)
    if dtypes is None or "t_ns" not in cols:
        return None
    src = tablecolumns.FileColumns(pf, groups, cols, dtypes, where)
    t = src.raw("t_ns")
    if t.dtype.kind == "f" or (t.size > 1 and bool((t[1:] < t[:-1]).any())):
        return None  # (a time with a gap is float: _ordered drops and sorts)
    return Later(src.frame, source=src)


def _split(tbl: pa.Table, columns: Columns | None = None,
           numpy_dtypes: Collection[str] = ()) -> dict[str, pd.DataFrame]:
    """Rows of every table from one Arrow table holding several (recovered chunks)."""
    kind = _kind_column(tbl.column_names)
    col = tbl[kind]
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    import pyarrow.compute as pc  # (here: ~40 ms of every command's start otherwise)

    return {name: _to_frame(name, tbl.filter(pc.equal(col, name)), columns, numpy_dtypes)
            for name in TABLES}


def _kind_column(names: Sequence[str]) -> str:
    """The discriminator column's name: `table_name`, or `table` in a trace before v3."""
    for kind in (KIND, LEGACY_KIND):
        if kind in names:
            return kind
    raise TraceFormatError("trace has no 'table_name' (or 'table') column; it was not written "
                           "by gpuwatch")


CORE_COLUMNS = ("gpu", "t_ns", "kind", "name", "condition", "iteration", "gpu_ms", "start_ns",
                "end_ns", "sm_clock_mhz")


def _read_file(pf: pq.ParquetFile, columns: Columns | None,
               numpy_dtypes: Collection[str] = (),
               defer: Collection[str] = (), where: str = "trace") -> dict[str, Any]:
    """Each table from its own row groups with only its own columns, so an 11-million-row trace
    never materialises the union schema's null columns. Row-group statistics say which table a
    group holds (gpuwatch writes one table per group); a mixed group is read whole and split."""
    kind = _kind_column(pf.schema_arrow.names)
    lacking = [c for c in CORE_COLUMNS if c not in pf.schema_arrow.names]
    if lacking:  # (columns added later read as NA; these every gpuwatch trace has had)
        raise TraceFormatError(f"trace lacks the column(s) {', '.join(lacking)} every gpuwatch "
                               f"trace has: it is damaged, or was not written by gpuwatch")
    _check_types(pf.schema_arrow)
    idx = pf.schema_arrow.get_field_index(kind)
    groups: dict[str, list[int]] = {t: [] for t in TABLES}
    mixed: list[int] = []
    for i in range(pf.num_row_groups):
        st = pf.metadata.row_group(i).column(idx).statistics
        lo = hi = None
        if st is not None and st.has_min_max:
            lo, hi = st.min, st.max
            lo, hi = (v.decode() if isinstance(v, bytes) else v for v in (lo, hi))
        if lo is not None and lo == hi and lo in groups:
            groups[lo].append(i)
        else:
            mixed.append(i)
    out: dict[str, Any] = {}
    for name in TABLES:
        cols = _wanted(name, columns)
        later = (_deferred(pf, groups[name], cols, where)
                 if name in defer and name in numpy_dtypes and groups[name] and not mixed
                 else None)
        if later is not None:
            out[name] = later
            continue
        frame = (_numpy_frame(pf, groups[name], name, cols)
                 if name in numpy_dtypes and groups[name] else None)
        if frame is not None:
            out[name] = _ordered(name, frame)
            continue
        # (no name here holds the Arrow table: _to_frame frees each column as it converts it)
        out[name] = _to_frame(name, pf.read_row_groups(groups[name], columns=cols)
                              if groups[name] else SCHEMA.empty_table().select(cols),
                              columns, numpy_dtypes)
    if mixed:
        extra = _split(pf.read_row_groups(mixed), columns, numpy_dtypes)
        out = {n: _pd().concat([out[n], extra[n]], ignore_index=True) if len(extra[n]) else out[n]
               for n in TABLES}
    release_arrow_memory()
    return out


def release_arrow_memory() -> None:
    """Give back to the system what Arrow's allocator (mimalloc or jemalloc) kept of freed
    decoding buffers: 130 MB of a 1M-inference trace's load, which it would otherwise hold
    for the process's life."""
    pa.default_memory_pool().release_unused()


def _kind_of(t: pa.DataType) -> str:
    """A type's family: what a column may hold and still be read as gpuwatch's."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_null(t):
        return "null"  # (a column of nulls only: fits anything)
    return str(t)


def _check_types(schema: pa.Schema) -> None:
    """Every column gpuwatch knows holds its kind of value (numbers, text, booleans; widths
    may differ): a latency stored as text by another tool is refused in one line, not
    converted, or analysed into a traceback."""
    for f in schema:
        if f.name not in SCHEMA.names or f.name in (KIND, LEGACY_KIND):
            continue
        have, want = _kind_of(f.type), _kind_of(SCHEMA.field(f.name).type)
        if have != want and have != "null" and not (have == "bool" and want == "number"):
            raise TraceFormatError(f"column {f.name!r} holds {f.type} values where gpuwatch "
                                   f"writes {SCHEMA.field(f.name).type}: the file was changed "
                                   f"by another tool, or is not a gpuwatch trace")


# Metadata entries the analysis reads, and the JSON type each must have: one of another type
# (a damaged or hand-edited file) is dropped with a warning, never read into a traceback.
META_TYPES: dict[str, type | tuple[type, ...]] = {
    "devices": list, "options": dict, "host": dict, "versions": dict, "regions": dict,
    "sampler": dict, "timebase": dict, "time_base": dict, "unsupported_fields": dict,
    "fields": list, "field_query_cost_us": dict, "kernel_trace": dict, "rows": dict,
    "status": str, "error": (str, type(None)), "started_ns": int, "ended_ns": int,
    "simulated": bool}


class DamagedTraceWarning(UserWarning):
    """A trace had metadata entries of the wrong type (left out) or rows with a flag missing
    (read as its default); the warning says which."""


def _sanitise_meta(meta: dict[str, Any], path: Path) -> None:
    bad = [k for k, t in META_TYPES.items() if k in meta and (
        not isinstance(meta[k], t) or (t is int and isinstance(meta[k], bool)))]
    devices = meta.get("devices")
    if isinstance(devices, list) and not all(isinstance(d, dict) for d in devices):
        bad.append("devices")
    bad = sorted(set(bad))
    for k in bad:
        del meta[k]
    if bad:
        warnings.warn(f"{path}: metadata entries {', '.join(bad)} have the "
                      f"wrong type (a damaged or hand-edited file) and were left out",
                      DamagedTraceWarning, stacklevel=3)


def _check_meta(meta: Any, path: Path) -> None:
    if not isinstance(meta, dict):
        raise TraceFormatError(f"{path}: gpuwatch metadata is not a JSON object; not a gpuwatch trace")
    version = meta.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TraceFormatError(f"{path}: metadata has no valid schema_version (got "
                               f"{version!r}); not a gpuwatch trace")
    if version > SCHEMA_VERSION:
        raise TraceFormatError(
            f"{path} uses trace schema v{version}, this gpuwatch reads up to v{SCHEMA_VERSION}; "
            "upgrade gpuwatch (in its clone: git pull, then pip install -e .)"
        )


def load(path: str | os.PathLike[str], columns: Columns | None = None,
         numpy_dtypes: Collection[str] = (), defer: Collection[str] = ()) -> Trace:
    """Load a trace file, or recover the `.partial` directory of a recording that died.

    `columns` limits what is read per table, e.g. {"samples": ["sm_clock_mhz"]} (gpu and t_ns
    always come along); tables not named are read whole. Integer and boolean columns load as
    pandas' nullable dtypes (NA stays NA), except in the tables named in `numpy_dtypes`: plain
    numpy there (an integer column with gaps becomes float64 with NaN), which converts 10
    million samples several times faster (analysis loads "samples" so). A table named in both
    `numpy_dtypes` and `defer` is read only when used: `Trace.columns(name)` reads one column
    at a time (analysis reduces the samples so, never holding them all), the attribute reads
    the whole table (a file's, not a `.partial`'s: that is read at once)."""
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"load takes a trace's path (str or os.PathLike), got "
                         f"{type(path).__name__} {path!r}")
    p = Path(path)
    if not p.exists():
        partial = p.with_name(p.name + ".partial")
        if partial.is_dir():
            p = partial
        else:
            raise TraceFormatError(f"no trace at {p}; check the path")
    if p.is_dir():
        return _load_partial(p, columns, numpy_dtypes)
    if not p.is_file():  # (a FIFO or a device would block, or be read as garbage)
        raise TraceFormatError(f"{p} is not a regular file (a pipe, socket or device); give a "
                               f"trace file")
    try:
        pf = pq.ParquetFile(p)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:  # (a damaged column name)
        raise TraceFormatError(f"{p} is not a readable Parquet file ({_one_line(e)}); was the copy "
                               "cut short?") from e
    raw = (pf.schema_arrow.metadata or {}).get(META_KEY)
    if raw is None:
        raise TraceFormatError(
            f"{p} is a Parquet file but not a gpuwatch trace (no '{META_KEY.decode()}' metadata)"
        )
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:  # (RecursionError: nested thousands deep)
        raise TraceFormatError(f"{p}: gpuwatch metadata is not valid JSON "
                               f"({_one_line(e)[:200]})") from None
    _check_meta(meta, p)
    _sanitise_meta(meta, p)
    try:
        tables = _read_file(pf, columns, numpy_dtypes, defer, str(p))
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:
        raise TraceFormatError(f"{p}: corrupt Parquet data ({_one_line(e)})") from e
    return Trace(meta=meta, path=p, **tables)


def _load_partial(d: Path, columns: Columns | None = None,
                  numpy_dtypes: Collection[str] = ()) -> Trace:
    meta_file = d / "meta.json"
    if not meta_file.exists():
        raise TraceFormatError(f"{d} is a directory but not a gpuwatch trace (no meta.json)")
    try:
        meta = json.loads(meta_file.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise TraceFormatError(f"{d}/meta.json is damaged ({type(e).__name__}); the recording's "
                               "chunks can still be read with pyarrow.dataset") from e
    _check_meta(meta, d)
    _sanitise_meta(meta, d)
    tables, skipped = [], 0
    for files in _chunk_files(d).values():
        for f in files:
            try:
                tables.append(read_chunk(f))
            except (pa.ArrowInvalid, OSError):
                skipped += 1
    who = live_writer(meta)
    warnings.warn(
        (f"{d} is being recorded now ({who}); loaded the {len(tables)} chunks written so far"
         if who else
         f"{d} is an unfinished recording (status {meta.get('status', 'unknown')!r}); loaded the "
         f"{len(tables)} chunks written before it stopped")
        + (f", skipped {skipped} unreadable" if skipped else ""),
        RecoveredTraceWarning,
        stacklevel=2,
    )
    tbl = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    meta.setdefault("status", "recovered")
    return Trace(meta=meta, path=d, recovered=True, **_split(tbl, columns, numpy_dtypes))


def default_out(prefix: str = "gpuwatch") -> Path:
    """A fresh trace name in the working directory, e.g. gpuwatch-20261124-101500.parquet;
    where that is taken (two runs in one second), with this process's id added."""
    p = Path(f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.parquet")
    if os.path.lexists(p) or os.path.lexists(partial_path(p)):
        p = p.with_name(f"{p.stem}-{os.getpid()}.parquet")
    return p


if __name__ == "__main__":
    import sys

    _helper_main(sys.argv[1:])
