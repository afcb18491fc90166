"""A trace table's numeric columns, read from the file one at a time when asked for.

Analysis reads each telemetry column of the samples table once, reduces it onto the regions,
and is done with it (analysis.merge). Loading the table whole first holds every column at once:
10 million samples of 15 columns are 1.2 GB, most of a 1M-inference analysis's memory, and most
of its load time is the page faults of filling them. `FileColumns` reads a column from the
file's row groups when it is asked for, keeps only the time and GPU columns (every reduction
needs them), and frees the rest with the caller's last reference. `FrameColumns` gives the same
interface over a table already in memory (a recovered `.partial`, a Trace built in code).

Both give columns as numpy-backed pandas Series: an integer column that may hold nulls as
float64 with NaN, as `load(numpy_dtypes=...)` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import TraceFormatError, damaged_page_advice

if TYPE_CHECKING:
    import pandas as pd

KEPT = ("t_ns", "gpu")  # read once and kept: every window search and GPU filter uses them
BATCH_GROUPS = 16  # row groups read per call (65,536 rows each: about 8 MB of one column)


def numpy_dtypes(pf: pq.ParquetFile, groups: Sequence[int],
                 cols: Sequence[str]) -> dict[str, np.dtype[Any]] | None:
    """The numpy dtype each column loads as from these row groups: its own for floats and for
    integers that hold no null (the row groups' statistics say so), float64 for integers that
    may hold one, and float64 (all NaN) for a column the file lacks (added after it was
    written). None if a column is not a number."""
    schema, md = pf.schema_arrow, pf.metadata
    out: dict[str, np.dtype[Any]] = {}
    for c in cols:
        if c not in schema.names:
            out[c] = np.dtype("float64")
            continue
        t, j = schema.field(c).type, schema.get_field_index(c)
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            return None
        nulls = False
        for g in groups:
            st = md.row_group(g).column(j).statistics
            if st is None or not st.has_null_count or st.null_count > 0:
                nulls = True
                break
        out[c] = (np.dtype("float64") if pa.types.is_integer(t) and nulls
                  else np.dtype(t.to_pandas_dtype()))
    return out


def read_column(pf: pq.ParquetFile, groups: Sequence[int], col: str,
                dtype: np.dtype[Any], schema: pa.Schema | None = None) -> np.ndarray:
    """Column `col` of these row groups as one numpy array of `dtype` (NaN for nulls), read a
    few row groups at a time into the preallocated result. Read-only where it is all NaN.
    (`schema`: the file's, where the caller has it: pyarrow builds it anew on every ask.)"""
    md = pf.metadata
    schema = pf.schema_arrow if schema is None else schema
    n = sum(md.row_group(g).num_rows for g in groups)
    if col not in schema.names or (dtype.kind == "f" and null_throughout(md, schema, groups,
                                                                        col)):
        # (absent, or recorded as NA throughout: nothing to decode, and no memory to fill:
        # a read-only view of one NaN)
        return np.broadcast_to(np.float64(np.nan), (n,))
    out = np.empty(n, dtype)
    at = 0
    for i in range(0, len(groups), BATCH_GROUPS):
        part = pf.read_row_groups(list(groups[i:i + BATCH_GROUPS]), columns=[col]).column(0)
        for chunk in part.chunks:
            k = len(chunk)
            out[at:at + k] = chunk.to_numpy(zero_copy_only=False)  # (ints with nulls: NaN)
            at += k
        del part
    return out


def all_null(col: Any) -> bool:
    st = col.statistics
    return st is not None and st.has_null_count and st.null_count == col.num_values


def null_throughout(md: pq.FileMetaData, schema: pa.Schema, groups: Sequence[int],
                    col: str) -> bool:
    """Whether the statistics of row groups `groups` say column `col` (in `schema`) is null in
    every row: a signal never recorded, which need not be decoded."""
    j = schema.get_field_index(col)
    return all(all_null(md.row_group(g).column(j)) for g in groups)


class FileColumns:
    """Columns `names` of one table's row groups in a Parquet file, read on demand; `take`
    selects and orders rows (a GPU's samples, the readings with a time) without reading."""

    def __init__(self, pf: pq.ParquetFile, groups: Sequence[int], names: Sequence[str],
                 dtypes: dict[str, np.dtype[Any]], where: str = "trace") -> None:
        self._pf, self._groups, self.names = pf, list(groups), tuple(names)
        self._schema = pf.schema_arrow  # (built anew on every ask of the file: kept)
        self._where = where  # (the file, for an error's message)
        self._dtypes = dtypes
        self._kept: dict[str, np.ndarray] = {}
        self._rows: np.ndarray | None = None  # row positions taken (None: all, in file order)
        self._n = sum(pf.metadata.row_group(g).num_rows for g in self._groups)

    def __len__(self) -> int:
        return self._n if self._rows is None else int(self._rows.size)

    def __contains__(self, col: object) -> bool:
        return col in self.names

    def raw(self, col: str) -> np.ndarray:
        """Column `col` for every row of the table, in file order (the kept ones are shared:
        do not write into them)."""
        got = self._kept.get(col)
        if got is None:
            got = self._read(col)
            if col in KEPT:
                self._kept[col] = got
        return got

    def _read(self, col: str) -> np.ndarray:
        if col not in self.names:
            raise KeyError(col)
        try:
            return read_column(self._pf, self._groups, col, self._dtypes[col], self._schema)
        except (pa.ArrowInvalid, OSError) as e:  # (damaged after its footer was read)
            raise self._corrupt(col, e) from e

    def _corrupt(self, col: str, e: Exception) -> TraceFormatError:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        return TraceFormatError(f"{self._where}: corrupt Parquet data in column {col!r} ({why})"
                                f"{damaged_page_advice(e)}")

    def array(self, col: str) -> np.ndarray:
        v = self.raw(col)
        return v if self._rows is None else v[self._rows]

    def __getitem__(self, col: str) -> pd.Series:
        import pandas as pd

        return pd.Series(self.array(col), copy=False, name=col)

    def constant(self, col: str) -> Any:
        """The one value `col` holds in every row (no null), from the row groups' statistics
        alone; None where they do not show one (read it to tell). The selection (take) holds
        a subset of the rows, so the same value."""
        schema, md = self._schema, self._pf.metadata
        if col not in schema.names or not self._groups:
            return None
        j = schema.get_field_index(col)
        seen = set()
        for g in self._groups:
            st = md.row_group(g).column(j).statistics
            if st is None or not st.has_min_max or not st.has_null_count or st.null_count:
                return None
            seen |= {st.min, st.max}
            if len(seen) > 1:
                return None
        return seen.pop()

    def within(self, col: str, lo: float, hi: float) -> bool:
        """Whether every value of `col` is known, from the row groups' statistics alone, to
        lie in [lo, hi] or be null (False: it may not; read it to tell)."""
        schema, md = self._schema, self._pf.metadata
        if col not in schema.names:
            return True
        j = schema.get_field_index(col)
        for g in self._groups:
            c = md.row_group(g).column(j)
            if all_null(c):
                continue
            st = c.statistics
            if st is None or not st.has_min_max or not (lo <= st.min and st.max <= hi):
                return False
        return True

    def chunks(self, cols: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
        """Columns `cols` of every row (not a selection), in file order (time order: a table is
        read this way only when its times are in order, see trace.reader), a few row groups
        at a time: a pass over a table too big to hold whole. Each column as `raw` gives it."""
        if self._rows is not None:
            raise ValueError("chunks reads every row of the table, not a selection")
        at = 0
        for i in range(0, len(self._groups), BATCH_GROUPS):
            groups = self._groups[i:i + BATCH_GROUPS]
            n = sum(self._pf.metadata.row_group(g).num_rows for g in groups)
            out = {}
            for c in cols:
                if c in self._kept:
                    out[c] = self._kept[c][at:at + n]
                else:
                    try:
                        out[c] = read_column(self._pf, groups, c, self._dtypes[c], self._schema)
                    except (pa.ArrowInvalid, OSError) as e:
                        raise self._corrupt(c, e) from e
            at += n
            yield out

    def forget(self) -> None:
        """Drop the kept columns (a caller done with the table: they are read again if asked),
        and give back what Arrow's allocator kept of the reads."""
        self._kept.clear()
        pa.default_memory_pool().release_unused()

    def take(self, rows: np.ndarray) -> FileColumns:
        """These rows (positions into this selection), sharing the file and kept columns."""
        out = FileColumns.__new__(FileColumns)
        out.__dict__.update(self.__dict__)
        out._rows = rows if self._rows is None else self._rows[rows]
        return out

    def frame(self) -> pd.DataFrame:
        """Every column at once, as load() gives the table (each a writable array of its own:
        a column of NaN too, which `raw` gives as a read-only view)."""
        import pandas as pd

        cols = {}
        for c in self.names:
            if self._rows is not None:
                v = self.array(c)  # (a selection: a new array)
            elif c in self._kept:
                v = self._kept[c].copy()  # (the kept one stays the reader's)
            else:
                v = self._read(c)  # (not kept: the frame's own)
            cols[c] = v if v.flags.writeable else np.array(v)  # (a NaN column's view)
        return pd.DataFrame(cols, copy=False)


def _numpy(col: pd.Series) -> np.ndarray:
    """A column as numpy: its own dtype, or float64 with NaN where a null may be."""
    if isinstance(col.dtype, np.dtype):
        return col.to_numpy()
    if col.dtype.kind in "iub" and not col.isna().any():
        return col.to_numpy(dtype=col.dtype.numpy_dtype)
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


class FrameColumns:
    """The FileColumns interface over a table in memory."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df
        self.names = tuple(df.columns)

    def __len__(self) -> int:
        return len(self._df)

    def __contains__(self, col: object) -> bool:
        return col in self._df

    def __getitem__(self, col: str) -> pd.Series:
        return self._df[col]

    def constant(self, col: str) -> Any:
        return None  # (read it: the table is in memory)

    def within(self, col: str, lo: float, hi: float) -> bool:
        return False  # (read it: the table is in memory)

    def chunks(self, cols: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
        """The columns as one chunk, in time order (t_ns; stably sorted where the table is not),
        as FileColumns.chunks gives them: numpy, integers with a null as float64 with NaN."""
        df = self._df
        if "t_ns" in df and len(df) > 1:
            col = df["t_ns"]
            t = (np.asarray(col, dtype=np.int64) if isinstance(col.dtype, np.dtype)
                 else col.to_numpy(dtype="int64", na_value=0))  # (never missing: load drops those)
            if bool((t[1:] < t[:-1]).any()):
                df = df.iloc[np.argsort(t, kind="stable")]
        yield {c: _numpy(df[c]) for c in cols}

    def forget(self) -> None:
        """Nothing to drop: the table is in memory."""

    def take(self, rows: np.ndarray) -> FrameColumns:
        return FrameColumns(self._df.iloc[rows].reset_index(drop=True))

    def frame(self) -> pd.DataFrame:
        return self._df
