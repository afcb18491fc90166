"""Physically bounded attribution (issue 15): a clock change explains at most what it can,
a share the bound allows in full is given in full, and no sentence says more than 100% or less
than 0."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest

import gpuwatch
from gpuwatch.analysis import share_text
from gpuwatch.analysis.attribution import attribute
from tests.conftest import sentence_shares
from tests.helpers import record_sim


def rows(n, gpu_ms, sm_mhz, enqueue_ms=0.05, rng=None, sm_noise=0.0, reasons=0):
    rng = rng or np.random.default_rng(0)
    return pd.DataFrame({
        "gpu_ms": gpu_ms + 0.002 * rng.standard_normal(n),
        "sm_clock_mhz_mean": sm_mhz + sm_noise * rng.standard_normal(n),
        "mem_clock_mhz_mean": np.full(n, 2619.0),
        "enqueue_ms": np.full(n, enqueue_ms) + 0.001 * rng.standard_normal(n),
        "reasons_any": np.full(n, reasons, dtype=np.int64),
    })


def table(ref, tgt):
    return attribute(pd.concat([ref, tgt]), ref, tgt).set_index("factor")


def test_a_small_clock_drop_cannot_explain_a_large_slowdown():
    """The clock fell 10% (1000 -> 909 MHz) and latency rose 50% (1.0 -> 1.5 ms), with nothing
    else measured moving: the fit alone would give the clock all of it. At most 1.0 x (1000/909
    - 1) = 0.10 ms is the clock's; the rest is unexplained."""
    t = table(rows(400, 1.0, 1000.0), rows(400, 1.5, 909.0, rng=np.random.default_rng(1)))
    clock = t.loc["sm_clock", "contribution_ms"] + t.loc["throttling", "contribution_ms"]
    assert clock == pytest.approx(1.0 * (1000 / 909 - 1), rel=0.02)
    assert t.loc["unexplained", "share"] == pytest.approx(0.8, abs=0.02)
    assert t.loc["sm_clock", "ci_high_ms"] <= 0.101 + 1e-9  # the bound holds in every resample


def test_a_power_capped_slowdown_the_clock_allows_in_full_is_the_clocks():
    """Compute-bound work, clock 1980 -> 1470 MHz under the power cap: latency x1980/1470. The
    clock reading lags the clock (a coarse NVML reading: large noise on each region's value),
    which biases the fit's slope towards 0; the bound allows the whole change, so the clock
    gets it, as throttling (the power-cap reason is active)."""
    rng = np.random.default_rng(2)
    ref = rows(600, 1.0, 1980.0, rng=rng, sm_noise=60.0)
    tgt = rows(600, 1980 / 1470, 1470.0, rng=rng, sm_noise=250.0, reasons=0x4)
    t = table(ref, tgt)
    assert t.loc["throttling", "share"] == pytest.approx(1.0, abs=0.03)
    assert abs(t.loc["unexplained", "share"]) < 0.03


def test_a_clock_that_rose_cannot_explain_a_slowdown():
    t = table(rows(300, 1.0, 1500.0), rows(300, 1.3, 1600.0, rng=np.random.default_rng(3)))
    assert t.loc["sm_clock", "contribution_ms"] == 0 and t.loc["throttling", "contribution_ms"] == 0
    assert t.loc["unexplained", "share"] == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("share,text", [(1.32, "100%"), (-0.07, "0%"), (0.456, "46%"),
                                        (float("nan"), "-")])
def test_share_text_stays_within_0_and_100(share, text):
    assert share_text(share) == text


REAL = ["benchmarks/results/h100_issue8/experiment3/e3_torch_large_1280x720.parquet",
        "benchmarks/results/h100_issue8/experiment3/e3_sweep_torch+graph_spin.parquet",
        "benchmarks/results/h100_issue8/experiment1/e1_torch_spin_steps.parquet",
        "benchmarks/results/h100_issue6/events/h100_kernels_starved.parquet",
        "benchmarks/results/h100_issue13/convnet_alternating_gc_off.parquet"]


@pytest.mark.parametrize("path", REAL)
def test_no_sentence_on_a_real_trace_says_more_than_100_or_less_than_0(path):
    a = gpuwatch.analyze(path)
    from gpuwatch.renderers.text import TextRenderer

    text = TextRenderer().render(a) + "\n".join(a.verdicts["sentence"])
    shares = sentence_shares(text)
    assert shares and all(0 <= x <= 100 for x in shares), shares


# -- another process on the GPU ---------------------------------------------------------------
def gap_run(path, device, gap_ms=20, iters=500):
    """The built-in engine on `device`, one condition at `gap_ms`; returns the trace."""
    with gpuwatch.session(device, path) as s:
        e = s.engine()
        s.set_condition(f"gap={gap_ms}ms", gap_ms)
        for _ in range(iters):
            e.infer()
            e.synchronize()
            s.wait(gap_ms)
    return s.trace


def cotenant_run(tmp_path, gap_ms, name, iters=500, at_s=6):
    """sim:flat (clocks never move), another process taking 60% of the GPU from `at_s` on."""
    return gpuwatch.analyze(gap_run(tmp_path / f"{name}.parquet",
                                    f"sim:flat,fault=cotenant@{at_s}", gap_ms, iters))


def test_another_process_on_the_gpu_is_named_with_its_evidence(tmp_path):
    a = cotenant_run(tmp_path, 20, "cotenant")
    v = a.verdicts.iloc[0]
    assert v["cause"] == "other_process"
    t = a.attribution.set_index("factor")
    # ground truth: the whole extra time is the other process's (kernels x 1/(1-0.6))
    assert t.loc["other_process", "share"] == pytest.approx(1.0, abs=0.1)
    assert t.loc["sm_clock", "contribution_ms"] == 0 and t.loc["throttling", "contribution_ms"] == 0
    assert v["extra_ms"] == pytest.approx(4.7 * (1 / 0.4 - 1), rel=0.1)
    assert "another process on the GPU explains" in v["sentence"]
    assert "the GPU's process list: pid 4242, about 60% SM" in v["sentence"]
    # without the process list (traces before schema v2), NVML's utilisation against the
    # program's own duty cycle tells the same
    import dataclasses

    old = gpuwatch.analyze(dataclasses.replace(a.traces[0], processes=pd.DataFrame()))
    v = old.verdicts.iloc[0]
    assert v["cause_code"] == "other_process"
    assert re.search(r"GPU \d+% busy by NVML while this program's own work kept it \d+% busy",
                     v["sentence"])
    m = a.merged
    late = m[m["start_ns"] > m["start_ns"].iloc[-1] - 2e9]  # the last 2 s: both processes
    assert late["util_excess_pct"].median() > 40 and late["own_duty_pct"].median() < 50


def test_back_to_back_only_the_process_list_can_tell(tmp_path):
    """Back to back, this program alone keeps the GPU 100% busy: NVML's utilisation cannot show
    a second process. The GPU's process list can; without it (a trace from before schema v2),
    the verdict must not invent one."""
    import dataclasses

    a = cotenant_run(tmp_path, 0, "b2b", iters=1000, at_s=2)
    v = a.verdicts.iloc[0]
    assert v["extra_ms"] > 5 and v["cause_code"] == "other_process"
    assert "the GPU's process list: pid 4242, about 60% SM" in v["sentence"]
    procs = a.traces[0].processes
    assert set(procs.loc[procs["own"].astype(bool), "pid"]) == {os.getpid()}
    old = dataclasses.replace(a.traces[0], processes=pd.DataFrame())
    v = gpuwatch.analyze(old).verdicts.iloc[0]
    assert v["cause"] == "unexplained" and "another process" not in v["sentence"]
    assert "not explained by anything gpuwatch measured" in v["sentence"]


# -- episodes: a departure that comes back ---------------------------------------------------
def test_an_episode_that_comes_and_goes_is_found_and_explained(tmp_path):
    """Another process for 4 s in the middle of a 20 ms-gap run: the end of the run looks like
    its start, so the stable tail says nothing; the episode must be found, bounded and named."""
    tr = gap_run(tmp_path / "ep.parquet", "sim:flat,fault=cotenant@4+4", iters=600)
    a = gpuwatch.analyze(tr)
    inf = tr.measured()
    slow = inf.loc[inf["gpu_ms"] > 1.5 * inf["gpu_ms"].median(), "iteration"]  # ground truth
    v = a.verdicts
    cond, ep = v[v["episode"].isna()].iloc[0], v[v["episode"].notna()]
    assert "no meaningful change, but 1 episode(s) came and went" in cond["sentence"]
    assert len(ep) == 1
    ep = ep.iloc[0]
    n = slow.max() - slow.min()
    assert abs(ep["first_iter"] - slow.min()) <= 0.1 * n
    assert abs(ep["last_iter"] - slow.max()) <= 0.1 * n
    assert ep["cause"] == "other_process"
    t = a.attribution[a.attribution["episode"] == ep["episode"]].set_index("factor")
    assert t.loc["other_process", "share"] == pytest.approx(1.0, abs=0.1)
    assert "1 episode(s) came and went" in a.verdict and "another process" in a.verdict
    # (a process sharing the SMs lengthens the work, not the wait to start it: the call ->
    # result sentence cites the process list, not a queue that did not move, "0.004 -> 0.004")
    w = a.wall_verdicts[a.wall_verdicts["episode"].notna()].iloc[0]["sentence"]
    assert "process list: pid 4242" in w and "while this program's stream was idle" not in w
    pytest.importorskip("matplotlib")
    from gpuwatch.analysis.plots import latency_vs_iteration

    ax = latency_vs_iteration(a).axes[0]  # the episode is shaded on the latency plot
    spans = [p for p in ax.patches if p.get_label() == "episode: other_process"]
    assert len(spans) == 1


def test_a_steady_run_has_no_episodes(flat_trace):
    a = gpuwatch.analyze(flat_trace)
    assert a.verdicts["episode"].isna().all()
    assert a.verdict.startswith("No condition is slower or faster than its baseline beyond "
                                "noise, and no episode came and went")


# -- thermal slowdown and the power cap, on their simulated profiles -------------------------
def test_a_thermal_slowdown_is_named_thermal(tmp_path):
    v = gpuwatch.analyze(gap_run(tmp_path / "hot.parquet", "sim:flat,fault=thermal@3+3")).verdicts
    ep = v[v["episode"].notna()]
    assert len(ep) == 1 and ep.iloc[0]["cause_code"] == "thermal"
    assert ep.iloc[0]["share"] == pytest.approx(1.0, abs=0.1)  # clock x0.6: all of it
    assert ep.iloc[0]["sm_clock_mhz"] == pytest.approx(0.6 * 1590, rel=0.01)
    assert "sw_thermal_slowdown" in ep.iloc[0]["sentence"]


def test_a_thermal_layer_before_the_idle_clocks_plateau_is_named_as_well(tmp_path):
    """On sim:t4 a thermal limit (3-6 s) holds the clock at 60% inside the 20 ms condition,
    then the clock's own down-scaling after idle gaps takes it lower: one jump, a thermal
    layer, then the DVFS plateau. The plateau's verdict names DVFS; the layer before it,
    where the GPU reported sw_thermal_slowdown and the plateau did not, gets its own (it was
    absorbed into "the ramp into the plateau", and thermal was named nowhere)."""
    tr = record_sim(tmp_path / "th.parquet", profile="t4,fault=thermal@3+3", gaps=(0.0, 20.0),
                    iters=400)
    a = gpuwatch.analyze(tr)
    for v in (a.verdicts, a.wall_verdicts):
        g = v[v["condition"] == "gap=20ms"]
        whole = g[g["episode"].isna()].iloc[0]
        assert whole["cause_code"] == "idle_clock_downscale"
        ep = g[g["episode"].notna()]
        assert list(ep["cause_code"]) == ["thermal"], ep[["episode", "cause_code"]]
        first, last = int(ep.iloc[0]["first_iter"]), int(ep.iloc[0]["last_iter"])
        assert 25 <= first <= 50 and last < int(whole["verdict"].layered[0])  # (before it)
        assert "sw_thermal_slowdown" in ep.iloc[0]["sentence"]
    assert "1 episode(s) came and went" in a.verdict


def test_gapped_work_faster_than_power_capped_work_says_why(tmp_path):
    tr = record_sim(tmp_path / "cap.parquet", profile="capped", gaps=(0.0, 20.0), iters=300,
                    engine="builtin:large")
    v = gpuwatch.analyze(tr).verdicts.set_index("condition")
    g = v.loc["gap=20ms"]
    assert g["extra_ms"] < 0 and g["cause_code"] == "power_cap"
    assert "sustained load is slower because the power cap lowered the clock" in g["sentence"]
    assert g["sm_clock_ref_mhz"] < g["sm_clock_mhz"]


# -- no telemetry: a change, said plainly, without a cause it cannot know ---------------------
@pytest.mark.parametrize("probe", [False, True])
def test_without_telemetry_the_change_is_reported_and_the_cause_only_if_measured(tmp_path, probe):
    """The sampler off: with no clock at all the verdict reports the change and says it cannot
    tell why (never "no change", never "not explained by clocks"); with the in-band clock
    (simulated GPUs) the clock is still measured, and named."""
    trace = record_sim(tmp_path / "t.parquet", iters=300, warmup=0,
                       sampler="off", probe=probe)
    a = gpuwatch.analyze(trace)
    v = a.verdicts.set_index("condition").loc["gap=20ms"]
    assert v["extra_ms"] > 4 and not a.verdict.startswith("No condition")
    if probe:
        assert v["cause_code"] == "idle_clock_downscale" and v["share"] > 0.9
    else:
        assert v["cause"] == "unexplained" and "cannot tell why" in v["sentence"]
        assert "not explained by clocks" not in v["sentence"]


def test_impossible_latencies_and_failed_calls_are_left_out_and_said(t4_sweep):
    import dataclasses

    inf = t4_sweep.inferences.copy()
    measured = inf.index[(inf["kind"] == "inference") & ~inf["warmup"].astype(bool)]
    for i, v in ((50, np.nan), (60, np.inf), (70, -8.7), (75, 0.0)):
        inf.loc[measured[i], "gpu_ms"] = v
    inf.loc[measured[80], "error"] = "ValueError: boom"
    a = gpuwatch.analyze(dataclasses.replace(t4_sweep, inferences=inf))  # no crash
    assert a.data_notes == ["trace 0: of 2400 measured inferences, 4 with no valid latency "
                            "(missing, infinite, <= 0 or over 1e+07 ms) and 1 whose call raised "
                            "were left out of the analysis"]
    assert (a.layers["baseline_ms"] > 0).all() and a.verdicts["cause"].notna().any()
    from gpuwatch.renderers.text import TextRenderer

    assert "note: trace 0: of 2400 measured inferences, 4 with no valid latency" in \
        TextRenderer().render(a)
    one = t4_sweep.inferences.copy()
    one.loc[measured[80], "error"] = "ValueError: boom"
    a = gpuwatch.analyze(dataclasses.replace(t4_sweep, inferences=one))
    assert a.data_notes == ["trace 0: of 2400 measured inferences, 1 whose call raised was left "
                            "out of the analysis"]


def test_cannot_tell_gives_the_candidate_not_a_share():
    """Measured causes account for the change but none beyond doubt: the sentence says "cannot
    tell which cause", and the structured verdict gives the likeliest cause as a candidate with
    no share (not "unexplained, 0%")."""
    from gpuwatch.analysis import _verdict
    from gpuwatch.analysis.attribution import FACTORS
    from gpuwatch.analysis.layers import Layers

    def rows(ms: float, clock: float) -> pd.DataFrame:
        n = 50
        return pd.DataFrame({"gpu_ms": np.full(n, ms), "sm_clock_mhz_mean": np.full(n, clock),
                             "mem_clock_mhz_mean": np.full(n, 2619.0),
                             "reasons_any": np.full(n, 0x4), "enqueue_ms": np.full(n, 0.5)})

    ref, tgt = rows(6.5, 1330.0), rows(6.8, 1300.0)
    share = {f: 0.0 for f in FACTORS} | {"throttling": 0.95, "unexplained": 0.05}
    att = pd.DataFrame([{"factor": f, "contribution_ms": 0.3 * s, "ci_low_ms": -0.05 if s > 0.5
                         else 0.0, "ci_high_ms": 0.6 * s, "share": s} for f, s in share.items()])
    lay = Layers(50, 6.5, 6.8, False, None, None, None, 1, 0.01)
    v = _verdict("gap=0ms", lay, ref, tgt, att, "its first 50 iterations")
    assert "cannot tell which cause" in v["sentence"]
    # (its interval reaches 0: said as what it means, not "includes no change", which a user
    # read as "holds no change at all")
    assert re.search(r"95% interval \([-+]\d+\.\d{3}\.\.[-+]\d+\.\d{3} ms\) includes 0 ms: it "
                     r"may have cost nothing", v["sentence"]), v["sentence"]
    assert v["cause_code"] == "unexplained" and v["share"] is None
    assert v["candidate_code"] == "power_cap"


def test_the_bounded_fit_is_scipys_bounded_least_squares():
    """_bounded_fit solves the box-constrained problem exactly, as lsq_linear (BVLS) does, on
    problems whose plain fit breaks a bound and on ones whose does not."""
    from scipy.optimize import lsq_linear

    from gpuwatch.analysis.attribution import _bounded_fit

    rng = np.random.default_rng(11)
    broke = 0
    for trial in range(60):
        n, k = int(rng.integers(20, 400)), int(rng.integers(1, 4))
        X = rng.normal(size=(n, k)) * rng.uniform(0.1, 3, k) + rng.normal(size=k)
        true = rng.normal(0, 1.5, k)
        y = 0.3 + X @ true + rng.normal(0, 0.5, n)
        upper = np.where(rng.random(k) < 0.5, rng.uniform(0.2, 1.5, k), np.inf)
        got = _bounded_fit(X, y, upper)
        A = np.column_stack([np.ones(n), X])
        want = lsq_linear(A, y, bounds=(np.r_[-np.inf, np.zeros(k)], np.r_[np.inf, upper]),
                          method="bvls").x
        plain = np.linalg.lstsq(A, y, rcond=None)[0][1:]
        broke += bool(np.any(plain < 0) or np.any(plain > upper))
        assert np.all(got[1:] >= 0) and np.all(got[1:] <= upper)
        cost = lambda b: float(np.sum((A @ b - y) ** 2))  # noqa: E731
        assert cost(got) <= cost(want) * (1 + 1e-9) + 1e-12
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert broke >= 20  # (the bounds were really in play)


def test_a_reason_held_the_clock_down_only_where_its_rows_ran_slower_than_those_before():
    """_held, on 1000 / SM clock in time order: a minority of rows with a thermal reason at
    the clock the rows before them already had held nothing; at a lower clock, or first, or
    in most rows, it did."""
    from gpuwatch.analysis.attribution import _held

    x = np.full(100, 1000 / 765)
    thr = np.zeros(100, bool)
    thr[60:75] = True
    assert not _held(x, thr)  # (at the clock the governor had set already)
    lower = x.copy()
    lower[60:75] = 1000 / 700
    assert _held(lower, thr)  # (held it 65 MHz lower)
    first = np.zeros(100, bool)
    first[0:15] = True
    assert _held(x, first)  # (came first: the clock stayed where it put it)
    most = np.zeros(100, bool)
    most[10:90] = True
    assert _held(x, most)  # (a cap's bit in most of the rows it holds)
    assert _held(x, np.zeros(100, bool))  # (no reason: nothing to take away)
