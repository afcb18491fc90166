"""What the host did during each region: the timed thread's states, other threads, GC, steal.

For each row's host window (from the call, `host_start_ns`, to the host leaving it,
`host_enqueued_ns`: for a span its whole host time, for an inference its launch, or the whole
call where the call waited for its result), from the sampler's cumulative readings (linear
between readings) and the recording's `host_events`:

- `host_run_ms`: the timed thread on a CPU; `host_wait_ms`: runnable, waiting for a CPU;
  `host_offcpu_ms`: the rest of the window, off the CPU and not runnable (a lock, the
  interpreter lock, I/O, a sleep, or a blocking wait for the GPU);
- `others_run_ms`: the process's other threads on a CPU, all together;
- `gc_ms`: Python's cyclic garbage collector running (any thread's collection: it holds the
  interpreter lock, so it stops every Python thread);
- `steal_ms`: the machine's steal time per CPU (the hypervisor ran someone else);
- `quota_ms`: the recording process's cgroup throttled by its CPU quota (a container's CPU
  limit): cpu.stat's throttled time, which sums each CPU's throttled run queue, per CPU (on
  the 2-core CPU test machine 316-789 ms per 0.5 s summed, 158-395 ms per CPU, against the
  thread's 323-407 ms of wait), and at most the window less the time on a CPU. A throttled
  thread waits in a run queue, and schedstat counts it as waiting for a CPU (0.153 s
  throttled, 0.153 s of wait, there); a thread waiting for the interpreter lock that a
  throttled thread holds is off the CPU instead;
- `majflt`, `minflt`: the timed thread's major and minor page faults (counts);
- `wait_oncpu_pct`: of the wait for the result after the call (a synchronize), the share the
  thread spent on a CPU: spinning (~100) or sleeping (~0, a blocking synchronize).
- `completion_wait_ms`, `completion_offcpu_ms`, `completion_others_run_ms`,
  `completion_gc_ms`, `completion_steal_ms`: the same states over the completion window, from
  the end event (GPU done) to the host having the result, where the call waited for it: a
  thread that cannot take the interpreter lock back after a synchronize, a collection or a busy
  host there lengthen completion, not the launch.
- `cpu_freq_mhz`: the mean clock (MHz) of the CPU the timed thread last ran on, over the
  window: its readings (about every 10 ms, cpufreq) each held until the next, weighted by the
  time each held inside the window (a window between two readings: the earlier one's value).
  NA where the machine does not expose cpufreq; `cpu_freq_text` words a change of it.

Each is NA where the trace lacks its signal (older traces, simulated GPUs). The split of a
host delay among them is `split()`: measured parts first, each at most its own change.
"""

from __future__ import annotations

import weakref

from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..tablecolumns import FileColumns, FrameColumns
from .columns import floats, no_values, share_empty, shared_missing

Samples = FileColumns | FrameColumns  # the samples table's columns (Trace.columns)

# What analysis reads of the samples for this (cumulative counters, ns)
SAMPLE_COUNTERS = ("host_run_ns", "host_wait_ns", "host_others_run_ns", "host_steal_ns",
                   "host_majflt", "host_minflt", "host_cpu_throttled_us")
# ...and levels, not counters (a reading holds until the next)
SAMPLE_LEVELS = ("host_cpu_freq_mhz",)
COLUMNS = ("host_run_ms", "host_wait_ms", "host_offcpu_ms", "others_run_ms", "gc_ms", "steal_ms",
           "quota_ms", "majflt", "minflt", "wait_oncpu_pct", "cpu_freq_mhz",
           *(f"completion_{c}" for c in ("wait_ms", "offcpu_ms", "others_run_ms", "gc_ms",
                                         "steal_ms")))
# A level's reading holds for at most this long (the CPU clock is read about every 10 ms): a
# window either end of which is later than this after the reading in force there has it NA.
LEVEL_HOLD_NS = 1_000_000_000


def _counter(smp: Samples, col: str, a: np.ndarray, b: np.ndarray,
             scale: float = 1e-6) -> np.ndarray:
    """How much cumulative counter `col` grew over each window [a, b] (times `scale`: ns ->
    ms by default), linear between readings; NA where the readings do not cover the window."""
    n = a.size
    if col not in smp:
        return no_values(n)
    v = floats(smp[col])
    if shared_missing(v):  # (a trace without host sampling: no pass over its samples)
        return no_values(n)
    ok = ~np.isnan(v)
    if ok.sum() < 2:
        return no_values(n)
    t = smp["t_ns"].to_numpy(np.int64)[ok]
    v = v[ok]
    out = (np.interp(b, t, v) - np.interp(a, t, v)) * scale
    covered = (a >= t[0]) & (b <= t[-1]) & np.isfinite(a) & np.isfinite(b)
    return np.where(covered, np.maximum(out, 0.0), np.nan)


def _level_mean(smp: Samples, col: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The time-weighted mean of level `col` over each window [a, b]: each reading held until
    the next, clipped to the window (a window of no length: the reading in force). NA where
    the column has no reading, the window starts before the first, or the reading in force at
    either end of the window is older than LEVEL_HOLD_NS."""
    n = a.size
    if col not in smp:
        return no_values(n)
    v = floats(smp[col])
    if shared_missing(v):
        return no_values(n)
    ok = ~np.isnan(v)
    if not ok.any():
        return no_values(n)
    t_ns = smp["t_ns"].to_numpy(np.int64)[ok]
    t = (t_ns - t_ns[0]).astype(np.float64)  # (from the first reading: ns stay exact)
    v = v[ok]
    fin = np.isfinite(a) & np.isfinite(b) & (b >= a)
    aa = np.where(fin, a - t_ns[0], 0.0)
    bb = np.where(fin, b - t_ns[0], 0.0)
    # The integral of the held readings up to each reading's time: between two readings it
    # grows at the earlier one's value, so np.interp of it is exact from the first reading
    # on; past the last it grows at the last value.
    area = np.concatenate([[0.0], np.cumsum(v[:-1] * np.diff(t))])

    def integral(x: np.ndarray) -> np.ndarray:
        return np.interp(x, t, area) + np.maximum(x - t[-1], 0.0) * v[-1]

    ka = np.clip(np.searchsorted(t, aa, side="right") - 1, 0, None)  # in force at a
    kb = np.clip(np.searchsorted(t, bb, side="right") - 1, 0, None)  # ...and at b
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(bb > aa, (integral(bb) - integral(aa)) / (bb - aa), v[ka])
    covered = (fin & (aa >= 0.0) & (aa - t[ka] <= LEVEL_HOLD_NS)
               & (bb - t[kb] <= LEVEL_HOLD_NS))
    return np.where(covered, mean, np.nan)


def cpu_freq_text(ref: float | None, tgt: float | None) -> str:
    """" (CPU clock a -> b MHz)" where both means (MHz, `cpu_freq_mhz`) are known and differ by
    at least 5% of the reference's; else "" (a CPU's clock moving with the host's time: the
    host_launch / host_work sentences say so)."""
    if ref is None or tgt is None or not (np.isfinite(ref) and np.isfinite(tgt)):
        return ""
    if ref <= 0 or tgt <= 0 or 20 * abs(tgt - ref) < ref:
        return ""
    return f" (CPU clock {ref:.0f} -> {tgt:.0f} MHz)"


def _gc_overlap(events: pd.DataFrame | None, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Milliseconds of each window [a, b] during which a garbage collection ran. NA where the
    trace has no gc record at all (a recording before schema v4, or a simulated GPU); 0 where
    it records collections and none fell in the window."""
    n = a.size
    if events is None or not len(events) or "kind" not in events:
        return no_values(n)
    gc = events[events["kind"] == "gc"]
    if "end_ns" not in gc:
        return no_values(n)
    gc = gc.dropna(subset=["t_ns", "end_ns"])
    if gc.empty:
        return np.where(np.isfinite(a) & np.isfinite(b), 0.0, np.nan)
    s = gc["t_ns"].to_numpy(np.int64).astype(np.float64)
    e = np.maximum(gc["end_ns"].to_numpy(np.int64).astype(np.float64), s)
    order = np.argsort(s, kind="stable")
    s, e = s[order], np.maximum.accumulate(e[order])  # (collections do not nest)
    cum = np.concatenate([[0.0], np.cumsum(e - s)])

    def before(t: np.ndarray) -> np.ndarray:  # GC time before t
        k = np.searchsorted(s, t, side="right")
        tail = np.where(k > 0, np.maximum(0.0, e[np.clip(k - 1, 0, None)] - t), 0.0)
        return cum[k] - tail

    ok = np.isfinite(a) & np.isfinite(b)
    aa, bb = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    return np.where(ok, np.maximum(before(bb) - before(aa), 0.0) / 1e6, np.nan)


def states(rows: pd.DataFrame, smp: Samples, events: pd.DataFrame | None,
           cpus: int | None, result_ns: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The COLUMNS for every row of `rows` (one GPU's regions) over its host window; with
    `result_ns` (when the host had each result: wall.decompose), also `wait_oncpu_pct`: how
    much of its wait for the result, from leaving the call to having it, the thread spent on
    a CPU (a spinning synchronize ~100, a blocking one ~0)."""
    a = rows["host_start_ns"].pipe(floats)
    b = rows["host_enqueued_ns"].pipe(floats)
    extra: dict[str, np.ndarray] = {}
    if result_ns is not None:
        long_wait = np.isfinite(result_ns) & (result_ns - b >= 20_000)  # (20 us and more)
        rb = np.where(long_wait, result_ns, np.nan)
        ran = _counter(smp, "host_run_ns", np.where(long_wait, b, np.nan), rb)
        with np.errstate(invalid="ignore", divide="ignore"):
            extra["wait_oncpu_pct"] = np.clip(100.0 * ran / ((rb - b) / 1e6), 0.0, 100.0)
        # the completion window: from the end event (on the trace's time base) to the result
        end = rows["end_ns"].pipe(floats) if "end_ns" in rows else no_values(a.size)
        ca = np.maximum(end, b)
        cb = np.where(np.isfinite(result_ns) & (result_ns >= ca), result_ns, np.nan)
        cwin = (cb - ca) / 1e6
        crun = np.minimum(_counter(smp, "host_run_ns", ca, cb), cwin)
        cwait = np.minimum(_counter(smp, "host_wait_ns", ca, cb),
                           np.maximum(cwin - np.nan_to_num(crun, nan=0.0), 0.0))
        coff = np.where(np.isnan(crun), np.nan, np.maximum(
            cwin - np.nan_to_num(crun, nan=np.inf) - np.nan_to_num(cwait, nan=0.0), 0.0))
        csteal = _counter(smp, "host_steal_ns", ca, cb)
        extra.update({"completion_wait_ms": cwait, "completion_offcpu_ms": coff,
                      "completion_others_run_ms": _counter(smp, "host_others_run_ns", ca, cb),
                      "completion_gc_ms": _gc_overlap(events, ca, cb),
                      "completion_steal_ms": csteal / cpus if cpus else no_values(a.size)})
        share_empty(extra)  # (before the host window's columns are made)
    window = (b - a) / 1e6
    # schedstat's times move in scheduler ticks on some kernels (4 ms steps on this project's
    # machines): interpolated between readings, a sub-tick region can get more run time than
    # it lasted. Each row's states are bounded by its window, so they add up to it; means over
    # many rows carry the signal, a single row's split is as coarse as the tick.
    run = np.minimum(_counter(smp, "host_run_ns", a, b), window)
    wait = np.minimum(_counter(smp, "host_wait_ns", a, b),
                      np.maximum(window - np.nan_to_num(run, nan=0.0), 0.0))
    off = np.maximum(window - np.nan_to_num(run, nan=np.inf) - np.nan_to_num(wait, nan=0.0), 0.0)
    off = np.where(np.isnan(run), np.nan, off)
    # The cgroup's throttled time is summed over the machine's CPUs (each CPU's run queue of
    # the group is throttled on its own): per CPU, it is what one thread of the group lost;
    # and at most the window off the CPU. Unknown without the CPU count (traces before v4).
    throttled = _counter(smp, "host_cpu_throttled_us", a, b, 1e-3)
    quota = np.minimum(throttled / cpus if cpus else no_values(a.size),  # (NaN stays)
                       np.maximum(window - np.nan_to_num(run, nan=0.0), 0.0))
    steal = _counter(smp, "host_steal_ns", a, b)
    steal = steal / cpus if cpus else no_values(a.size)
    return {"host_run_ms": run, "host_wait_ms": wait, "host_offcpu_ms": off,
            "others_run_ms": _counter(smp, "host_others_run_ns", a, b),
            "gc_ms": _gc_overlap(events, a, b), "steal_ms": steal, "quota_ms": quota,
            # (counts per call, for the sentences' evidence: a major fault waits for I/O)
            "majflt": _counter(smp, "host_majflt", a, b, 1.0),
            "minflt": _counter(smp, "host_minflt", a, b, 1.0),
            "cpu_freq_mhz": _level_mean(smp, "host_cpu_freq_mhz", a, b), **extra}


def busiest_thread(events: pd.DataFrame | None, t0: float, t1: float) -> dict[str, Any] | None:
    """The process's thread that ran most between t0 and t1 (epoch ns), from `host_events`
    thread rows (cumulative on-CPU ns, about once a second): tid, name, run_ms, and over_s,
    the time between the two readings run_ms is the difference of (the readings come about
    once a second, so it spans the window and up to a second either side: a sentence must say
    so, or a 40 ms window seems to hold 600 ms of CPU). None without such rows."""
    best: dict[str, Any] | None = None
    for tid, t, v, name in _threads(events):
        inside = (t >= t0 - 1_000_000_000) & (t <= t1 + 1_000_000_000)  # (rows ~1 s apart)
        if not inside.any():
            continue
        tt, vv = t[inside], v[inside]
        before = t < t0 - 1_000_000_000
        # (cumulative: the latest reading inside less the last one before, else the earliest)
        ran = float(vv.max() - (v[before].max() if before.any() else vv.min()))
        over_ns = float(tt.max() - (t[before].max() if before.any() else tt.min()))
        if best is None or ran > best["run_ms"] * 1e6:
            best = {"tid": tid, "name": name, "run_ms": ran / 1e6, "over_s": over_ns / 1e9}
    return best if best is not None and best["run_ms"] > 0 else None


# id(events table) -> (the table, weakly; its threads' arrays): every verdict asks for the
# busiest thread of its own window, over the same table (a DataFrame cannot be a dict key: it
# is unhashable; the entry goes with the table)
_Threads = list[tuple[int, np.ndarray, np.ndarray, "str | None"]]
_THREADS: dict[int, tuple["weakref.ref[pd.DataFrame]", _Threads]] = {}


def _threads(events: pd.DataFrame | None) -> _Threads:
    """Per thread of `events`' thread rows, in order of first appearance: tid, t_ns, run_ns
    (float), and its last name (None if never named)."""
    if events is None or not len(events) or "kind" not in events or "run_ns" not in events:
        return []
    hit = _THREADS.get(id(events))
    if hit is not None and hit[0]() is events:
        return hit[1]
    th = events[(events["kind"] == "thread")].dropna(subset=["tid", "run_ns"])
    out = []
    for tid, g in th.groupby("tid", sort=False):
        names = g["name"].dropna() if "name" in g else pd.Series(dtype=object)
        out.append((int(tid), g["t_ns"].to_numpy(np.int64), g["run_ns"].pipe(floats),
                    str(names.iloc[-1]) if len(names) else None))
    _THREADS[id(events)] = (weakref.ref(events), out)
    weakref.finalize(events, _THREADS.pop, id(events), None)
    return out


def _take(total: Any, change: Any) -> Any:
    """The part of `total` a measured change can explain: same sign, at most the change, at
    most what is left (element-wise on arrays)."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(change) & (total != 0) & (np.sign(change) == np.sign(total))
        return np.where(ok, np.sign(total) * np.minimum(np.abs(change), np.abs(total)), 0.0)


def split(total: Any, d: Mapping[str, Any], wait_counted: bool = False,
          lock_ratio: float = 0.5) -> dict[str, Any]:
    """Split a host delay `total` (ms, signed: the host's share of a change) among the host
    causes, by the changes `d` of the per-row means (ms) between reference and target:
    gc (`gc_ms`); cpu_quota (`quota_ms`: part of the wait for a CPU, or of the time off the CPU
    where another thread was throttled holding the interpreter lock); host_cpu (the rest of
    `host_wait_ms`; these two skipped where `wait_counted`: the attribution took the wait);
    interpreter_lock (off-CPU time while other threads ran: `host_offcpu_ms` up to
    `others_run_ms`, where the other threads ran at least `lock_ratio` as long); host_blocked
    (the rest of off-CPU); vm_steal (`steal_ms`); and
    host_launch: what is left, on the CPU. Each part at most its own change and what is left,
    so the parts stay within 0..total and sum to it.

    Floats in, floats out; arrays (bootstrap resamples of the changes) in, arrays out, element
    by element."""
    scalar = np.ndim(total) == 0 and all(np.ndim(v) == 0 for v in d.values())
    nan = np.nan
    out: dict[str, Any] = {}
    left = total
    out["gc"] = _take(left, d.get("gc_ms", nan))
    left = left - out["gc"]
    off = np.asarray(d.get("host_offcpu_ms", nan), float)
    if not wait_counted:
        # The cgroup's quota throttling first: the timed thread waits for a CPU meanwhile, or,
        # where another thread of the process was throttled holding the interpreter lock, off
        # the CPU (both seen on the CPU test machine). Then the rest of the wait.
        wait = np.asarray(d.get("host_wait_ms", nan), float)
        quota = d.get("quota_ms", nan)
        has_wait = np.isfinite(wait)
        held = np.where(has_wait | np.isfinite(off), np.nan_to_num(wait) + np.nan_to_num(off),
                        nan)
        # (at most what the thread spent held off, in size and sign)
        out["cpu_quota"] = _take(left, np.where(np.isfinite(held), _take(held, quota), quota))
        left = left - out["cpu_quota"]
        in_wait = np.where(has_wait, _take(out["cpu_quota"], wait), 0.0)
        out["host_cpu"] = _take(left, np.where(has_wait, wait - in_wait, wait))
        left = left - out["host_cpu"]
        off = np.where(np.isfinite(off), off - (out["cpu_quota"] - in_wait), off)
    else:
        out["cpu_quota"] = out["host_cpu"] = np.zeros_like(out["gc"])
    others = np.asarray(d.get("others_run_ms", nan), float)
    # (off the CPU while the other threads ran at least half as long: they held it)
    with np.errstate(invalid="ignore"):
        held_lock = (np.isfinite(off) & np.isfinite(others) & (off > 0)
                     & (others >= lock_ratio * off))
    out["interpreter_lock"] = np.where(held_lock, _take(left, off), 0.0)
    left = left - out["interpreter_lock"]
    out["host_blocked"] = _take(left, np.where(np.isfinite(off), off - out["interpreter_lock"],
                                               off))
    left = left - out["host_blocked"]
    out["vm_steal"] = _take(left, d.get("steal_ms", nan))
    left = left - out["vm_steal"]
    out["host_launch"] = left
    order = ("gc", "cpu_quota", "host_cpu", "interpreter_lock", "host_blocked", "vm_steal",
             "host_launch")
    if scalar:
        return {k: float(out[k]) for k in order}
    return {k: np.broadcast_to(out[k], np.broadcast(*out.values()).shape).astype(float)
            for k in order}
