"""Telemetry joined onto every inference and span: the per-inference table analysis runs on.

For each timed row and each telemetry field: the value in force at its start (the last reading at
or before it), and min/mean/max over the readings inside its window. If the window holds no
reading (an inference shorter than the sampling period), min/mean/max fall back to the value at
the start. `sm_clock_mhz_mean` is the in-band clock where the region was probed
(`sm_clock_source` says which; NVML's mean stays in `sm_clock_nvml_mhz_mean`). Also: the clock-event reasons seen during the window (OR of the bitmasks, including
the one in force at the start), the real idle time since the previous region on the GPU, and the
host-side timings. Vectorised (searchsorted, prefix sums, ufunc.reduceat): O((N + M) log M) for
N regions and M samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..labels import event_tag
from ..tablecolumns import FileColumns, FrameColumns
from ..trace import NOT_WORK_KINDS, Trace
from . import hostside, wall
from .columns import (floats, ns_since, no_values, share_empty, shared_missing, stale_after_ns,
                      writable)

Samples = FileColumns | FrameColumns  # the samples table's columns (Trace.columns)

WINDOW_FIELDS = ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c")
START_FIELDS = ("pstate", "gpu_util_pct")
# every samples column merge reads (analysis loads only these)
SAMPLE_FIELDS = WINDOW_FIELDS + START_FIELDS + ("clock_event_reasons",) + tuple(
    hostside.SAMPLE_COUNTERS) + tuple(hostside.SAMPLE_LEVELS)


# Columns no verdict reads (the report's and the user's: Analysis.merged has them): a merge for
# the verdicts alone (merge(full=False)) leaves them out, and so never reads power, temperature
# or P-state from the samples, nor reduces any window to its min and max.
REPORT_ONLY = (*(f"{f}_{s}" for f in WINDOW_FIELDS for s in ("start", "min", "max")),
               "power_w_mean", "temperature_c_mean", "pstate_start", "launch_ms", "wake_ms",
               "idle_before_ms", "kernel_count", "first_kernel_delay_ms")
VERDICT_FIELDS = ("sm_clock_mhz", "mem_clock_mhz", "gpu_util_pct")  # what the rest read

# What a reading can physically be; anything outside is a broken reading, read as NA (and
# counted: merged.attrs["impossible_readings"]). Clocks in MHz, power in W, temperature in C.
BOUNDS = {"sm_clock_mhz": (1.0, 10_000.0), "mem_clock_mhz": (1.0, 50_000.0),
          "power_w": (0.0, 10_000.0), "temperature_c": (-50.0, 200.0),
          "gpu_util_pct": (0.0, 100.0), "pstate": (0.0, 32.0)}
INBAND_BOUNDS = (1.0, 10_000.0)  # sm_clock_inband_mhz


def _sane_values(smp: Samples, f: str) -> tuple[np.ndarray, int]:
    """Column `f` of `smp` as float64 (NaN for missing), readings outside BOUNDS made NaN,
    and how many there were."""
    col = smp[f]
    if isinstance(col.dtype, np.dtype):  # plain numpy (load's numpy_dtypes): NaN is missing;
        v = col.to_numpy()  # an integer column has no gap, and stays integer (no 80 MB copy)
        if v.dtype.kind not in "iuf":
            v = v.astype(np.float64)
    else:  # pandas' nullable dtypes: NA made NaN
        v = floats(col)
    bounds = BOUNDS.get(f)
    if bounds is None or smp.within(f, *bounds):  # (the row groups' statistics say so)
        return v, 0
    with np.errstate(invalid="ignore"):
        bad = (v < bounds[0]) | (v > bounds[1])  # (NaN compares False: stays missing)
    if not bad.any():
        return v, 0
    return np.where(bad, np.nan, v), int(bad.sum())  # (a new float array: v may be the frame's)


def merge(trace: Trace, full: bool = True, shared_empty: bool = False) -> pd.DataFrame:
    """The inferences table plus telemetry columns; sorted by GPU start time. Readings that
    cannot be real (BOUNDS) are NA; `attrs["impossible_readings"]` counts them (those of the
    fields read). The samples are read a column at a time where the trace was loaded so
    (Trace.columns): each column is reduced onto the regions, then dropped. `full=False`:
    without the REPORT_ONLY columns. `shared_empty`: each column without any value stays one
    shared read-only NaN (columns.share_empty; the analysis' own use, which never writes into
    it), else an ordinary array."""
    inf = _tighten(trace.inferences.dropna(subset=["start_ns", "end_ns"]), trace.kernels)
    samples, impossible = trace.columns("samples"), 0
    t_col = samples["t_ns"]
    # (a numpy integer column has no NA: no 10M-row mask to find none)
    no_time = (np.zeros(0, dtype=bool) if isinstance(t_col.dtype, np.dtype)
               and t_col.dtype.kind in "iu" else t_col.isna().to_numpy())
    del t_col
    if no_time.any():  # a reading with no time is no reading
        impossible += int(no_time.sum())
        samples = samples.take(np.flatnonzero(~no_time))
    if "sm_clock_inband_mhz" in inf:
        v = inf["sm_clock_inband_mhz"].pipe(floats)
        bad = ~np.isnan(v) & ~((v >= INBAND_BOUNDS[0]) & (v <= INBAND_BOUNDS[1]))
        if bad.any():
            impossible += int(bad.sum())
            inf = inf.assign(sm_clock_inband_mhz=np.where(bad, np.nan, v))
    out = []
    # (one GPU's rows and samples: no per-GPU copy of 10M samples; samples of another GPU
    # than the inferences' are never theirs)
    # (the row groups' statistics show one GPU where they can: its 10M-row column unread)
    smp_one = samples.constant("gpu") if len(samples) else None
    smp_gpu = samples["gpu"] if smp_one is None else None
    one_gpu = inf["gpu"].nunique() <= 1 and (smp_gpu is None or smp_gpu.nunique() <= 1) and (
        inf.empty or len(samples) == 0
        or inf["gpu"].iloc[0] == (smp_one if smp_gpu is None else smp_gpu.iloc[0]))
    kern = trace.kernels
    procs = trace.processes
    host_events = getattr(trace, "host_events", None)
    cpus = (trace.meta.get("host") or {}).get("cpu_count")
    cpus = int(cpus) if isinstance(cpus, (int, float)) and cpus > 0 else None
    # (one GPU, the usual case: its rows are the table itself, not groupby's copy of it)
    groups = ([(inf["gpu"].iloc[0], inf)] if one_gpu and len(inf) and inf["gpu"].notna().all()
              else inf.groupby("gpu", sort=True))
    for gpu, rows in groups:
        smp = samples if one_gpu else samples.take(
            np.flatnonzero(((samples["gpu"] if smp_gpu is None else smp_gpu) == gpu).to_numpy(
                dtype=bool, na_value=False)))
        rows = _sorted(rows, "start_ns").reset_index(drop=True)
        cols, bad = _merge_gpu(rows, _sorted_columns(smp), trace.meta, full)
        impossible += bad
        k = kern[kern["gpu"] == gpu] if len(kern) else kern
        pr = procs[procs["gpu"] == gpu] if len(procs) else procs
        # (each part's columns without a value shared as they come: share_empty)
        cols.update(share_empty(_decompose(rows, k, full)))
        cols.update(share_empty({"ctx_switches": _ctx_switches(rows, k, trace.meta)}))
        cols.update(share_empty(_others(rows, pr)))
        cols.update(share_empty(wall.decompose(rows, rows["start_ns"].to_numpy(np.int64),
                                                rows["end_ns"].to_numpy(np.int64))))
        hs = rows["host_start_ns"].pipe(floats)
        cols.update(share_empty(hostside.states(rows, smp, host_events, cpus,
                                                 result_ns=hs + cols["wall_ms"] * 1e6)))
        # (side by side, not assign(): assign copies every new column, 0.65 s for 1M rows)
        added = pd.DataFrame(cols, index=rows.index, copy=False)
        out.append(pd.concat([rows.drop(columns=[c for c in cols if c in rows]), added],
                             axis=1))
    if not out:
        merged = inf.assign(**{c: pd.Series(dtype="float64") for c in _derived_columns()
                               if full or c not in REPORT_ONLY})
    elif len(out) == 1:
        merged = out[0]
    else:
        merged = pd.concat(out, ignore_index=True).sort_values(["start_ns", "gpu"],
                                                                ignore_index=True)
    if not shared_empty:
        writable(merged)
    merged.attrs["impossible_readings"] = impossible
    samples.forget()  # (the times and GPUs kept for the windows: 80 MB per 10M samples)
    return merged


def _sorted(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """Sorted by `col`, without paying for a sort when it already is (the usual case)."""
    return df if df[col].is_monotonic_increasing else df.sort_values(col, kind="stable")


def _sorted_columns(smp: Samples) -> Samples:
    """The samples in time order (a stable sort, as _sorted), without a sort when they are."""
    t = smp["t_ns"]
    if t.is_monotonic_increasing:
        return smp
    return smp.take(np.argsort(t.to_numpy(np.int64), kind="stable"))


def _derived_columns() -> list[str]:
    cols = []
    for f in WINDOW_FIELDS:
        cols += [f"{f}_start", f"{f}_min", f"{f}_mean", f"{f}_max"]
    cols += [f"{f}_start" for f in START_FIELDS]
    return cols + ["sm_clock_nvml_mhz_mean", "sm_clock_source", "other_processes", "other_active",
                   "other_active_next", "other_pid", "other_sm_pct", "own_duty_pct",
                   "util_excess_pct", "reasons_any", "idle_before_ms", "enqueue_ms", "launch_ms", "wake_ms",
                   "kernel_count", "busy_ms", "idle_inside_ms", "first_kernel_delay_ms",
                   "ctx_switches", *wall.COLUMNS, *hostside.COLUMNS]


def _merge_gpu(rows: pd.DataFrame, smp: Samples, meta: Any = None,
               full: bool = True) -> tuple[dict[str, np.ndarray], int]:
    """The telemetry columns of one GPU's regions (`rows`, in start order, indexed 0..n-1);
    and how many readings were impossible.
    The timeline is searched once for all fields (the reading at or before each start, and
    each window's bounds); a field with gaps is taken as its readings alone (positions in the
    timeline, found by a search of the regions' bounds), never as a copy of the timeline."""
    start = rows["start_ns"].to_numpy(np.int64)
    end = rows["end_ns"].to_numpy(np.int64)
    t = smp["t_ns"].to_numpy(np.int64)
    at_all = np.searchsorted(t, start, side="right") - 1  # the latest reading at or before
    lo_all = np.searchsorted(t, start, side="left")  # the readings inside [start, end]
    hi_all = np.searchsorted(t, end, side="right")
    whole = _Windows(lo_all, hi_all, t.size)  # (a field without gaps: shared by all of them)
    # (first, while few per-region arrays exist: it reads a whole column of the samples)
    reasons = _reasons(smp, start, end, at_all, whole)
    cols: dict[str, np.ndarray] = {}
    impossible = 0
    for f in WINDOW_FIELDS + START_FIELDS:
        if not full and f not in VERDICT_FIELDS:  # (its impossible readings still count)
            if f in smp and not smp.within(f, *BOUNDS.get(f, (-np.inf, np.inf))):
                impossible += _sane_values(smp, f)[1]
            continue
        v, bad = _sane_values(smp, f)
        impossible += bad
        if shared_missing(v):  # (recorded as NA throughout: NA for every region, no pass
            # over the samples; the columns and their order as below)
            made = ["start"] if f in START_FIELDS else ["start", "mean"] + (
                ["min", "max"] if full else [])
            cols.update({f"{f}_{s}": no_values(start.size) for s in made
                         if full or f"{f}_{s}" not in REPORT_ONLY})
            continue
        if v.dtype.kind == "f":
            ok = ~np.isnan(v)
            valid = None if ok.all() else np.flatnonzero(ok)  # positions of the readings
        else:
            valid = None  # (integers: no gaps)
        if valid is None:
            at, lo, hi, vv, windows = at_all, lo_all, hi_all, v, whole
        else:
            at = np.searchsorted(valid, at_all, side="right") - 1
            lo = np.searchsorted(valid, lo_all, side="left")
            hi = np.searchsorted(valid, hi_all, side="left")
            vv = v[valid]
            windows = _Windows(lo, hi, vv.size)
        j = np.clip(at, 0, None)
        # (a reading older than its field's few sampling periods says nothing now)
        if vv.size:
            when = t[j] if valid is None else t[valid[j]]
            v_start = np.where((at >= 0) & (start - when <= stale_after_ns(meta, f)), vv[j],
                               np.nan)
        else:
            v_start = np.full(start.size, np.nan)
        if full or f"{f}_start" not in REPORT_ONLY:
            cols[f"{f}_start"] = v_start
        if f in START_FIELDS:
            continue
        n = hi - lo
        has = n > 0
        total, vmin, vmax = _window_reduce(vv, windows, has, minmax=full)
        with np.errstate(invalid="ignore", divide="ignore"):
            cols[f"{f}_mean"] = np.where(has, total / n, v_start)
        if full:
            cols[f"{f}_min"] = np.where(has, vmin, v_start)
            cols[f"{f}_max"] = np.where(has, vmax, v_start)
    # The SM clock over each region: the in-band stamps' mean where the region has them (the
    # clock itself, over exactly the region), else NVML's readings in its window (a value the
    # driver refreshes every ~100 ms on an H100). NVML's is kept beside it.
    cols["sm_clock_nvml_mhz_mean"] = nvml = cols["sm_clock_mhz_mean"]
    inband = (rows["sm_clock_inband_mhz"].pipe(floats)
              if "sm_clock_inband_mhz" in rows else np.full(len(rows), np.nan))
    has_inband = ~np.isnan(inband)
    lent, near = _nearest_stamp(start, end, inband,
                                rows["condition"] if "condition" in rows else None)
    cols["sm_clock_mhz_mean"] = np.where(has_inband, inband, np.where(near, lent, nvml))
    source = np.full(len(rows), None, dtype=object)
    source[~np.isnan(nvml)] = "nvml"
    source[near] = "in-band, nearest stamp"
    source[has_inband] = "in-band"
    cols["sm_clock_source"] = source
    cols["own_duty_pct"] = _own_duty(start, end)
    cols["util_excess_pct"] = cols["gpu_util_pct_start"] - cols["own_duty_pct"]
    cols["reasons_any"] = reasons
    if full:
        prev_end = np.concatenate([[np.iinfo(np.int64).min], np.maximum.accumulate(end)[:-1]])
        idle = (start - prev_end) / 1e6
        cols["idle_before_ms"] = np.where(prev_end == np.iinfo(np.int64).min, np.nan,
                                          np.maximum(idle, 0.0))
    # (durations between epoch ns: taken as ns since the first start, exact; columns.ns_since)
    t0 = int(start[0]) if start.size else 0
    host_start = ns_since(rows["host_start_ns"], t0)
    cols["enqueue_ms"] = (ns_since(rows["host_enqueued_ns"], t0) - host_start) / 1e6
    if full:
        cols["launch_ms"] = (ns_since(start, t0) - host_start) / 1e6
        cols["wake_ms"] = (ns_since(rows["host_end_ns"], t0) - ns_since(end, t0)) / 1e6
    return share_empty(cols), impossible


PROCESS_STALE_NS = 3_000_000_000  # a process reading older than this says nothing


def _others(rows: pd.DataFrame, procs: pd.DataFrame) -> dict[str, np.ndarray]:
    """Other processes on the GPU at each region's start, from the latest process reading
    (at most PROCESS_STALE_NS old): how many, the busiest one's pid, their summed SM
    utilisation (NA where NVML gave none), whether one was at work (`other_active`), and
    whether one was at the next reading (`other_active_next`; NA where there is none as
    fresh). NA everywhere without process readings."""
    n = len(rows)
    nan = np.full(n, np.nan)
    if procs is None or not len(procs) or "own" not in procs:
        return {"other_processes": nan, "other_pid": nan, "other_sm_pct": nan,
                "other_active": nan, "other_active_next": nan}
    p = procs.sort_values("t_ns")
    times = np.unique(p["t_ns"].to_numpy(np.int64))
    own = p["own"].astype(bool)
    if own.any():
        others = p[~own]
        count = others.groupby("t_ns").size().reindex(times, fill_value=0).pipe(floats)
        sm = others.groupby("t_ns")["sm_util_pct"].sum(min_count=1).reindex(times).pipe(floats)
        top = (others.sort_values("sm_util_pct", ascending=False, na_position="last")
               .groupby("t_ns")["pid"].first().reindex(times).pipe(floats))
    else:
        # The recording process, which had a context on this GPU, is never on NVML's list:
        # NVML gives PIDs of another PID namespace (a container without the host's). Which
        # listed process is this program cannot be told, so one per reading is taken as its
        # own: the count of others is the list's length less one; their pids and SM share NA.
        count = np.maximum(p.groupby("t_ns").size().reindex(times, fill_value=0)
                           .pipe(floats) - 1, 0)
        sm = top = np.full(times.size, np.nan)
    start = rows["start_ns"].to_numpy(np.int64)
    i = np.searchsorted(times, start, side="right") - 1
    ok = (i >= 0) & (start - times[np.clip(i, 0, None)] <= PROCESS_STALE_NS)
    j = np.clip(i, 0, None)
    # Working, not only listed: where the driver gives per-process utilisation (for any process
    # of the trace), another process is active when its SM share is above 0 (no sample of it in
    # NVML's window: it idled, as a service between requests does); elsewhere, when listed.
    if np.isfinite(p["sm_util_pct"].pipe(floats)).any() if "sm_util_pct" in p else False:
        active = np.nan_to_num(sm) > 0
    else:
        active = count > 0
    # The list is read about once a second: a process listed at the reading before a region
    # may have gone by the region, and one not listed may have come. The next reading (as
    # fresh) says which side of the region's start a change lies (`other_active_next`).
    nxt = np.minimum(i + 1, times.size - 1)
    has_next = ok & (i + 1 < times.size) & (times[nxt] - start <= PROCESS_STALE_NS)
    return {"other_processes": np.where(ok, count[j], np.nan),
            "other_pid": np.where(ok, top[j], np.nan),
            "other_sm_pct": np.where(ok, sm[j], np.nan),
            "other_active": np.where(ok, active[j].astype(float), np.nan),
            "other_active_next": np.where(has_next, active[nxt].astype(float), np.nan)}


DUTY_WINDOW_NS = 1_000_000_000  # NVML's utilisation window is 1/6 s to 1 s


def _own_duty(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """This program's own duty cycle before each region (%): the GPU time of its regions over
    the last second (or since its first region), as NVML's utilisation would count them if the
    program were alone on the GPU. Regions' times include any wait for another process's work,
    so this overstates the program's own use: an excess of NVML's figure over it is a floor."""
    n = start.size
    if n == 0:
        return np.zeros(0)
    # (merge gives them in start order: then no sort, nor a permutation back)
    ordered = bool(np.all(start[1:] >= start[:-1]))
    order = None if ordered else np.argsort(start, kind="stable")
    s, e = (start, end) if order is None else (start[order], end[order])
    cum = np.concatenate([[0], np.cumsum(np.maximum(e - s, 0))])
    j = np.searchsorted(s, s - DUTY_WINDOW_NS, side="left")
    span = np.minimum(DUTY_WINDOW_NS, np.maximum(e - s[0], 1))
    duty = np.minimum(100.0, 100.0 * (cum[1:] - cum[j]) / span)
    if order is None:
        return duty
    out = np.empty(n)
    out[order] = duty
    return out


def _tighten(inf: pd.DataFrame, kernels: pd.DataFrame) -> pd.DataFrame:
    """Where the kernel trace holds the GPU's own timestamps of a region's start and end events
    (CUDA-event records, tagged with labels.event_tag), use them in place of the anchor-mapped
    times. `aligned_by` says which each row got. Times stay int64 throughout: epoch
    nanoseconds do not fit a float64 exactly (256 ns steps)."""
    inf = inf.assign(aligned_by="anchor")
    if not len(kernels) or "region_id" not in inf or inf["region_id"].isna().all():
        return inf
    ev = kernels[kernels["kind"] == "cuda_event"].dropna(subset=["correlation_id", "start_ns"])
    if ev.empty:
        return inf
    tags = ev["correlation_id"].to_numpy(np.int64)
    times = ev["start_ns"].to_numpy(np.int64)
    tags, first = np.unique(tags, return_index=True)  # sorted; the first record of a tag wins
    times = times[first]
    rid = inf["region_id"].pipe(floats)
    ok = ~np.isnan(rid)
    r = rid[ok].astype(np.int64)

    def lookup(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.clip(np.searchsorted(tags, t), 0, len(tags) - 1)
        return times[i], tags[i] == t

    s, has_s = lookup(event_tag(r, False))
    e, has_e = lookup(event_tag(r, True))
    both = has_s & has_e & (e >= s)
    idx = np.nonzero(ok)[0][both]
    if idx.size == 0:
        return inf
    inf = inf.copy()
    start = inf["start_ns"].to_numpy(np.int64).copy()
    end = inf["end_ns"].to_numpy(np.int64).copy()
    start[idx], end[idx] = s[both], e[both]
    inf["start_ns"], inf["end_ns"] = start, end
    inf["t_ns"] = start
    aligned = inf["aligned_by"].to_numpy(dtype=object)
    aligned[idx] = "cuda_event"
    inf["aligned_by"] = aligned
    return inf


def _decompose(rows: pd.DataFrame, kernels: pd.DataFrame,
               full: bool = True) -> dict[str, np.ndarray]:
    """Each region split by the kernels (and copies) that ran inside it: how many, the time
    they kept the GPU busy, the time it sat idle inside the region (waiting for the host to
    launch), and the delay from the host's enqueue to the first kernel. NA without kernel data.
    Records of one GPU are taken not to overlap (one stream, as gpuwatch's engines run)."""
    n = len(rows)
    own = NOT_WORK_KINDS  # gpuwatch's own records and the program's waits: not its GPU work
    if kernels is None or len(kernels) == 0 or (~kernels["kind"].isin(own)).sum() == 0:
        nan = np.full(n, np.nan)
        out = {"kernel_count": nan, "busy_ms": nan, "idle_inside_ms": nan,
               "first_kernel_delay_ms": nan}
        return out if full else {k: v for k, v in out.items() if k not in REPORT_ONLY}
    k = kernels[~kernels["kind"].isin(own)].dropna(subset=["start_ns", "end_ns"])
    k = k.sort_values("start_ns")
    ks = k["start_ns"].to_numpy(np.int64)
    ke = np.maximum.accumulate(k["end_ns"].to_numpy(np.int64))
    dur = np.concatenate([[0], np.cumsum(ke - ks)])
    a = rows["start_ns"].to_numpy(np.int64)
    b = rows["end_ns"].to_numpy(np.int64)
    i0 = np.searchsorted(ke, a, side="right")  # first record ending after the window opens
    i1 = np.searchsorted(ks, b, side="left")  # records starting before it closes
    count = np.maximum(i1 - i0, 0)
    has = count > 0
    j0, j1 = np.clip(i0, 0, len(ks) - 1), np.clip(i1 - 1, 0, len(ks) - 1)
    busy = np.where(has, dur[np.maximum(i1, i0)] - dur[i0]
                    - np.maximum(0, a - ks[j0]) - np.maximum(0, ke[j1] - b), 0)
    window = (b - a).astype(float)
    host = rows["host_start_ns"].pipe(floats)
    out = {
        "kernel_count": count.astype(float),
        "busy_ms": busy / 1e6,
        "idle_inside_ms": (window - busy) / 1e6,
        "first_kernel_delay_ms": np.where(has, (ks[j0] - host) / 1e6, np.nan),
    }
    return out if full else {k: v for k, v in out.items() if k not in REPORT_ONLY}


NEAR_STAMP_NS = 100_000_000  # a stamped region of the same condition this close lends its
# in-band clock: no older than NVML's own reading can be (it refreshes about every 100 ms)


def _nearest_stamp(start: np.ndarray, end: np.ndarray, inband: np.ndarray,
                   condition: pd.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For regions with no in-band reading (the recorder stamps a sample of regions), the
    reading of the nearest stamped region of the same condition on the GPU, if it lies within
    NEAR_STAMP_NS (from one's end to the other's start): (values, which rows got one). Rows in
    GPU start order. A labelled estimate (sm_clock_source "in-band, nearest stamp"), never a
    reading: sm_clock_inband_mhz stays NA."""
    if condition is not None and condition.nunique(dropna=False) > 1:
        # (the column as it is: an object copy of a million labels cost 0.1 s; the groups
        # are the same, each filled on its own)
        codes = pd.factorize(condition, use_na_sentinel=False)[0]
        vals, near = np.full(len(inband), np.nan), np.zeros(len(inband), dtype=bool)
        for c in np.unique(codes):
            i = np.flatnonzero(codes == c)
            vals[i], near[i] = _nearest_stamp(start[i], end[i], inband[i])
        return vals, near
    n = len(inband)
    has = ~np.isnan(inband)
    if has.all() or not has.any():
        return np.full(n, np.nan), np.zeros(n, dtype=bool)
    idx = np.flatnonzero(has)
    pos = np.searchsorted(idx, np.arange(n))  # the first stamped row at or after each row
    nxt = idx[np.minimum(pos, len(idx) - 1)]
    prv = idx[np.maximum(pos - 1, 0)]
    d_next = np.where(nxt > np.arange(n), start[nxt] - end, np.inf).astype(float)
    d_prev = np.where(prv < np.arange(n), start - end[prv], np.inf).astype(float)
    pick = np.where(d_prev <= d_next, prv, nxt)
    dist = np.minimum(d_prev, d_next)
    near = ~has & (dist <= NEAR_STAMP_NS)
    return np.where(near, inband[pick], np.nan), near


def _ctx_switches(rows: pd.DataFrame, kernels: pd.DataFrame, meta: dict[str, Any]
                  ) -> np.ndarray:
    """Per region, CUPTI's context-switch records of this program's context (kind `ctx_switch`,
    start or end of a switch) from the call to the end event: another context had the GPU's
    compute engine meanwhile (time slicing). NA where the trace has none to give: recorded
    without --kernels, or a GPU or driver that does not give them (the metadata's
    kernel_trace.context_switches says why)."""
    n = len(rows)
    given = ((meta.get("kernel_trace") or {}).get("context_switches") is True)
    if not given:
        return np.full(n, np.nan)
    k = kernels[kernels["kind"] == "ctx_switch"] if len(kernels) else kernels
    t = np.sort(k["t_ns"].to_numpy(np.int64)) if len(k) else np.zeros(0, np.int64)
    host = rows["host_start_ns"].pipe(floats)
    a = np.where(np.isfinite(host), host, rows["start_ns"].pipe(floats))
    b = rows["end_ns"].pipe(floats)
    ok = np.isfinite(a) & np.isfinite(b)
    lo = np.searchsorted(t, np.where(ok, a, 0).astype(np.int64), side="left")
    hi = np.searchsorted(t, np.where(ok, b, 0).astype(np.int64), side="right")
    return np.where(ok, np.maximum(hi - lo, 0), np.nan).astype(float)


class _Windows:
    """The windows [lo, hi) over an array of `size` readings, as reduceat takes them: built
    when first asked for, once for every field that shares the windows (those without gaps)."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, size: int) -> None:
        self.lo, self.hi, self.size = lo, hi, size
        self._index: tuple[np.ndarray, np.ndarray] | None = None

    def index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            self._index = _window_index(self.lo, self.hi, self.size - 1)
        return self._index


def _window_reduce(v: np.ndarray, windows: _Windows, has: np.ndarray,
                   minmax: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum, min and max of v[lo:hi] for every window (garbage where the window is empty), `v`
    without NaN. One reduceat pass each over `v` itself (no padded copy: a window that runs to
    the end of `v` gets its last element added separately). minmax=False: the sum alone (min
    and max NaN)."""
    lo = windows.lo
    if not has.any() or v.size == 0:
        nan = np.full(lo.shape, np.nan)
        return nan, nan, nan
    last = v.size - 1
    idx, tail = windows.index()
    # (integer readings summed as int64, exactly, then made floats: a reduceat that casts
    # each int32 to float64 as it goes is ~2x slower; the sums are the same numbers)
    total = (np.add.reduceat(v, idx, dtype=np.int64)[0::2].astype(np.float64)
             if v.dtype.kind in "iu" else np.add.reduceat(v, idx, dtype=np.float64)[0::2])
    if tail.any():
        total[tail] += float(v[last])
    if not minmax:
        nan = np.full(lo.shape, np.nan)
        return total, nan, nan
    vmin = np.minimum.reduceat(v, idx)[0::2].astype(np.float64, copy=False)
    vmax = np.maximum.reduceat(v, idx)[0::2].astype(np.float64, copy=False)
    if tail.any():
        vmin[tail] = np.minimum(vmin[tail], v[last])
        vmax[tail] = np.maximum(vmax[tail], v[last])
    return total, vmin, vmax


def _window_index(lo: np.ndarray, hi: np.ndarray, last: int) -> tuple[np.ndarray, np.ndarray]:
    """reduceat indices for the windows [lo, hi) of an array whose last index is `last`:
    (lo, hi) pairs interleaved (the even results are the windows), clipped to `last` so that
    no padded copy is needed; and the windows that run past `last`, whose reduction still
    lacks element `last`."""
    idx = np.empty(2 * lo.size, dtype=np.int64)
    idx[0::2] = np.minimum(lo, last)
    idx[1::2] = np.minimum(hi, last)
    return idx, (hi > last) & (lo < last)


def _reasons(smp: Samples, start: np.ndarray, end: np.ndarray, at_all: np.ndarray,
             whole: _Windows) -> np.ndarray:
    """The clock-event reasons of each region: the reading in force at its start, ORed with
    those inside its window. `at_all`, `whole`: the timeline's searches for the regions (used
    where every reading has reasons; else the readings that have one are searched)."""
    r = smp["clock_event_reasons"]
    ok = r.notna().to_numpy()
    t = smp["t_ns"].to_numpy(np.int64)
    every = bool(ok.all())
    if not every:
        t, r = t[ok], r[ok]
    v = r.to_numpy(np.int64)
    if v.size == 0:
        return np.zeros(start.shape, dtype=np.int64)
    # (in place where it can be: at 3M regions each temporary is 24 MB, and this runs at the
    # analysis' peak of memory)
    if every:
        at = at_all
    else:
        at = np.searchsorted(t, start, side="right")
        at -= 1
    out = v[np.clip(at, 0, None)]
    out[at < 0] = 0
    del at
    windows = whole if every else _Windows(
        np.searchsorted(t, start, side="left"), np.searchsorted(t, end, side="right"), v.size)
    has = windows.hi > windows.lo
    if has.any():
        last = v.size - 1
        idx, tail = windows.index()
        reduced = np.bitwise_or.reduceat(v, idx)
        window = reduced[0::2]
        window[tail] |= v[last]
        np.bitwise_or(out, window, out=out, where=has)
    return out.astype(np.int64, copy=False)
