"""Traces recorded on the lent H100 (benchmarks/results/h100_issue3/record_fixture.txt has the
command), loaded and summarised here on machines without a GPU."""

from pathlib import Path

import numpy as np
import pytest

import gpuwatch
from gpuwatch.analysis.merge import merge
from gpuwatch.fields import ClockEventReason
from gpuwatch.trace import TABLES, table_columns

FIXTURE = Path(__file__).parent / "data" / "h100_small_gap0_20_fixture.parquet"


@pytest.fixture(scope="module")
def h100() -> gpuwatch.Trace:
    return gpuwatch.load(FIXTURE)


def test_real_trace_metadata(h100):
    m = h100.meta
    assert h100.simulated is False and m["status"] == "complete"
    dev = m["devices"][0]
    assert dev["name"] == "NVIDIA H100 80GB HBM3" and dev["uuid"].startswith("GPU-")
    assert dev["facts"]["sm_max_mhz"] == 1980 and dev["facts"]["power_limit_w"] == 700.0
    assert m["options"]["sampler"] == "process" and m["options"]["pre_post"] is True
    assert m["sampler"]["requested_hz"] == 200.0 and m["sampler"]["achieved_hz"] > 190
    assert m["field_query_cost_us"]["0"]["sm_clock_mhz"] < 50
    assert m["timebase"]["anchor_uncertainty_us_p50"] < 50
    assert m["unsupported_fields"] == {"0": {}}


def test_real_trace_tables(h100):
    for name in TABLES:
        assert list(getattr(h100, name).columns) == table_columns(name)
    inf = h100.measured()
    assert len(inf) == 300 and set(inf["condition"]) == {"gap=0ms", "gap=20ms"}
    spans = h100.inferences[h100.inferences["kind"] == "span"]
    assert set(spans["name"]) == {"preprocess", "postprocess"}
    assert (inf["gpu_ms"].between(4.5, 7.5)).all()  # the small preset at 1980 MHz
    assert set(h100.driver_samples["field"]) >= {"power_w"}


def test_real_trace_is_on_one_time_base(h100):
    inf = h100.inferences.sort_values("host_start_ns")
    start = inf["start_ns"].to_numpy(np.int64)
    assert (np.diff(start) > 0).all()
    assert (inf["start_ns"] >= inf["host_start_ns"]).all()
    assert (inf["end_ns"] <= inf["host_end_ns"] + 50_000).all()
    s = h100.samples["t_ns"].to_numpy(np.int64)
    assert s.min() < start.min() and s.max() > inf["end_ns"].max()
    d = h100.driver_samples["t_ns"].to_numpy(np.int64)  # NVML's own us-epoch timestamps
    assert abs(np.median(d) - np.median(s)) < 5e9


def test_real_trace_summary(h100):
    df = gpuwatch.condition_summary(h100)
    assert list(df["condition"]) == ["gap=0ms", "gap=20ms"]
    assert (df["sm_clock_p50_mhz"] == 1980).all()  # this H100 kept its clock at 20 ms gaps
    assert (df["late_over_early"].between(0.97, 1.03)).all()


def test_real_reason_bits_decode(h100):
    masks = set(h100.samples["clock_event_reasons"].dropna().astype(int))
    for m in masks:
        assert m & ~0x1FF == 0  # only bits NVML defines
        ClockEventReason(m)


H100_EVENTS = (Path(__file__).parents[1] / "benchmarks" / "results" / "h100_issue6" / "events")


@pytest.mark.parametrize("name,idle_ms", [("small", (0.0, 0.2)), ("starved", (1.5, 2.5))])
def test_h100_kernel_trace_windows_use_the_gpus_event_timestamps(name, idle_ms):
    """Real H100 traces with CUPTI CUDA-event records: every window is placed by the GPU's own
    event timestamps, and the decomposition tells the fed engine from the starved one."""
    tr = gpuwatch.load(H100_EVENTS / f"h100_kernels_{name}.parquet")
    m = merge(tr)
    assert (m["aligned_by"] == "cuda_event").all()
    window_ms = (m["end_ns"] - m["start_ns"]).to_numpy(dtype=float) / 1e6
    np.testing.assert_allclose(m["busy_ms"] + m["idle_inside_ms"], window_ms, atol=1e-3)
    inf = m[(m["kind"] == "inference") & ~m["warmup"].astype(bool)]
    assert (inf["kernel_count"] == 32).all()
    lo, hi = idle_ms
    assert lo <= inf["idle_inside_ms"].median() <= hi
    # the end event comes after the inference's last kernel on the GPU, never before it
    work = tr.kernels[tr.kernels["kind"] == "kernel"].sort_values("start_ns")
    last = np.searchsorted(work["start_ns"].to_numpy(), inf["end_ns"].to_numpy()) - 1
    gap_us = (inf["end_ns"].to_numpy() - work["end_ns"].to_numpy()[last]) / 1e3
    assert (gap_us > 0).all()
    if name == "small":
        assert np.percentile(gap_us, 99) < 3.0  # 2.05-2.30 us: the GPU's event latency


H100_E2 = Path(__file__).parents[1] / "benchmarks" / "results" / "h100_issue8" / "experiment2"


def test_a_single_gap_run_is_compared_with_its_own_first_iterations():
    """The seed's Experiment 2 on the H100: one 20 ms-gap condition, 800 iterations. Eager
    PyTorch drifts up and the verdict names the host (kernels busy the same, GPU idle inside
    grows); the GPU-bound built-in engine does not move."""
    torch_run = gpuwatch.analyze(H100_E2 / "e2_torch_sleep_kernels.parquet")
    v = torch_run.verdicts.iloc[0]
    assert torch_run.layers.iloc[0]["reference"] == "its first 50 iterations"
    assert v["cause"] == "host_launch" and v["extra_ms"] > 0.5
    assert "GPU idle inside each inference" in v["sentence"]
    flat = gpuwatch.analyze(H100_E2 / "e2_builtin_sleep.parquet").verdicts.iloc[0]
    assert flat["cause"] is None or flat["cause"] != flat["cause"]  # no cause: no change
    assert "no meaningful change" in flat["sentence"]
