"""Merging a recording's chunks into the final trace: in the recording process or, for a big
recording, a helper process (`python -m gpuwatch.trace`); `finish` for a `.partial` left behind."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import TraceFormatError, UsageError
from .paths import Identity, LOCK_NAME, OutputTakenError, publish, remove_partial
from .schema import (
    KIND, LEGACY_KIND, META_KEY, READ_OPTIONS, ROW_GROUP_ROWS, SCHEMA, SCHEMA_VERSION,
    STRING_COLUMNS, TABLES, TIME_COLUMNS, WRITE_OPTIONS, _check_meta)


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

    from ..helper_process import SamplerStartError, helper_command

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
    Parquet, a page failing its checksum) is left out and named in `skipped` and in the
    metadata's `skipped_chunks`."""
    files = _chunk_files(partial_dir)
    readable: dict[str, list[tuple[Path, int]]] = {t: [] for t in files}
    bad: list[str] = []
    for table, fs in files.items():
        for f in fs:
            try:
                readable[table].append((f, pq.ParquetFile(f).metadata.num_rows))
            except (pa.ArrowInvalid, OSError):
                bad.append(f.name)
    while True:  # (again, at most once per damaged chunk, where a chunk's data fails to read)
        meta["rows"] = rows = {t: sum(n for _, n in fs) for t, fs in readable.items()}
        if bad:
            meta["skipped_chunks"] = list(bad)
        meta["schema_version"] = SCHEMA_VERSION  # (the file is written in this layout,
        # whatever gpuwatch wrote the chunks: read_chunk brings older ones to it)
        failed = _write_merged(readable, dest, meta, group_rows, may_replace)
        if not failed:
            break
        # Footers that read but data that does not (cut inside, a page failing its checksum):
        # the file is made again without them, so that its metadata names them and counts
        # only the rows it holds (the metadata is written before the rows)
        for table, f in failed:
            readable[table] = [(g, n) for g, n in readable[table] if g != f]
            bad.append(f.name)
    if skipped is not None:
        skipped.extend(bad)
    return rows


def _write_merged(readable: dict[str, list[tuple[Path, int]]], dest: Path,
                  meta: dict[str, Any], group_rows: int,
                  may_replace: Identity | None | bool) -> list[tuple[str, Path]]:
    """Write the `readable` chunks, one table after another, into one file put at `dest` by
    publish(); or, where a chunk's data cannot be read, nothing: those chunks are returned."""
    schema = SCHEMA.with_metadata({META_KEY: json.dumps(meta, default=str).encode()})
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    failed: list[tuple[str, Path]] = []
    try:
        # Dictionary-encode only the string columns: the numeric ones gain nothing from it
        # but cost memory while a row group is built, and the file came out twice as big.
        # Time columns delta-encoded: nearly a regular grid, they cost ~1 byte a row, not 8.
        with pq.ParquetWriter(tmp, schema, compression="zstd", use_dictionary=STRING_COLUMNS,
                              column_encoding={c: "DELTA_BINARY_PACKED"
                                               for c in TIME_COLUMNS}, **WRITE_OPTIONS) as w:
            for table, table_files in readable.items():
                pending: list[pa.Table] = []
                n = 0
                for f, _ in table_files:
                    try:
                        t = read_chunk(f)
                    except (pa.ArrowInvalid, OSError):  # (its footer read, its data did not)
                        failed.append((table, f))
                        continue
                    if failed:  # (the file will be made again: no need to write the rest)
                        continue
                    pending.append(t)
                    n += t.num_rows
                    if n >= group_rows:
                        w.write_table(pa.concat_tables(pending), row_group_size=group_rows)
                        pending, n = [], 0
                if pending and not failed:
                    w.write_table(pa.concat_tables(pending), row_group_size=group_rows)
        if failed:
            return failed
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        publish(tmp, dest, may_replace)
    finally:
        if tmp.exists():
            tmp.unlink()
    return failed


def partition_value(v: str) -> str:
    """A fleet dataset's hive partition value (host, GPU model) as `record --dataset` spells
    it: [A-Za-z0-9._-], so every engine reads it back the same."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", v).strip("_") or "unknown"


def read_chunk(path: Path) -> pa.Table:
    """One chunk of a recording, as SCHEMA (columns it lacks read as nulls); a chunk written by
    a gpuwatch before schema v3 has its `table` column renamed."""
    # (ParquetFile, not pq.read_table: read_table imports pyarrow.dataset, and an import while
    # a session is closed at exit after an uncaught Ctrl-C lost the exit status, 130)
    return conform(pq.ParquetFile(path, **READ_OPTIONS).read())


def conform(tbl: pa.Table) -> pa.Table:
    """An Arrow table of trace rows in any schema version, as SCHEMA: the v1-v2 `table` column
    renamed, missing columns as nulls, types as SCHEMA's."""
    if LEGACY_KIND in tbl.column_names and KIND not in tbl.column_names:
        tbl = tbl.rename_columns([KIND if c == LEGACY_KIND else c for c in tbl.column_names])
    cols = [tbl[f.name].cast(f.type) if f.name in tbl.column_names
            else pa.nulls(tbl.num_rows, f.type) for f in SCHEMA]
    return pa.Table.from_arrays(cols, schema=SCHEMA)
