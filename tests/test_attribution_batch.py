"""The attribution's bootstrap as matrices (issue 31, part 2): every draw at once, as count
weights, gives what the one-resample-at-a-time bootstrap gave (tests/reference: the frozen
module, the same draws from the same seed), to rounding; the batched bounded fit is scipy's
bounded least squares."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpuwatch
import gpuwatch.analysis.pipeline as analysis  # (where the pipeline looks attribute up)
from gpuwatch.analysis import attribution

DATA = Path(__file__).parent / "data"
COLUMNS = ["contribution_ms", "ci_low_ms", "ci_high_ms", "share"]


def _reference():
    spec = importlib.util.spec_from_file_location(
        "attribution_loop", Path(__file__).parent / "reference" / "attribution_loop.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("attribution_loop", mod)
    spec.loader.exec_module(mod)
    return mod


REF = _reference()


def _same(fit: pd.DataFrame | list[pd.DataFrame], ref: pd.DataFrame, tgt: pd.DataFrame,
          seed: int = 0) -> pd.DataFrame:
    # (the analysis gives the fit's rows as the frames it is made of; the reference takes
    # them concatenated, as the analysis did before, each row's side of the fit a column)
    whole = (pd.concat([f.assign(_fit_side=float(min(i, 1))) for i, f in enumerate(fit)])
             if isinstance(fit, list) else fit)
    got, want = attribution.attribute(fit, ref, tgt, seed), REF.attribute(whole, ref, tgt, seed)
    assert list(got.columns) == list(want.columns)
    if want.empty:
        assert got.empty
        return got
    assert list(got["factor"]) == list(want["factor"])
    scale = max(1e-6, float(np.abs(want["contribution_ms"]).max()))
    for c in COLUMNS:
        g, w = got[c].to_numpy(float), want[c].to_numpy(float)
        assert np.array_equal(np.isnan(g), np.isnan(w)), c
        ok = np.isfinite(w)
        tol = 1e-6 if c == "share" else 1e-7 * scale
        np.testing.assert_allclose(g[ok], w[ok], rtol=0, atol=tol, err_msg=c)
    return got


def _compare_analysis(monkeypatch: pytest.MonkeyPatch, trace) -> int:
    """Analyse `trace` with every attribution checked against the reference; how many ran."""
    calls = []

    def both(fit, ref, tgt, seed=0):
        calls.append(1)
        return _same(fit, ref, tgt, seed)

    monkeypatch.setattr(analysis, "attribute", both)
    gpuwatch.analyze(trace)
    return len(calls)


@pytest.mark.slow
def test_kernel_timeline_attributions_match_the_reference(kernel_traces, monkeypatch):
    """With a kernel timeline (busy and idle time inside each region) on the sim's clock,
    cold-start and host-bound profiles."""
    n = sum(_compare_analysis(monkeypatch, t) for t in kernel_traces.values())
    assert n >= 3


@pytest.mark.parametrize("name", ["h100_causes/power_cap.parquet",
                                  "h100_causes/cotenant_gemm.parquet",
                                  "h100_small_gap0_20_fixture.parquet"])
def test_real_h100_attributions_match_the_reference(name, monkeypatch):
    """Real traces: a power cap (throttle reasons), another process (the process list) and
    one without a process list (NVML's utilisation excess, by its median)."""
    assert _compare_analysis(monkeypatch, DATA / name) >= 1


def _frame(rng: np.random.Generator, n: int, sm_mhz: float, slow_ms: float,
           kernels: str = "all", others: bool = True, clocks: bool = True) -> pd.DataFrame:
    sm = sm_mhz + rng.normal(0, 15, n).round()
    enq = rng.gamma(2.0, 0.02, n) + slow_ms * rng.random(n)
    gpu = 0.4 * 1590 / sm + 0.8 * enq + rng.normal(0, 0.01, n)
    busy = 0.4 * 1590 / sm + rng.normal(0, 0.005, n)
    df = pd.DataFrame({
        "gpu_ms": gpu,
        "sm_clock_mhz_mean": sm if clocks else np.nan,
        "mem_clock_mhz_mean": np.full(n, 2619.0) if clocks else np.nan,
        "enqueue_ms": enq,
        "reasons_any": np.where(rng.random(n) < 0.3, 4, 0).astype(np.int64),
        "busy_ms": busy,
        "idle_inside_ms": np.maximum(gpu - busy, 0),
        "util_excess_pct": rng.uniform(0, 60, n),
        "host_wait_ms": np.where(rng.random(n) < 0.2, np.nan, rng.gamma(1.0, 0.01, n)),
    })
    if kernels == "none":
        df = df.drop(columns=["busy_ms", "idle_inside_ms"])
    elif kernels == "some":  # one region without a kernel timeline: some draws hold it
        df.loc[int(rng.integers(n)), ["busy_ms", "idle_inside_ms"]] = np.nan
    if others:
        df["other_active"] = (rng.random(n) < 0.6).astype(float)
        df["other_active_next"] = np.where(rng.random(n) < 0.9, df["other_active"],
                                           1 - df["other_active"])
    return df


@pytest.mark.parametrize("case", range(8))
def test_synthetic_groups_match_the_reference(case):
    """Groups made to reach every branch: kernel timelines in all, some or none of the rows,
    clocks missing, the process list absent (the utilisation's median decides), a large
    group (drawn from a pool), and host enqueue time whose slope meets its bound."""
    rng = np.random.default_rng(100 + case)
    kernels = ("all", "some", "none", "none")[case % 4]
    others = case % 3 != 0
    clocks = case != 6
    n_ref, n_tgt = (20_000, 900) if case == 5 else (400, 300)
    ref = _frame(rng, n_ref, 1980, 0.0, kernels, others, clocks)
    tgt = _frame(rng, n_tgt, 1590 if case % 2 else 1980, 0.3 * (case % 3), kernels, others,
                 clocks)
    if not others:
        tgt["util_excess_pct"] = rng.uniform(25, 70, n_tgt)
        ref["util_excess_pct"] = rng.uniform(0, 25, n_ref)
    fit = pd.concat([ref, tgt], ignore_index=True)
    got = _same(fit, ref, tgt, seed=case)
    assert set(got["factor"]) == set(attribution.FACTORS)


@pytest.mark.parametrize("case", [0, 2, 3])
def test_a_fit_given_as_its_frames_is_their_concatenation(case):
    """The analysis hands the fit's rows over as the frames they are (reference, target),
    not concatenated: the same result as the reference's concatenation, also where one frame
    lacks columns the other has (NaN there, as pd.concat gives)."""
    rng = np.random.default_rng(200 + case)
    ref = _frame(rng, 400, 1980, 0.0, ("all", "some", "none", "none")[case], case != 3)
    tgt = _frame(rng, 300, 1590, 0.2)
    _same([ref, tgt], ref, tgt, seed=case)


def test_a_fit_over_the_reference_and_target_reads_them_once_and_agrees():
    """attribute([ref, tgt], ref, tgt) reads each frame's columns once for all three groups
    (`_raw`): the same as the reference where a clock is missing in the reference only (in
    the fit it is not missing, so the reference's rows drop out of it) and where some
    latencies are NaN (rows left out)."""
    rng = np.random.default_rng(7)
    ref = _frame(rng, 400, 1980, 0.0, clocks=False)
    tgt = _frame(rng, 300, 1590, 0.2)
    ref.loc[::37, "gpu_ms"] = np.nan
    tgt.loc[::29, "enqueue_ms"] = np.nan
    got = _same([ref, tgt], ref, tgt, seed=7)
    assert set(got["factor"]) == set(attribution.FACTORS)
    rows = attribution._Rows(ref)
    assert rows.missing.tolist() == [True, True, False] and len(rows) == 400 - 11


@pytest.mark.parametrize("kernels", ["all", "none"])
def test_a_cotenant_on_one_side_takes_the_clock_slope_from_within_the_sides(kernels):
    """Another process through the reference (its latency 2.5x) and none in the target, whose
    clock ramps down (1980 -> 990 MHz) after idle gaps: across the sides, the clock's slope
    takes the co-tenant's part the wrong way round (the slower reference at the higher
    clock) and the clock had no part. Within the target the ramp gives it: the clock's part
    is what it truly was, the co-tenant takes the rest, as the reference computes too (and
    fails to without the within-side fit: the check of the clock's part)."""
    rng = np.random.default_rng(31)
    ref = _frame(rng, 600, 1980, 0.0, kernels)
    ref[["gpu_ms"]] *= 2.5
    if "busy_ms" in ref:
        ref["busy_ms"] *= 2.5
        ref["idle_inside_ms"] = np.maximum(ref["gpu_ms"] - ref["busy_ms"], 0)
    ref["other_active"] = ref["other_active_next"] = 1.0
    tgt = _frame(rng, 600, 1980, 0.0, kernels)
    ramp = np.concatenate([np.linspace(1980, 990, 200), np.full(400, 990.0)])
    sm = ramp + rng.normal(0, 5, 600).round()
    tgt["sm_clock_mhz_mean"] = sm
    tgt["gpu_ms"] = 0.4 * 1590 / sm + 0.8 * tgt["enqueue_ms"] + rng.normal(0, 0.01, 600)
    if "busy_ms" in tgt:
        tgt["busy_ms"] = 0.4 * 1590 / sm + rng.normal(0, 0.005, 600)
        tgt["idle_inside_ms"] = np.maximum(tgt["gpu_ms"] - tgt["busy_ms"], 0)
    tgt["other_active"] = tgt["other_active_next"] = 0.0
    tgt["reasons_any"] = 0
    got = _same([ref, tgt], ref, tgt, seed=3).set_index("factor")
    # the truth: the clock's part is 0.4 * 1590 * (1/mean-clock-harmonic difference)
    truth = 0.4 * 1590 * (float(np.mean(1 / sm)) - float(np.mean(1 / ref["sm_clock_mhz_mean"])))
    clock = got.loc["sm_clock", "contribution_ms"] + got.loc["throttling", "contribution_ms"]
    assert truth > 0.2 and abs(clock - truth) < 0.05 * truth, (clock, truth)
    # (with a kernel timeline the longer kernels of the shared GPU are kernels_slower's)
    other = "kernels_slower" if kernels == "all" else "other_process"
    assert got.loc[other, "contribution_ms"] < -0.3


def test_the_whole_group_is_the_all_ones_draw():
    """The point estimate's draw (W None: column sums, no rows x 14 matrix) is the draw that
    takes every row once."""
    rng = np.random.default_rng(11)
    df = _frame(rng, 500, 1700, 0.1, kernels="some")
    df.loc[::13, "other_active"] = np.nan
    df.loc[::17, "util_excess_pct"] = np.nan
    rows = attribution._Rows(df)
    a, b = attribution._Draws(rows, None, True), attribution._Draws(rows, np.ones((1, len(rows))),
                                                                   True)
    for f in ("n", "y", "X", "thr", "has_kernels", "busy", "idle", "wait_n", "wait",
              "others_n", "near_frac", "stayed_frac", "cov", "spread"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-12, atol=1e-15,
                                   err_msg=f)
    for x, y in zip(a.excess_median(), b.excess_median()):
        np.testing.assert_array_equal(x, y)


def test_the_same_rows_are_attributed_once_inside_an_analysis(monkeypatch):
    """Inside remembered() (an analysis), attribute() of rows in the same memory (frames that
    share their columns, as the analysis' slices do) with the same seed is made once and gives
    the same table; other values (a copy with one changed), another seed, or outside it: made
    again. A caller's edit of the table it got does not reach the next caller."""
    rng = np.random.default_rng(12)
    ref, tgt = _frame(rng, 400, 1980, 0.0), _frame(rng, 300, 1590, 0.2)
    made = []
    real = attribution._attribute
    monkeypatch.setattr(attribution, "_attribute", lambda *a: made.append(1) or real(*a))
    plain = attribution.attribute([ref, tgt], ref, tgt, seed=3)
    with attribution.remembered():
        first = attribution.attribute([ref, tgt], ref, tgt, seed=3)
        r2, t2 = ref.iloc[:], tgt.iloc[:]  # (new frames, the same columns)
        again = attribution.attribute([r2, t2], r2, t2, seed=3)
        assert len(made) == 2
        changed = tgt.copy()
        changed.loc[5, "gpu_ms"] += 1.0
        attribution.attribute([ref, changed], ref, changed, seed=3)
        attribution.attribute([ref, tgt], ref, tgt, seed=4)
        assert len(made) == 4
        again.loc[0, "contribution_ms"] = 99.0
        third = attribution.attribute([ref, tgt], ref, tgt, seed=3)
        assert len(made) == 4
    for got in (first, third):
        pd.testing.assert_frame_equal(got, plain)
    attribution.attribute([ref, tgt], ref, tgt, seed=3)
    assert len(made) == 5


def test_an_analysis_with_attributions_made_once_says_the_same(monkeypatch):
    """A trace whose call -> result rows and reference are its event-time ones (a synchronous
    program): the second attribution is the first's, and the analysis is what it is when each
    is made anew."""
    import contextlib

    trace = DATA / "h100_causes" / "idle_ramp.parquet"
    made = []
    real = attribution._attribute
    monkeypatch.setattr(attribution, "_attribute", lambda *a: made.append(1) or real(*a))
    once = gpuwatch.analyze(trace).to_dict()
    n_once = len(made)
    monkeypatch.setattr(analysis, "remembered", contextlib.nullcontext)
    made.clear()
    anew = gpuwatch.analyze(trace).to_dict()
    assert n_once < len(made)
    assert once == anew


def test_too_few_rows_give_an_empty_table():
    rng = np.random.default_rng(0)
    a, b = _frame(rng, 2, 1980, 0.0), _frame(rng, 50, 1590, 0.0)
    assert _same(pd.concat([a, b]), a, b).empty


def test_counts_are_the_draws():
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 7, (5, 11))
    W = attribution.counts(idx, 7)
    assert W.shape == (5, 7) and np.all(W.sum(axis=1) == 11)
    for i in range(5):
        np.testing.assert_array_equal(W[i], np.bincount(idx[i], minlength=7))
    v = rng.normal(size=7)
    np.testing.assert_allclose(W @ v / 11, v[idx].mean(axis=1))


def test_the_batched_bounded_fit_is_scipys_bounded_least_squares():
    """Many problems at once, each with its own set of active regressors (the others held at
    0), against lsq_linear (BVLS) on each alone."""
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(5)
    B, k, n = 80, 3, 200
    upper = np.array([np.inf, np.inf, 1.0])
    Xs, ys = [], []
    G, c = np.empty((B, k, k)), np.empty((B, k))
    for b in range(B):
        X = rng.normal(size=(n, k)) * rng.uniform(0.1, 3, k) + rng.normal(size=k)
        y = 0.3 + X @ rng.normal(0, 1.5, k) + rng.normal(0, 0.5, n)
        Xc = X - X.mean(axis=0)
        G[b], c[b] = Xc.T @ Xc, Xc.T @ (y - y.mean())
        Xs.append(X)
        ys.append(y)
    active = rng.random((B, k)) < 0.75
    beta = attribution._bounded_fit_batch(G, c, upper, active)
    broke = 0
    for b in range(B):
        a = active[b]
        assert np.all(beta[b, ~a] == 0)
        if not a.any():
            continue
        A = np.column_stack([np.ones(n), Xs[b][:, a]])
        want = lsq_linear(A, ys[b], bounds=(np.r_[-np.inf, np.zeros(a.sum())],
                                            np.r_[np.inf, upper[a]]), method="bvls").x[1:]
        plain = np.linalg.lstsq(A, ys[b], rcond=None)[0][1:]
        broke += bool(np.any(plain < 0) or np.any(plain > upper[a]))
        np.testing.assert_allclose(beta[b, a], want, rtol=1e-6, atol=1e-7)
    assert broke >= 20  # (the bounds were really in play)


def test_a_singular_system_gets_lstsqs_minimum_norm_answer():
    """Two regressors that always move together (the SM and memory clock in one step): the
    Gram matrix is singular; the answer is lstsq's minimum-norm one, as before."""
    x = np.linspace(0.5, 0.6, 50)
    X = np.column_stack([x, 2 * x])
    y = 3 * x
    Xc = X - X.mean(axis=0)
    G, c = Xc.T @ Xc, Xc.T @ (y - y.mean())
    got = attribution._bounded_fit_batch(G[None], c[None], np.full(2, np.inf),
                                         np.ones((1, 2), bool))[0]
    np.testing.assert_allclose(got, np.linalg.lstsq(G, c, rcond=None)[0], rtol=1e-9)


def test_the_analysis_runs_blas_on_one_thread_and_gives_the_pool_back(monkeypatch):
    """Small matrix products: BLAS threads would spin (threads.py). Inside analyze the BLAS
    pool is one thread; after it, what it was."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpoolctl.threadpool_info()
                if p["user_api"] == "blas"]

    before = blas_threads()
    seen = []
    real = analysis.attribute

    def spy(*a, **k):
        seen.append(blas_threads())
        return real(*a, **k)

    monkeypatch.setattr(analysis, "attribute", spy)
    gpuwatch.analyze(DATA / "h100_causes" / "steady.parquet")
    assert seen and all(n == [1] * len(n) for n in seen), seen
    assert blas_threads() == before
