"""The in-band SM clock (issue 14): stamps around every region on the simulated GPU, the trace
column, merge's preference for it, and the report's comparison with NVML."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import gpuwatch
import gpuwatch.bindings.cuda
from gpuwatch.analysis.merge import merge
from gpuwatch.errors import UsageError
from gpuwatch.bindings import standin
from tests.helpers import record_sim

V1_TRACE = "benchmarks/results/h100_issue13/convnet_alternating_gc_off.parquet"


@pytest.fixture(scope="module")
def staircase(tmp_path_factory):
    """The T4 staircase (gaps 0 and 20 ms), NVML following the clock (refresh 0) and NVML
    refreshing every 100 ms as an H100's does."""
    d = tmp_path_factory.mktemp("probe")
    return {r: record_sim(d / f"r{r}.parquet", profile=f"t4,nvml_refresh_ms={r}" if r else "t4",
                          iters=300)
            for r in (0, 100)}


def test_every_region_gets_the_clock_it_ran_at(staircase):
    tr = staircase[0]
    assert tr.meta["options"]["probe"] is True and tr.meta["schema_version"] >= 2
    inf = tr.measured()
    assert inf["sm_clock_inband_mhz"].notna().all()
    # Where NVML's 1 kHz readings (refresh 0: the clock as it is) hold one value from 1 ms
    # before a region to 1 ms after it, the in-band clock is that value.
    smp = tr.samples.dropna(subset=["sm_clock_mhz"])
    t, f = smp["t_ns"].to_numpy(np.int64), smp["sm_clock_mhz"].to_numpy(float)
    lo = np.searchsorted(t, inf["start_ns"].to_numpy(np.int64) - 1_000_000)
    hi = np.searchsorted(t, inf["end_ns"].to_numpy(np.int64) + 1_000_000)
    steady = [(f[a:b].min(), i) for i, (a, b) in enumerate(zip(lo, hi))
              if b > a and f[a:b].min() == f[a:b].max()]
    assert len(steady) > 400
    want = np.array([v for v, _ in steady])
    got = inf["sm_clock_inband_mhz"].to_numpy(float)[[i for _, i in steady]]
    np.testing.assert_allclose(got, want, rtol=1e-3)
    # the staircase itself: full clock back to back, the governor's low clock at 20 ms gaps
    med = inf.groupby("condition")["sm_clock_inband_mhz"].median()
    assert med["gap=0ms"] == pytest.approx(1590, rel=1e-3)
    assert med["gap=20ms"] == pytest.approx(765, rel=2e-3)


def test_the_in_band_clock_beats_a_slow_nvml_reading(staircase):
    """With NVML refreshing every 100 ms, NVML's window mean misses clock changes that the
    in-band clock sees region by region."""
    diff = {}
    for r, tr in staircase.items():
        m = merge(tr)
        m = m[(m["kind"] == "inference") & ~m["warmup"].astype(bool)]
        diff[r] = np.abs(m["sm_clock_nvml_mhz_mean"] - m["sm_clock_inband_mhz"]).to_numpy(float)
    off = {r: float((d > 1.0).mean()) for r, d in diff.items()}
    assert off[100] > 2 * off[0] and off[100] > 0.05, off
    # the same GPU, the same clocks: in-band agrees between the two recordings
    a = staircase[0].measured().groupby("condition")["sm_clock_inband_mhz"].median()
    b = staircase[100].measured().groupby("condition")["sm_clock_inband_mhz"].median()
    pd.testing.assert_series_equal(a, b, rtol=1e-3)


def test_the_probe_is_outside_the_events(tmp_path):
    """gpu_ms is the same with and without the stamps; their kernels are gpuwatch's own."""
    on = record_sim(tmp_path / "on.parquet", profile="flat", gaps=(0.0,), iters=200,
                    kernels=True)
    with gpuwatch.session("sim:flat", tmp_path / "off.parquet", probe=False, kernels=True) as s:
        e = s.engine()
        for _ in range(220):
            e.infer()
            e.synchronize()
    off = s.trace
    assert off.inferences["sm_clock_inband_mhz"].isna().all()
    assert on.measured()["gpu_ms"].median() == pytest.approx(
        off.measured()["gpu_ms"].median(), rel=0.005)
    k = on.kernels
    probes = k[k["kind"] == "probe"]
    assert len(probes) == 2 * len(on.inferences) and set(probes["name"]) == {
        "gpuwatch_clock_probe"}
    # each region's stamps: one ends by its start event, one starts at or after its end event
    # (the events' GPU times from the kernel trace: merge aligns regions on them)
    inf = merge(on)
    assert set(inf["aligned_by"]) == {"cuda_event"}
    ps = probes.sort_values("start_ns")["start_ns"].to_numpy(np.int64)
    before = np.searchsorted(ps, inf["start_ns"].to_numpy(np.int64), side="right") - 1
    after = np.searchsorted(ps, inf["end_ns"].to_numpy(np.int64), side="left")
    assert (before >= 0).all() and (after < len(ps)).all() and (after - before == 1).all()
    # and the decomposition does not count them as the program's kernels
    assert (inf.loc[inf["kind"] == "inference", "kernel_count"] == 24).all()


def test_merge_prefers_the_in_band_clock_and_keeps_nvml_beside_it(staircase):
    m = merge(staircase[100])
    assert set(m["sm_clock_source"]) == {"in-band"}
    np.testing.assert_array_equal(m["sm_clock_mhz_mean"], m["sm_clock_inband_mhz"])
    old = merge(gpuwatch.load(V1_TRACE))  # schema v1: no in-band column in the file
    assert old["sm_clock_inband_mhz"].isna().all() and set(old["sm_clock_source"]) == {"nvml"}
    np.testing.assert_array_equal(old["sm_clock_mhz_mean"], old["sm_clock_nvml_mhz_mean"])


def test_the_report_compares_the_two_clocks(staircase):
    a = gpuwatch.analyze(staircase[100], staircase[0])
    assert list(a.clocks["trace"]) == [0, 1]
    slow = a.clocks.iloc[0]
    assert slow["regions"] == 600 and slow["abs_diff_mhz_max"] > 100
    assert slow["inband_mhz_p50"] == pytest.approx(a.clocks.iloc[1]["inband_mhz_p50"], rel=1e-3)
    from gpuwatch.renderers.text import TextRenderer

    text = TextRenderer().render(a)
    assert text.count("SM clock, in-band (measured over each region)") == 2
    assert "clocks" in a.to_dict()
    # a largest difference far over the p90 is said to be NVML's lag, and only then
    from gpuwatch.analysis.clock import sentence

    row = a.clocks.iloc[0].copy()
    row["abs_diff_mhz_p90"], row["abs_diff_mhz_max"] = 0.0, 1026.0
    assert "(NVML's value lags a change of clock until its next refresh" in sentence(row)
    row["abs_diff_mhz_p90"], row["abs_diff_mhz_max"] = 40.0, 110.0
    assert "lags" not in sentence(row)
    assert gpuwatch.analyze(V1_TRACE).clocks.empty  # no in-band clock: no line


def test_probe_option_is_checked(tmp_path):
    with pytest.raises(UsageError, match="probe takes True, False or None"):
        gpuwatch.session("sim:t4", tmp_path / "a.parquet", probe="yes")
    for bad in (-1, "5", True, float("nan"), 1e9):
        with pytest.raises(UsageError, match=r"probe_every_ms \(--probe-every\) takes milliseconds"):
            gpuwatch.session("sim:t4", tmp_path / "a.parquet", probe_every_ms=bad)
    with gpuwatch.session("standin", tmp_path / "b.parquet") as s:  # on by default, as on a GPU
        s.infer(lambda: None)
    opts = gpuwatch.load(tmp_path / "b.parquet").meta["options"]
    assert opts["probe"] is True and opts["probe_every_ms"] == 5.0 and "probe_error" not in opts
    with gpuwatch.session("sim:t4", tmp_path / "c.parquet") as s:  # the sim: every region
        s.infer(lambda: None)
    assert gpuwatch.load(tmp_path / "c.parquet").meta["options"]["probe_every_ms"] == 0.0


def test_a_default_probe_that_cannot_start_is_off_and_says_why(tmp_path, monkeypatch, capsys):
    """On by default, a probe that cannot start (no NVRTC on a driver-only machine) leaves the
    recording going without it, with the reason in the metadata and on stderr; asked for
    explicitly, it is refused with the fix."""
    from gpuwatch.bindings.probe import ProbeError

    def no_nvrtc(self):
        raise ProbeError("the clock probe needs NVRTC from cuda-python")
    monkeypatch.setattr(standin.StandInRuntime, "start_probe", no_nvrtc)
    with gpuwatch.session("standin", tmp_path / "d.parquet") as s:
        for _ in range(5):
            s.infer(lambda: None)
    tr = gpuwatch.load(tmp_path / "d.parquet")
    assert tr.meta["options"]["probe"] is False
    assert "needs NVRTC" in tr.meta["options"]["probe_error"]
    assert tr.measured()["sm_clock_inband_mhz"].isna().all() and len(tr.measured()) == 5
    assert "the in-band SM clock probe is off: the clock probe needs NVRTC" in \
        capsys.readouterr().err
    with pytest.raises(UsageError, match="could not start.*--no-probe"):
        gpuwatch.session("standin", tmp_path / "e.parquet", probe=True).__enter__()


@pytest.mark.parametrize("sleep_s,every_ms,lo,hi", [
    (0.0003, 3.0, 0.01, 0.12),  # short regions: about one in 10 ms / 0.3 ms
    (0.004, 3.0, 0.25, 0.45),  # 4 ms regions: one in three (10 ms of them)
    (0.0003, 0.0, 1.0, 1.0),  # 0: every region
])
def test_stamps_are_sampled_by_time_and_region_time(tmp_path, sleep_s, every_ms, lo, hi):
    """A region is stamped once probe_every_ms has passed since the last stamped one began and
    the regions since lasted ~10 ms (region.PROBE_REGION_NS): a share of them, the stamped ones
    reading the clock, the others NA (never a guess)."""
    with gpuwatch.session("standin", tmp_path / "s.parquet", probe_every_ms=every_ms,
                          sampler="off") as s:
        for _ in range(120):
            s.infer(time.sleep, sleep_s)
    inf = gpuwatch.load(tmp_path / "s.parquet").measured()
    got = inf["sm_clock_inband_mhz"]
    assert lo <= got.notna().mean() <= hi, got.notna().mean()
    assert (got.dropna() == standin.SM_CLOCK_MHZ).all()


# -- the real-GPU probe (bindings/probe.py) on the stand-in driver: the C launch, the mapped
# slots, the markers, on CPU. Its stamp "kernel" runs at launch and counts 1000 cycles per us.

def _standin_session(tmp_path, name="p.parquet", **setup):
    s = gpuwatch.session("standin", tmp_path / name, probe=True, sampler="off",
                         probe_every_ms=0)
    rt = s.__enter__()._backend.runtime
    for k, v in setup.items():
        setattr(rt, k, v)
    return s, rt


@pytest.mark.parametrize("native", [True, False])
def test_real_probe_path_reads_the_stand_in_clock(tmp_path, monkeypatch, native):
    if not native:  # cuLaunchKernel by ctypes instead of gpuwatch/regions/_native.c
        monkeypatch.setattr("gpuwatch.bindings.cuda.native_module", lambda: None)
    elif gpuwatch.bindings.cuda.native_module() is None:
        pytest.skip("the C extension was not built here")
    with gpuwatch.session("standin", tmp_path / "p.parquet", probe=True, probe_every_ms=0) as s:
        for _ in range(50):
            s.infer(time.sleep, 0.0003)
    inf = gpuwatch.load(tmp_path / "p.parquet").measured()
    assert len(inf) == 50 and (inf["sm_clock_inband_mhz"] == standin.SM_CLOCK_MHZ).all()
    # the stamps bracket the events: >= the 0.3 ms the call slept, and the event time within
    assert (inf["gpu_ms"] >= 0.3).all()


def test_no_block_on_sm0_gives_na_not_another_sms_clock(tmp_path):
    s, rt = _standin_session(tmp_path, probe_sm0=False)
    for _ in range(20):
        s.infer(lambda: None)
    s.__exit__(None, None, None)
    inf = gpuwatch.load(tmp_path / "p.parquet").measured()
    assert len(inf) == 20 and inf["sm_clock_inband_mhz"].isna().all()
    assert inf["gpu_ms"].notna().all()


def test_a_stamp_not_yet_run_is_waited_for_not_guessed(tmp_path, monkeypatch):
    from gpuwatch.bindings import probe as probe_mod

    s, rt = _standin_session(tmp_path, probe_deferred=True)
    slot = rt.probe(0)
    assert rt.read_probe(slot) is None  # not run: resolution leaves the region outstanding
    monkeypatch.setattr(probe_mod, "WAIT_S", 0.05)
    with pytest.raises(probe_mod.ProbeError, match="did not run within"):
        rt.read_probe(slot, wait=True)
    rt.run_stamps()
    t, cycles = rt.read_probe(slot)
    assert cycles == t * standin.SM_CLOCK_MHZ // 1000
    rt.probe_deferred = False
    s.__exit__(None, None, None)


def test_a_failed_probe_launch_keeps_the_row_and_says_why(tmp_path):
    s, rt = _standin_session(tmp_path)
    s.infer(lambda: None)
    rt.probe_status = 700  # CUDA_ERROR_ILLEGAL_ADDRESS
    with pytest.raises(Exception, match="CUresult 700"):
        s.infer(lambda: None)
    rt.probe_status = 0
    s.__exit__(None, None, None)
    inf = gpuwatch.load(tmp_path / "p.parquet").inferences
    assert len(inf) == 2 and inf["error"].iloc[1].startswith("ProbeError")


def test_unstamped_regions_borrow_the_nearest_stamp_labelled_as_such(tmp_path):
    """merge lends a region without a stamp the in-band clock of the nearest stamped region
    within NEAR_STAMP_NS, labelled "in-band, nearest stamp"; the raw column stays NA; beyond
    that distance the region keeps NVML's clock."""
    from gpuwatch.analysis.merge import NEAR_STAMP_NS, _nearest_stamp

    with gpuwatch.session("standin", tmp_path / "n.parquet", probe_every_ms=3.0) as s:
        for _ in range(100):
            s.infer(time.sleep, 0.0003)
    m = merge(gpuwatch.load(tmp_path / "n.parquet"))
    m = m[(m["kind"] == "inference") & ~m["warmup"].astype(bool)]
    lent = m["sm_clock_source"] == "in-band, nearest stamp"
    assert lent.sum() > 20 and m.loc[lent, "sm_clock_inband_mhz"].isna().all()
    assert (m.loc[lent, "sm_clock_mhz_mean"] == standin.SM_CLOCK_MHZ).all()
    ms = 1_000_000
    start = np.array([0, 2, 4, 30, 60]) * ms
    end = start + ms
    inband = np.array([1500.0, np.nan, 1700.0, np.nan, np.nan])
    vals, near = _nearest_stamp(start, end, inband)
    assert list(near) == [False, True, False, True, True]
    assert vals[1] == 1500.0 and vals[3] == vals[4] == 1700.0  # (equal: the earlier stamp)
    far = _nearest_stamp(start * 200, end * 200, inband)[1]  # 200 ms and more away: none
    assert list(far) == [False, False, False, False, False]
    cond = pd.Series(["a", "a", "a", "b", "b"])  # only within its own condition
    assert list(_nearest_stamp(start, end, inband, cond)[1]) == [False, True, False, False, False]
    assert NEAR_STAMP_NS == 100 * ms


def test_the_stamp_period_in_regions_follows_the_latest_region_time():
    from gpuwatch.regions.timer import RegionTimer

    t = RegionTimer.__new__(RegionTimer)
    t._probe_region_ns, t.last_ms = 10_000_000, None
    assert t._stamp_regions() == 1  # (nothing resolved yet)
    for ms, n in ((0.7, 15), (3.3, 4), (12.0, 1), (float("nan"), 1), (1e-6, 10_000)):
        t.last_ms = ms
        assert t._stamp_regions() == n, ms
    t._probe_region_ns = 0
    assert t._stamp_regions() == 0


def test_a_ctrl_c_inside_the_stand_in_launch_is_raised_not_dropped(tmp_path, monkeypatch):
    """The stand-in's "driver" is Python called through ctypes: a Ctrl-C landing there would be
    printed and dropped by ctypes, and the launch read as a failed one (CUresult garbage).
    It comes out of probe() as the KeyboardInterrupt it is (seen once in CI: two presses on
    `gpuwatch run` exited 1 with a ProbeError instead of 130)."""
    s, rt = _standin_session(tmp_path)
    try:
        def interrupted() -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(rt, "run_stamps", interrupted)
        with pytest.raises(KeyboardInterrupt):
            rt.probe(0)
        monkeypatch.undo()
        assert rt.read_probe(rt.probe(0), wait=True) is not None  # (and it works on after)
    finally:
        s.__exit__(None, None, None)
