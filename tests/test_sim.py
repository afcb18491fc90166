"""The simulated GPU against the field report's staircase (ground truth for later analysis)."""

import numpy as np

import gpuwatch
import pytest

from tests.helpers import record_sim
from gpuwatch.bindings.sim import PROFILES, open_backend
from gpuwatch.errors import UsageError


def latencies(trace, condition):
    m = trace.measured()
    return m[m["condition"] == condition].sort_values("iteration")["gpu_ms"].to_numpy(float)


def onset_and_stable(lat):
    """Onset: first iteration 10% above the first 20's median. Stable: first iteration from
    which every latency stays within 5% of the last 100's median."""
    base, final = np.median(lat[:20]), np.median(lat[-100:])
    above = np.nonzero(lat > 1.1 * base)[0]
    outside = np.nonzero(np.abs(lat - final) > 0.05 * final)[0]
    onset = int(above[0]) if above.size else None
    stable = int(outside[-1] + 1) if outside.size else 0
    return onset, stable, base, final


def test_back_to_back_latency_is_the_seeds_small_model(t4_sweep):
    lat = latencies(t4_sweep, "gap=0ms")
    assert np.median(lat) == pytest.approx(4.7, abs=0.1)
    assert np.median(lat[-100:]) / np.median(lat[:50]) == pytest.approx(1.0, abs=0.02)


def test_20ms_gap_jumps_near_iteration_55_and_settles_near_2x(t4_sweep):
    onset, stable, base, final = onset_and_stable(latencies(t4_sweep, "gap=20ms"))
    assert 40 <= onset <= 80
    assert 100 <= stable <= 300
    assert 1.7 <= final / base <= 2.4


def test_longer_gap_jumps_earlier_and_settles_higher(t4_sweep):
    on20, _, _, final20 = onset_and_stable(latencies(t4_sweep, "gap=20ms"))
    on50, _, _, final50 = onset_and_stable(latencies(t4_sweep, "gap=50ms"))
    assert on50 < on20
    assert final50 > 1.5 * final20


def test_the_slowdown_is_the_sm_clock_stepping_down(t4_sweep):
    s = t4_sweep.samples
    t0 = t4_sweep.inferences.query("condition == 'gap=20ms'")["t_ns"]
    during = s[(s["t_ns"] >= t0.min()) & (s["t_ns"] <= t0.max())]
    assert during["sm_clock_mhz"].max() == 1590
    assert during["sm_clock_mhz"].min() < 900
    assert (during["pstate"] == 0).all()


def test_flat_profile_keeps_clocks_and_latency_flat(flat_trace):
    lat = latencies(flat_trace, "gap=20ms")
    assert np.median(lat[-100:]) / np.median(lat[:50]) == pytest.approx(1.0, abs=0.03)
    assert set(flat_trace.samples["sm_clock_mhz"].unique()) == {1590}


def test_same_seed_same_latencies_other_seed_differs(tmp_path):
    a = record_sim(tmp_path / "a.parquet", gaps=(20.0,), iters=100, seed=3)
    b = record_sim(tmp_path / "b.parquet", gaps=(20.0,), iters=100, seed=3)
    c = record_sim(tmp_path / "c.parquet", gaps=(20.0,), iters=100, seed=4)
    assert np.array_equal(latencies(a, "gap=20ms"), latencies(b, "gap=20ms"))
    assert not np.array_equal(latencies(a, "gap=20ms"), latencies(c, "gap=20ms"))


def test_gpu_parks_at_idle_clock_when_left_alone():
    b = open_backend("t4", seed=0, start_ns=0)
    assert b.telemetry[0].read()["pstate"] == 8  # a fresh process finds the GPU parked
    eng = b.engine("builtin:small", None)
    for _ in range(50):
        eng.infer()
    b.clock.advance(20_000_000)
    r = b.telemetry[0].read()
    assert (r["pstate"], r["sm_clock_mhz"], r["mem_clock_mhz"]) == (0, 1590, 5001)
    b.clock.advance(2_000_000_000)  # > idle_timeout with nothing to do
    r = b.telemetry[0].read()
    assert (r["pstate"], r["sm_clock_mhz"], r["mem_clock_mhz"]) == (8, 300, 405)
    assert r["clock_event_reasons"] & 0x1  # GPU idle


def test_power_cap_throttles_with_its_reason():
    from dataclasses import replace

    from gpuwatch.bindings.sim import SimBackend

    capped = replace(PROFILES["t4"], power_cap_w=40.0)
    b = SimBackend(capped, seed=0, start_ns=0)
    eng = b.engine("builtin:large", None)
    reasons = 0
    for _ in range(400):
        eng.infer()
        b.clock.advance_to(b.gpu.gpu_free_ns)
        reasons |= b.telemetry[0].read()["clock_event_reasons"]
    r = b.telemetry[0].read()
    assert r["sm_clock_mhz"] < 1590
    assert reasons & 0x4  # SW power cap
    assert r["power_avg_w"] == pytest.approx(40.0, abs=3.0)


def test_unknown_profile_and_engine_are_usage_errors():
    with pytest.raises(UsageError, match="sim:t4"):
        open_backend("v100")
    b = open_backend("t4")
    with pytest.raises(UsageError, match="builtin:small"):
        b.engine("resnet.plan", None)
    with pytest.raises(UsageError, match="preset"):
        b.engine("builtin:huge", None)


def test_several_gpus_sampled_by_one_sampler_with_inference_on_any(tmp_path):
    from gpuwatch.analysis.merge import merge

    with gpuwatch.session("sim:t4,gpus=4,index=2", tmp_path / "m.parquet",
                          sample_gpus="all") as s:
        e = s.engine()
        for _ in range(300):
            e.infer()
            s.wait(20)
    tr = s.trace
    assert [d["index"] for d in tr.meta["devices"]] == [2, 0, 1, 3]  # inference GPU first
    assert set(tr.inferences["gpu"]) == {2}
    smp = tr.samples
    per_gpu = smp.groupby("gpu").size()
    assert list(per_gpu.index) == [0, 1, 2, 3] and per_gpu.min() == per_gpu.max() > 6000
    # only the working GPU's clock moves; the idle ones stay parked at the idle clock
    assert smp.loc[smp["gpu"] == 2, "sm_clock_mhz"].max() == 1590
    assert (smp.loc[smp["gpu"] != 2, "sm_clock_mhz"] == 300).all()
    m = merge(tr)
    assert (m["sm_clock_mhz_start"].iloc[1:] > 300).all()  # joined to GPU 2's readings, not the others


def test_sampling_a_subset_of_many_gpus(tmp_path):
    with gpuwatch.session("sim:t4,gpus=8", tmp_path / "m.parquet", sample_gpus=[3, 1]) as s:
        s.engine().infer()
        s.wait(50)
    assert set(s.trace.samples["gpu"]) == {0, 1, 3}
    with pytest.raises(UsageError, match="there is no GPU 9: this simulated machine has 8"):
        gpuwatch.session("sim:t4,gpus=8", tmp_path / "x.parquet", sample_gpus=[9]).start()
    with pytest.raises(UsageError, match="index 8 is out of range"):
        gpuwatch.session("sim:t4,gpus=8,index=8", tmp_path / "x.parquet").start()


def test_the_same_seed_gives_the_same_trace_and_analysis_whenever_it_runs(tmp_path):
    # The simulated GPU starts at the wall clock's time; nothing it records, nor anything the
    # analysis says of it, may depend on that epoch (the in-band clock's timer ticks count from
    # the GPU's start; host durations are taken exactly): the verdict snapshot relies on it.
    runs = [record_sim(tmp_path / f"{k}.parquet", profile="capped", gaps=(0.0, 20.0),
                       iters=150, seed=0) for k in range(2)]
    (a, b) = (r.inferences for r in runs)
    assert a["start_ns"].iloc[0] != b["start_ns"].iloc[0]  # (two epochs)
    for c in ("start_ns", "end_ns", "host_start_ns", "host_enqueued_ns", "host_end_ns"):
        assert (a[c] - a["start_ns"].iloc[0]).equals(b[c] - b["start_ns"].iloc[0]), c
    assert a["sm_clock_inband_mhz"].notna().any()
    assert a["sm_clock_inband_mhz"].equals(b["sm_clock_inband_mhz"])
    x, y = (gpuwatch.analyze(r) for r in runs)
    assert x.verdict == y.verdict
    for table in ("verdicts", "wall_verdicts", "attribution", "wall_attribution", "latency"):
        cols = [c for c in getattr(x, table).columns
                if c not in ("verdict", "start_ns", "end_ns")]  # (the times: on each epoch)
        assert getattr(x, table)[cols].equals(getattr(y, table)[cols]), table
