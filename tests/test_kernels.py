"""Kernel timeline: the kernels table, the per-inference decomposition, and the sharper verdict
it allows (on the simulated GPU, whose kernels are known exactly)."""

import numpy as np
import pytest

import gpuwatch
from gpuwatch.analysis.merge import merge


def test_kernels_table_holds_every_kernel(kernel_traces):
    tr = kernel_traces["t4"]
    k = tr.kernels[tr.kernels["kind"] == "kernel"]
    assert len(k) == 2 * 320 * 24  # 2 conditions x (20 warm-up + 300) x 24 layers
    assert set(k["name"]) == {"layer"} and (k["end_ns"] > k["start_ns"]).all()
    # and each region's start and end event, with the GPU's own time and the stream
    ev = tr.kernels[tr.kernels["kind"] == "cuda_event"]
    assert len(ev) == 2 * 640 and set(ev["name"]) == {"start", "end"}
    assert (ev["stream_id"] == k["stream_id"].iloc[0]).all()
    assert tr.meta["kernel_trace"]["source"] == "simulated GPU (exact)"
    assert tr.meta["options"]["kernels"] is True


def test_decomposition_adds_up(kernel_traces):
    m = merge(kernel_traces["hostbound"])
    inf = m[m["kind"] == "inference"]
    assert (inf["kernel_count"] == 24).all()
    np.testing.assert_allclose(inf["busy_ms"] + inf["idle_inside_ms"], inf["gpu_ms"], atol=1e-6)
    assert (inf["first_kernel_delay_ms"] > 0).all()
    # The GPU waits for this host: the idle part is large and grows after gaps.
    g = inf.groupby("condition")["idle_inside_ms"].median()
    assert g["gap=0ms"] > 1.0 and g["gap=20ms"] > g["gap=0ms"] + 2.0


def factor(a, f):
    t = a.attribution
    return t[(t["condition"] == "gap=20ms") & (t["factor"] == f)].iloc[0]


def test_kernels_split_cold_caches_from_clocks_and_host(kernel_traces):
    a = gpuwatch.analyze(kernel_traces["cold"])
    assert factor(a, "kernels_slower")["share"] > 0.95
    assert factor(a, "sm_clock")["contribution_ms"] == 0
    v = a.verdicts.set_index("condition").loc["gap=20ms"]
    assert v["cause"] == "kernels_slower" and "at SM 1590 MHz" in v["sentence"]
    assert "not explained by clocks" in v["sentence"]


def test_kernels_show_host_starvation_directly(kernel_traces):
    a = gpuwatch.analyze(kernel_traces["hostbound"])
    assert factor(a, "host_launch")["share"] == pytest.approx(1.0, abs=0.02)
    assert "waiting for the host" in a.verdicts.set_index("condition").loc["gap=20ms",
                                                                           "sentence"]


def test_kernels_confirm_clocks_on_t4(kernel_traces):
    a = gpuwatch.analyze(kernel_traces["t4"])
    assert factor(a, "sm_clock")["share"] > 0.95
    assert abs(factor(a, "kernels_slower")["share"]) < 0.02


def test_without_kernels_the_verdict_suggests_them(cause_traces):
    a = gpuwatch.analyze(cause_traces["cold"])
    assert "record --kernels would split it" in a.verdicts.set_index("condition").loc[
        "gap=20ms", "sentence"]
    assert a.merged["busy_ms"].isna().all()


def test_a_starved_engine_is_decomposed_as_waiting_for_the_host(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "s.parquet", kernels=True) as s:
        fed, starved = s.engine("builtin:small"), s.engine("builtin:small@300")
        for _ in range(30):
            fed.infer()
            fed.synchronize()
            starved.infer()
            starved.synchronize()
    m = merge(s.trace)
    g = m[m["kind"] == "inference"].groupby("name")[["busy_ms", "idle_inside_ms"]].median()
    assert g.loc["builtin:small", "idle_inside_ms"] < 0.1  # the GPU never waits
    # 24 launches 300 us apart while each kernel takes ~200 us: the GPU idles ~100 us per gap
    assert g.loc["builtin:small@300", "idle_inside_ms"] > 1.5
    assert g.loc["builtin:small@300", "busy_ms"] == pytest.approx(g.loc["builtin:small",
                                                                        "busy_ms"], rel=0.02)
