"""Writing a recording: rows buffered and streamed as Parquet chunks into `<out>.partial/`
(ChunkWriter), then merged and published at close (TraceWriter)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import TraceWriteError
from ..log import logger
from . import finish as _finish  # (module attributes: a test may replace the merge)
from .paths import (
    LOCK_NAME, OutputTakenError, _NotOurs, _claim_partial, file_identity, _proc_start_ticks,
    _release, check_output, partial_path, remove_partial)
from .schema import KIND, SCHEMA_VERSION, TABLES, TABLE_SCHEMAS, WRITE_OPTIONS


MAX_PENDING_ROWS = 20_000  # rows waiting for the writer before producers wait for it


class ChunkWriter:
    """Streams rows into self-contained Parquet chunk files in a directory.

    Thread-safe: the sampler thread and the inference thread both append; a background thread
    writes, so recording threads only extend lists. A separate sampler process runs its own
    ChunkWriter on the same directory with another `prefix`.
    """

    def __init__(self, directory: Path, prefix: str = "c", flush_rows: int = 5_000,
                 flush_interval_s: float = 1.0, start: bool = True):
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
        if start:
            self.start()

    def start(self) -> None:
        """Start the writer's thread (the constructor does, unless given start=False: then
        whoever keeps the writer can close it even if the start is interrupted)."""
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
        if col_batches:
            n = sum(len(next(iter(cols.values()))) for cols in col_batches)
            arrays = []
            for f in schema:
                arrays.append(_table_column(table, n, f.type) if f.name == KIND else
                              _joined(col_batches, f.name, f.type))
                time.sleep(0)  # (the interpreter lock to the program's threads, if waiting)
            parts.append(pa.Table.from_arrays(arrays, schema=schema))
        tbl = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        self._seq += 1
        name = self.directory / f"{self._prefix}{self._seq:07d}-{table}.parquet"
        tmp = name.with_suffix(".tmp")
        pq.write_table(tbl, tmp, **WRITE_OPTIONS)
        os.replace(tmp, name)  # a chunk is either whole or absent

    def close(self) -> None:
        """Write what is buffered and stop. Raises if a chunk could not be written."""
        with self._lock:
            already, self._closed = self._closed, True
            self._wake.notify()
        if not already and self._thread.ident is not None:  # (a thread never started: none)
            try:
                self._thread.join()
            except RuntimeError:  # (its start was interrupted before it ran: it sees
                pass  # _closed when it does, and ends)
        if self.error is not None:
            e = self.error
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise TraceWriteError(f"could not write the trace to {self.directory}: {why}; "
                                  f"recording stopped there") from e


def _joined(batches: Sequence[Mapping[str, Sequence[Any]]], name: str,
            typ: pa.DataType) -> pa.Array:
    """Column `name` of every batch, as one array (null where a batch lacks it). The timed
    path's batches (lists of a few regions each, ~60 a second at gap 0) are joined first and
    converted once: converting each batch's lists on their own held the interpreter lock for
    ~11 ms a flush (2,300 small conversions), which the program's thread waited out (up to
    the 5 ms switch interval at a time)."""
    values = [cols.get(name) for cols in batches]
    lists = [v for v in values if isinstance(v, list)]
    if len(lists) == len(values):
        return pa.array(list(itertools.chain.from_iterable(lists)), type=typ)
    return pa.concat_arrays([
        pa.nulls(len(next(iter(cols.values()))), typ) if v is None else pa.array(v, type=typ)
        for cols, v in zip(batches, values)])


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
        try:
            self._open(meta, flush_interval_s)
        except BaseException:
            # (a Ctrl-C, SIGTERM or error before the recording began: the .partial holds no
            # row yet; none is left behind to block the next run, nor a writer thread)
            chunks: ChunkWriter | None = getattr(self, "_chunks", None)
            if chunks is not None:
                try:
                    chunks.close()
                except Exception:
                    pass
            prev = getattr(self, "_prev_pool", None)
            if prev is not None:
                pa.set_memory_pool(prev)
            _release(self._lock_fd)
            remove_partial(self.partial_dir)
            raise

    def _open(self, meta: Mapping[str, Any], flush_interval_s: float) -> None:
        """(__init__, the .partial claimed) The metadata written, the chunk writer started."""
        self.meta: dict[str, Any] = dict(meta)
        self.meta.setdefault("schema_version", SCHEMA_VERSION)
        # Who writes this .partial: `finish` refuses it while that process lives, even with
        # its lock file removed (a pid alone could be a later process's: its start time too).
        self.meta["writer"] = {"hostname": socket.gethostname(), "pid": os.getpid(),
                               "pid_start_ticks": _proc_start_ticks(os.getpid())}
        self.replacing = os.path.lexists(self.path)  # (overwrite=True over an existing trace)
        self._out_at_start = file_identity(self.path)  # (the only file close() may replace)
        try:
            self._write_meta()
        except OSError as e:  # a full disk or quota from the start: nothing to keep
            raise TraceWriteError(f"cannot write the trace to {self.partial_dir}: "
                                  f"{e.strerror or e}; free some space or pick another --out") \
                from e
        self._prev_pool = use_system_allocator()
        self._chunks = ChunkWriter(self.partial_dir, flush_interval_s=flush_interval_s,
                                   start=False)
        self._chunks.start()
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
            self.meta["failed_by"] = "trace"  # (writing it: not the program)
        try:
            self._write_meta()
        except OSError:  # (a full disk may not take it either; the chunks load without it)
            pass
        try:
            if not self._still_ours():
                raise _NotOurs()
            rows = _finish._merge_in_helper(self.partial_dir, self.path, self._out_at_start)
            if rows is None:
                rows = _finish._merge_chunks(self.partial_dir, self.path, self.meta,
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
