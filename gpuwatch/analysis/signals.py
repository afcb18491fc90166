"""Episodes found from a cause's own signal, not from the latency: where it was, and for how long.

A latency series mixes every cause: a host that is slow for its own reasons can hide a light
co-tenant, and a run of twelve 570 ms calls is too few iterations to be a latency episode
although it lasts six seconds. Each measured cause leaves a signal per call, in ms (merge's
columns): the GPU queue while this program's stream was idle (`queue_other_ms`), garbage
collection inside the call (`gc_ms`), waiting for a CPU (`host_wait_ms`), off the CPU while the
process's other threads ran (the interpreter lock: min(`host_offcpu_ms`, `others_run_ms`)),
VM steal (`steal_ms`); a host state over call -> result: the launch's window and, where the
call waited for its result, the completion's (merge's `completion_` columns; for the lock, only
where the other threads ran nearly all the while: see `_lock`). Its windows are where its
mean over BLOCK_NS of wall-clock time stays clearly above its typical level (the lower half of
the block means' median, plus 3 robust s.d. of them, FLOOR_SHARE of the calls' median latency
and FLOOR_MS), as the running median of SMOOTH blocks says; windows closer than MERGE_NS are one; a window shorter
than MIN_NS or with fewer than MIN_CALLS calls is none. Time, not iterations: the boundaries are
within a block of the cause's own.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .columns import floats

BLOCK_NS = 250_000_000  # block length (wall-clock)
MERGE_NS = 1_000_000_000  # windows this close are one
MIN_NS = 500_000_000  # a window is at least this long...
MIN_CALLS = 5  # ...and holds at least this many calls
FLOOR_SHARE = 0.03  # a signal's rise is at least this share of the median latency...
FLOOR_MS = 0.005  # ...and this many ms
SMOOTH = 5  # blocks in the running median that says a block is raised
COMPLETION_LOCK_RATIO = 0.9  # (as explain's: the completion window's interpreter lock)


def _running_median(x: np.ndarray, k: int) -> np.ndarray:
    """The median of each k-long neighbourhood (shorter at the ends)."""
    if x.size < k:
        return x.copy()
    h = k // 2
    pad = np.concatenate([np.full(h, np.nan), x, np.full(h, np.nan)])
    win = np.lib.stride_tricks.sliding_window_view(pad, k)
    return np.nanmedian(win, axis=1)


def _col(rows: pd.DataFrame, c: str) -> np.ndarray:
    return rows[c].pipe(floats) if c in rows else np.full(len(rows), np.nan)


def _call(rows: pd.DataFrame, c: str) -> np.ndarray:
    """Host state `c` over the call's host window and, where the call waited for its result,
    its completion window too (merge's `completion_` column; the end event to the result): the
    latency these episodes are of is call -> result, and a thread that cannot take the
    interpreter lock back after a synchronize loses its time there, not in the launch."""
    v = _col(rows, c)
    done = f"completion_{c.removeprefix('host_')}"
    if done not in rows:
        return v
    return v + np.nan_to_num(_col(rows, done), nan=0.0)  # (NaN where the launch's is unknown)


def _lock(rows: pd.DataFrame) -> np.ndarray:
    """Off the CPU while the process's other threads ran: over the launch, and over the
    completion where the other threads ran nearly all the while the timed thread was off the
    CPU (COMPLETION_LOCK_RATIO, as explain.attribute_wall splits completion). A blocking
    synchronize sleeps there too, while the other threads mostly do not run: not the lock."""
    launch = np.minimum(_col(rows, "host_offcpu_ms"), _col(rows, "others_run_ms"))
    if "completion_offcpu_ms" not in rows:
        return launch
    off, others = _col(rows, "completion_offcpu_ms"), _col(rows, "completion_others_run_ms")
    with np.errstate(invalid="ignore"):
        held = others >= COMPLETION_LOCK_RATIO * off
    return launch + np.where(held, np.nan_to_num(np.minimum(off, others), nan=0.0), 0.0)


# signal -> (how it is read from merged rows, words for the sentence, the factors it shows as)
SIGNALS: dict[str, tuple[Callable[[pd.DataFrame], np.ndarray], str, tuple[str, ...]]] = {
    "gpu_queue": (lambda r: _col(r, "queue_other_ms"),
                  "the GPU queue while this program's stream was idle",
                  ("other_process", "gpu_queue")),
    "gc": (lambda r: _call(r, "gc_ms"), "garbage collection inside the calls", ("gc",)),
    "cpu_quota": (lambda r: _col(r, "quota_ms"), "the cgroup's CPU-quota throttling",
                  ("cpu_quota",)),
    "host_cpu": (lambda r: _call(r, "host_wait_ms"), "waiting for a CPU", ("host_cpu",)),
    "interpreter_lock": (_lock, "off the CPU while the process's other threads ran",
                         ("interpreter_lock",)),
    "vm_steal": (lambda r: _call(r, "steal_ms"), "VM steal time", ("vm_steal",)),
}


def windows(rows: pd.DataFrame, signal: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) positions in `rows` (in time order) of the windows where `signal` is
    clearly above its typical level."""
    t = rows["host_start_ns"].pipe(floats) if "host_start_ns" in rows else np.full(len(rows), np.nan)
    wall = rows["wall_ms"].pipe(floats) if "wall_ms" in rows else np.full(len(rows), np.nan)
    ok = np.isfinite(t) & np.isfinite(signal)
    if ok.sum() < 4 * MIN_CALLS:
        return []
    idx = np.flatnonzero(ok)
    ts, sig = t[ok], signal[ok]
    block = ((ts - ts.min()) // BLOCK_NS).astype(np.int64)
    blocks, first = np.unique(block, return_index=True)
    sums = np.add.reduceat(sig, first)
    counts = np.diff(np.append(first, sig.size))
    means = sums / counts
    # The typical level from the lower half of the blocks: a cause present for half the run
    # must not set the level it is measured against.
    lower = means[means <= np.median(means)]
    level = float(np.median(lower))
    spread = 1.4826 * float(np.median(np.abs(lower - level)))
    typical = float(np.nanmedian(wall[ok])) if np.isfinite(wall[ok]).any() else 0.0
    rise = max(3 * spread, FLOOR_SHARE * typical, FLOOR_MS)
    # Sustained, not a burst: the running median of SMOOTH blocks (a periodic one-block burst,
    # such as a thread's once-a-second work, is no window)
    high = _running_median(means, SMOOTH) > level + rise
    if not high.any():
        return []
    out: list[list[int]] = []  # [first block, last block] of each window
    for b in blocks[high].tolist():
        if out and (b - out[-1][1]) * BLOCK_NS <= MERGE_NS:
            out[-1][1] = b
        else:
            out.append([b, b])
    result = []
    for b0, b1 in out:
        inside = (block >= b0) & (block <= b1)
        pos = idx[inside]
        if pos.size < MIN_CALLS or (b1 - b0 + 1) * BLOCK_NS < MIN_NS:
            continue
        # trim to the calls whose own signal is raised at the window's edges
        raised = np.flatnonzero(sig[inside] > level + rise)
        if raised.size:
            pos = pos[raised[0]:raised[-1] + 1]
        result.append((int(pos[0]), int(pos[-1])))
    return result
