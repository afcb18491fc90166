"""Columns as numpy arrays for the arithmetic (one place that knows pandas' dtypes), and the
conventions every table shares: what is a latency, how old a reading may be, the early and late
iterations compared, how a time in ms is written (record's summary uses them too)."""

from __future__ import annotations

from typing import Any

import numpy as np


NO_CONDITION = "all"  # what rows recorded before (or without) any set_condition() are called


def floats(col: Any) -> np.ndarray:
    """A pandas Series (or array) as float64, NaN where missing. A plain numpy column converts
    directly (NaN already means missing); pandas' nullable columns map NA to NaN (pandas < 2.2
    raises on to_numpy(float) with NA)."""
    dtype = getattr(col, "dtype", None)
    if isinstance(dtype, np.dtype) or dtype is None:
        return np.asarray(col, dtype=np.float64)
    out: np.ndarray = col.to_numpy(dtype="float64", na_value=np.nan)
    return out


def ns_since(col: Any, t0: int) -> np.ndarray:
    """Epoch-ns column `col` (a pandas Series or array) as float64 ns since `t0`, NaN where
    missing. Exact where the epoch ns themselves are not: a float64 near 1.7e18 is a multiple
    of 256 ns, so a duration taken between two of them is off by up to 256 ns (and by a
    different amount in each run); an offset from a nearby `t0` is exact up to 2**53 ns (104
    days). Durations between host times are differences of these."""
    dtype = getattr(col, "dtype", None)
    if isinstance(dtype, np.dtype) or dtype is None:
        v = np.asarray(col)
        if v.dtype.kind in "iu":
            return (v.astype(np.int64, copy=False) - np.int64(t0)).astype(np.float64)
        return v.astype(np.float64) - float(t0)  # (floats already: as exact as they are)
    if getattr(dtype, "kind", None) not in ("i", "u"):
        return floats(col) - float(t0)
    missing = col.isna().to_numpy()
    out = (col.to_numpy(dtype=np.int64, na_value=t0) - np.int64(t0)).astype(np.float64)
    if missing.any():
        out[missing] = np.nan
    return out


_NAN = np.array(np.nan)


def no_values(n: int) -> np.ndarray:
    """n NaN as a read-only view of one (8 bytes, not 8 * n): a per-region column of a signal
    the trace does not have. Arithmetic on it gives ordinary arrays."""
    return np.broadcast_to(_NAN, (n,))


def shared_missing(v: np.ndarray) -> bool:
    """Whether `v` is one NaN shared by every row (`no_values`, or a column the file holds as
    NA throughout: tablecolumns.read_column): known missing without a pass over its rows (a
    10M-sample column's isnan is a 10 MB mask and ~10 ms)."""
    return v.ndim == 1 and v.size > 0 and v.strides == (0,) and bool(np.isnan(v[0]))


def share_empty(cols: dict[str, Any]) -> dict[str, Any]:
    """`cols` with each float column that holds no value at all made `no_values` (in place;
    returned): a 3M-region trace without kernel, process or host sampling has ~27 such
    columns, 0.6 GiB."""
    for c, v in cols.items():
        if (isinstance(v, np.ndarray) and v.dtype == np.float64 and v.ndim == 1 and v.size
                and v.strides != (0,) and np.isnan(v[0]) and np.isnan(v).all()):
            cols[c] = no_values(v.size)
    return cols


def writable(df: Any) -> Any:
    """DataFrame `df` (in place; returned) with each column that is `no_values` made an
    ordinary array: a frame handed to the user takes writes (pandas writes into a column's
    array, and a shared view is read-only). Done once the analysis is through, after its peak
    of memory."""
    for c in df.columns:
        col = df[c]
        if col.dtype != np.float64:  # (to_numpy of a string column would build its objects)
            continue
        v = col.to_numpy()
        if v.ndim == 1 and v.size and v.strides == (0,):
            df[c] = np.full(v.size, np.nan)
    return df


# One inference over this long (about 2.8 hours) is no GPU measurement but broken data (and the
# change-point penalty, built from the latency's variance, would overflow a float): analyze,
# fleets and record's summary leave such rows out, as they do NaN and <= 0, and count them.
MAX_LATENCY_MS = 1e7


def stale_after_ns(meta: Any, field: str = "sm_clock_mhz") -> int:
    """How old the latest reading of a telemetry field may be and still say what the GPU was
    doing: three of its sampling periods (the sampler reads cheap fields every poll, costly
    ones every 0.1 s, slow ones every second: fields.TIER_PERIOD_S) and at least 50 ms. Older
    (the GPU was lost, the field stopped being supported, the sampler stalled), the value is
    unknown. Record's table, analyze and the renderers use this one rule."""
    from ..fields import FIELDS, TIER_PERIOD_S

    opts = meta.get("options") if isinstance(meta, dict) else None
    hz = opts.get("sample_hz") if isinstance(opts, dict) else None
    poll_s = 1.0 / hz if isinstance(hz, (int, float)) and not isinstance(hz, bool) and \
        0 < hz < float("inf") else 1e-3
    cost = next((f.cost for f in FIELDS if f.name == field), "cheap")
    return int(3e9 * max(poll_s, TIER_PERIOD_S.get(cost, 1.0), 50e-3 / 3))


EARLY_ITERS = 50  # the seed's layering starts after ~50-60 iterations
LATE_ITERS = 100  # and is stable over the last few hundred


def ms_text(ms: float) -> str:
    """Milliseconds to read: two decimals from 1 ms, three significant digits below (a 2 us
    callable is 0.002, not 0.00)."""
    if np.isnan(ms):
        return "NA"
    return f"{ms:.1f}" if abs(ms) >= 100 else f"{ms:.2f}" if abs(ms) >= 1 else f"{ms:.3g}"


def rows_where(df: Any, mask: Any) -> Any:
    """`df[mask]` (a boolean mask over its rows), as a slice where the rows kept are one
    contiguous run: a condition of a sweep, the iterations after a jump, an episode. A slice
    shares the frame's columns instead of copying them (pandas' copy-on-write keeps it safe);
    a 1M-inference analysis holds several such selections of 60 columns at once."""
    m = np.asarray(mask, dtype=bool)
    return df.iloc[:] if m.all() else _rows_at(df, np.flatnonzero(m))


def groups_of(df: Any, by: str) -> Any:
    """(value, rows) for each value of column `by`, in order of first appearance, as
    `df.groupby(by, sort=False)` gives them (NaN left out), each a slice where its rows are
    contiguous (rows_where)."""
    for key, idx in df.groupby(by, sort=False).indices.items():
        yield key, _rows_at(df, idx)


def _rows_at(df: Any, idx: np.ndarray) -> Any:
    """The rows at positions `idx` (ascending): a slice where they are one run, else a copy."""
    if idx.size and idx[-1] - idx[0] + 1 == idx.size:
        return df.iloc[int(idx[0]):int(idx[-1]) + 1]
    return df.iloc[idx]


def others_either_side(active: np.ndarray, active_next: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Another process on the GPU at each region, from the process readings either side of it
    (merge's `other_active`, the reading before, and `other_active_next`, the one after; NaN
    unknown): (near, stayed). `near`: a reading either side lists one at work (it may have
    come or gone between them: the list is read about once a second). `stayed`: the reading
    before lists one and the one after does too, or there is none after. Both False where the
    reading before is unknown."""
    before = np.nan_to_num(active) > 0
    after = np.nan_to_num(active_next) > 0
    known = np.isfinite(active)
    return known & (before | after), before & (after | np.isnan(active_next))
