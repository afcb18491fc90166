"""Real-GPU tests of timing a user's own code: the stream contract, detection of work the events
do not bracket, the whole-device mode, pipelines, program shapes. Each timing claim is checked
against the simplest correct measurement: torch CUDA events on the same stream, interleaved in
one process. Skipped where there is no NVIDIA GPU or no PyTorch; `python -m pytest -m gpu`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import gpuwatch
from gpuwatch.backends import _nvml_probe

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(_nvml_probe() is not None, reason="no NVIDIA GPU here")]



@pytest.fixture(scope="module")
def models(torch):
    from gpuwatch.bindings.torch import convnet

    net, x = convnet()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.half)

    def matmul(m):
        return m @ m

    with torch.inference_mode():
        for _ in range(5):
            net(x)
            matmul(a)
    torch.cuda.synchronize()
    return {"matmul 8192 fp16": (matmul, a), "convnet fp16": (net, x)}


def bare_ms(torch, fn, x, n, stream=None):
    """The bare loop: events on the stream the work goes on (torch's current one unless
    given), synchronise, elapsed time."""
    stream = stream or torch.cuda.current_stream()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for _ in range(n):
        e0.record(stream)
        fn(x)
        e1.record(stream)
        e1.synchronize()
        out.append(e0.elapsed_time(e1))
    return out


def interleaved(torch, fn, x, tmp_path, n=120, **infer_kw):
    """The bare loop and s.infer, alternating every iteration in one session (so both see the
    same clocks and the same host); returns the per-iteration ratios (gpuwatch / bare) and
    the trace."""
    bare = []
    with torch.inference_mode(), gpuwatch.session(out=tmp_path / "t.parquet") as s:
        for _ in range(n):
            s.infer(fn, x, **infer_kw)
            torch.cuda.current_stream().synchronize()
            bare += bare_ms(torch, fn, x, 1)
    ours = s.trace.measured().sort_values("iteration")["gpu_ms"].to_numpy()
    return ours / np.asarray(bare), s.trace


@pytest.mark.parametrize("which", ["matmul 8192 fp16", "convnet fp16"])
def test_a_model_on_torchs_current_stream_is_timed_as_bare_events_time_it(torch, models,
                                                                       tmp_path, which):
    """The trap this replaces: events on a private stream timed an 8192^2 matmul at 2% of its
    real time. Now s.infer(model, x) agrees with bare torch events within 2%."""
    fn, x = models[which]
    ratio, tr = interleaved(torch, fn, x, tmp_path)
    assert abs(np.median(ratio) - 1) < 0.02, ratio
    inf = tr.measured()
    assert set(inf["stream_source"]) == {"torch"} and set(inf["stream"]) == {0}
    from gpuwatch.analysis.outside import outside_work

    flags = outside_work(inf).dropna()
    assert len(flags) >= 3 and not flags.any()  # nothing ran outside the events
    assert (inf["outside_ms"].dropna() < 0.1).all()  # (wake-up and mapping: 35-55 us seen)


def test_a_model_on_its_own_torch_stream_and_every_kind_of_stream_handle(torch, models,
                                                                       tmp_path):
    from cuda.bindings import driver

    fn, x = models["convnet fp16"]
    st = torch.cuda.Stream()

    def on_st(v):
        with torch.cuda.stream(st):
            return fn(v)

    handles = {"torch": st, "int": st.cuda_stream, "cuda-python": driver.CUstream(st.cuda_stream)}
    try:
        import cupy

        handles["cupy"] = cupy.cuda.ExternalStream(st.cuda_stream)
    except ImportError:
        pass
    bare: dict[str, list[float]] = {}
    with torch.inference_mode(), gpuwatch.session(out=tmp_path / "h.parquet") as s:
        for kind in ["current", *handles]:  # each one alternating with the bare loop
            s.set_condition(kind)
            bare[kind] = []
            for i in range(80):
                first = i % 2  # who goes first alternates: the first call after switching
                for arm in ((0, 1) if first else (1, 0)):  # streams may pay for it
                    if kind == "current":  # torch's current stream is the user's: found
                        with torch.cuda.stream(st):
                            if arm == 0:
                                s.infer(fn, x)
                                st.synchronize()
                            else:
                                bare[kind] += bare_ms(torch, fn, x, 1)
                    elif arm == 0:  # the call switches streams itself, inside
                        s.infer(on_st, x, stream=handles[kind])
                        st.synchronize()
                    else:
                        bare[kind] += bare_ms(torch, on_st, x, 1, stream=st)
    inf = s.trace.measured()
    assert (inf["stream"] == st.cuda_stream).all()
    assert set(inf.loc[inf["condition"] == "current", "stream_source"]) == {"torch"}
    # Single iterations of this launch-bound net vary by 2x on the lent VM (one run's
    # per-iteration ratios for "current" spanned 0.19-8.5): compare the two arms' medians.
    for kind, g in inf.groupby("condition"):
        ours, theirs = g["gpu_ms"].iloc[5:].median(), np.median(bare[kind][5:])
        assert abs(ours / theirs - 1) < 0.03, (kind, ours, theirs)


def test_work_outside_the_timed_stream_is_detected_and_device_mode_times_it(torch, models,
                                                                         tmp_path):
    fn, a = models["matmul 8192 fp16"]
    side = torch.cuda.Stream()  # torch makes its streams non-blocking: not ordered with 0

    def elsewhere(m):
        with torch.cuda.stream(side):
            return fn(m)

    # The bare loop alternates with the timed calls: sustained 8192^2 GEMMs move the clock
    # (the power management: 1.42 ms early, up to 1.65 ms later, seen on the H100; 1.50 ms
    # in the first condition, 1.70 ms in the second, 2026-12-07), so only measurements taken
    # side by side compare: each condition with its own bare calls.
    bares: dict[str, list[float]] = {"current stream": [], "device": []}
    with torch.inference_mode(), gpuwatch.session(out=tmp_path / "o.parquet",
                                                  check_every=2) as s:
        s.set_condition("current stream")
        for _ in range(20):
            bares["current stream"] += bare_ms(torch, elsewhere, a, 1, stream=side)
            s.infer(elsewhere, a)  # events on stream 0; the work on `side`
            torch.cuda.synchronize()
        s.set_condition("device")
        for _ in range(20):
            bares["device"] += bare_ms(torch, elsewhere, a, 1, stream=side)
            s.infer(elsewhere, a, stream="device")
            torch.cuda.synchronize()
    bare, bare_dev = np.median(bares["current stream"]), np.median(bares["device"])
    inf = s.trace.measured()
    cur = inf[inf["condition"] == "current stream"]
    assert cur["gpu_ms"].median() < 0.2 * bare  # the events bracket (almost) nothing...
    out = cur["outside_ms"].dropna()
    assert len(out) >= 10 and (out > 0.5 * bare).all()  # ...and the checks say so
    dev = inf[inf["condition"] == "device"]
    assert set(dev["stream_source"]) == {"device"}
    # the whole device, from before the call to the device going idle: the host's launch and
    # a synchronisation's wake-up are in it too (+86 us on a 1.54 ms matmul seen)
    assert bare_dev * 0.98 < dev["gpu_ms"].median() < bare_dev * 1.10
    from gpuwatch.analysis.merge import merge
    from gpuwatch.analysis.outside import note, stream_checks

    table = stream_checks(merge(s.trace), s.trace.kernels, 0)  # what analyze() reports
    row = table.set_index("condition").loc["current stream"]
    assert row["outside_share"] > 0.9
    assert "outside the timed stream" in note(table)


def test_a_pipelined_program_keeps_its_overlap(torch, models, tmp_path):
    """Inference N+1 is enqueued before post-processing N (host work) waits for N: the GPU and
    the host overlap. A profiler that synchronised each region would serialise them."""
    fn, a = models["matmul 8192 fp16"]
    post_s = 1.2e-3  # host post-processing, about the matmul's GPU time

    def pipeline(n, s=None):
        t0 = time.perf_counter()
        prev = None
        for _ in range(n):
            y = s.infer(fn, a) if s is not None else fn(a)
            done = torch.cuda.Event()
            done.record()
            if prev is not None:
                prev.synchronize()
                end = time.perf_counter() + post_s
                while time.perf_counter() < end:
                    pass
            prev = done
            del y
        torch.cuda.synchronize()
        return n / (time.perf_counter() - t0)

    # Both arms run inside one session, alternating, after a warm-up: a session's start (0.45 s
    # of GPU idle, the first regions' one-off costs) made a fresh session per pair 2% slower
    # than the bare arm at the median on a lent H100, and the process's first one 12-17%; the
    # steady state is what overlap is about (benchmarks/results/h100_issue31/rerun_d74d17b).
    ratios = []
    with torch.inference_mode(), gpuwatch.session(out=tmp_path / "p.parquet") as s:
        pipeline(20, s)
        pipeline(20)
        for i in range(8):  # (one pair's ratio spreads 0.95-1.11 under the GPU's power
            # management; the median of eight is the claim: 0.98-1.01 in 3 runs, 0.996 over
            # 16 pairs. Serialised regions would give ~0.55)
            if i % 2:
                without = pipeline(100)
                with_s = pipeline(100, s)
            else:
                with_s = pipeline(100, s)
                without = pipeline(100)
            ratios.append(with_s / without)
    assert len(s.trace.measured()) == 20 + 8 * 100
    print("pipelined with/without:", [round(r, 4) for r in ratios])
    assert np.median(ratios) > 0.96, ratios


_SCRIPT = """
import sys, torch, gpuwatch
print("module body ran", flush=True)
model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU()).cuda().half()
x = torch.randn(64, 1024, device="cuda", dtype=torch.half)
with gpuwatch.session(out=sys.argv[1]) as s:
    for _ in range(50):
        s.infer(model, x)
        torch.cuda.synchronize()
"""


@pytest.mark.parametrize("how", ["script", "python -c"])
def test_an_unguarded_program_records_with_the_sampler_process(torch, tmp_path, how):
    out = tmp_path / "u.parquet"
    if how == "script":
        path = tmp_path / "unguarded.py"
        path.write_text(_SCRIPT)
        cmd = [sys.executable, str(path), str(out)]
    else:
        cmd = [sys.executable, "-c", _SCRIPT, str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("module body ran") == 1 and "warning" not in r.stderr
    tr = gpuwatch.load(out)
    inf = tr.measured()
    assert len(inf) == 50 and (inf["gpu_ms"] > 0).all()
    # the sampler process read the GPU all through the program (~0.1 s: ~100 samples at 1 kHz;
    # the last one up to a period before the session closed)
    t = tr.samples["t_ns"]
    assert tr.meta["sampler"]["mode"] == "process" and len(t) > 20
    assert t.min() <= inf["start_ns"].min() + 5_000_000
    assert t.max() >= inf["end_ns"].max() - 5_000_000


def test_the_readme_line_literally(torch, tmp_path):
    """`with gpuwatch.session(): engine.infer(x)`: an engine made before the session."""
    engine = gpuwatch.engine("builtin:small")
    engine.infer()  # no session: runs untimed
    engine.synchronize()
    with gpuwatch.session(out=tmp_path / "r.parquet"):
        for _ in range(5):
            engine.infer()
            engine.synchronize()
    model = gpuwatch.timed(models_small := torch.nn.Linear(256, 256).cuda())
    x = torch.randn(8, 256, device="cuda")
    with gpuwatch.session(out=tmp_path / "m.parquet") as s2:
        model(x)
        torch.cuda.synchronize()
    inf = gpuwatch.load(tmp_path / "r.parquet").measured()
    assert len(inf) == 5 and set(inf["name"]) == {"builtin:small"}
    assert set(inf["stream_source"]) == {"engine"} and inf["gpu_ms"].between(3, 10).all()
    assert inf["host_end_ns"].notna().all()  # engine.synchronize() says when the host knew
    assert len(s2.trace.measured()) == 1 and models_small.weight.shape == (256, 256)
    engine.close()


def test_a_program_that_uses_multiprocessing_spawn(torch, tmp_path):
    out = tmp_path / "mp.parquet"
    path = tmp_path / "mp_prog.py"
    path.write_text(textwrap.dedent("""
        import multiprocessing as mp, sys, torch, gpuwatch

        def square(v):
            return v * v

        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            with ctx.Pool(2) as pool, gpuwatch.session(out=sys.argv[1]) as s:
                x = torch.randn(256, 256, device="cuda")
                for i in range(5):
                    s.infer(torch.matmul, x, x)
                    assert pool.map(square, [i]) == [i * i]
                torch.cuda.synchronize()
            print("done", flush=True)
    """))
    r = subprocess.run([sys.executable, str(path), str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "done" in r.stdout, r.stderr
    tr = gpuwatch.load(out)
    assert tr.meta["sampler"]["mode"] == "process" and len(tr.measured()) == 5
