"""Fleet questions over a directory of traces, streamed with pyarrow.dataset.

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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import TraceFormatError, UsageError
from .columns import EARLY_ITERS, LATE_ITERS
from ..trace import (KIND, LEGACY_KIND, META_KEY, REPEAT_BATCH_ROWS, _check_meta, _check_types,
                     live_writer, partition_value, read_partial_meta, batches_without_repeats)
from .columns import MAX_LATENCY_MS

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
class Fleet:
    """What `fleet()` found: one row per (run, condition), and the per-model/gap answer."""

    runs: pd.DataFrame
    by_model_gap: pd.DataFrame
    files: int
    skipped: tuple[str, ...] = ()
    invalid_latencies: int = 0  # measured inferences left out: no valid gpu_ms
    repeated_rows: int = 0  # inference rows left out: each repeated another (trace.reader)

    def headline(self) -> str:
        """One line: how many traces, and the group whose late inferences ran slowest against
        its early ones (the fleet's question: where does latency creep up?)."""
        t = self.by_model_gap
        head = f"{self.files} trace{'s' if self.files != 1 else ''}"
        if t.empty or not t["late_over_early_max"].notna().any():
            return head + ": no condition with valid latencies"
        r = t.loc[t["late_over_early_max"].idxmax()]
        where = ", ".join(([str(r["gpu_model"])] if "gpu_model" in t else [])
                          + ([f"engine {r['engine']}"] if "engine" in t else [])
                          + [f"gap {r['gap_ms']:g} ms"])
        runs = int(r["runs"])
        return (f"{head}, {len(t)} group{'s' if len(t) != 1 else ''}; the largest late/early "
                f"ratio is {r['late_over_early_max']:.2f}x ({where}; "
                + (f"median over its {runs} runs {r['late_over_early_p50']:.2f}x)" if runs != 1
                   else "its one run)"))

    def to_dict(self) -> dict[str, Any]:
        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(df.to_json(orient="records"))

        return {"files": self.files, "skipped": list(self.skipped),
                "invalid_latencies": self.invalid_latencies, "repeated_rows": self.repeated_rows,
                "by_model_gap": records(self.by_model_gap), "runs": records(self.runs)}


def trace_files(root: Path) -> list[str]:
    """Every finished trace under `root` (unfinished `.partial` recordings, and directories
    that happen to be named *.parquet, left out)."""
    return sorted(str(p) for p in root.rglob("*.parquet")
                  if not any(part.endswith(".partial") for part in p.relative_to(root).parts)
                  and p.is_file())


def _screen(path: str) -> tuple[str | None, str, dict[str, str]]:
    """(the discriminator column of a fleet member, "", its host and GPU model from its
    metadata) if it is a readable gpuwatch trace this gpuwatch reads, else (None, why not,
    {}). A trace newer than this gpuwatch is an error: upgrading is the fix, not leaving it
    out."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        first = " ".join(str(e).split()).split(". ")[0]  # (pyarrow's first sentence)
        return None, f"not a readable Parquet file ({first})", {}
    raw = (schema.metadata or {}).get(META_KEY)
    names = schema.names
    kind = KIND if KIND in names else LEGACY_KIND if LEGACY_KIND in names else None
    if raw is None or kind is None:
        return None, "not a gpuwatch trace", {}
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        return None, "its gpuwatch metadata is not valid JSON", {}
    try:
        _check_meta(meta, Path(path))
        _check_types(schema)
    except TraceFormatError as e:  # (a newer schema among them: left out, the fix named)
        return None, str(e).removeprefix(f"{path}: ").removeprefix(f"{path} "), {}
    return kind, "", _own_partition(meta)


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
    good, skipped = [], list(odd)
    by_kind: dict[str, list[str]] = {KIND: [], LEGACY_KIND: []}  # (v3 traces; older ones)
    reasons: dict[str, str] = {p: "not a regular file" for p in odd}
    own: dict[str, dict[str, str]] = {}  # path -> host and GPU model from its metadata
    for path in files:
        kind, why, own[path] = _screen(path)
        if kind is None:
            skipped.append(path)
            reasons[path] = why
            continue
        good.append(path)
        by_kind[kind].append(path)
    if skipped:
        warnings.warn(f"left out {len(skipped)} Parquet file(s) that are not readable gpuwatch "
                      f"traces (first: {skipped[0]}: {reasons[skipped[0]]})", stacklevel=2)
    if not good:
        raise TraceFormatError(f"none of the {len(files)} Parquet files under {root} is a "
                               "readable gpuwatch trace")
    names = ds.dataset(good, format="parquet", partitioning="hive",
                       partition_base_dir=str(root)).schema.names
    # (host and GPU model always: from the directories where they say, else the metadata)
    keys = [k for k in PARTITIONS if k in names or k in ("host", "gpu_model")]
    accs: dict[tuple[Any, ...], _Acc] = {}
    invalid = [0]  # measured inferences with no valid latency (counted, left out)
    repeated = [0]  # rows that repeated another exactly (counted, left out)
    for done, (part, filename, tbl) in enumerate(_traces(root, by_kind, keys, own, invalid,
                                                         repeated), 1):
        # (per engine as well as condition: two things timed per iteration are two runs)
        if progress is not None:
            progress(done, len(good))
        if tbl.num_rows == 0:
            continue
        name, names = _codes(tbl.column("name"))
        cond, conds = _codes(tbl.column("condition"))
        n_conds = len(conds)
        group = name * n_conds + cond
        order = np.argsort(group, kind="stable")  # (rows of a group in their file's order)
        starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
        it, ms = _floats(tbl, "iteration"), _floats(tbl, "gpu_ms")
        gap = _floats(tbl, "gap_ms")
        for a, b in zip(starts, np.r_[starts[1:], len(order)]):
            rows = order[a:b]
            g = int(group[rows[0]])
            key = (*part, filename, names[g // n_conds], conds[g % n_conds])
            acc = accs.get(key)
            if acc is None:
                # (the median: a `gpuwatch run` trace's gaps vary within a condition)
                acc = accs[key] = _Acc(gap_ms=float(np.nanmedian(gap[rows]))
                                       if np.isfinite(gap[rows]).any() else np.nan)
            acc.add(it[rows], ms[rows])
    runs = _runs_table(accs, keys)
    if invalid[0]:
        warnings.warn(f"left out {invalid[0]} measured inference(s) with no valid latency "
                      f"(missing, NaN, <= 0 or over {MAX_LATENCY_MS:.0e} ms)", stacklevel=2)
    if repeated[0]:
        warnings.warn(f"left out {repeated[0]:,} inference row(s) that repeated another row "
                      f"exactly (damaged or copied data, never a second measurement)",
                      stacklevel=2)
    return Fleet(runs=runs, by_model_gap=_by_model_gap(runs), files=len(good),
                 skipped=tuple(skipped), invalid_latencies=invalid[0], repeated_rows=repeated[0])


def _traces(root: Path, by_kind: dict[str, list[str]], keys: list[str],
            own: dict[str, dict[str, str]], invalid: list[int],
            repeated: list[int]) -> Iterator[tuple[tuple[Any, ...], str, pa.Table]]:
    """Each trace's measured inferences with a valid latency, one trace at a time (what a
    trace holds is freed before the next is read: peak memory does not grow with the number
    of traces, as it did with one scan over them all), with its partition values and path.
    One dataset per discriminator column name (schema v3 traces and older ones mix in a
    fleet), for the hive partitioning's types."""
    for kind, paths in by_kind.items():
        if not paths:
            continue
        dataset = ds.dataset(paths, format="parquet", partitioning="hive",
                             partition_base_dir=str(root))
        # (the times and region id too: a row that repeats another in all of them is a copy,
        # left out as load() does, read a batch at a time so that ten million cost no more)
        cols = [k for k in keys if k in dataset.schema.names] + [
            "name", "condition", "gap_ms", "iteration", "gpu_ms"] + [
            c for c in ("t_ns", "start_ns", "end_ns", "region_id") if c in dataset.schema.names]
        measured = ((pc.field(kind) == "inferences") & (pc.field("kind") == "inference")
                    & ~pc.field("warmup") & pc.field("error").is_null())
        fmt, hive = ds.ParquetFileFormat(), dataset.partitioning
        for path in paths:
            # (a fragment made here and dropped after its read: the dataset's own fragments
            # keep each file's Parquet metadata once read, and memory grew with the fleet)
            where = "/" + Path(os.path.relpath(path, root)).as_posix()  # (parse() drops
            # the last part, the file's name)
            frag = fmt.make_fragment(path, filesystem=dataset.filesystem,
                                     partition_expression=hive.parse(where))
            tbl, n = batches_without_repeats(
                frag.to_batches(schema=dataset.schema, columns=cols, filter=measured,
                                batch_size=REPEAT_BATCH_ROWS),
                dataset.schema.empty_table().select(cols))
            repeated[0] += n
            # (a latency that is missing, NaN, <= 0 or absurd is no measurement: as analyze)
            ms = _floats(tbl, "gpu_ms")
            with np.errstate(invalid="ignore"):
                valid = (ms > 0) & (ms <= MAX_LATENCY_MS)
            invalid[0] += int((~valid).sum())
            part = {**own.get(path, {}), **{k: v for k, v in ds.get_partition_keys(
                frag.partition_expression).items() if v is not None}}
            yield tuple(part.get(k) for k in keys), path, tbl.filter(pa.array(valid))


def _floats(tbl: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64, nulls as NaN."""
    return tbl.column(name).to_numpy(zero_copy_only=False).astype(np.float64)


def _codes(col: Any) -> tuple[np.ndarray, list[str]]:
    """A string column as integer codes (nulls as ""), and the values they number."""
    enc = pc.dictionary_encode(pc.fill_null(col, "")).combine_chunks()
    return (enc.indices.to_numpy(zero_copy_only=False).astype(np.int64),
            enc.dictionary.to_pylist())


def _runs_table(accs: dict[tuple[Any, ...], _Acc], keys: list[str]) -> pd.DataFrame:
    rows = []
    for key, a in accs.items():
        *part, filename, engine, cond = key
        early = float(np.median(a.early[:, 1])) if len(a.early) else np.nan
        late = float(np.median(a.late[:, 1])) if len(a.late) else np.nan
        rows.append({**dict(zip(keys, part)), "file": filename, "engine": engine,
                     "condition": cond,
                     "gap_ms": a.gap_ms, "n": a.n, "p50_ms": a.quantile(0.5),
                     "p99_ms": a.quantile(0.99), "early_p50_ms": early, "late_p50_ms": late,
                     "late_over_early": late / early if early else np.nan})
    cols = [*keys, "file", "engine", "condition", "gap_ms", "n", "p50_ms", "p99_ms", "early_p50_ms",
            "late_p50_ms", "late_over_early"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values([*keys, "file", "engine", "gap_ms"], ignore_index=True)


def _by_model_gap(runs: pd.DataFrame) -> pd.DataFrame:
    model = "gpu_model" if "gpu_model" in runs else None
    by = ([model] if model else []) + ["engine", "gap_ms"]
    if runs.empty:
        return pd.DataFrame(columns=[*by, "runs", "stable_ms", "stable_ms_min", "stable_ms_max",
                                     "late_over_early_p50", "late_over_early_max"])
    g = runs.groupby(by, sort=True, dropna=False)
    out = g.agg(runs=("late_p50_ms", "size"), stable_ms=("late_p50_ms", "median"),
                stable_ms_min=("late_p50_ms", "min"), stable_ms_max=("late_p50_ms", "max"),
                late_over_early_p50=("late_over_early", "median"),
                late_over_early_max=("late_over_early", "max"))
    return out.reset_index()


def format_fleet(f: Fleet) -> str:
    """The per-model/gap answer as an aligned text table."""
    t = f.by_model_gap
    model = "gpu_model" in t
    w = max([len("GPU model")] + [len(str(m)) for m in t.get("gpu_model", [])]) + 2
    engines = "engine" in t and t["engine"].nunique() > 1
    we = max([len("engine")] + [len(str(e)) for e in t.get("engine", [])]) + 2
    head = (f"{'GPU model':<{w}}" if model else "") + (f"{'engine':<{we}}" if engines else "") + \
        f"{'gap ms':>8}{'runs':>6}{'stable ms':>11}{'(min-max)':>18}{'late/early':>12}{'(max)':>8}"
    lines = [f"{f.files} traces" + (f", {len(f.skipped)} other files skipped" if f.skipped else ""),
             head]
    for r in t.itertuples():
        lines.append((f"{str(r.gpu_model):<{w}}" if model else "")
                     + (f"{str(r.engine):<{we}}" if engines else "")
                     + f"{r.gap_ms:>8g}{r.runs:>6}{r.stable_ms:>11.3f}"
                     + f"{f'({r.stable_ms_min:.3f}-{r.stable_ms_max:.3f})':>18}"
                     + f"{r.late_over_early_p50:>11.2f}x{r.late_over_early_max:>7.2f}x")
    return "\n".join(lines) + "\n"


__all__ = ["Fleet", "fleet", "format_fleet", "trace_files", "PARTITIONS"]
