"""Real-GPU tests: skipped where NVML finds no NVIDIA GPU (CI, developer machines).
Run on the GPU machine with `python -m pytest -m gpu`."""

import subprocess
import sys

import numpy as np
import pytest

import gpuwatch
from gpuwatch.backends import _nvml_probe

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(_nvml_probe() is not None, reason="no NVIDIA GPU here")]


def test_nvml_reads_real_telemetry():
    from gpuwatch.bindings.nvml import NvmlTelemetry

    t = NvmlTelemetry(0)
    r = t.read(costly=True)
    assert 100 <= r["sm_clock_mhz"] <= 4000 and 100 <= r["mem_clock_mhz"] <= 20000
    assert 0 <= r["pstate"] <= 15
    assert r["power_w"] is None or 1 < r["power_w"] < 2000
    assert t.info.uuid.startswith("GPU-") and t.info.driver_version
    cheap = t.read(costly=False)
    assert "sm_clock_mhz" in cheap and "temperature_c" not in cheap
    costs = t.query_costs_us()
    assert 0 < costs["sm_clock_mhz"] < 1000  # microseconds
    for name, why in t.unsupported().items():
        assert why and name in gpuwatch.fields.FIELDS_BY_NAME


def test_builtin_engine_computes_the_right_values():
    from gpuwatch.bindings.builtin import PRESETS, BuiltinEngine
    from gpuwatch.bindings.cuda import CudaRuntime

    rt = CudaRuntime(0)
    try:
        s = rt.stream()
        for graph in (False, True):
            eng = BuiltinEngine(rt, s, PRESETS["small"], cuda_graph=graph)
            assert eng.check() < 1e-3
    finally:
        rt.close()


def _pre_infer_post_at_5ms(out, **session_options) -> gpuwatch.Trace:
    """100 x (preprocess, infer, postprocess, 5 ms gap) with builtin:small on GPU 0."""
    with gpuwatch.session("cuda:0", out, **session_options) as s:
        e = s.engine("builtin:small")
        s.set_condition("gap=5ms", gap_ms=5)
        for _ in range(100):
            e.preprocess()
            e.infer()
            e.postprocess()
            e.synchronize()
            s.wait(5)
    return gpuwatch.load(out)


@pytest.mark.parametrize("sampler", ["thread", "process"])
def test_session_on_the_gpu(tmp_path, sampler):
    tr = _pre_infer_post_at_5ms(tmp_path / "real.parquet", sampler=sampler)
    assert tr.simulated is False and tr.meta["status"] == "complete"
    inf = tr.measured()
    assert len(inf) == 100 and (inf["gpu_ms"] > 0.5).all()
    assert len(tr.inferences.query("kind == 'span'")) == 200
    smp = tr.samples
    assert smp["sm_clock_mhz"].notna().mean() > 0.99
    assert tr.meta["sampler"]["mode"] == sampler
    assert tr.meta["sampler"]["achieved_hz"] > 500
    tb = tr.meta["timebase"]
    assert tb["anchor_uncertainty_us_p50"] < 50
    assert tb["reanchor_drift_us_max"] < 50  # skew-corrected event -> host mapping
    # Inferences lie inside the sampled window, on the same time base.
    assert smp["t_ns"].min() < inf["start_ns"].min() and smp["t_ns"].max() > inf["end_ns"].max()
    start = inf["start_ns"].to_numpy(np.int64)
    assert (np.diff(start) > 0).all()


def test_torch_module_eager_and_graph(tmp_path):
    pytest.importorskip("torch")
    with gpuwatch.session("cuda:0", tmp_path / "t.parquet", sampler="thread") as s:
        for graph in (False, True):
            e = s.engine("torch:gpuwatch.bindings.torch:convnet", cuda_graph=graph)
            for _ in range(20):
                e.infer()
    inf = s.trace.inferences
    assert set(inf["name"]) == {"torch:gpuwatch.bindings.torch:convnet",
                                "torch:gpuwatch.bindings.torch:convnet+graph"}
    assert (inf["gpu_ms"] > 0.05).all()


def test_torch_pre_post_processing_and_factory_options(tmp_path):
    pytest.importorskip("torch")
    spec = "torch:gpuwatch.bindings.torch:convnet,depth=large,size=640x384"
    with gpuwatch.session("cuda:0", tmp_path / "t.parquet", sampler="thread") as s:
        for graph in (False, True):
            e = s.engine(spec, cuda_graph=graph)
            for _ in range(10):
                e.preprocess()
                e.infer()
                probs = e.postprocess()
            s.wait(0)
            import torch

            torch.cuda.synchronize()
            assert abs(float(probs.sum()) - 1.0) < 1e-3  # the softmax made it to the host
    inf = s.trace.inferences
    assert set(inf.loc[inf["kind"] == "span", "name"]) == {"preprocess", "postprocess"}
    assert (inf["gpu_ms"] > 0).all() and len(inf) == 60
    assert e.example.shape[-2:] == (384, 640)


def test_record_cli_on_the_gpu(tmp_path):
    out = tmp_path / "cli.parquet"
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--gap", "0,5", "--iters", "50",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "gap=5ms" in r.stdout and "simulated" not in r.stdout
    assert len(gpuwatch.load(out).measured()) == 100


def test_record_cli_real_gpu_flags(tmp_path):
    out = tmp_path / "flags.parquet"
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--fps", "100", "--iters", "60",
                        "--cuda-graph", "--pre-post", "--wait", "spin", "--sample-gpus", "all",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    tr = gpuwatch.load(out)
    inf = tr.measured().sort_values("iteration")
    assert set(inf["name"]) == {"builtin:small+graph"}
    period = np.diff(inf["host_start_ns"].to_numpy(np.int64)) / 1e6
    assert np.median(period) == pytest.approx(10.0, abs=0.1)  # spin-waited to 100 fps
    out2 = tmp_path / "torch.parquet"
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--torch",
                        "gpuwatch.bindings.torch:convnet", "--cuda-graph", "--gap", "5",
                        "--iters", "40", "--out", str(out2)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert set(gpuwatch.load(out2).measured()["name"]) == {
        "torch:gpuwatch.bindings.torch:convnet+graph"}


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(not _has("pycuda"), reason="pycuda is not installed")
def test_pycuda_runtime_runs_the_builtin_engine():
    from gpuwatch.bindings.builtin import PRESETS, BuiltinEngine
    from gpuwatch.bindings.pycuda import PycudaRuntime

    rt = PycudaRuntime(0)
    try:
        s = rt.stream()
        for preset in ("small", "large"):
            assert BuiltinEngine(rt, s, PRESETS[preset]).check() < 1e-3
        with pytest.raises(gpuwatch.UsageError, match="use --binding cuda"):
            BuiltinEngine(rt, s, PRESETS["small"], cuda_graph=True)
    finally:
        rt.close()


@pytest.mark.skipif(not _has("pycuda"), reason="pycuda is not installed")
def test_session_with_the_pycuda_binding(tmp_path):
    tr = _pre_infer_post_at_5ms(tmp_path / "pycuda.parquet", binding="pycuda")
    assert tr.meta["options"]["binding"] == "pycuda" and "pycuda" in tr.meta["versions"]
    inf = tr.measured()
    assert len(inf) == 100 and inf["gpu_ms"].between(3, 10).all()
    assert tr.meta["timebase"]["anchor_uncertainty_us_p50"] < 50
    assert tr.meta["timebase"]["reanchor_drift_us_max"] < 50


@pytest.mark.skipif(not _has("tensorrt"), reason="TensorRT is not installed")
def test_tensorrt_engine_built_from_onnx(tmp_path):
    torch = pytest.importorskip("torch")
    from gpuwatch.bindings.torch import convnet

    model, x = convnet()
    onnx = tmp_path / "convnet.onnx"
    torch.onnx.export(model.float(), x.float(), str(onnx), input_names=["images"],
                      output_names=["logits"])
    with gpuwatch.session("cuda:0", tmp_path / "trt.parquet") as s:
        e = s.engine(f"onnx:{onnx}", precision="fp16")
        for _ in range(20):
            e.infer()
        out = e.postprocess()
    assert (tmp_path / "convnet.fp16.plan").is_file()
    assert (tmp_path / "convnet.timing.cache").is_file()
    assert set(out) == {"logits"} and out["logits"].shape == (1, 10)
    assert (s.trace.inferences["gpu_ms"] > 0).all()


@pytest.mark.skipif(not _has("cupti"), reason="cupti-python is not installed")
def test_cupti_kernel_timeline_and_decomposition(tmp_path):
    from gpuwatch.analysis.merge import merge

    with gpuwatch.session("cuda:0", tmp_path / "k.parquet", kernels=True) as s:
        fed, starved = s.engine("builtin:small"), s.engine("builtin:small@200")
        for _ in range(30):
            fed.preprocess()
            fed.infer()
            fed.postprocess()
            fed.synchronize()
            starved.infer()
            starved.synchronize()
    tr = s.trace
    k = tr.kernels
    assert tr.meta["kernel_trace"]["records"] == len(k)
    assert abs(tr.meta["kernel_trace"]["timestamp_offset_ns"]) < 10_000_000  # epoch-based
    assert (k["name"] == "layer").sum() == 60 * 32
    if tr.meta["kernel_trace"]["cuda_event_device_timestamps"] is True:
        ev = k[k["kind"] == "cuda_event"]
        assert len(ev) == 2 * len(tr.inferences)  # every region's start and end event
        merged = merge(tr)
        assert (merged["aligned_by"] == "cuda_event").all()
        # the end event follows the fed engine's last kernel on the GPU's own clock: by a
        # couple of microseconds (2.05-2.30 us p5-p99 on the H100), never before it
        fed_rows = merged[merged["name"] == "builtin:small"]
        work = k[k["kind"] == "kernel"].sort_values("start_ns")
        last = np.searchsorted(work["start_ns"].to_numpy(), fed_rows["end_ns"].to_numpy()) - 1
        gap_us = (fed_rows["end_ns"].to_numpy() - work["end_ns"].to_numpy()[last]) / 1e3
        assert (gap_us >= 0).all() and np.median(gap_us) < 10
    assert {"htod", "dtoh"} <= set(k.loc[k["kind"] == "memcpy", "name"])
    m = merge(tr)
    inf = m[m["kind"] == "inference"]
    assert (inf["kernel_count"] == 32).all()
    g = inf.groupby("name")[["busy_ms", "idle_inside_ms", "first_kernel_delay_ms"]].median()
    assert g.loc["builtin:small", "idle_inside_ms"] < 0.2 * g.loc["builtin:small", "busy_ms"]
    assert g.loc["builtin:small@200", "idle_inside_ms"] > 1.0
    window_ms = (inf["end_ns"] - inf["start_ns"]).to_numpy(dtype=float) / 1e6
    np.testing.assert_allclose(inf["busy_ms"] + inf["idle_inside_ms"], window_ms, atol=1e-3)
    # the window is the event-timed latency, whichever way it was placed (tens of us apart
    # at worst: CUPTI's event timestamps and cuEventElapsedTime are separate measurements)
    np.testing.assert_allclose(window_ms, inf["gpu_ms"], atol=0.1)


_STICKY = r'''
import sys, numpy as np, gpuwatch
from gpuwatch.bindings.cuda import CudaError
SRC = 'extern "C" __global__ void bad(int *p) { p[threadIdx.x] = 1; }'
try:
    with gpuwatch.session("cuda:0", sys.argv[1]) as s:
        e = s.engine("builtin:small")
        for _ in range(20):
            e.infer()
            e.synchronize()
        rt = s._backend.runtime
        fn = rt.compile(SRC, "bad.cu", ["bad"])["bad"]
        k = rt.prepare(fn, (np.uint64, 0x10))  # an illegal address: a sticky error
        s.infer(lambda: rt.launch(k, 1, 32, s.stream), stream=s.stream)
except CudaError as err:
    print("raised", type(err).__name__, err)
'''


def test_a_cuda_error_in_user_code_still_leaves_a_valid_trace(tmp_path):
    """A sticky CUDA error (illegal address) inside a session: the user sees it, and the trace
    keeps every inference before it, the failed one marked, status "failed"."""
    out = tmp_path / "sticky.parquet"
    r = subprocess.run([sys.executable, "-c", _STICKY, str(out)], capture_output=True,
                       text=True, timeout=120)
    assert "raised CudaError" in r.stdout, r.stdout + r.stderr
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "failed" and "ILLEGAL_ADDRESS" in tr.meta["error"]
    inf = tr.inferences
    assert len(inf) == 21 and inf["error"].notna().sum() == 1
    assert inf["gpu_ms"].iloc[:20].notna().all() and len(tr.samples) > 0
