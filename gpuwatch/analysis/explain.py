"""From measured parts to causes: the host delay split by what the host did, the wall latency's
change split into its parts' causes, and shares that physics allows.

- `refine_host`: the attribution's host factors (host launch delay, run-queue wait) split by
  the host's measured states (hostside.split): garbage collection, waiting for a CPU, another
  thread holding the interpreter lock, blocked, VM steal, and the rest on the CPU.
- `attribute_wall`: the change of the call -> result latency = the change of each part
  (wall.PARTS); the GPU part (events) takes the event-time attribution's causes, the GPU queue
  while the program's stream was idle is another process (when one is listed) or a GPU queue
  wait, the queue behind the program's own work is its backlog, completion is completion.
- `with_shares`: every share within 0..1: a contribution of the change's sign is its share of
  all contributions of that sign (they sum to 1); one of the other sign *offsets* the change
  (share 0, `offsets` True, its size in ms kept). The signed contributions still sum to the
  change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import hostside
from .causes import FACTORS
from .columns import floats
from .wall import PARTS

ATT_COLUMNS = ["factor", "contribution_ms", "ci_low_ms", "ci_high_ms", "share", "offsets"]
BOOTSTRAP = 200
MAX_ROWS = 3000
HOST_CHANGE_COLUMNS = ("gc_ms", "host_wait_ms", "quota_ms", "host_offcpu_ms", "others_run_ms",
                       "steal_ms")
OTHERS_IN_TARGET = 0.5  # as attribution.other_process
COMPLETION_LOCK_RATIO = 0.9  # (the completion window's interpreter lock: see attribute_wall)
OTHERS_IN_REFERENCE = 0.2  # (context switches: in under this share of the reference rows)


def _mean(df: pd.DataFrame, col: str) -> float:
    if col not in df:
        return np.nan
    v = df[col].pipe(floats)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else np.nan


def _changes(ref: pd.DataFrame, tgt: pd.DataFrame, cols: tuple[str, ...]) -> dict[str, float]:
    return {c: _mean(tgt, c) - _mean(ref, c) for c in cols}


def _boot_changes(ref: pd.DataFrame, tgt: pd.DataFrame, cols: tuple[str, ...],
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """BOOTSTRAP resampled changes of each column's mean (rows resampled, all at once; the
    mean of a resample's finite values, NaN where it has none)."""
    ir = rng.integers(0, len(ref), (BOOTSTRAP, min(len(ref), MAX_ROWS)))
    it = rng.integers(0, len(tgt), (BOOTSTRAP, min(len(tgt), MAX_ROWS)))

    def means(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
        ok = np.isfinite(v)
        total = np.where(ok, v, 0.0)[idx].sum(axis=1)
        if ok.all():
            return total / idx.shape[1]
        n = ok[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):  # (a resample of only NaN: NaN)
            return np.where(n > 0, total / n, np.nan)

    out = {}
    for c in cols:
        if c not in ref or c not in tgt:
            out[c] = np.full(BOOTSTRAP, np.nan)
            continue
        r, t = ref[c].pipe(floats), tgt[c].pipe(floats)
        if not (np.isfinite(r).any() and np.isfinite(t).any()):
            out[c] = np.full(BOOTSTRAP, np.nan)
            continue
        out[c] = means(t, it) - means(r, ir)
    return out


def _row(factor: str, c: float, lo: float, hi: float) -> dict[str, Any]:
    return {"factor": factor, "contribution_ms": float(c), "ci_low_ms": float(lo),
            "ci_high_ms": float(hi)}


def refine_host(att: pd.DataFrame, ref: pd.DataFrame, tgt: pd.DataFrame,
                seed: int = 0) -> pd.DataFrame:
    """`att` (attribution.attribute's table) with its host factors split by what the host did
    (hostside.split). Intervals: each host part's own, from resampled changes of its measure
    with the host delay held at its point value."""
    if att is None or att.empty:
        return att
    a = att.set_index("factor")
    host = float(a.loc["host_launch", "contribution_ms"] + a.loc["host_cpu", "contribution_ms"])
    d = _changes(ref, tgt, HOST_CHANGE_COLUMNS)
    parts = hostside.split(host, d)
    rng = np.random.default_rng(seed + 1)
    boots = _boot_changes(ref, tgt, HOST_CHANGE_COLUMNS, rng)
    samples = hostside.split(host, boots)  # (every resample at once: arrays in, arrays out)
    rows = []
    for f in att["factor"]:
        if f in parts:
            continue
        r = a.loc[f]
        rows.append(_row(f, r["contribution_ms"], r["ci_low_ms"], r["ci_high_ms"]))
    # the host launch interval where nothing else took part of it: the attribution's own
    lo_hl, hi_hl = float(a.loc["host_launch", "ci_low_ms"]), float(a.loc["host_launch",
                                                                            "ci_high_ms"])
    for f, c in parts.items():
        vals = samples[f]
        if f == "host_launch" and c == float(a.loc["host_launch", "contribution_ms"]):
            lo, hi = lo_hl, hi_hl
        else:
            lo, hi = np.percentile(vals, [2.5, 97.5]) if np.isfinite(vals).any() else (c, c)
        rows.append(_row(f, c, lo, hi))
    out = _ordered(pd.DataFrame(rows))
    if att["share"].isna().all():  # (a change of nothing: no shares, as attribute says)
        return out.assign(share=np.nan, offsets=False)[ATT_COLUMNS] if len(out) else out
    return with_shares(out, float(a["contribution_ms"].sum()))


def _ordered(att: pd.DataFrame) -> pd.DataFrame:
    """Rows in the table of causes' order."""
    rank = {f: i for i, f in enumerate(FACTORS)}
    return att.iloc[np.argsort([rank.get(f, len(rank)) for f in att["factor"]],
                               kind="stable")].reset_index(drop=True)


def others_listed(ref: pd.DataFrame, tgt: pd.DataFrame) -> bool:
    """Did another process work on the GPU during most target rows (merge's `other_active`)?
    The GPU queue part needs no more: the work waited while this program's stream was idle,
    and the process list says who was there (whether or not it was there in the reference).
    CUPTI's context-switch records say so too, where the GPU gives them (merge's
    `ctx_switches`): this program's context switched out during most target rows and during
    few of the reference's (another context had its time slice; NVML may not list it: another
    container)."""
    if "ctx_switches" in tgt and "ctx_switches" in ref:
        s_t, s_r = tgt["ctx_switches"].pipe(floats), ref["ctx_switches"].pipe(floats)
        s_t, s_r = s_t[np.isfinite(s_t)], s_r[np.isfinite(s_r)]
        if s_t.size and s_r.size and np.mean(s_t > 0) >= OTHERS_IN_TARGET \
                and np.mean(s_r > 0) < OTHERS_IN_REFERENCE:
            return True
    if "other_active" not in tgt:
        return False
    t = tgt["other_active"].pipe(floats)
    t = t[np.isfinite(t)]
    return bool(t.size and np.mean(t > 0) >= OTHERS_IN_TARGET)


def attribute_wall(ref: pd.DataFrame, tgt: pd.DataFrame, gpu_att: pd.DataFrame | None,
                   seed: int = 0) -> pd.DataFrame:
    """The change of the mean wall latency split by cause: its parts' changes (wall.PARTS),
    the GPU part by `gpu_att` (the event-time attribution of the same rows, host-refined)."""
    d = _changes(ref, tgt, PARTS)
    delta = _mean(tgt, "wall_ms") - _mean(ref, "wall_ms")
    rng = np.random.default_rng(seed + 2)
    boots = _boot_changes(ref, tgt, PARTS, rng)

    def ci(col: str) -> tuple[float, float]:
        v = boots[col]
        v = v[np.isfinite(v)]
        if not v.size:
            return np.nan, np.nan
        lo, hi = np.percentile(v, [2.5, 97.5])
        return float(lo), float(hi)

    rows: dict[str, dict[str, Any]] = {}

    def add(f: str, c: float, lo: float, hi: float) -> None:
        if not np.isfinite(c):
            return
        if f in rows:  # (two parts of one cause: their sizes and interval bounds add)
            r = rows[f]
            r["contribution_ms"] += c
            r["ci_low_ms"] += lo
            r["ci_high_ms"] += hi
        else:
            rows[f] = _row(f, c, lo, hi)

    other = "other_process" if others_listed(ref, tgt) else "gpu_queue"
    add(other, d["queue_other_ms"], *ci("queue_other_ms"))
    add("own_backlog", d["queue_own_ms"], *ci("queue_own_ms"))
    # completion by what the host did meanwhile (hostside's completion_* states): a thread that
    # could not take the interpreter lock back, a collection, a busy host; the rest (a blocking
    # synchronize's wake-up, a thread asleep) is completion latency
    c_lo, c_hi = ci("completion_ms")
    states = {"gc_ms": "completion_gc_ms", "host_wait_ms": "completion_wait_ms",
              "host_offcpu_ms": "completion_offcpu_ms",
              "others_run_ms": "completion_others_run_ms", "steal_ms": "completion_steal_ms"}
    # (a thread asleep in a blocking synchronize is off the CPU by design, and other threads
    # run by the way: only where they ran about all the time it was held off is it the lock;
    # seen on the H100: a blocking wait, others 0.58x its extra time off; a thread holding
    # the lock on the sim, 1.1x)
    c_parts = hostside.split(d["completion_ms"], {
        k: _mean(tgt, col) - _mean(ref, col) for k, col in states.items()},
        lock_ratio=COMPLETION_LOCK_RATIO) if np.isfinite(d["completion_ms"]) else {}
    for f, c in c_parts.items():
        if f in ("host_blocked", "host_launch") or not c:
            continue
        frac = c / d["completion_ms"]  # (its interval: the completion's, in proportion)
        add(f, c, c_lo * frac, c_hi * frac)
    host_part = sum(c for f, c in c_parts.items() if f not in ("host_blocked", "host_launch"))
    add("completion", d["completion_ms"] - host_part,
        *(x * (1 - host_part / d["completion_ms"]) if d["completion_ms"] else x
          for x in (c_lo, c_hi)))
    if gpu_att is not None and not gpu_att.empty:
        for r in gpu_att.itertuples():
            if r.factor != "unexplained":
                add(str(r.factor), r.contribution_ms, r.ci_low_ms, r.ci_high_ms)
    else:
        add("unexplained", d["gpu_ms"], *ci("gpu_ms"))
    known = sum(r["contribution_ms"] for r in rows.values())
    rest = delta - known  # the event time's unexplained part, and the clocks' mapping
    lo, hi = ci("residual_ms")
    gpu_un = (gpu_att.set_index("factor").loc["unexplained"] if gpu_att is not None
              and not gpu_att.empty else None)
    if gpu_un is not None:
        lo, hi = lo + gpu_un["ci_low_ms"], hi + gpu_un["ci_high_ms"]
    rows.pop("unexplained", None)
    rows["unexplained"] = _row("unexplained", rest, lo if np.isfinite(lo) else rest,
                               hi if np.isfinite(hi) else rest)
    out = _ordered(pd.DataFrame(list(rows.values())))
    # (as attribution.attribute: a change under 0.1% of the reference has no shares to give)
    if abs(delta) < 1e-3 * abs(_mean(ref, "wall_ms")):
        return with_shares(out, 0.0)
    return with_shares(out, delta)


def attribute_span(ref: pd.DataFrame, tgt: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A span's (host work's) change of host time split by what the host did: the host causes
    (hostside.split), and what they leave, the span's own work on the CPU (`host_work`)."""
    delta = _mean(tgt, "wall_ms") - _mean(ref, "wall_ms")
    rng = np.random.default_rng(seed + 3)
    b = _boot_changes(ref, tgt, ("wall_ms",), rng)["wall_ms"]
    lo, hi = np.percentile(b[np.isfinite(b)], [2.5, 97.5]) if np.isfinite(b).any() else (
        delta, delta)
    base = pd.DataFrame([_row("host_launch", delta, lo, hi), _row("host_cpu", 0.0, 0.0, 0.0),
                         _row("unexplained", 0.0, 0.0, 0.0)]).assign(share=1.0, offsets=False)
    out = refine_host(base, ref, tgt, seed)
    out["factor"] = out["factor"].replace({"host_launch": "host_work"})
    return with_shares(out[out["factor"] != "unexplained"].reset_index(drop=True), delta)


def with_shares(att: pd.DataFrame, delta: float) -> pd.DataFrame:
    """Shares within 0..1 that sum to 1 over the contributions of the change's sign; the others
    offset it (share 0, `offsets` True). NA for a change of nothing."""
    att = att.copy()
    c = att["contribution_ms"].to_numpy(np.float64)
    if not np.isfinite(delta) or delta == 0:
        att["share"], att["offsets"] = np.nan, False
        return att[ATT_COLUMNS]
    same = np.sign(c) == np.sign(delta)
    total = float(c[same].sum())
    att["share"] = np.where(same, c / total if total else 0.0, 0.0)
    att["offsets"] = ~same & (np.abs(c) > 1e-9)
    return att[ATT_COLUMNS]
