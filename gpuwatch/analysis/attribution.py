"""Which measured cause explains a condition's extra latency, and how much of it.

Against a reference (the gap-0 condition, or the condition's own pre-onset iterations), the
extra latency of the target rows (the settled layer, or the whole condition) is split with one
least-squares fit over reference and condition rows together:

    gpu_ms ~ b0 + b1 * (1000 / SM clock) + b2 * (1000 / memory clock) + b3 * host enqueue time

with the physics as bounds (bounded least squares, `_bounded_fit`): work at a fixed cycle count takes
time proportional to 1/clock, so b1, b2 >= 0; host enqueue time (what the host spent launching
the inference) shows up inside the timed region only while the GPU waits for it, so one more ms
of it adds at most one ms: 0 <= b3 <= 1. Without the bounds, a regressor that merely marks the
condition (25 us more launch time after each sleep) can soak up a slow-down it cannot cause. A factor's contribution is b_k times the change of its regressor between reference
and target. What the fit does not explain is the residual. The SM-clock part is further split by
the share of target inferences during which a power or thermal clock-event reason was active
(throttling), unless those inferences, a minority, ran no slower than the ones before them
(`_held`: a limit above a clock the governor had already lowered holds nothing down); the rest
is the governor's own choice (DVFS). A regressor that did not change
(a clock: by no more than CLOCK_RESOLUTION of itself) contributes exactly 0. Where regions carry
the in-band clock, merge has put it in sm_clock_mhz_mean: the fit uses the clock each region
ran at, not NVML's reading of up to ~100 ms before. 95% intervals come from
bootstrap resamples of the rows.

Physics bounds every clock share: a clock change from f_ref to f explains at most
busy * (f_ref / f - 1) of the extra time (busy: the reference's kernel time where kernels were
traced, else its gpu_ms, an upper bound), and nothing of the opposite sign; what the fit gives
beyond that is unexplained. Without a kernel timeline, an unexplained part that the bound allows
in full goes to the SM clock: the fit's slope is biased towards 0 when the clock reading lags
the clock (NVML's refreshes every ~100 ms on an H100), and nothing else measured can take it.

With a kernel timeline (record --kernels), the split is sharper. Each inference's latency is the
time its kernels kept the GPU busy plus the time the GPU sat idle inside it, waiting for the
host. So the change in idle time is host launch starvation, measured directly. The change in
busy time is regressed on the clocks as above, and what the clocks leave of it is *kernels
slower at the same clocks* (cold caches, contention), a measured cause and no longer a residual.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from ..fields import ClockEventReason
from .columns import floats, others_either_side

THROTTLE_MASK = int(ClockEventReason.SW_POWER_CAP | ClockEventReason.HW_SLOWDOWN
                    | ClockEventReason.SW_THERMAL_SLOWDOWN | ClockEventReason.HW_THERMAL_SLOWDOWN
                    | ClockEventReason.HW_POWER_BRAKE_SLOWDOWN)
REGRESSORS = ("inv_sm", "inv_mem", "enqueue_ms")
UPPER = {"enqueue_ms": 1.0}  # ms of latency per ms of host enqueue time, at most
FACTORS = ("sm_clock", "throttling", "mem_clock", "host_cpu", "host_launch", "kernels_slower",
           "other_process", "unexplained")
# Another process is on the GPU where NVML's utilisation exceeds this program's own duty cycle
# by this many points in the target rows, and by less than REF_EXCESS_PCT in the reference.
OTHER_EXCESS_PCT = 30.0
REF_EXCESS_PCT = 15.0
CLOCK_RESOLUTION = 1e-4  # a clock's relative change below this is no change (see _changed)
# The rows with a power/thermal reason ran slower than the rows before them without one by
# less than this (relative: a third of an H100's 15 MHz step at 1.5 GHz): it held nothing down
HELD_MIN = 0.005
BOOTSTRAP = 200
MAX_ROWS = 3000  # per group, for the bootstrap
POOL_ROWS = 4 * MAX_ROWS  # rows of a larger group the bootstrap draws from


_RAW = ("y", "sm", "mem", "enqueue", "busy", "idle", "excess", "wait", "others", "others_next")
_RAW_COLUMNS = ("gpu_ms", "sm_clock_mhz_mean", "mem_clock_mhz_mean", "enqueue_ms", "busy_ms",
                "idle_inside_ms", "util_excess_pct", "host_wait_ms", "other_active",
                "other_active_next")


def _raw(parts: Sequence[pd.DataFrame]) -> dict[str, np.ndarray]:
    """The columns a group's regressors are made of, as float arrays over the parts' rows in
    order (NaN in a part without the column, as pd.concat gives), and the reasons as int64."""
    def col(c: str) -> np.ndarray:
        got = [floats(p[c]) if c in p else np.full(len(p), np.nan) for p in parts]
        return got[0] if len(got) == 1 else np.concatenate(got)

    out = {k: col(c) for k, c in zip(_RAW, _RAW_COLUMNS)}
    out["reasons"] = np.concatenate([p["reasons_any"].to_numpy(np.int64) for p in parts])
    # (which side of a fit a row is from: 0 the first part, a fit's reference; 1 the rest)
    out["side"] = np.concatenate([np.full(len(p), float(min(i, 1))) for i, p in enumerate(parts)])
    return out


# An analysis asks for the same attribution twice where a condition's call -> result rows and
# reference are its event-time ones (a synchronous program: every region's wall time known, the
# same layers): `remembered()` keeps each result for the analysis' duration.
_memo: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "gpuwatch_attribution_memo", default=None)


@contextlib.contextmanager
def remembered() -> Iterator[None]:
    """While inside, attribute() of the same rows (the same memory: frames that share their
    columns) with the same seed is computed once."""
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def _memory_of(parts: Sequence[pd.DataFrame], arrays: list[np.ndarray]) -> tuple[Any, ...] | None:
    """Where the columns `_raw` reads lie in memory (address, length, stride per column), for
    the memo's key, the arrays appended to `arrays`; None where one is not a plain numpy column
    (its values would be a copy made for this call). Equal keys, while the arrays are kept
    alive (the memo keeps them: no new array can take their memory), are the same values: the
    analysis never writes into a frame's columns."""
    key: list[Any] = []
    for p in parts:
        key.append(len(p))
        for c in (*_RAW_COLUMNS, "reasons_any"):
            if c not in p:
                key.append(None)
                continue
            col = p[c]
            if not isinstance(col.dtype, np.dtype):  # (nullable or Arrow: floats() copies it)
                return None
            v = col.to_numpy()  # (a numpy column: its own memory, no copy)
            key.append((v.__array_interface__["data"][0], v.size, v.strides, v.dtype.str))
            arrays.append(v)
    return tuple(key)


class _Rows:
    """One group's regressors as arrays: y, X (columns REGRESSORS), throttled flags. The group
    may be given as several frames (a fit's reference and target rows): their rows in order,
    as pd.concat would give them, without copying the frames' other columns; or as the raw
    columns (`_raw`) already read (`from_raw`: a fit over the reference and target rows
    reads them once for all three groups)."""

    def __init__(self, df: pd.DataFrame | Sequence[pd.DataFrame]):
        self._set(_raw([df] if isinstance(df, pd.DataFrame) else list(df)))

    @classmethod
    def from_raw(cls, raw: dict[str, np.ndarray]) -> "_Rows":
        r = object.__new__(cls)
        r._set(raw)
        return r

    def _set(self, raw: dict[str, np.ndarray]) -> None:
        y = raw["y"]
        X = np.column_stack([1000.0 / raw["sm"], 1000.0 / raw["mem"], raw["enqueue"]])
        thr = (raw["reasons"] & THROTTLE_MASK) != 0
        # A regressor with no value at all in these rows (no telemetry: sampler off or lost)
        # is missing, not a reason to drop every row: it takes no part in the fit.
        self.missing = ~np.isfinite(X).any(axis=0)
        X[:, self.missing] = 0.0
        ok = np.isfinite(y) & np.isfinite(X).all(axis=1)
        if ok.all():  # (the usual case: no copies)
            self.y, self.X, self.thr = y, X, thr
            self.busy, self.idle, self.excess = raw["busy"], raw["idle"], raw["excess"]
            self.wait, self.others = raw["wait"], raw["others"]
            self.others_next, self.side = raw["others_next"], raw["side"]
        else:
            self.y, self.X, self.thr = y[ok], X[ok], thr[ok]
            self.busy, self.idle = raw["busy"][ok], raw["idle"][ok]
            self.excess, self.wait = raw["excess"][ok], raw["wait"][ok]
            self.others, self.others_next = raw["others"][ok], raw["others_next"][ok]
            self.side = raw["side"][ok]
        self.held = _held(self.X[:, 0], self.thr)

    @property
    def has_kernels(self) -> bool:
        return bool(self.busy.size) and bool(np.isfinite(self.busy).all())

    def __len__(self) -> int:
        return int(self.y.size)

    def _sum_columns(self) -> list[np.ndarray]:
        """The row values every per-draw sum is taken of (`_Draws`), in order: y, X (3
        columns), thr, then for busy, idle and wait the finite flag and the value (0 where
        not finite), then others: the reading before known, and another process at work by
        the readings either side (near, stayed: columns.others_either_side)."""
        ok = {c: np.isfinite(getattr(self, c)) for c in ("busy", "idle", "wait", "others")}
        near, stayed = others_either_side(self.others, self.others_next)
        return ([self.y, self.X, self.thr]
                + [a for c in ("busy", "idle", "wait")
                   for a in (ok[c], np.where(ok[c], getattr(self, c), 0.0))]
                + [ok["others"], near, stayed])

    def sums_matrix(self) -> np.ndarray:
        """`_sum_columns` as one rows x 14 matrix, for the draws' products. (Made per use,
        not kept.)"""
        return np.column_stack(self._sum_columns()).astype(float)

    def sums(self) -> np.ndarray:
        """The column sums of `sums_matrix()`, without making it (the whole group's draw)."""
        return np.concatenate([np.atleast_1d(np.sum(c, axis=0, dtype=float))
                               for c in self._sum_columns()])

    def take(self, idx: np.ndarray) -> "_Rows":
        r = object.__new__(_Rows)  # (ndarray.take: 4x faster than fancy indexing of X's rows)
        r.y, r.X, r.thr = self.y.take(idx), self.X.take(idx, axis=0), self.thr.take(idx)
        r.busy, r.idle, r.excess = self.busy.take(idx), self.idle.take(idx), self.excess.take(idx)
        r.wait, r.others, r.missing = self.wait.take(idx), self.others.take(idx), self.missing
        r.others_next, r.side = self.others_next.take(idx), self.side.take(idx)
        r.held = self.held  # (of the group, in its time order: not of a sample)
        return r


def _held(inv_sm: np.ndarray, thr: np.ndarray) -> bool:
    """Did a power/thermal reason hold the SM clock down in these rows (in time order;
    `inv_sm`: 1000 / SM clock, `thr`: a reason active)? Not where the rows with one are a
    minority that ran no slower (HELD_MIN) than the rows before the first of them, which had
    none: the clock was that low already (a thermal limit above a clock the governor had
    lowered after idle gaps). A reason that came first, the clock staying down after it, and
    one in most rows (a cap whose bit the driver sets in most of the rows it holds) held it."""
    k = int(thr.sum())
    if k == 0 or 2 * k >= thr.size:
        return True
    first = int(np.argmax(thr))
    if first == 0:
        return True
    # (the rows are finite here: _Rows keeps those alone)
    return float(inv_sm[thr].mean()) > float(inv_sm[:first].mean()) * (1 + HELD_MIN)


class _Draws:
    """B draws of one group's rows, each as a count per row (W, shape B x rows: how often the
    draw took the row), reduced to what the attribution reads: per draw (arrays of length B),
    the means of the regressors, latency, kernel busy and idle time and throttle flags; the
    finite values' means of the host's run-queue wait; what says another process was there.

    A draw's weighted mean is its resample's mean: the bootstrap as matrix products (W @ the
    row values), all draws at once, instead of one resample at a time. W = None (B = 1) is
    the group itself (the point estimate): column sums, no rows x 14 matrix."""

    def __init__(self, rows: _Rows, W: np.ndarray | None, moments: bool = False):
        self.rows, self.W, self.missing = rows, W, rows.missing
        if W is None:
            S, n = rows.sums()[None], np.array([float(len(rows))])
        else:
            S, n = W @ rows.sums_matrix(), W.sum(axis=1)
        self.n = n
        with np.errstate(invalid="ignore", divide="ignore"):
            self.y, self.X, self.thr = S[:, 0] / n, S[:, 1:4] / n[:, None], S[:, 4] / n
            # a draw with any NaN among its rows has no mean (as ndarray.mean gives NaN)
            self.has_kernels = S[:, 5] == n
            self.busy = np.where(self.has_kernels, S[:, 6] / n, np.nan)
            self.idle = np.where(S[:, 7] == n, S[:, 8] / n, np.nan)
            self.wait_n, self.wait = S[:, 9], S[:, 10] / S[:, 9]
            # (of the rows whose reading before is known: another process near them, and
            # another that stayed through them)
            self.others_n, self.near_frac = S[:, 11], S[:, 12] / S[:, 11]
            self.stayed_frac = S[:, 13] / S[:, 11]
        if moments:
            self._moments()

    def _moments(self) -> None:
        """Per draw: the covariance of (inv_sm, inv_mem, enqueue_ms, gpu_ms, busy_ms, side),
        for the fits. Values are shifted by the group's mean first, so that a column constant
        in a draw has exactly 0 variance (no cancellation of large squares)."""
        r = self.rows
        Z = np.column_stack([r.X, r.y, np.nan_to_num(r.busy), r.side])
        Z = Z - Z.mean(axis=0)
        p = Z.shape[1]
        if self.W is None:  # (the whole group)
            m1 = Z.sum(axis=0)[None] / self.n[:, None]
            m2 = (Z.T @ Z)[None] / self.n[:, None, None]
        elif len(self.W) == 1:  # (one draw: no rows x p^2 products)
            m1 = self.W @ Z / self.n[:, None]
            m2 = ((Z.T * self.W[0]) @ Z)[None] / self.n[:, None, None]
        else:
            m1 = self.W @ Z / self.n[:, None]
            m2 = (self.W @ (Z[:, :, None] * Z[:, None, :]).reshape(len(Z), p * p)).reshape(
                -1, p, p) / self.n[:, None, None]
        self.cov = m2 - m1[:, :, None] * m1[:, None, :]
        self.spread = np.sqrt(np.maximum(np.diagonal(self.cov, axis1=1, axis2=2)[:, :3], 0.0))

    def excess_median(self) -> tuple[np.ndarray, np.ndarray]:
        """Per draw: how many finite util_excess_pct values it holds, and their median (as
        np.median: the mean of the two middle values when their number is even)."""
        v = self.rows.excess
        ok = np.isfinite(v)
        if self.W is None:  # (the whole group: as np.median)
            vals = np.sort(v[ok])
            c = vals.size
            med = (vals[(c - 1) // 2] + vals[c // 2]) / 2 if c else np.nan
            return np.array([float(c)]), np.array([med])
        order = np.argsort(v[ok], kind="stable")
        vals = v[ok][order]
        Wc = np.cumsum(self.W[:, ok][:, order], axis=1)
        count = Wc[:, -1] if Wc.shape[1] else np.zeros(len(self.W))
        med = np.full(len(self.W), np.nan)
        has = count > 0
        if has.any():
            lo = np.argmax(Wc[has] > ((count[has] - 1) // 2)[:, None], axis=1)
            hi = np.argmax(Wc[has] > (count[has] // 2)[:, None], axis=1)
            med[has] = (vals[lo] + vals[hi]) / 2
        return count, med


def counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Row draws (B x m indices into n rows) as count weights (B x n): how often each draw
    took each row."""
    B = idx.shape[0]
    flat = (idx + n * np.arange(B)[:, None]).ravel()
    # (weighted: counted straight into float64, without an int64 B x n array to convert)
    return np.bincount(flat, weights=np.ones(flat.size), minlength=B * n).reshape(B, n)


def _lstsq(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched minimum-norm least squares (A: B x m x m, b: B x m), as np.linalg.lstsq with
    rcond=None: singular values up to eps * m * the largest are taken as 0."""
    u, s, vh = np.linalg.svd(A)
    cutoff = np.finfo(float).eps * A.shape[-1] * s[:, :1]
    with np.errstate(divide="ignore"):
        s_inv = np.where(s > cutoff, 1.0 / s, 0.0)
    return np.einsum("bji,bj->bi", vh, s_inv * np.einsum("bji,bj->bi", u, b))


def _bounded_fit_batch(G: np.ndarray, c: np.ndarray, upper: np.ndarray,
                       active: np.ndarray) -> np.ndarray:
    """Per problem b (G: B x k x k, c: B x k, the centred normal equations), the slopes beta
    minimising beta'G beta - 2 c'beta with 0 <= beta <= upper, and beta = 0 outside
    active[b]: least squares with the physics as bounds (see `_bounded_fit`), all at once."""
    B, k = c.shape
    beta = np.zeros((B, k))
    for a in np.unique(active, axis=0):
        if not a.any():
            continue
        rows = np.nonzero((active == a).all(axis=1))[0]
        beta[np.ix_(rows, a)] = _lstsq(G[rows][:, a][:, :, a], c[rows][:, a])
    todo = np.nonzero(~np.all((beta >= 0) & (beta <= upper), axis=1))[0]
    if not todo.size:
        return beta
    best, best_cost = np.zeros((todo.size, k)), np.full(todo.size, np.inf)
    for face in itertools.product((0, 1, 2), repeat=k):  # free, at 0, at the upper bound
        f = np.array(face)
        if np.any((f == 2) & ~np.isfinite(upper)):
            continue
        # a problem's faces are those of its active coefficients: the others stay at 0
        sel = np.nonzero(np.all(active[todo] | (f == 1), axis=1))[0]
        if not sel.size:
            continue
        Gs, cs = G[todo[sel]], c[todo[sel]]
        fixed = f != 0
        at = np.where(f == 2, upper, 0.0)[fixed]
        b = np.zeros((sel.size, k))
        b[:, fixed] = at
        if (~fixed).any():
            rhs = cs[:, ~fixed] - Gs[:, ~fixed][:, :, fixed] @ at
            b[:, ~fixed] = _lstsq(Gs[:, ~fixed][:, :, ~fixed], rhs)
        feasible = np.all((b >= -1e-12) & (b <= upper + 1e-12), axis=1)
        cost = np.einsum("bi,bij,bj->b", b, Gs, b) - 2 * np.einsum("bi,bi->b", cs, b)
        better = feasible & (cost < best_cost[sel])
        best[sel[better]] = np.clip(b[better], 0, upper)
        best_cost[sel[better]] = cost[better]
    beta[todo] = best
    return beta


def _bounded_fit(X: np.ndarray, y: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Least squares with 0 <= beta <= upper (intercept free); returns [intercept, beta...].

    On the centred normal equations (a few regressors: a k x k system, whatever the rows),
    exactly: the box-constrained optimum is the unconstrained optimum of one face of the box
    (each coefficient free, at 0 or at its upper bound), so the feasible face optimum with
    the least residual is it. At most 3^k small solves where the plain fit breaks a bound
    (k <= 3 here); as scipy's lsq_linear gives, without importing scipy.optimize (0.4 s)."""
    xm, ym = X.mean(axis=0), float(y.mean())
    Xc = X - xm
    G, c = Xc.T @ Xc, Xc.T @ (y - ym)
    beta = _bounded_fit_batch(G[None], c[None], np.asarray(upper, float),
                              np.ones((1, X.shape[1]), bool))[0]
    return np.concatenate([[ym - float(xm @ beta)], beta])


def _changed(fit: _Draws, moved: np.ndarray, missing: np.ndarray,
             spread: np.ndarray) -> np.ndarray:
    """Per draw, which regressors (columns of moved, in REGRESSORS order) varied in the fit's
    rows (`spread`: their s.d. there) and moved between reference and target by more than
    they can be measured: a clock's mean must move by more than CLOCK_RESOLUTION of itself
    (the in-band clock reads a steady clock to ~1e-5 over a millisecond region; NVML reports
    whole MHz, 6e-4 of 1590)."""
    k = moved.shape[1]
    mean = np.abs(fit.X[:, :k])
    res = np.array([CLOCK_RESOLUTION if c in ("inv_sm", "inv_mem") else 0.0
                    for c in REGRESSORS[:k]])
    return ((spread[:, :k] > 1e-9 * np.maximum(1.0, mean)) & (moved != 0)
            & (np.abs(moved) > res * mean) & ~missing[:k])


WITHIN_MIN = 1e-6  # of a regressor's variance: less left within the sides is none (rounding)
# The SM clock's s.d. within the sides, as a share of its move between them, that its slope is
# taken from: less, and the move would be a long extrapolation of a few MHz of jitter
WITHIN_REACH = 0.1


def _within(fit: _Draws, moved_sm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fit's covariances and regressors' s.d. within its sides (its reference's rows, the
    rest): each side's own mean taken out (the partial covariance given the side, its last
    column; as a fit with a term per side, not reported). Where the GPU's process list shows
    another process on one side of a comparison and not the other, the side difference is
    both the clock's and the other process's; the clock's slope is then taken from how
    latency moves with it within a side (a ramp down after idle gaps), where it moves there
    by WITHIN_REACH of its move between them (`moved_sm`, per draw). Where it does not (each
    side at its own steady clock), the draw keeps the fit across the sides, as without this
    (a clock that moved with the change then takes its bound, _bounded's, and the other
    process the rest; one that moved against it gets no part)."""
    cov = fit.cov
    v = cov[:, 5, 5]
    has = v > 0
    g = cov[:, :, 5]
    part = cov - np.where(has[:, None, None], g[:, :, None] * g[:, None, :]
                          / np.where(has, v, 1.0)[:, None, None], 0.0)
    raw = np.diagonal(cov, axis1=1, axis2=2)[:, :3]
    left = np.maximum(np.diagonal(part, axis1=1, axis2=2)[:, :3], 0.0)
    spread = np.sqrt(np.where(left > WITHIN_MIN * raw, left, 0.0))
    inside = has & (spread[:, 0] >= WITHIN_REACH * np.abs(moved_sm))
    return (np.where(inside[:, None, None], part, cov),
            np.where(inside[:, None], spread, fit.spread))


def _contributions(fit: _Draws, ref: _Draws, tgt: _Draws,
                   within: bool = False) -> dict[str, np.ndarray]:
    """Per draw, each factor's contribution (ms) to the change of mean latency ("delta").
    `within`: the clocks' slopes from within the fit's sides (_within)."""
    cov, spread = (_within(fit, tgt.X[:, 0] - ref.X[:, 0]) if within
                   else (fit.cov, fit.spread))
    B = len(ref.y)
    zero = np.zeros(B)
    out = {f: zero.copy() for f in FACTORS}
    delta = tgt.y - ref.y
    share = _throttled_share(ref, tgt)
    kernels = fit.has_kernels & ref.has_kernels & tgt.has_kernels
    if kernels.any():  # latency = busy + idle inside: split the two, then busy by the clocks
        d_busy, d_idle = tgt.busy - ref.busy, tgt.idle - ref.idle
        moved = tgt.X[:, :2] - ref.X[:, :2]
        use = _changed(fit, moved, (ref.missing | tgt.missing)[:2], spread)
        beta = _bounded_fit_batch(cov[:, :2, :2], cov[:, :2, 4], np.full(2, np.inf), use)
        contrib = beta * moved
        k = {"throttling": contrib[:, 0] * share, "sm_clock": contrib[:, 0] * (1 - share),
             "mem_clock": contrib[:, 1], "host_launch": d_idle}
        k["kernels_slower"] = d_busy - k["sm_clock"] - k["throttling"] - k["mem_clock"]
        k["unexplained"] = delta - d_busy - d_idle  # event vs kernel edges: ~0
        for f, v in k.items():
            out[f] = np.where(kernels, v, out[f])
    if not kernels.all():
        moved = tgt.X - ref.X
        use = _changed(fit, moved, fit.missing | ref.missing | tgt.missing, spread)
        upper = np.array([UPPER.get(c, np.inf) for c in REGRESSORS])
        beta = _bounded_fit_batch(cov[:, :3, :3], cov[:, :3, 3], upper, use)
        contrib = beta * moved
        p = {"throttling": contrib[:, 0] * share, "sm_clock": contrib[:, 0] * (1 - share),
             "mem_clock": contrib[:, 1], "host_launch": contrib[:, 2]}
        p["unexplained"] = delta - sum(p.values())
        for f, v in p.items():
            out[f] = np.where(kernels, out[f], v)
    out["delta"] = delta
    return out


def _throttled_share(ref: _Draws, tgt: _Draws) -> np.ndarray:
    """Of an SM-clock difference, the share a power/thermal reason held down: the share of the
    slower-clocked side's rows with such a reason active (the target's when its clock fell,
    the reference's when the target's rose: back to back power-capped, gapped not); none
    where the reason held nothing down there (_held)."""
    return np.where(tgt.X[:, 0] >= ref.X[:, 0], tgt.thr if tgt.rows.held else 0.0,
                    ref.thr if ref.rows.held else 0.0)


def _clock_bounds(ref: _Draws, tgt: _Draws) -> dict[str, np.ndarray]:
    """The most a clock change can explain, per clock (sm, mem), in ms, signed: work that takes
    `busy` ms at f_ref takes busy * f_ref / f at f, so a clock change explains at most
    busy_ref * (f_ref / f - 1) (Wang & Chu, arXiv 1701.05308: only the clock-sensitive part of
    the time scales; this is the bound for all of it). `busy` is the kernel time where kernels
    were traced, else gpu_ms, an upper bound of it. The regressors are 1000 / clock, so
    f_ref / f = mean(x_tgt) / mean(x_ref)."""
    out = {}
    busy = np.where(ref.has_kernels & tgt.has_kernels, ref.busy, ref.y)
    for name, j in (("sm", 0), ("mem", 1)):
        xr, xt = ref.X[:, j], tgt.X[:, j]
        known = not (ref.missing[j] or tgt.missing[j])
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = busy * (xt / xr - 1.0)
        out[name] = np.where(known & (xr > 0) & np.isfinite(xt), bound, 0.0)
    return out


def _bounded(out: dict[str, np.ndarray], ref: _Draws, tgt: _Draws,
             fill: bool) -> dict[str, np.ndarray]:
    """Clip the clocks' contributions to what the clock changes can physically explain (and to
    their sign); what is clipped off is unexplained. `fill`: where the bound allows the whole
    of an unexplained part of the same sign, give it to the SM clock (the regression's slope is
    biased towards 0 by a clock reading that lags the clock, as NVML's does)."""
    b = _clock_bounds(ref, tgt)
    delta = out["delta"]
    clock = out["sm_clock"] + out["throttling"]
    clipped = np.minimum(np.maximum(clock, np.minimum(0.0, b["sm"])), np.maximum(0.0, b["sm"]))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(clock != 0, out["throttling"] / clock, _throttled_share(ref, tgt))
    if fill:
        rest = delta - sum(v for k, v in out.items()
                           if k not in ("sm_clock", "throttling", "unexplained", "delta"))
        take = ((b["sm"] != 0.0) & (np.sign(rest) == np.sign(b["sm"]))
                & (np.abs(rest) <= np.abs(b["sm"])) & (np.abs(rest) > np.abs(clipped)))
        clipped = np.where(take, rest, clipped)
    out["sm_clock"], out["throttling"] = clipped * (1 - share), clipped * share
    mem = np.minimum(np.maximum(out["mem_clock"], np.minimum(0.0, b["mem"])),
                     np.maximum(0.0, b["mem"]))
    removed = (clock - clipped) + (out["mem_clock"] - mem)
    out["mem_clock"] = mem
    if not fill:  # with a kernel timeline, busy time the clocks cannot explain is the kernels'
        out["kernels_slower"] = out["kernels_slower"] + removed
    out["unexplained"] = delta - sum(v for k, v in out.items()
                                     if k not in ("unexplained", "delta"))
    # What is left is the other process's: one that came (in the target, not the reference),
    # or one that went (in the reference, not the target: the target faster without it)
    other = ((other_process(ref, tgt) & (out["unexplained"] > 0))
             | (other_process(tgt, ref) & (out["unexplained"] < 0)))
    out["other_process"] = np.where(other, out["unexplained"], out["other_process"])
    out["unexplained"] = np.where(other, 0.0, out["unexplained"])
    # Of the host's launch delay, the part the recording thread spent waiting for a CPU (the
    # host was oversubscribed) is the CPU's: at most the change in that wait, per region.
    d_wait = tgt.wait - ref.wait
    hl = out["host_launch"]
    split = ((ref.wait_n > 0) & (tgt.wait_n > 0) & (hl != 0)
             & (np.sign(d_wait) == np.sign(hl)))
    cpu = np.where(np.abs(d_wait) < np.abs(hl), d_wait, hl)
    out["host_cpu"] = np.where(split, cpu, out["host_cpu"])
    out["host_launch"] = np.where(split, hl - cpu, hl)
    return out


def other_process(ref: _Draws, tgt: _Draws) -> np.ndarray:
    """Per draw: did another process share the GPU in the target rows but not in the
    reference? The GPU's process list says so (another process in most target rows, in few
    reference rows), or, for traces without one, NVML's utilisation far above this program's
    own duty cycle (merge.util_excess_pct). The list is read about once a second: a process
    may have come or gone up to a second before the reading that shows it. So a target row
    has one where a reading either side lists it, and a reference row where the readings on
    both sides do (columns.others_either_side): taken from the reading before alone, a
    reference just after a co-tenant's episode read as having it, and the episode was
    "not explained"."""
    listed = (tgt.others_n > 0) & (ref.others_n > 0)
    out = _listed_apart(ref, tgt)
    if not listed.all():
        (n_t, med_t), (n_r, med_r) = tgt.excess_median(), ref.excess_median()
        by_util = (n_t > 0) & (n_r > 0) & (med_t >= OTHER_EXCESS_PCT) & (med_r < REF_EXCESS_PCT)
        out = np.where(listed, out, by_util)
    return out


def _listed_apart(ref: _Draws, tgt: _Draws) -> np.ndarray:
    """Per draw: does the GPU's process list show another process at work near most target
    rows and through few reference rows (other_process's test where there is a list)?"""
    listed = (tgt.others_n > 0) & (ref.others_n > 0)
    return listed & (tgt.near_frac >= 0.5) & (ref.stayed_frac < 0.2)


def attribute(fit_rows: pd.DataFrame | Sequence[pd.DataFrame], ref_rows: pd.DataFrame,
              tgt_rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Tidy table: factor, contribution_ms, ci_low_ms, ci_high_ms, share (of the extra latency).
    `fit_rows`, the rows the clocks' model is fitted on, may be several frames (taken in order).
    Inside `remembered()`, the same rows' attribution is made once."""
    memo = _memo.get()
    if memo is None:
        return _attribute(fit_rows, ref_rows, tgt_rows, seed)
    fit = [fit_rows] if isinstance(fit_rows, pd.DataFrame) else list(fit_rows)
    arrays: list[np.ndarray] = []
    keys = [_memory_of(fit, arrays), _memory_of([ref_rows], arrays),
            _memory_of([tgt_rows], arrays)]
    if any(k is None for k in keys):
        return _attribute(fit_rows, ref_rows, tgt_rows, seed)
    key = (seed, *keys)
    if key not in memo:  # (the arrays kept with it: their memory cannot be reused meanwhile)
        memo[key] = (_attribute(fit_rows, ref_rows, tgt_rows, seed), arrays)
    return memo[key][0].copy()


def _attribute(fit_rows: pd.DataFrame | Sequence[pd.DataFrame], ref_rows: pd.DataFrame,
               tgt_rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    if not isinstance(fit_rows, pd.DataFrame) and len(fit_rows) == 2 \
            and fit_rows[0] is ref_rows and fit_rows[1] is tgt_rows:  # (the usual fit)
        raw_ref, raw_tgt = _raw([ref_rows]), _raw([tgt_rows])
        both = {k: np.concatenate([raw_ref[k], raw_tgt[k]]) for k in raw_ref}
        both["side"] = np.concatenate([raw_ref["side"], raw_tgt["side"] + 1.0])  # (0, then 1)
        fit = _Rows.from_raw(both)
        ref, tgt = _Rows.from_raw(raw_ref), _Rows.from_raw(raw_tgt)
        del raw_ref, raw_tgt
    else:
        fit, ref, tgt = _Rows(fit_rows), _Rows(ref_rows), _Rows(tgt_rows)
    if len(ref) < 3 or len(tgt) < 3:
        return pd.DataFrame(columns=["factor", "contribution_ms", "ci_low_ms", "ci_high_ms",
                                     "share"])
    fill = not (fit.has_kernels and ref.has_kernels and tgt.has_kernels)

    def whole(d: _Rows, moments: bool = False) -> _Draws:  # (the group itself: one draw)
        return _Draws(d, None, moments)

    whole_ref, whole_tgt = whole(ref), whole(tgt)
    # Another process on one side and not the other (as the process list says: the rule that
    # gives it the unexplained part): the clocks' slopes from within each side
    within = bool(_listed_apart(whole_ref, whole_tgt)[0]
                  or _listed_apart(whole_tgt, whole_ref)[0])
    point = {f: float(v[0]) for f, v in _bounded(
        _contributions(whole(fit, True), whole_ref, whole_tgt, within),
        whole_ref, whole_tgt, fill).items()}
    rng = np.random.default_rng(seed)

    def pool(d: _Rows) -> _Rows:
        # Resamples are drawn from POOL_ROWS rows of a large group, picked once: arrays that
        # stay in cache, and the same distribution to draw from.
        if len(d) <= POOL_ROWS:
            return d
        return d.take(np.sort(rng.choice(len(d), POOL_ROWS, replace=False)))

    fit_pool, ref_pool, tgt_pool = pool(fit), pool(ref), pool(tgt)
    pools = (ref_pool, tgt_pool, fit_pool)  # (the order of the draws: see tests/reference)
    idx = [np.empty((BOOTSTRAP, min(len(p), MAX_ROWS)), np.int64) for p in pools]
    for i in range(BOOTSTRAP):
        for p, ix in zip(pools, idx):
            ix[i] = rng.integers(0, len(p), ix.shape[1])
    W = [counts(ix, len(p)) for p, ix in zip(pools, idx)]
    r, t = _Draws(ref_pool, W[0]), _Draws(tgt_pool, W[1])
    boots = _bounded(_contributions(_Draws(fit_pool, W[2], True), r, t, within), r, t, fill)
    rows = []
    delta = point["delta"]
    # A share of nothing is meaningless: below 0.1% of the reference latency, shares are NA.
    meaningful = abs(delta) >= 1e-3 * abs(float(ref.y.mean()))
    for f in FACTORS:
        lo, hi = np.percentile(boots[f], [2.5, 97.5])
        rows.append({"factor": f, "contribution_ms": point[f], "ci_low_ms": float(lo),
                     "ci_high_ms": float(hi),
                     "share": point[f] / delta if meaningful else np.nan})
    return pd.DataFrame(rows)
