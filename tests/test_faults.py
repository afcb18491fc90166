"""Faults injected through the simulated GPU (sim:PROFILE,fault=...): NVML errors, a lost GPU,
fields that stop being supported, a sticky CUDA error. Each time the sampler goes on or stops
cleanly, the error is in the trace, and no inference is lost."""

from __future__ import annotations

import pytest

import gpuwatch
from gpuwatch.bindings.sim import SimCudaError, SimFault
from gpuwatch.errors import UsageError


def run(tmp_path, device: str, seconds: float = 3.0, gap_ms: float = 20.0, **kw) -> gpuwatch.Trace:
    """Infer every `gap_ms` for `seconds` of virtual time; the trace."""
    out = tmp_path / "f.parquet"
    with gpuwatch.session(device, out, **kw) as s:
        e = s.engine()
        t_end = s.clock.now_ns() + int(seconds * 1e9)
        while s.clock.now_ns() < t_end:
            e.infer()
            s.wait(gap_ms)
    return s.trace


def seconds_since_start(tr: gpuwatch.Trace, t_ns):
    return (t_ns - tr.meta["started_ns"]) / 1e9


def test_nvml_timeouts_are_recorded_and_sampling_resumes(tmp_path):
    tr = run(tmp_path, "sim:t4,fault=timeout@1+0.5")
    ev = tr.events
    msgs = list(ev["message"])
    # each failed read, until 100 in a row; then one read a second until NVML answers again
    assert msgs.count("SimNVMLError: Timeout") == 100
    assert "GPU 0 failed 100 reads in a row: retrying every 1 s" in msgs
    assert "GPU 0 reads again after 100 failed reads" in msgs
    t = seconds_since_start(tr, tr.samples["t_ns"])
    assert not ((t > 1.01) & (t < 1.49)).any()  # no readings while NVML timed out
    assert (t > 2.2).sum() > 700  # and sampling went on after it, at the full rate
    assert tr.meta["status"] == "complete" and tr.meta["sampler"]["errors"] == 100
    assert tr.measured()["iteration"].is_monotonic_increasing  # every inference is there
    assert len(tr.measured()) == len(tr.inferences) > 100


def test_a_lost_gpu_stops_its_sampling_cleanly_and_inference_data_is_kept(tmp_path):
    tr = run(tmp_path, "sim:t4,fault=gpu_lost@1")
    msgs = list(tr.events.loc[tr.events["kind"] == "error", "message"])
    assert msgs.count("SimNVMLError: GPU is lost") == 100
    assert msgs[-1] == "stopped sampling GPU 0 after 100 consecutive errors"
    assert seconds_since_start(tr, tr.samples["t_ns"]).max() < 1.0
    inf_t = seconds_since_start(tr, tr.inferences["t_ns"])
    assert inf_t.max() > 2.9 and tr.meta["status"] == "complete"


def test_unknown_errors_are_recorded_with_nvmls_message(tmp_path):
    tr = run(tmp_path, "sim:t4,fault=unknown@0.5+0.1", seconds=1.0)
    assert (tr.events["message"] == "SimNVMLError: Unknown Error").sum() in range(95, 106)


def test_fields_that_stop_being_supported_read_na_and_say_so(tmp_path):
    tr = run(tmp_path, "sim:t4,fault=not_supported@1+0.5")
    smp = tr.samples
    t = seconds_since_start(tr, smp["t_ns"])
    inside = smp[(t > 1.01) & (t < 1.49)]
    assert len(inside) > 400 and inside["sm_clock_mhz"].isna().all()  # NA, never 0
    assert smp.loc[t > 1.51, "sm_clock_mhz"].notna().all()
    warn = tr.events[tr.events["kind"] == "warning"]["message"]
    assert "sm_clock_mhz reads NA from here (NVML: not supported)" in set(warn)
    assert "sm_clock_mhz reads again" in set(warn)


def run_into_a_sticky_error(out, synchronize: bool) -> None:
    """Inference every 20 ms until a sticky CUDA error (injected at 1 s) stops the program."""
    with pytest.raises(SimCudaError, match="ILLEGAL_ADDRESS"):
        with gpuwatch.session("sim:t4,fault=cuda_error@1", out) as s:
            e = s.engine()
            for _ in range(1000):
                e.infer()
                if synchronize:
                    e.synchronize()
                s.wait(20)


def test_a_sticky_cuda_error_in_user_code_leaves_a_valid_trace(tmp_path):
    out = tmp_path / "c.parquet"
    run_into_a_sticky_error(out, synchronize=True)
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "failed" and "ILLEGAL_ADDRESS" in tr.meta["error"]
    inf = tr.inferences
    assert inf["error"].notna().sum() == 1 and inf["error"].iloc[-1].startswith("SimCudaError")
    assert inf["gpu_ms"].iloc[:-1].notna().all() and len(inf) > 30
    assert len(tr.samples) > 1000  # telemetry kept coming until the session closed


def test_regions_not_yet_resolved_when_the_gpu_fails_are_kept_with_the_error(tmp_path):
    """No synchronisation in the program: regions are resolved lazily, and a sticky error
    leaves the outstanding ones unreadable. Their rows are written all the same."""
    out = tmp_path / "c.parquet"
    run_into_a_sticky_error(out, synchronize=False)
    inf = gpuwatch.load(out).inferences
    bad = inf["error"].notna()
    assert 1 <= bad.sum() <= 17  # the failing one, and at most a batch not yet resolved
    assert bad.iloc[-bad.sum():].all() and inf["gpu_ms"][~bad].notna().all()
    assert inf["iteration"].tolist() == list(range(len(inf)))


def test_a_fault_on_another_gpu_drops_only_that_gpu(tmp_path):
    tr = run(tmp_path, "sim:t4,gpus=4,fault=gpu_lost@1/3", sample_gpus="all", seconds=2.0)
    last = tr.samples.groupby("gpu")["t_ns"].max().map(lambda t: seconds_since_start(tr, t))
    assert last[3] < 1.0 and (last[[0, 1, 2]] > 1.9).all()
    assert (tr.events["message"] == "stopped sampling GPU 3 after 100 consecutive errors").any()


@pytest.mark.parametrize("spec, words", [
    ("sim:t4,fault=melt@1", "KIND one of gpu_lost, timeout"),
    ("sim:t4,fault=timeout", "KIND@START"),
    ("sim:t4,fault=timeout@x", "START and DURATION are seconds"),
    ("sim:t4,fault=timeout@1+0", "duration > 0"),
    ("sim:t4,fault=gpu_lost@1/4", "only 1"),
    ("sim:t4,colour=red", "bad sim option"),
])
def test_bad_fault_specs_are_usage_errors(tmp_path, spec, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace("+", r"\+")):
        gpuwatch.session(spec, tmp_path / "x.parquet").start()


def test_fault_windows():
    f = SimFault.parse("timeout@2+0.5/1")
    assert (f.kind, f.start_s, f.duration_s, f.gpu) == ("timeout", 2.0, 0.5, 1)
    assert not f.active(1.99) and f.active(2.0) and f.active(2.49) and not f.active(2.5)
    assert SimFault.parse("gpu_lost@3").active(1e9)


def test_a_gpu_failing_at_start_still_leaves_a_trace_saying_why(tmp_path):
    out = tmp_path / "s.parquet"
    with pytest.raises(SimCudaError):
        with gpuwatch.session("sim:t4,fault=cuda_error@0", out):
            pass
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "failed" and "ILLEGAL_ADDRESS" in tr.meta["error"]
    assert gpuwatch.recorder.active() is None
