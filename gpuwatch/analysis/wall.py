"""The latency the user sees, from the call to the result, in parts that add up to it.

For an inference region (times on the trace's one time base):

    wall = queue_own + queue_other + gpu + completion + residual

- `queue_own_ms`: from the call (`host_start_ns`) to the GPU starting the region (its start
  event, `start_ns`) while this program's previous region was still on the GPU: waiting behind
  its own earlier work;
- `queue_other_ms`: the rest of that wait, while the program's stream was idle: another
  context's time slice (another process), untimed work, the GPU waking up;
- `gpu_ms`: the region's events (unchanged: the time the GPU took from starting the work to
  finishing it, with any wait for the host's launches inside it);
- `completion_ms`: from the end event to the host having the result (`host_end_ns`, where a
  gpuwatch engine synchronised; a blocking synchronize's wake-up shows here);
- `residual_ms`: what the host and GPU clocks' mapping leaves (the time base's error: a few
  microseconds on the H100, metadata `timebase`).

`wall_ms` is known where the host waited for the result: a gpuwatch engine synchronised
(`host_end_ns`), or the call returned only as the GPU finished (its end event ran within
SYNC_END_NS of being enqueued: the call waited for its result, or the GPU waited for the
host); then the result is there at max(host left the call, end event). Elsewhere (an
asynchronous call whose result the program fetched later) it is NA: gpuwatch did not see when
the program had its result. A span (`s.span`: host work such as pre-processing) has wall time
= its host time; its parts are the host's states (hostside.py), not the GPU's.

`host_launch_ms` (the call to the last enqueue) overlaps the parts above: the GPU runs while
the host launches. It is given beside them, not among them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import floats, ns_since

SYNC_END_NS = 30_000  # the end event ran within this of being enqueued: the host was waiting
PARTS = ("queue_own_ms", "queue_other_ms", "gpu_ms", "completion_ms", "residual_ms")
COLUMNS = ("wall_ms", "queue_ms", "queue_own_ms", "queue_other_ms", "completion_ms",
           "residual_ms", "host_launch_ms")


def decompose(rows: pd.DataFrame, start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
    """COLUMNS for one GPU's regions (`rows` in start order; `start`/`end` their events)."""
    # (host and GPU times as ns since the first region's start: exact floats, columns.ns_since)
    t0 = int(start[0]) if start.size else 0
    hs = ns_since(rows["host_start_ns"], t0)
    he = ns_since(rows["host_enqueued_ns"], t0)
    hend = (ns_since(rows["host_end_ns"], t0) if "host_end_ns" in rows
            else np.full(len(rows), np.nan))
    s, e = ns_since(start, t0), ns_since(end, t0)
    span = (rows["kind"] == "span").to_numpy() if "kind" in rows else np.zeros(len(rows), bool)
    # When the host had the result: a synchronize returned, or the call outlasted the GPU work
    waited = np.isfinite(he) & (e - he <= SYNC_END_NS)
    result = np.where(np.isfinite(hend), np.maximum(hend, e),
                      np.where(waited, np.maximum(he, e), np.nan))
    wall = (result - hs) / 1e6
    # This program's previous region on this GPU: when the last one before this ended
    prev_end = np.concatenate([[-np.inf], np.maximum.accumulate(e)[:-1]]) if e.size else e
    queue = np.maximum(s - hs, 0.0) / 1e6
    own = np.clip(np.minimum(prev_end, s) - hs, 0.0, None) / 1e6
    own = np.minimum(np.where(np.isfinite(own), own, 0.0), queue)
    # (the events' own elapsed time where recorded: the mapped times carry the time base's
    # error, which the residual then shows)
    gpu = rows["gpu_ms"].pipe(floats) if "gpu_ms" in rows else (e - s) / 1e6
    completion = np.maximum(result - e, 0.0) / 1e6
    residual = wall - (queue + gpu + completion)
    nan = np.nan
    out = {
        "wall_ms": np.where(span, (he - hs) / 1e6, wall),
        "queue_ms": np.where(span, nan, queue),
        "queue_own_ms": np.where(span, nan, own),
        "queue_other_ms": np.where(span, nan, queue - own),
        "completion_ms": np.where(span, nan, completion),
        "residual_ms": np.where(span, nan, residual),
        "host_launch_ms": (he - hs) / 1e6,
    }
    for k in ("queue_ms", "queue_own_ms", "queue_other_ms", "completion_ms", "residual_ms"):
        out[k] = np.where(np.isfinite(out["wall_ms"]), out[k], nan)
    return out


def has_wall(rows: pd.DataFrame, at_least: float = 0.5) -> bool:
    """Is the wall latency known for most rows (at least `at_least` of them)?"""
    if "wall_ms" not in rows or not len(rows):
        return False
    w = rows["wall_ms"].pipe(floats)
    return bool(np.mean(np.isfinite(w) & (w > 0)) >= at_least)


def summary(key: dict[str, object], g: pd.DataFrame) -> dict[str, object] | None:
    """One group's row of the decomposition table (a condition, an episode, a reference):
    means of the parts (means add up; medians do not), the wall latency's median and tail,
    and the same parts over the slowest tenth of the calls (what the tail is made of). None
    where no call of the group has a wall latency. Made as each group is found, so that the
    groups' rows are not kept until the table is."""
    w = g["wall_ms"].pipe(floats)
    ok = np.isfinite(w)
    if not ok.any():
        return None
    # (the columns read through one mask, never the group's frame copied: 60 columns of a
    # 200,000-row condition for the handful read here)
    every = bool(ok.all())

    def known(v: np.ndarray) -> np.ndarray:
        return v if every else v[ok]

    w = known(w)
    p90, p99 = (float(p) for p in np.percentile(w, [90, 99]))
    slow = w >= p90
    row: dict[str, object] = {**key, "n": int(ok.sum()), "wall_ms": float(w.mean()),
                              "wall_p50_ms": float(np.median(w)), "wall_p90_ms": p90,
                              "wall_p99_ms": p99}
    span = "kind" in g and bool(known((g["kind"] == "span").to_numpy(  # (NA: skipped,
        dtype=bool, na_value=True)).all())  # as pandas' all() skips it)
    cols = (("host_run_ms", "host_wait_ms", "host_offcpu_ms", "gc_ms") if span else
            PARTS + ("host_launch_ms",))
    for c in cols:
        if c in g:
            v = known(g[c].pipe(floats))
            row[c] = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
            vs = v[slow]
            row[f"slowest10_{c}"] = float(np.nanmean(vs)) if np.isfinite(vs).any() else np.nan
    return row


def table(rows: list[dict[str, object] | None]) -> pd.DataFrame:
    """The decomposition table from the groups' summary() rows (None rows left out)."""
    return pd.DataFrame([r for r in rows if r is not None])


def _signed(ms: float) -> str:
    """A signed millisecond figure to 3 places, never "-0.000" (what rounds to 0 is 0)."""
    return "+0.000" if abs(ms) < 5e-4 else f"{ms:+.3f}"


def text(row: pd.Series | dict[str, object]) -> str:
    """One line: the wall latency and its parts, e.g. "call -> result 1.30 ms = GPU queue
    0.01 + GPU 1.20 + completion 0.09 ms (host launch 0.30 ms, beside them)"."""
    r = dict(row)

    def f(k: str) -> float:
        v = r.get(k)
        return float(v) if isinstance(v, (int, float)) and np.isfinite(v) else np.nan

    if "host_run_ms" in r and not np.isfinite(f("gpu_ms")):  # a span: the host's states
        parts = [("on the CPU", "host_run_ms"), ("waiting for a CPU", "host_wait_ms"),
                 ("off the CPU, not runnable", "host_offcpu_ms")]
        body = " + ".join(f"{name} {f(k):.3f}" for name, k in parts if np.isfinite(f(k)))
        gc = f" (garbage collection {f('gc_ms'):.3f} ms of it)" if f("gc_ms") >= 5e-4 else ""
        return (f"host time {f('wall_ms'):.3f} ms" + (f" = {body} ms" if body else "") + gc)
    q = f("queue_own_ms") + f("queue_other_ms")
    return (f"call -> result {f('wall_ms'):.3f} ms = GPU queue {q:.3f} (behind own work "
            f"{f('queue_own_ms'):.3f}) + GPU {f('gpu_ms'):.3f} + completion "
            f"{f('completion_ms'):.3f} ms (clock mapping {_signed(f('residual_ms'))}); host launch "
            f"{f('host_launch_ms'):.3f} ms overlaps them")
