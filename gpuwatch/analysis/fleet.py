"""Fleet questions over a directory of traces, streamed one trace at a time with pyarrow.parquet
(as a pyarrow.dataset would read them, hive partitions included, but without pandas, which
pyarrow.dataset imports).

A fleet dataset is what `record --dataset DIR` writes, DIR/host=H/gpu_model=M/run=R/trace.parquet,
but any directory of gpuwatch traces works (runs are then told apart by file). Only the inference
rows' few columns are scanned, one batch at a time, and each (run, condition) keeps a bounded
summary, so memory does not grow with the fleet:

- `n`, and `p50_ms`/`p99_ms` from a log-binned histogram (200 bins a decade: within 0.6%);
- `early_p50_ms`, `late_p50_ms`: exact medians of the first EARLY_ITERS and the last LATE_ITERS
  iterations (the layer a run settles in; the same definition as `record`'s summary).

Then, per GPU model and gap: how many runs, and the median over runs of their late latency:
"stable latency by GPU model and gap". To see *why* one run layered, analyse its file.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import TraceFormatError, UsageError
from ..lazy import Lazy, Later, pending
from .columns import EARLY_ITERS, LATE_ITERS, NO_CONDITION
from ..trace import (KIND, LEGACY_KIND, META_KEY, READ_OPTIONS, REPEAT_BATCH_ROWS, _check_meta,
                     _check_types, live_writer, partition_value, read_partial_meta,
                     batches_without_repeats, table_groups)
from .columns import MAX_LATENCY_MS
from .status import error_of

if TYPE_CHECKING:
    import pandas as pd

PARTITIONS = ("host", "gpu_model", "run")
_BINS_PER_DECADE = 200
_LO_MS, _DECADES = 1e-3, 8  # 1 us .. 100 s
_NBINS = _BINS_PER_DECADE * _DECADES


@dataclass
class _Acc:
    """Bounded per-(run, condition) state: a histogram and the first/last iterations."""

    gap_ms: float
    n: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(_NBINS + 2, np.int64))
    early: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # (iteration, ms)
    late: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))

    def add(self, it: np.ndarray, ms: np.ndarray) -> None:
        self.n += ms.size
        np.add.at(self.hist, _bin(ms), 1)
        both = np.column_stack([it, ms])
        self.early = _keep(np.vstack([self.early, both]), EARLY_ITERS, smallest=True)
        self.late = _keep(np.vstack([self.late, both]), LATE_ITERS, smallest=False)

    def quantile(self, q: float) -> float:
        c = np.cumsum(self.hist)
        i = int(np.searchsorted(c, q * c[-1], side="left"))
        return float(_LO_MS * 10 ** ((min(max(i, 1), _NBINS) - 0.5) / _BINS_PER_DECADE))


def _bin(ms: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.floor(np.log10(np.maximum(ms, 1e-12) / _LO_MS) * _BINS_PER_DECADE) + 1
    return np.clip(np.nan_to_num(b, nan=0), 0, _NBINS + 1).astype(np.int64)


def _keep(rows: np.ndarray, k: int, smallest: bool) -> np.ndarray:
    if len(rows) <= k:
        return rows
    order = np.argsort(rows[:, 0] if smallest else -rows[:, 0], kind="stable")
    return rows[order[:k]]


@dataclass(frozen=True)
class Fleet(Lazy):
    """What `fleet()` found: one row per (run, condition), and the per-model/gap answer.

    `runs` and `by_model_gap` are pandas DataFrames, made when first read: the command's
    JSON, text and one line come from the same rows without pandas (~0.4 s of a fleet's
    start)."""

    runs: pd.DataFrame
    by_model_gap: pd.DataFrame
    files: int
    skipped: tuple[str, ...] = ()
    invalid_latencies: int = 0  # measured inferences left out: no valid gpu_ms
    repeated_rows: int = 0  # inference rows left out: each repeated another (trace.reader)
    incomplete: tuple[str, ...] = ()  # traces whose recording did not complete (counted)
    # .partial recordings left out: never finished (a crash, kill -9: `finish` them), and
    # still being written (analyse again once they end)
    unfinished: tuple[str, ...] = ()
    in_progress: tuple[str, ...] = ()
    skipped_why: dict[str, str] = field(default_factory=dict)  # skipped path -> why

    def rows(self, table: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Table `table` ("runs" or "by_model_gap") as its rows (dicts, NaN where unknown) and
        columns: without pandas where the table has not been made."""
        later = pending(self, table)
        if later is not None:
            rows, cols = later.source
            return rows, cols
        df = getattr(self, table)
        return df.to_dict("records"), [str(c) for c in df.columns]

    def headline(self) -> str:
        """One line: how many traces, and the group whose late inferences ran slowest against
        its early ones (the fleet's question: where does latency creep up?)."""
        t, cols = self.rows("by_model_gap")
        head = self.counts()
        ratios = [_num(r.get("late_over_early_max")) for r in t]
        if not any(v == v for v in ratios):
            return head + ": no condition with valid latencies"
        r = t[max((i for i, v in enumerate(ratios) if v == v), key=lambda i: (ratios[i], -i))]
        where = ", ".join(([str(r["gpu_model"])] if "gpu_model" in cols else [])
                          + ([f"engine {r['engine']}"] if "engine" in cols else [])
                          + [f"gap {r['gap_ms']:g} ms"])
        runs = int(r["runs"])
        return (f"{head}, {len(t)} group{'s' if len(t) != 1 else ''}; the largest late/early "
                f"ratio is {r['late_over_early_max']:.2f}x ({where}; "
                + (f"median over its {runs} runs {r['late_over_early_p50']:.2f}x)" if runs != 1
                   else "its one run)"))

    def counts(self) -> str:
        """How many traces were read, and what did not count or counted only in part:
        "5 traces (1 did not complete, counted with what it kept; 1 unfinished .partial left
        out)"."""
        n = len(self.incomplete)
        left = [f"{n} did not complete, counted with what {'it' if n == 1 else 'they'} kept"
                if n else "",
                f"{len(self.skipped)} other file{'s' if len(self.skipped) != 1 else ''} "
                f"skipped" if self.skipped else "",
                f"{len(self.unfinished)} unfinished .partial left out" if self.unfinished
                else "",
                f"{len(self.in_progress)} still recording, left out" if self.in_progress
                else ""]
        said = "; ".join(x for x in left if x)
        return f"{self.files} trace{'s' if self.files != 1 else ''}" + (
            f" ({said})" if said else "")

    def to_dict(self) -> dict[str, Any]:
        def records(table: str) -> list[dict[str, Any]]:
            rows, cols = self.rows(table)
            return [{c: _json_value(r.get(c)) for c in cols} for r in rows]

        return {"files": self.files, "skipped": list(self.skipped),
                "skipped_why": {p: self.skipped_why.get(p) for p in self.skipped},
                "incomplete": list(self.incomplete), "unfinished": list(self.unfinished),
                "in_progress": list(self.in_progress),
                "invalid_latencies": self.invalid_latencies, "repeated_rows": self.repeated_rows,
                "by_model_gap": records("by_model_gap"), "runs": records("runs")}


def _num(v: Any) -> float:
    """A cell as a float (NaN where it is none)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _json_value(v: Any) -> Any:
    """A cell as the JSON has always given it (pandas' to_json): NaN and None as null, floats
    to 10 decimals, numpy scalars as Python's."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, float):
        return round(v, 10)
    return v


def trace_files(root: Path) -> list[str]:
    """Every finished trace under `root` (unfinished `.partial` recordings, and directories
    that happen to be named *.parquet, left out)."""
    return sorted(str(p) for p in root.rglob("*.parquet")
                  if not any(part.endswith(".partial") for part in p.relative_to(root).parts)
                  and p.is_file())


def _screen(path: str, schema: pa.Schema) -> tuple[str | None, str, dict[str, str], str]:
    """(the discriminator column of a fleet member, "", its host and GPU model from its
    metadata, its recording's status) if it is a gpuwatch trace this gpuwatch reads (its
    file's `schema` says), else (None, why not, {}, ""). A trace newer than this gpuwatch is
    an error: upgrading is the fix, not leaving it out."""
    raw = (schema.metadata or {}).get(META_KEY)
    names = schema.names
    kind = KIND if KIND in names else LEGACY_KIND if LEGACY_KIND in names else None
    if raw is None or kind is None:
        return None, "not a gpuwatch trace", {}, ""
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        return None, "its gpuwatch metadata is not valid JSON", {}, ""
    try:
        _check_meta(meta, Path(path))
        _check_types(schema)
    except TraceFormatError as e:  # (a newer schema among them: left out, the fix named)
        return None, str(e).removeprefix(f"{path}: ").removeprefix(f"{path} "), {}, ""
    return kind, "", _own_partition(meta), _status(meta)


def _unreadable(e: Exception, path: str) -> str:
    """Why a file of the fleet cannot be read, as load() says it of one trace."""
    try:
        if os.path.getsize(path) == 0:
            return "empty (0 bytes): not a trace"
    except OSError:
        pass
    first = " ".join(str(e).split()).split(". ")[0]  # (pyarrow's first sentence)
    return f"not a readable Parquet file ({first})"


def _status(meta: dict[str, Any]) -> str:
    """A member's recording as the runs table says it: "complete", "failed (the run stopped at
    an error: ValueError: boom)", "interrupted", ... (analysis.status words it the same way)."""
    got = meta.get("status")
    status = got if isinstance(got, str) and got else "unknown"
    if status == "complete":
        return status
    err = error_of(meta)
    why = ("the run stopped at an error" if meta.get("failed_by") == "program"
           else "" if status != "failed" else "the recording failed")
    detail = ": ".join(x for x in (why, err) if x)
    return f"{status} ({detail})" if detail else status


def _own_partition(meta: dict[str, Any]) -> dict[str, str]:
    """A trace's host and GPU model as `record --dataset` names its directories, from its
    metadata: for a member outside hive directories (a folder of plain traces), whose runs
    would otherwise mix GPU models in one group."""
    out = {}
    host = meta.get("host")
    if isinstance(host, dict) and isinstance(host.get("hostname"), str):
        out["host"] = partition_value(host["hostname"])
    devices = meta.get("devices")
    if isinstance(devices, list) and devices and isinstance(devices[0], dict) \
            and isinstance(devices[0].get("name"), str):
        out["gpu_model"] = partition_value(devices[0]["name"])
    return out


def fleet(root: str | os.PathLike[str],
          progress: Callable[[int, int], None] | None = None) -> Fleet:
    """Stream every trace under `root` (see the module docstring) into the fleet tables."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory of traces")
    files = trace_files(root)
    odd = sorted(str(p) for p in root.rglob("*.parquet") if not p.is_file()
                 and not any(part.endswith(".partial") for part in p.relative_to(root).parts))
    unfinished, live = [], []
    for p in sorted(root.rglob("*.partial")):
        if p.is_dir():
            try:  # (one still being recorded is not to be finished: it will be)
                who = live_writer(read_partial_meta(p))
            except TraceFormatError:
                who = None
            (live.append((str(p), who)) if who else unfinished.append(str(p)))
    if live:
        warnings.warn(f"left out {len(live)} recording(s) still in progress, e.g. {live[0][0]} "
                      f"({live[0][1]} is writing it): analyse the directory again once it "
                      f"has finished", stacklevel=2)
    if unfinished:  # (a crash or a full disk mid-run): not analysed, but not silently
        warnings.warn(f"left out {len(unfinished)} unfinished recording(s) (.partial), e.g. "
                      f"{unfinished[0]}: finish each with python -m gpuwatch.finish to include "
                      f"it", stacklevel=2)
    if not files:
        raise UsageError(f"no traces (*.parquet) under {root}")
    skipped = list(odd)
    reasons: dict[str, str] = {p: "not a regular file" for p in odd}
    found: list[_Member] = []  # (the readable traces, in file order)
    columns: dict[str, tuple[list[str], list[pa.Field]]] = {}  # kind -> its first trace's
    invalid = repeated = 0  # measured inferences with no valid latency; rows repeating others
    # (each file's footer parsed once, and what it holds reduced to its runs' summaries before
    # the next is opened: peak memory does not grow with the number of traces)
    for done, path in enumerate(files, 1):
        if progress is not None:
            progress(done, len(files))
        try:
            pf = pq.ParquetFile(path, **READ_OPTIONS)
        except (pa.ArrowInvalid, OSError) as e:
            skipped.append(path)
            reasons[path] = _unreadable(e, path)
            continue
        with pf:
            schema = pf.schema_arrow  # (built anew on every ask: once)
            kind, why, own, status = _screen(path, schema)
            if kind is None:
                skipped.append(path)
                reasons[path] = why
                continue
            if kind not in columns:
                columns[kind] = _columns(schema)
            tbl, n, bad = _measured(pf, schema, kind, *columns[kind])
        repeated += n
        invalid += bad
        # (its runs' rows now, and the histograms dropped: only the partition values wait)
        found.append(_Member(path, kind, own, status,
                             [_run_row(path, engine, cond, acc, status)
                              for (engine, cond), acc in _summaries(tbl).items()]))
        del tbl
    if skipped:
        warnings.warn(f"left out {len(skipped)} Parquet file(s) that are not readable gpuwatch "
                      f"traces (first: {skipped[0]}: {reasons[skipped[0]]})"
                      + ("; --json's skipped_why gives each one's reason" if len(skipped) > 1
                         else ""), stacklevel=2)
    if not found:
        raise TraceFormatError(f"none of the {len(files)} Parquet files under {root} is a "
                               "readable gpuwatch trace")
    incomplete = [m for m in found if m.status != "complete"]
    if incomplete:  # (counted with what they kept, as DuckDB's query counts them: but said)
        warnings.warn(f"{len(incomplete)} of the {len(found)} traces did not complete (first: "
                      f"{incomplete[0].path}: {incomplete[0].status}); their runs count with "
                      f"the inferences they kept (the runs table's status says which)",
                      stacklevel=2)
    # (every partition key, whatever the layout, so that a script reads the same columns
    # of a dataset and of a folder of plain traces: host and GPU model from the directories
    # where they say, else the metadata; run from its directory, else NA (the file names it))
    keys = list(PARTITIONS)
    # (the partition values' types: per discriminator name, as a pyarrow.dataset of the traces
    # of each would infer them)
    typed: dict[str, dict[str, Any]] = {}
    for kind in columns:
        typed.update(_hive_typed(root, [m.path for m in found if m.kind == kind]))
    run_rows: list[dict[str, Any]] = []
    for m in found:
        part = {**m.own, **{k: v for k, v in typed[m.path].items() if v is not None}}
        values = tuple(part.get(k) for k in keys)
        run_rows += [{**dict(zip(keys, values)), **row} for row in m.rows]
    runs, run_cols = _runs_table(run_rows, keys)
    groups, group_cols = _by_model_gap(runs, run_cols)
    if invalid:
        warnings.warn(f"left out {invalid} measured inference(s) with no valid latency "
                      f"(missing, NaN, <= 0 or over {MAX_LATENCY_MS:.0e} ms)", stacklevel=2)
    if repeated:
        warnings.warn(f"left out {repeated:,} inference row(s) that repeated another row "
                      f"exactly (damaged or copied data, never a second measurement)",
                      stacklevel=2)
    return Fleet(runs=Later(lambda: _frame(runs, run_cols), source=(runs, run_cols)),
                 by_model_gap=Later(lambda: _frame(groups, group_cols),
                                    source=(groups, group_cols)), files=len(found),
                 incomplete=tuple(m.path for m in incomplete),
                 unfinished=tuple(unfinished), in_progress=tuple(p for p, _ in live),
                 skipped=tuple(skipped), skipped_why={p: reasons[p] for p in skipped},
                 invalid_latencies=invalid, repeated_rows=repeated)


@dataclass
class _Member:
    """A readable trace of the fleet, as kept once read: its rows of the runs table."""

    path: str
    kind: str  # its discriminator column's name (schema v3, or older)
    own: dict[str, str]  # host and GPU model from its metadata
    status: str  # how its recording went (_status)
    rows: list[dict[str, Any]]  # its runs table's rows, but for the partition values


def _columns(schema: pa.Schema) -> tuple[list[str], list[pa.Field]]:
    """The columns read of every trace with this discriminator name, and their types: the
    first such trace's (`schema`), as a pyarrow.dataset of them would. The times and region
    id too: a row that repeats another in all of them is a copy, left out as load() does."""
    cols = ["name", "condition", "gap_ms", "iteration", "gpu_ms"] + [
        c for c in ("t_ns", "start_ns", "end_ns", "region_id") if c in schema.names]
    return cols, [schema.field(c) if c in schema.names else pa.field(c, pa.null())
                  for c in cols]


def _measured(pf: pq.ParquetFile, schema: pa.Schema, kind: str, cols: list[str],
              fields: list[pa.Field]) -> tuple[pa.Table, int, int]:
    """A trace's measured inferences with a valid latency (columns `cols`), how many rows
    repeated another (left out, as load() does, a batch at a time so that ten million cost no
    more), and how many had no valid latency (missing, NaN, <= 0 or absurd: no measurement,
    as analyze reads it)."""
    tbl, repeated = batches_without_repeats(_measured_batches(pf, schema, kind, cols, fields),
                                            pa.Table.from_batches([], pa.schema(fields)))
    ms = _floats(tbl, "gpu_ms")
    with np.errstate(invalid="ignore"):
        valid = (ms > 0) & (ms <= MAX_LATENCY_MS)
    return tbl.filter(_mask(valid)), repeated, int((~valid).sum())


def _summaries(tbl: pa.Table) -> dict[tuple[Any, Any], _Acc]:
    """Per (engine, condition) of one trace's measured inferences, its bounded summary (the
    rows of a group in their file's order)."""
    accs: dict[tuple[Any, Any], _Acc] = {}
    if tbl.num_rows == 0:
        return accs
    name, names = _codes(tbl.column("name"))
    cond, conds = _codes(tbl.column("condition"))
    # (rows of no condition: named as the analysis names them; set_condition refuses "")
    conds = [NO_CONDITION if c == "" else c for c in conds]
    n_conds = len(conds)
    group = name * n_conds + cond
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    it, ms = _floats(tbl, "iteration"), _floats(tbl, "gpu_ms")
    gap = _floats(tbl, "gap_ms")
    for a, b in zip(starts, np.r_[starts[1:], len(order)]):
        rows = order[a:b]
        g = int(group[rows[0]])
        key = (names[g // n_conds], conds[g % n_conds])
        acc = accs.get(key)
        if acc is None:
            # (the median: a `gpuwatch run` trace's gaps vary within a condition)
            acc = accs[key] = _Acc(gap_ms=float(np.nanmedian(gap[rows]))
                                   if np.isfinite(gap[rows]).any() else np.nan)
        acc.add(it[rows], ms[rows])
    return accs


def _measured_batches(pf: pq.ParquetFile, file_schema: pa.Schema, kind: str, cols: list[str],
                      fields: list[pa.Field]) -> Iterator[pa.RecordBatch]:
    """Columns `cols` of the file's measured inferences (inference rows, not warm-up, that did
    not raise: a row whose flags are missing is not one), REPEAT_BATCH_ROWS rows read at a
    time from the row groups that may hold inferences (the statistics of the discriminator
    column say which; gpuwatch writes one table per group); a column the file lacks is null."""
    names = file_schema.names
    if "warmup" not in names or "kind" not in names:  # (a null flag keeps no row)
        return
    by_table, mixed = table_groups(pf, kind, file_schema)
    groups = sorted(by_table["inferences"] + mixed)
    if not groups:
        return
    md = pf.metadata
    # (a group whose statistics give it to the inferences, with no null, holds nothing else:
    # the discriminator is read and tested only where a group may hold another table)
    j = names.index(kind)
    test_kind = bool(mixed) or any(
        (st := md.row_group(g).column(j).statistics) is None or not st.has_null_count
        or st.null_count for g in groups)
    flags = [c for c in ([kind] if test_kind else []) + ["kind", "warmup", "error"]
             if c in names]
    read = list(dict.fromkeys([c for c in cols if c in names] + flags))
    schema = pa.schema(fields)
    # (a trace's inferences in one read where they fit a batch, as most do: iter_batches costs
    # ~0.7 ms more a file; and on this thread: Arrow's pool costs more than it gives here)
    batches: Iterable[pa.RecordBatch] = (
        pf.read_row_groups(groups, columns=read, use_threads=False).to_batches()
        if sum(md.row_group(g).num_rows for g in groups) <= REPEAT_BATCH_ROWS
        else pf.iter_batches(batch_size=REPEAT_BATCH_ROWS, row_groups=groups, columns=read,
                             use_threads=False))
    for batch in batches:
        def col(c: str) -> pa.Array:
            a = batch.column(c)
            return a.dictionary_decode() if pa.types.is_dictionary(a.type) else a
        keep = pc.and_(pc.equal(col("kind"), _INFERENCE[0]), pc.invert(col("warmup")))
        if test_kind:
            keep = pc.and_(keep, pc.equal(col(kind), _INFERENCES[0]))
        if "error" in names and batch.column("error").null_count < batch.num_rows:
            keep = pc.and_(keep, pc.is_null(col("error")))
        kept = batch.filter(keep)  # (a null in the mask drops its row)
        yield pa.RecordBatch.from_arrays(
            [kept.column(c) if c in names else pa.nulls(kept.num_rows, f.type)
             for c, f in zip(cols, fields)], schema=schema)


def _strings(values: list[str]) -> pa.Array:
    """Python strings as an Arrow string array, built from its buffers (pa.array imports
    pandas where it is installed; see _array)."""
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, np.int32)
    offsets[1:] = np.cumsum([len(d) for d in data])
    return pa.Array.from_buffers(pa.string(), len(data),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


_INFERENCES, _INFERENCE = _strings(["inferences"]), _strings(["inference"])
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_INT32 = re.compile(r"-?[0-9]+")


def _hive(root: Path, path: str) -> dict[str, str | None]:
    """The `key=value` directories between `root` and the file (percent-decoded; the hive
    default partition as None), as pyarrow's hive partitioning reads them."""
    out: dict[str, str | None] = {}
    for part in Path(os.path.relpath(path, root)).parts[:-1]:
        key, eq, value = part.partition("=")
        if eq and key:
            value = urllib.parse.unquote(value)
            out[key] = None if value == _HIVE_NULL else value
    return out


def _hive_typed(root: Path, paths: list[str]) -> dict[str, dict[str, Any]]:
    """Each file's partition values, a key's values as integers where every value of it among
    `paths` is one (an int32), else as strings: the types pyarrow.dataset infers."""
    raw = {p: _hive(root, p) for p in paths}
    keys = {k for v in raw.values() for k in v}
    ints = {k for k in keys
            if all(v is None or (_INT32.fullmatch(v) and -2**31 <= int(v) < 2**31)
                   for r in raw.values() for kk, v in r.items() if kk == k)}
    return {p: {k: (int(v) if k in ints and v is not None else v) for k, v in r.items()}
            for p, r in raw.items()}


def _floats(tbl: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64, nulls as NaN."""
    return _array(pc.cast(tbl.column(name), pa.float64()), np.float64)


def _array(col: pa.ChunkedArray | pa.Array, dtype: Any) -> np.ndarray:
    """A column of fixed-width values as a numpy array of `dtype` (its Arrow type's), nulls
    as NaN, read from its Arrow buffers. (pyarrow's own to_numpy, pa.array and pa.scalar
    import pandas where it is installed: ~0.4 s of a fleet's start, in a command that has no
    other use for it.)"""
    a = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    dtype = np.dtype(dtype)
    if not len(a):
        return np.empty(0, dtype)
    out = np.frombuffer(a.buffers()[1], dtype=dtype, count=len(a) + a.offset)[a.offset:].copy()
    if a.null_count:
        valid = np.unpackbits(np.frombuffer(a.buffers()[0], np.uint8), bitorder="little",
                              count=len(a) + a.offset)[a.offset:].astype(bool)
        out[~valid] = np.nan
    return out


def _mask(keep: np.ndarray) -> pa.Array:
    """A numpy bool array as an Arrow boolean array (filter's mask), without pa.array."""
    bits = np.packbits(np.asarray(keep, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(keep), [None, pa.py_buffer(bits)])


def _codes(col: Any) -> tuple[np.ndarray, list[str]]:
    """A string column as integer codes (nulls as "", one value with ""), and the values
    they number."""
    enc = pc.dictionary_encode(col, null_encoding="encode").combine_chunks()
    codes = _array(pc.cast(enc.indices, pa.int64()), np.int64)
    values = ["" if v is None else v for v in enc.dictionary.to_pylist()]
    first = {v: values.index(v) for v in values}  # (null and "" both present: one code)
    if len(first) < len(values):
        remap = np.array([first[v] for v in values], np.int64)
        codes = remap[codes]
        keep = sorted(first.values())
        codes = np.searchsorted(keep, codes)
        values = [values[i] for i in keep]
    return codes, values


RUN_COLUMNS = ("file", "status", "engine", "condition", "gap_ms", "n", "p50_ms", "p99_ms",
               "early_p50_ms", "late_p50_ms", "late_over_early")  # (after the partition keys)
GROUP_COLUMNS = ("runs", "stable_ms", "stable_ms_min", "stable_ms_max", "late_over_early_p50",
                 "late_over_early_max")  # (after the GPU model, engine and gap)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _order(v: Any) -> tuple[bool, Any]:
    """A sort key as pandas sorts a column: values in order, missing ones (None, NaN) last."""
    return (True, 0) if _missing(v) else (False, v)


def _run_row(filename: str, engine: Any, cond: Any, a: _Acc,
             status: str = "complete") -> dict[str, Any]:
    """One (run, engine, condition)'s row of the runs table, from its summary, but for the
    partition values (the fleet's, known once every trace is read)."""
    early = float(np.median(a.early[:, 1])) if len(a.early) else np.nan
    late = float(np.median(a.late[:, 1])) if len(a.late) else np.nan
    return {"file": filename, "status": status, "engine": engine, "condition": cond,
            "gap_ms": a.gap_ms, "n": a.n, "p50_ms": a.quantile(0.5),
            "p99_ms": a.quantile(0.99), "early_p50_ms": early, "late_p50_ms": late,
            "late_over_early": late / early if early else np.nan}


def _runs_table(rows: list[dict[str, Any]], keys: list[str]
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs' rows sorted by the partition keys, file, engine and gap (missing last; ties
    in the order found): as pandas' sort_values would."""
    by = [*keys, "file", "engine", "gap_ms"]
    rows.sort(key=lambda r: tuple(_order(r[c]) for c in by))
    return rows, [*keys, *RUN_COLUMNS]


def _by_model_gap(runs: Sequence[dict[str, Any]], run_columns: Sequence[str]
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """Per GPU model (where known), engine and gap, in that order (missing last): how many
    runs, the median, least and largest of their late latency, and the median and largest of
    their late/early ratio (each over the runs where it is known; NaN where none is), as
    pandas' groupby(sort=True, dropna=False) would give them."""
    by = (["gpu_model"] if "gpu_model" in run_columns else []) + ["engine", "gap_ms"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:  # (NaN keys are one group: as None)
        groups.setdefault(tuple(None if _missing(r[c]) else r[c] for c in by), []).append(r)

    def known(rows: list[dict[str, Any]], c: str) -> np.ndarray:
        v = np.array([_num(r[c]) for r in rows], dtype=np.float64)
        return v[np.isfinite(v) | np.isinf(v)]

    out = []
    for key in sorted(groups, key=lambda k: tuple(_order(v) for v in k)):
        rows = groups[key]
        late, ratio = known(rows, "late_p50_ms"), known(rows, "late_over_early")
        out.append({**dict(zip(by, (np.nan if c == "gap_ms" and v is None else v
                                    for c, v in zip(by, key)))),
                    "runs": len(rows),
                    "stable_ms": float(np.median(late)) if late.size else np.nan,
                    "stable_ms_min": float(late.min()) if late.size else np.nan,
                    "stable_ms_max": float(late.max()) if late.size else np.nan,
                    "late_over_early_p50": float(np.median(ratio)) if ratio.size else np.nan,
                    "late_over_early_max": float(ratio.max()) if ratio.size else np.nan})
    return out, [*by, *GROUP_COLUMNS]


def _frame(rows: list[dict[str, Any]], cols: list[str]) -> pd.DataFrame:
    """A table's rows as the DataFrame the API gives (pandas imported here, when first asked)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=cols)


def _cell(v: Any, spec: str, width: int, unit: str = "") -> str:
    """A number right-aligned in `width` as `spec` gives it, or "-" where it is missing (a run
    recorded with no gap: never "nan")."""
    x = _num(v)
    return f"{'-' if x != x else f'{x:{spec}}{unit}':>{width}}"


def format_fleet(f: Fleet) -> str:
    """The per-model/gap answer as an aligned text table."""
    t, cols = f.rows("by_model_gap")
    model = "gpu_model" in cols
    w = max([len("GPU model")] + [len(str(r["gpu_model"])) for r in t if model]) + 2
    engines = "engine" in cols and len({r["engine"] for r in t if not _missing(r["engine"])}) > 1
    we = max([len("engine")] + [len(str(r["engine"])) for r in t if "engine" in cols]) + 2
    head = (f"{'GPU model':<{w}}" if model else "") + (f"{'engine':<{we}}" if engines else "") + \
        f"{'gap ms':>8}{'runs':>6}{'stable ms':>11}{'(min-max)':>18}{'late/early':>12}{'(max)':>8}"
    lines = [f.counts() + ("; --json gives each run's status" if f.incomplete else ""), head]
    for r in t:
        lo, hi = _num(r["stable_ms_min"]), _num(r["stable_ms_max"])
        spread = "-" if lo != lo or hi != hi else f"({lo:.3f}-{hi:.3f})"
        lines.append((f"{str(r['gpu_model']):<{w}}" if model else "")
                     + (f"{str(r['engine']):<{we}}" if engines else "")
                     + _cell(r["gap_ms"], "g", 8) + f"{r['runs']:>6}"
                     + _cell(r["stable_ms"], ".3f", 11) + f"{spread:>18}"
                     + _cell(r["late_over_early_p50"], ".2f", 12, "x")
                     + _cell(r["late_over_early_max"], ".2f", 8, "x"))
    # (what the numbers are: GPU event time, not the program's call -> result)
    lines.append(f"stable ms: the median over runs of each run's last {LATE_ITERS} iterations' "
                 f"median GPU time (events, gpu_ms); late/early: that over its first "
                 f"{EARLY_ITERS}'s, median (max)")
    return "\n".join(lines) + "\n"


__all__ = ["Fleet", "fleet", "format_fleet", "trace_files", "PARTITIONS"]
