"""Frozen reference: gpuwatch/analysis/attribution.py as of 07e994d, which drew its bootstrap
one resample at a time. The batched attribution is checked against it (same draws, same
results to rounding) in tests/test_attribution_batch.py. Do not edit: it is the oracle."""

from __future__ import annotations

# Original module docstring follows.
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
(throttling); the rest is the governor's own choice (DVFS). A regressor that did not change
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


import itertools

import numpy as np
import pandas as pd

from gpuwatch.fields import ClockEventReason
from gpuwatch.analysis.columns import floats

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
HELD_MIN = 0.005  # a reason's rows no slower than this than the rows before them: held nothing
BOOTSTRAP = 200
MAX_ROWS = 3000  # per group, for the bootstrap
POOL_ROWS = 4 * MAX_ROWS  # rows of a larger group the bootstrap draws from
WITHIN_MIN = 1e-6  # of a regressor's variance: less left within the fit's sides is none
WITHIN_REACH = 0.1  # the SM clock's within-side s.d. needed, as a share of its move


class _Rows:
    """One group's regressors as arrays: y, X (columns REGRESSORS), throttled flags."""

    def __init__(self, df: pd.DataFrame):
        y = df["gpu_ms"].pipe(floats)
        X = np.column_stack([1000.0 / df["sm_clock_mhz_mean"].pipe(floats),
                             1000.0 / df["mem_clock_mhz_mean"].pipe(floats),
                             df["enqueue_ms"].pipe(floats)])
        thr = (df["reasons_any"].to_numpy(np.int64) & THROTTLE_MASK) != 0
        busy = (df["busy_ms"].pipe(floats) if "busy_ms" in df
                else np.full(len(df), np.nan))
        idle = (df["idle_inside_ms"].pipe(floats) if "idle_inside_ms" in df
                else np.full(len(df), np.nan))
        excess = (df["util_excess_pct"].pipe(floats)
                  if "util_excess_pct" in df else np.full(len(df), np.nan))
        wait = (df["host_wait_ms"].pipe(floats)
                if "host_wait_ms" in df else np.full(len(df), np.nan))
        others = (df["other_active"].pipe(floats)  # (another process at work: merge._others)
                  if "other_active" in df else np.full(len(df), np.nan))
        others_next = (df["other_active_next"].pipe(floats)  # (at the next reading)
                       if "other_active_next" in df else np.full(len(df), np.nan))
        # A regressor with no value at all in these rows (no telemetry: sampler off or lost)
        # is missing, not a reason to drop every row: it takes no part in the fit.
        self.missing = ~np.isfinite(X).any(axis=0)
        X[:, self.missing] = 0.0
        ok = np.isfinite(y) & np.isfinite(X).all(axis=1)
        self.y, self.X, self.thr = y[ok], X[ok], thr[ok]
        self.busy, self.idle, self.excess, self.wait = busy[ok], idle[ok], excess[ok], wait[ok]
        self.others, self.others_next = others[ok], others_next[ok]
        # (which side of a fit a row is from: 0 its reference, 1 the rest; given by the
        # caller as a column, since a fit arrives here concatenated)
        side = (df["_fit_side"].to_numpy(float) if "_fit_side" in df
                else np.zeros(len(df)))
        self.side = side[ok]
        # Did a reason hold the clock down (in the group's time order)? Not where its rows, a
        # minority, ran no slower than the rows before the first of them.
        self.held = True
        k = int(self.thr.sum())
        if 0 < k < self.thr.size / 2 and not self.thr[0]:
            first = int(np.flatnonzero(self.thr)[0])
            before = self.X[:first, 0]
            self.held = float(self.X[self.thr, 0].mean()) > float(before.mean()) * (1 + HELD_MIN)

    @property
    def has_kernels(self) -> bool:
        return bool(self.busy.size) and bool(np.isfinite(self.busy).all())

    def __len__(self) -> int:
        return int(self.y.size)

    def take(self, idx: np.ndarray) -> "_Rows":
        r = object.__new__(_Rows)  # (ndarray.take: 4x faster than fancy indexing of X's rows)
        r.y, r.X, r.thr = self.y.take(idx), self.X.take(idx, axis=0), self.thr.take(idx)
        r.busy, r.idle, r.excess = self.busy.take(idx), self.idle.take(idx), self.excess.take(idx)
        r.wait, r.others, r.missing = self.wait.take(idx), self.others.take(idx), self.missing
        r.others_next, r.side = self.others_next.take(idx), self.side.take(idx)
        r.held = self.held  # (the group's, not a resample's)
        return r


def _bounded_fit(X: np.ndarray, y: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Least squares with 0 <= beta <= upper (intercept free); returns [intercept, beta...].

    On the centred normal equations (a few regressors: a k x k system, whatever the rows),
    exactly: the box-constrained optimum is the unconstrained optimum of one face of the box
    (each coefficient free, at 0 or at its upper bound), so the feasible face optimum with
    the least residual is it. At most 3^k small solves where the plain fit breaks a bound
    (k <= 3 here); as scipy's lsq_linear gives, without importing scipy.optimize (0.4 s)."""
    k = X.shape[1]
    xm, ym = X.mean(axis=0), float(y.mean())
    Xc = X - xm
    G = Xc.T @ Xc
    c = Xc.T @ (y - ym)

    def solve(free: np.ndarray, fixed: np.ndarray, at: np.ndarray) -> np.ndarray:
        beta = np.zeros(k)
        beta[fixed] = at
        if free.any():
            rhs = c[free] - G[np.ix_(free, fixed)] @ at
            beta[free] = np.linalg.lstsq(G[np.ix_(free, free)], rhs, rcond=None)[0]
        return beta

    def done(beta: np.ndarray) -> np.ndarray:
        return np.concatenate([[ym - float(xm @ beta)], beta])

    everything = np.ones(k, bool)
    beta = solve(everything, ~everything, np.zeros(0))
    if np.all(beta >= 0) and np.all(beta <= upper):
        return done(beta)
    best, best_cost = np.zeros(k), np.inf
    for face in itertools.product((0, 1, 2), repeat=k):  # free, at 0, at the upper bound
        f = np.array(face)
        if np.any((f == 2) & ~np.isfinite(upper)):
            continue
        fixed = f != 0
        b = solve(~fixed, fixed, np.where(f == 2, upper, 0.0)[fixed])
        if np.all(b >= -1e-12) and np.all(b <= upper + 1e-12):
            cost = float(b @ G @ b - 2 * c @ b)
            if cost < best_cost:
                best, best_cost = np.clip(b, 0, upper), cost
    return done(best)


def _within(fit: _Rows, moved_sm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The fit's X, y and busy with each side's own mean taken out, where the SM clock moves
    within the sides by WITHIN_REACH of its move between them (else None: the fit across
    them). Regressors with (almost) nothing left within the sides are constant there."""
    if np.unique(fit.side).size < 2:
        return None

    def demeaned(v: np.ndarray) -> np.ndarray:
        out = v.astype(float).copy()
        for s in np.unique(fit.side):
            m = fit.side == s
            out[m] -= out[m].mean()
        return out
    X = np.column_stack([demeaned(fit.X[:, j]) for j in range(fit.X.shape[1])])
    left, raw = X.var(axis=0), fit.X.var(axis=0)
    X[:, ~(left > WITHIN_MIN * raw)] = 0.0
    if not np.sqrt(X[:, 0].var()) >= WITHIN_REACH * abs(moved_sm):
        return None
    return X, demeaned(fit.y), demeaned(np.nan_to_num(fit.busy))


def _listed_apart(ref: _Rows, tgt: _Rows) -> bool:
    """The process list shows another process near most target rows and through few
    reference rows."""
    t_known, r_known = np.isfinite(tgt.others), np.isfinite(ref.others)
    if not (t_known.any() and r_known.any()):
        return False
    t_before, t_after = tgt.others[t_known] > 0, np.nan_to_num(tgt.others_next[t_known]) > 0
    r_before, r_next = ref.others[r_known] > 0, ref.others_next[r_known]
    r_stayed = r_before & ((np.nan_to_num(r_next) > 0) | np.isnan(r_next))
    return bool(np.mean(t_before | t_after) >= 0.5 and np.mean(r_stayed) < 0.2)


def _contributions(fit: _Rows, ref: _Rows, tgt: _Rows, within: bool = False
                   ) -> dict[str, float]:
    delta = float(tgt.y.mean() - ref.y.mean())
    kernels = fit.has_kernels and ref.has_kernels and tgt.has_kernels
    # (another process on one side only: the clocks' slopes from within the fit's sides)
    inside = _within(fit, float(tgt.X[:, 0].mean() - ref.X[:, 0].mean())) if within else None
    fX, fy, fbusy = inside if inside is not None else (fit.X, fit.y, fit.busy)
    if kernels:  # latency = busy + idle inside: split the two, then busy by the clocks
        d_busy = float(tgt.busy.mean() - ref.busy.mean())
        d_idle = float(tgt.idle.mean() - ref.idle.mean())
        out = _clock_split(fX[:, :2], fbusy, ref.X[:, :2], tgt, d_busy, ref,
                           fit.X[:, :2].mean(axis=0))
        out["host_launch"] = d_idle
        out["kernels_slower"] = d_busy - out["sm_clock"] - out["throttling"] - out["mem_clock"]
        out["unexplained"] = delta - d_busy - d_idle  # event vs kernel edges: ~0
        out["delta"] = delta
        return out
    moved = tgt.X.mean(axis=0) - ref.X.mean(axis=0)
    use = _changed(fX, moved, fit.missing | ref.missing | tgt.missing, fit.X.mean(axis=0))
    out = {f: 0.0 for f in FACTORS}
    if use.size:
        upper = np.array([UPPER.get(REGRESSORS[j], np.inf) for j in use])
        beta = _bounded_fit(fX[:, use], fy, upper)
        for b, j in zip(beta[1:], use):
            contrib = float(b * moved[j])
            c = REGRESSORS[j]
            if c == "inv_sm":
                share = _throttled_share(ref, tgt)
                out["throttling"] = contrib * share
                out["sm_clock"] = contrib * (1 - share)
            elif c == "inv_mem":
                out["mem_clock"] = contrib
            else:
                out["host_launch"] = contrib
    out["unexplained"] = delta - sum(v for k, v in out.items() if k != "unexplained")
    out["delta"] = delta
    return out


def _throttled_share(ref: _Rows, tgt: _Rows) -> float:
    """Of an SM-clock difference, the share a power/thermal reason held down: the share of the
    slower-clocked side's rows with such a reason active (the target's when its clock fell,
    the reference's when the target's rose: back to back power-capped, gapped not)."""
    slower = tgt if float(tgt.X[:, 0].mean()) >= float(ref.X[:, 0].mean()) else ref
    return float(slower.thr.mean()) if slower.thr.size and slower.held else 0.0


def _clock_bounds(ref: _Rows, tgt: _Rows) -> dict[str, float]:
    """The most a clock change can explain, per clock (sm, mem), in ms, signed: work that takes
    `busy` ms at f_ref takes busy * f_ref / f at f, so a clock change explains at most
    busy_ref * (f_ref / f - 1) (Wang & Chu, arXiv 1701.05308: only the clock-sensitive part of
    the time scales; this is the bound for all of it). `busy` is the kernel time where kernels
    were traced, else gpu_ms, an upper bound of it. The regressors are 1000 / clock, so
    f_ref / f = mean(x_tgt) / mean(x_ref)."""
    out = {}
    use_busy = ref.has_kernels and tgt.has_kernels
    busy = float(ref.busy.mean()) if use_busy else float(ref.y.mean())
    for name, j in (("sm", 0), ("mem", 1)):
        xr, xt = float(ref.X[:, j].mean()), float(tgt.X[:, j].mean())
        known = not (ref.missing[j] or tgt.missing[j])
        out[name] = busy * (xt / xr - 1.0) if known and xr > 0 and np.isfinite(xt) else 0.0
    return out


def _bounded(out: dict[str, float], ref: _Rows, tgt: _Rows, fill: bool) -> dict[str, float]:
    """Clip the clocks' contributions to what the clock changes can physically explain (and to
    their sign); what is clipped off is unexplained. `fill`: where the bound allows the whole
    of an unexplained part of the same sign, give it to the SM clock (the regression's slope is
    biased towards 0 by a clock reading that lags the clock, as NVML's does)."""
    b = _clock_bounds(ref, tgt)
    delta = out["delta"]
    lo, hi = sorted((0.0, b["sm"]))
    clock = out["sm_clock"] + out["throttling"]
    clipped = min(max(clock, lo), hi)
    share = out["throttling"] / clock if clock else _throttled_share(ref, tgt)
    if fill and b["sm"] != 0.0:
        rest = delta - sum(v for k, v in out.items()
                           if k not in ("sm_clock", "throttling", "unexplained", "delta"))
        if np.sign(rest) == np.sign(b["sm"]) and abs(rest) <= abs(b["sm"]) and \
                abs(rest) > abs(clipped):
            clipped = rest
    out["sm_clock"], out["throttling"] = clipped * (1 - share), clipped * share
    lo, hi = sorted((0.0, b["mem"]))
    mem = min(max(out["mem_clock"], lo), hi)
    removed = (clock - clipped) + (out["mem_clock"] - mem)
    out["mem_clock"] = mem
    if not fill:  # with a kernel timeline, busy time the clocks cannot explain is the kernels'
        out["kernels_slower"] += removed
    out["unexplained"] = delta - sum(v for k, v in out.items()
                                     if k not in ("unexplained", "delta"))
    if (other_process(ref, tgt) and out["unexplained"] > 0) or (  # what is left is the
            other_process(tgt, ref) and out["unexplained"] < 0):  # other's: it came, or went
        out["other_process"], out["unexplained"] = out["unexplained"], 0.0
    # Of the host's launch delay, the part the recording thread spent waiting for a CPU (the
    # host was oversubscribed) is the CPU's: at most the change in that wait, per region.
    w_ref, w_tgt = ref.wait[np.isfinite(ref.wait)], tgt.wait[np.isfinite(tgt.wait)]
    if w_ref.size and w_tgt.size and out["host_launch"] != 0:
        d_wait = float(w_tgt.mean() - w_ref.mean())
        if np.sign(d_wait) == np.sign(out["host_launch"]):
            cpu = d_wait if abs(d_wait) < abs(out["host_launch"]) else out["host_launch"]
            out["host_cpu"], out["host_launch"] = cpu, out["host_launch"] - cpu
    return out


def other_process(ref: _Rows, tgt: _Rows) -> bool:
    """Did another process share the GPU in the target rows but not in the reference? The
    GPU's process list says so (another process in most target rows, in few reference rows),
    or, for traces without one, NVML's utilisation far above this program's own duty cycle
    (merge.util_excess_pct). A target row has one where the process reading before or after it
    lists one at work; a reference row where both do (or the one before, with none after)."""
    t_known, r_known = np.isfinite(tgt.others), np.isfinite(ref.others)
    if t_known.any() and r_known.any():
        t_before, t_after = tgt.others[t_known] > 0, np.nan_to_num(tgt.others_next[t_known]) > 0
        r_before = ref.others[r_known] > 0
        r_next = ref.others_next[r_known]
        r_stayed = r_before & ((np.nan_to_num(r_next) > 0) | np.isnan(r_next))
        return bool(np.mean(t_before | t_after) >= 0.5 and np.mean(r_stayed) < 0.2)
    t, r = tgt.excess[np.isfinite(tgt.excess)], ref.excess[np.isfinite(ref.excess)]
    return bool(t.size and r.size and np.median(t) >= OTHER_EXCESS_PCT
                and np.median(r) < REF_EXCESS_PCT)


def _changed(X: np.ndarray, moved: np.ndarray, missing: np.ndarray,
             means: np.ndarray) -> np.ndarray:
    """Indices of the regressors (columns of X, in REGRESSORS order) that varied and moved
    between reference and target by more than they can be measured: a clock's mean must move by
    more than CLOCK_RESOLUTION of itself (the in-band clock reads a steady clock to ~1e-5 over
    a millisecond region; NVML reports whole MHz, 6e-4 of 1590). `means`: the fit's own (X
    may have each side's mean taken out)."""
    mean = np.abs(means)
    spread = X.std(axis=0)
    res = np.array([CLOCK_RESOLUTION if c in ("inv_sm", "inv_mem") else 0.0
                    for c in REGRESSORS[:X.shape[1]]])
    return np.nonzero((spread > 1e-9 * np.maximum(1.0, mean)) & (moved != 0)
                      & (np.abs(moved) > res * mean) & ~missing[:X.shape[1]])[0]


def _clock_split(X: np.ndarray, y: np.ndarray, ref_X: np.ndarray, tgt: _Rows,
                 delta: float, ref_rows: "_Rows", means: np.ndarray) -> dict[str, float]:
    """Of `delta` (a change in kernel busy time), the parts the SM and memory clocks explain."""
    out = {f: 0.0 for f in FACTORS}
    moved = tgt.X[:, :2].mean(axis=0) - ref_X.mean(axis=0)
    use = _changed(X, moved, (ref_rows.missing | tgt.missing)[:2], means)
    if use.size:
        beta = _bounded_fit(X[:, use], y, np.full(use.size, np.inf))
        for b, j in zip(beta[1:], use):
            contrib = float(b * moved[j])
            if j == 0:
                share = _throttled_share(ref_rows, tgt)
                out["throttling"], out["sm_clock"] = contrib * share, contrib * (1 - share)
            else:
                out["mem_clock"] = contrib
    return out


def attribute(fit_rows: pd.DataFrame, ref_rows: pd.DataFrame, tgt_rows: pd.DataFrame,
              seed: int = 0) -> pd.DataFrame:
    """Tidy table: factor, contribution_ms, ci_low_ms, ci_high_ms, share (of the extra latency)."""
    fit, ref, tgt = _Rows(fit_rows), _Rows(ref_rows), _Rows(tgt_rows)
    if len(ref) < 3 or len(tgt) < 3:
        return pd.DataFrame(columns=["factor", "contribution_ms", "ci_low_ms", "ci_high_ms",
                                     "share"])
    fill = not (fit.has_kernels and ref.has_kernels and tgt.has_kernels)
    within = _listed_apart(ref, tgt) or _listed_apart(tgt, ref)
    point = _bounded(_contributions(fit, ref, tgt, within), ref, tgt, fill)
    rng = np.random.default_rng(seed)

    def sample(d: _Rows) -> _Rows:
        return d.take(rng.integers(0, len(d), min(len(d), MAX_ROWS)))

    def pool(d: _Rows) -> _Rows:
        # Resamples are drawn from POOL_ROWS rows of a large group, picked once: arrays that
        # stay in cache (a resample of MAX_ROWS rows from the whole of 200,000 costs a cache
        # miss per row and array), and the same distribution to draw from.
        if len(d) <= POOL_ROWS:
            return d
        return d.take(np.sort(rng.choice(len(d), POOL_ROWS, replace=False)))

    fit_pool, ref_pool, tgt_pool = pool(fit), pool(ref), pool(tgt)
    boots = []
    for _ in range(BOOTSTRAP):
        r, t = sample(ref_pool), sample(tgt_pool)
        boots.append(_bounded(_contributions(sample(fit_pool), r, t, within), r, t, fill))
    rows = []
    delta = point["delta"]
    # A share of nothing is meaningless: below 0.1% of the reference latency, shares are NA.
    meaningful = abs(delta) >= 1e-3 * abs(float(ref.y.mean()))
    for f in FACTORS:
        vals = np.array([b[f] for b in boots])
        lo, hi = np.percentile(vals, [2.5, 97.5])
        rows.append({"factor": f, "contribution_ms": point[f], "ci_low_ms": float(lo),
                     "ci_high_ms": float(hi),
                     "share": point[f] / delta if meaningful else np.nan})
    return pd.DataFrame(rows)
