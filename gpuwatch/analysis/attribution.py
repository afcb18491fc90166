"""Which measured cause explains a condition's extra latency, and how much of it.

Against a reference (the gap-0 condition, or the condition's own pre-onset iterations), the
extra latency of the target rows (the settled layer, or the whole condition) is split with one
least-squares fit over reference and condition rows together:

    gpu_ms ~ b0 + b1 * (1000 / SM clock) + b2 * (1000 / memory clock) + b3 * host enqueue time

with the physics as bounds (scipy's bounded least squares): work at a fixed cycle count takes
time proportional to 1/clock, so b1, b2 >= 0; host enqueue time (what the host spent launching
the inference) shows up inside the timed region only while the GPU waits for it, so one more ms
of it adds at most one ms: 0 <= b3 <= 1. Without the bounds, a regressor that merely marks the
condition (25 us more launch time after each sleep) can soak up a slow-down it cannot cause. A factor's contribution is b_k times the change of its regressor between reference
and target. What the fit does not explain is the residual. The SM-clock part is further split by
the share of target inferences during which a power or thermal clock-event reason was active
(throttling); the rest is the governor's own choice (DVFS). A regressor that did not change contributes exactly 0. 95% intervals come from
bootstrap resamples of the rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..fields import ClockEventReason

THROTTLE_MASK = int(ClockEventReason.SW_POWER_CAP | ClockEventReason.HW_SLOWDOWN
                    | ClockEventReason.SW_THERMAL_SLOWDOWN | ClockEventReason.HW_THERMAL_SLOWDOWN
                    | ClockEventReason.HW_POWER_BRAKE_SLOWDOWN)
REGRESSORS = ("inv_sm", "inv_mem", "enqueue_ms")
UPPER = {"enqueue_ms": 1.0}  # ms of latency per ms of host enqueue time, at most
FACTORS = ("sm_clock", "throttling", "mem_clock", "host_launch", "unexplained")
BOOTSTRAP = 200
MAX_ROWS = 3000  # per group, for the bootstrap


def _design(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "y": df["gpu_ms"].to_numpy(float),
        "inv_sm": 1000.0 / df["sm_clock_mhz_mean"].to_numpy(float),
        "inv_mem": 1000.0 / df["mem_clock_mhz_mean"].to_numpy(float),
        "enqueue_ms": df["enqueue_ms"].to_numpy(float),
        "throttled": (df["reasons_any"].to_numpy(np.int64) & THROTTLE_MASK) != 0,
    }).dropna()


def _contributions(fit: pd.DataFrame, ref: pd.DataFrame, tgt: pd.DataFrame) -> dict[str, float]:
    delta = float(tgt["y"].mean() - ref["y"].mean())
    cols = []
    for c in REGRESSORS:
        spread = fit[c].std()
        moved = abs(tgt[c].mean() - ref[c].mean())
        if spread > 1e-9 * max(1.0, abs(fit[c].mean())) and moved > 0:
            cols.append(c)
    out = {f: 0.0 for f in FACTORS}
    if cols:
        from scipy.optimize import lsq_linear

        X = np.column_stack([np.ones(len(fit))] + [fit[c].to_numpy() for c in cols])
        lo = [-np.inf] + [0.0 for _ in cols]
        hi = [np.inf] + [UPPER.get(c, np.inf) for c in cols]
        beta = lsq_linear(X, fit["y"].to_numpy(), bounds=(lo, hi)).x
        for b, c in zip(beta[1:], cols):
            contrib = float(b * (tgt[c].mean() - ref[c].mean()))
            if c == "inv_sm":
                # What held the clock where it was in the target rows: the share of them with
                # a power/thermal reason active (whatever the reference had).
                share = float(tgt["throttled"].mean())
                out["throttling"] = contrib * share
                out["sm_clock"] = contrib * (1 - share)
            elif c == "inv_mem":
                out["mem_clock"] = contrib
            else:
                out["host_launch"] = contrib
    out["unexplained"] = delta - sum(v for k, v in out.items() if k != "unexplained")
    out["delta"] = delta
    return out


def attribute(fit_rows: pd.DataFrame, ref_rows: pd.DataFrame, tgt_rows: pd.DataFrame,
              seed: int = 0) -> pd.DataFrame:
    """Tidy table: factor, contribution_ms, ci_low_ms, ci_high_ms, share (of the extra latency)."""
    fit, ref, tgt = _design(fit_rows), _design(ref_rows), _design(tgt_rows)
    if len(ref) < 3 or len(tgt) < 3:
        return pd.DataFrame(columns=["factor", "contribution_ms", "ci_low_ms", "ci_high_ms",
                                     "share"])
    point = _contributions(fit, ref, tgt)
    rng = np.random.default_rng(seed)

    def sample(d: pd.DataFrame) -> pd.DataFrame:
        k = min(len(d), MAX_ROWS)
        return d.iloc[rng.integers(0, len(d), k)]

    boots = [_contributions(sample(fit), sample(ref), sample(tgt)) for _ in range(BOOTSTRAP)]
    rows = []
    delta = point["delta"]
    for f in FACTORS:
        vals = np.array([b[f] for b in boots])
        lo, hi = np.percentile(vals, [2.5, 97.5])
        rows.append({"factor": f, "contribution_ms": point[f], "ci_low_ms": float(lo),
                     "ci_high_ms": float(hi),
                     "share": point[f] / delta if abs(delta) > 1e-12 else np.nan})
    return pd.DataFrame(rows)
