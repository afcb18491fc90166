"""Reading a trace: `load()` of a finished file or a `.partial` left by a crash, into a
`Trace` (one DataFrame per table; a table may be deferred and read a column at a time)."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import tablecolumns
from ..errors import TraceFormatError, UsageError, damaged_page_advice
from ..lazy import Later, Lazy, pending
from .finish import _chunk_files, read_chunk
from .paths import live_writer
from .schema import (
    KIND, LEGACY_KIND, META_KEY, READ_OPTIONS, SCHEMA, TABLES, _check_meta, _one_line,
    table_columns)

if TYPE_CHECKING:  # (pandas is imported by the reader only: recording never needs it)
    import pandas as pd


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
    # rows left out per table because they repeated another row of it exactly (without_repeats)
    repeated_rows: dict[str, int] = field(default_factory=dict)

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


def _null_column(t: pa.DataType, n: int, numpy: bool) -> Any:
    """A column of n NA of Arrow type `t`, as to_pandas would give it (`numpy`: without the
    nullable dtypes), made without touching memory where it can be: a nullable integer or
    boolean column's values are np.zeros (pages the kernel maps only when written) under an
    all-True mask, 1 byte a row instead of 9 to 17. None for a type made otherwise (strings:
    the Arrow path)."""
    pd = _pd()
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        if numpy:
            return np.full(n, np.nan)  # (to_pandas: integers with nulls become float64)
        if pa.types.is_boolean(t):
            return pd.arrays.BooleanArray(np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
        return pd.arrays.IntegerArray(np.zeros(n, dtype=f"int{t.bit_width}"),
                                      np.ones(n, dtype=bool))  # (as _types_mapper: signed)
    if pa.types.is_floating(t):
        return np.full(n, np.nan, dtype=t.to_pandas_dtype())
    return None


def _to_frame(name: str, part: pa.Table, columns: Columns | None,
              numpy_dtypes: Collection[str] = ()) -> pd.DataFrame:
    """Table `name` from its Arrow rows `part`; a wanted column that `part` lacks (a v1 file
    written before the column was added; a column every row group holds as NA, which the
    reader leaves unread) reads as NA, made without decoding anything."""
    wanted = _wanted(name, columns)
    numpy = name in numpy_dtypes
    made: dict[str, Any] = {}
    for c in wanted:
        if c not in part.column_names:
            t = SCHEMA.field(c).type
            v = _null_column(t, part.num_rows, numpy)
            if v is None:
                part = part.append_column(SCHEMA.field(c), pa.nulls(part.num_rows, t))
            else:
                made[c] = v
    cols = [c for c in wanted if c not in made]
    t = part["t_ns"].to_numpy() if "t_ns" in part.column_names and part.num_rows else None
    ordered = t is not None and part["t_ns"].null_count == 0 and bool(np.all(t[1:] >= t[:-1]))
    del t
    # self_destruct frees each Arrow column as it is converted: peak memory ~1x, not 2x.
    tbl = part.select(cols)
    del part  # (tbl alone holds the buffers now, so that self_destruct can free them)
    df = tbl.to_pandas(types_mapper=None if numpy else _types_mapper,
                       self_destruct=True, split_blocks=True)
    del tbl
    if made:  # (beside the decoded ones, in the table's column order; nothing copied)
        df = _pd().DataFrame({c: made[c] if c in made else df[c] for c in wanted},
                             index=df.index, copy=False)
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
                 cols: list[str], where: str = "trace") -> pd.DataFrame | None:
    """Table `name` as plain numpy columns, read a column at a time (tablecolumns): peak memory
    about the frame plus a few row groups of one column. An integer column that may hold nulls
    (its row-group statistics say so, or have no count) becomes float64 with NaN. None where a
    column is not a number (the generic path reads it)."""
    dtypes = tablecolumns.numpy_dtypes(pf, groups, cols)
    if dtypes is None:
        return None
    return tablecolumns.FileColumns(pf, groups, cols, dtypes, where).frame()


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
           numpy_dtypes: Collection[str] = (),
           repeated: dict[str, int] | None = None) -> dict[str, pd.DataFrame]:
    """Rows of every table from one Arrow table holding several (recovered chunks), without
    repeated rows (counted into `repeated`, per table)."""
    kind = _kind_column(tbl.column_names)
    col = tbl[kind]
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    import pyarrow.compute as pc  # (here: ~40 ms of every command's start otherwise)

    out = {}
    for name in TABLES:
        part, n = without_repeats(tbl.filter(pc.equal(col, name)))
        if n and repeated is not None:
            repeated[name] = repeated.get(name, 0) + n
        out[name] = _to_frame(name, part, columns, numpy_dtypes)
    return out


def _kind_column(names: Sequence[str]) -> str:
    """The discriminator column's name: `table_name`, or `table` in a trace before v3."""
    for kind in (KIND, LEGACY_KIND):
        if kind in names:
            return kind
    raise TraceFormatError("trace has no 'table_name' (or 'table') column; it was not written "
                           "by gpuwatch")


def table_groups(pf: pq.ParquetFile, kind: str, schema: pa.Schema | None = None
                 ) -> tuple[dict[str, list[int]], list[int]]:
    """The file's row groups by the table they hold, and those that hold several (or whose
    statistics do not say): the discriminator column `kind`'s min and max, one table per group
    as gpuwatch writes them. (`schema`: the file's, where the caller has it: pyarrow builds
    it anew on every ask.)"""
    idx = (pf.schema_arrow if schema is None else schema).get_field_index(kind)
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
    return groups, mixed


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
    groups, mixed = table_groups(pf, kind)
    out: dict[str, Any] = {}
    repeated: dict[str, int] = {}
    for name in TABLES:
        cols = _wanted(name, columns)
        later = (_deferred(pf, groups[name], cols, where)
                 if name in defer and name in numpy_dtypes and groups[name] and not mixed
                 else None)
        if later is not None:
            out[name] = later
            continue
        frame = (_numpy_frame(pf, groups[name], name, cols, where)
                 if name in numpy_dtypes and groups[name] else None)
        if frame is not None:
            out[name] = _ordered(name, frame)
            continue
        # (a column NA in every row group is not decoded: _to_frame makes it NA for free)
        null = _null_throughout(pf, groups[name], cols) - {"t_ns", "gpu"}
        part, repeats = _read_groups(pf, groups[name], [c for c in cols if c not in null])
        if repeats:
            repeated[name] = repeats
        # (no name here holds the Arrow table: _to_frame frees each column as it converts it)
        out[name] = _to_frame(name, part, columns, numpy_dtypes)
        del part
    if mixed:
        extra = _split(pf.read_row_groups(mixed), columns, numpy_dtypes, repeated)
        out = {n: _pd().concat([out[n], extra[n]], ignore_index=True) if len(extra[n]) else out[n]
               for n in TABLES}
    out["repeated_rows"] = repeated
    release_arrow_memory()
    return out


def _null_throughout(pf: pq.ParquetFile, groups: list[int], cols: list[str]) -> set[str]:
    """The columns of `cols` the row groups' statistics say are null in every row of `groups`
    (not one absent from the file, nor where a group has no null count)."""
    schema, md = pf.schema_arrow, pf.metadata
    return {c for c in cols if groups and c in schema.names
            and tablecolumns.null_throughout(md, schema, groups, c)}


REPEAT_BATCH_ROWS = 65_536  # rows read at a time where a table may repeat rows (_read_groups)


def _read_groups(pf: pq.ParquetFile, groups: list[int], cols: list[str]) -> tuple[pa.Table, int]:
    """Columns `cols` of row groups `groups`, without the rows that repeat another row exactly
    (without_repeats), and how many were left out. Read REPEAT_BATCH_ROWS rows at a time,
    so that a file of one row written ten million times (a few MB on disk) costs memory for
    the rows it says, not for those it repeats."""
    if not groups:
        return SCHEMA.empty_table().select(cols), 0
    if "t_ns" in cols and _distinct_in_order(pf.read_row_groups(groups, columns=["t_ns"])["t_ns"]):
        # (no row can repeat another: read at once, as one Arrow chunk per column that pandas
        # takes without a copy; batches would cost a copy of every column)
        return pf.read_row_groups(groups, columns=cols), 0
    return batches_without_repeats(
        pf.iter_batches(batch_size=REPEAT_BATCH_ROWS, row_groups=groups, columns=cols),
        SCHEMA.empty_table().select(cols))


def batches_without_repeats(batches: Iterable[pa.RecordBatch],
                            empty: pa.Table) -> tuple[pa.Table, int]:
    """One table of `batches` without the rows that repeat another (without_repeats), and how
    many were left out: each batch reduced as it comes, so that memory holds the rows kept,
    then the repeats across batches. `empty`: the table when there are no batches."""
    parts, left_out = [], 0
    for batch in batches:
        part, n = without_repeats(pa.Table.from_batches([batch]))
        parts.append(part)
        left_out += n
    tbl, n = without_repeats(pa.concat_tables(parts) if parts else empty)
    return tbl, left_out + n


def _distinct_in_order(t: pa.ChunkedArray) -> bool:
    """Are the times `t` in order, each its own (as gpuwatch writes a table)? Then no row can
    repeat another."""
    if t.null_count:
        return False
    if len(t) < 2:
        return True
    import pyarrow.compute as pc  # (arrow's own compare: to_numpy would import pandas)

    a = t.combine_chunks() if isinstance(t, pa.ChunkedArray) else t
    return bool(pc.all(pc.greater(a.slice(1), a.slice(0, len(a) - 1))).as_py())


def without_repeats(tbl: pa.Table) -> tuple[pa.Table, int]:
    """`tbl` without the rows that repeat an earlier row exactly (every column equal, NA to
    NA), in its order, and how many there were. gpuwatch writes each measurement once, with
    its own times: a repeated row is damage (a chunk appended twice, a tool's copy), never a
    second measurement. Only rows whose time (t_ns) another row shares are compared, so a
    trace without repeats costs one count of distinct times."""
    import pyarrow.compute as pc  # (here: ~40 ms of every command's start otherwise)

    n = tbl.num_rows
    if n < 2 or "t_ns" not in tbl.column_names:
        return tbl, 0
    t = tbl["t_ns"]
    if _distinct_in_order(t):
        return tbl, 0
    if pc.count_distinct(t, mode="all").as_py() == n:
        return tbl, 0
    counts = pc.value_counts(t)
    shared = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    maybe = pc.indices_nonzero(pc.is_in(t, value_set=shared))
    same = tbl.take(maybe).to_pandas().duplicated(keep="first").to_numpy()
    if not same.any():
        return tbl, 0
    keep = np.ones(n, dtype=bool)
    keep[maybe.to_numpy()[same]] = False
    return tbl.filter(pa.array(keep)), int(same.sum())


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


# Each column gpuwatch writes (but the discriminator): its type, and that type's family
_OUR_TYPES = {f.name: (f.type, _kind_of(f.type)) for f in SCHEMA
              if f.name not in (KIND, LEGACY_KIND)}


def _check_types(schema: pa.Schema) -> None:
    """Every column gpuwatch knows holds its kind of value (numbers, text, booleans; widths
    may differ): a latency stored as text by another tool is refused in one line, not
    converted, or analysed into a traceback."""
    for f in schema:
        ours = _OUR_TYPES.get(f.name)
        if ours is None or f.type == ours[0]:  # (not ours, or as gpuwatch writes it)
            continue
        have, want = _kind_of(f.type), ours[1]
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


def _check_selection(columns: Columns | None, numpy_dtypes: Collection[str],
                     defer: Collection[str]) -> None:
    """One UsageError for a table or column load() would not know: a misspelt name would
    otherwise read as nothing asked for (the column silently absent)."""
    tables = ", ".join(TABLES)
    if columns is not None:
        if not isinstance(columns, Mapping):
            raise UsageError(f"columns takes a dict of table -> column names (e.g. "
                             f"{{'samples': ['sm_clock_mhz']}}), got {type(columns).__name__}")
        for table, cols in columns.items():
            if table not in TABLES:
                raise UsageError(f"columns names no table {table!r}; the tables are {tables}")
            if isinstance(cols, (str, bytes)) or not isinstance(cols, Iterable):
                raise UsageError(f"columns[{table!r}] takes a list of column names, not "
                                 f"{cols!r}")
            known = set(table_columns(table))
            unknown = [c for c in cols if c not in known]
            if unknown:
                raise UsageError(f"the {table} table has no column {unknown[0]!r}; its columns "
                                 f"are listed in docs/trace-format.md (or "
                                 f"gpuwatch.trace.table_columns({table!r}))")
    for name, given in (("numpy_dtypes", numpy_dtypes), ("defer", defer)):
        if isinstance(given, (str, bytes)):
            raise UsageError(f"{name} takes table names, e.g. ('samples',), not one string "
                             f"{given!r}")
        unknown = [t for t in given if t not in TABLES]
        if unknown:
            raise UsageError(f"{name} names no table {unknown[0]!r}; the tables are {tables}")


def _size(p: Path) -> int | None:
    try:
        return p.stat().st_size
    except OSError:
        return None


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
    _check_selection(columns, numpy_dtypes, defer)
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
        pf = pq.ParquetFile(p, **READ_OPTIONS)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:  # (a damaged column name)
        try:
            with open(p, "rb") as f:
                began = f.read(4) == b"PAR1"  # (a Parquet file begins and ends with it)
        except OSError:
            began = False
        if not began and _size(p) == 0:
            raise TraceFormatError(f"{p} is empty (0 bytes): not a trace; give a trace "
                                   "gpuwatch wrote") from e
        if not began:
            raise TraceFormatError(f"{p} is not a readable Parquet file: it does not begin as "
                                   "one; give a trace gpuwatch wrote") from e
        raise TraceFormatError(f"{p} is not a readable Parquet file ({_one_line(e)}); it begins "
                               "as one: was the copy cut short?") from e
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
        raise TraceFormatError(f"{p}: corrupt Parquet data ({_one_line(e)})"
                               f"{damaged_page_advice(e)}") from e
    return Trace(meta=meta, path=p, **tables)


def _load_partial(d: Path, columns: Columns | None = None,
                  numpy_dtypes: Collection[str] = ()) -> Trace:
    meta_file = d / "meta.json"
    if not meta_file.exists():
        raise TraceFormatError(f"{d} is a directory but not a gpuwatch trace (no meta.json); "
                               f"a directory of traces is a fleet: `gpuwatch analyze {d}`, or "
                               f"gpuwatch.analysis.fleet.fleet(path) from Python")
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
    repeated: dict[str, int] = {}
    frames = _split(tbl, columns, numpy_dtypes, repeated)
    return Trace(meta=meta, path=d, recovered=True, repeated_rows=repeated, **frames)
