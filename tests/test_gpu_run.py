"""`gpuwatch run` on a real GPU: an ordinary PyTorch program (benchmarks/run_app.py), profiled
unmodified, against a `record --torch` run of the same model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpuwatch
from tests.helpers import gw

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.gpu


def _gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


@pytest.mark.skipif(not _gpu(), reason="no NVIDIA GPU with PyTorch here")
def test_an_unmodified_torch_program_is_found_and_explained_like_record(tmp_path):
    out = tmp_path / "run.parquet"
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-q", "-o", str(out),
                        str(ROOT / "benchmarks" / "run_app.py"), "300", "0.02"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    tr = gpuwatch.load(out)
    inf = tr.inferences
    # 20 warm-up calls + 300 back to back + 300 after 20 ms gaps; one region per model call
    assert (inf["name"] == "call:Sequential").all() and len(inf) == 620
    assert (inf["stream_source"] == "torch").all()
    m = tr.measured()
    gaps = m.groupby("condition")["gap_ms"].median()
    assert gaps.filter(like="gap 5-50").iloc[0] == pytest.approx(20, abs=5)
    assert (m["condition"] == "gap 5-50 ms").sum() == 300
    rec = tmp_path / "rec.parquet"
    r2 = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--torch",
                         "benchmarks.run_app:make", "--gap", "0,20", "--iters", "300", "-q",
                         "-o", str(rec)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    ours = m[m["condition"] == "gap 5-50 ms"]["gpu_ms"].median()
    theirs = gpuwatch.load(rec).measured().query("condition == 'gap=20ms'")["gpu_ms"].median()
    assert ours == pytest.approx(theirs, rel=0.15)  # the same model, the same gap
    print(json.dumps({"run_gap20_p50_ms": ours, "record_gap20_p50_ms": theirs}))


def _run(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / f"{len(list(tmp_path.iterdir()))}.parquet"
    r = gw("run", "-q", "-o", out, *argv, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, out


@pytest.mark.skipif(not _gpu(), reason="no NVIDIA GPU with PyTorch here")
def test_nvtx_ranges_of_an_unmodified_program_are_its_inferences(tmp_path):
    # torch.cuda.nvtx.range around each call: the ranges win over the module calls inside
    _, out = _run(tmp_path, str(ROOT / "benchmarks" / "run_app.py"), "100", "0.02", "nvtx")
    inf = gpuwatch.load(out).inferences
    # the 20 warm-up calls are not marked: they are module calls
    assert (inf["name"] == "nvtx:infer").sum() == 200
    assert (inf["name"] == "call:Sequential").sum() == 20
    assert (inf["stream_source"] == "torch").all() and inf["error"].isna().all()
    _, out2 = _run(tmp_path, "--regions", "calls", str(ROOT / "benchmarks" / "run_app.py"),
                   "100", "0.02", "nvtx")
    calls = gpuwatch.load(out2).measured()
    marked = gpuwatch.load(out).measured()
    gap = marked[(marked["name"] == "nvtx:infer") & (marked["gap_ms"] > 15)]["gpu_ms"].median()
    ref = calls[calls["gap_ms"] > 15]["gpu_ms"].median()
    assert gap == pytest.approx(ref, rel=0.15)  # the same work, timed either way


@pytest.mark.skipif(not _gpu(), reason="no NVIDIA GPU with PyTorch here")
def test_kernel_bursts_of_an_unmodified_program(tmp_path):
    pytest.importorskip("cupti")
    from gpuwatch.kernelregions import bursts

    app = str(ROOT / "benchmarks" / "run_app.py")
    # 1. the same inferences timed both ways in one run: --kernels with the calls as regions
    # (auto: the calls win, no bursts are made), bursts computed here from its kernel trace
    _, out = _run(tmp_path, "--kernels", app, "100", "0.02")
    tr = gpuwatch.load(out)
    calls = tr.measured()
    calls = calls[calls["gap_ms"] > 15]
    # a sleep before 99 of the 100 (the first follows the back-to-back ones); a host hiccup
    # of over 15 ms among those may add one
    assert 99 <= len(calls) <= 101
    k = tr.kernels[tr.kernels["kind"].isin(["kernel", "memcpy", "memset"])]
    s, e, _, _ = bursts(k["start_ns"].to_numpy(), k["end_ns"].to_numpy(), 1_000_000)
    # each inference after a sleep is one burst, inside its events
    i = s.searchsorted(calls["start_ns"].to_numpy())
    ok = (i < len(s)) & (e[i.clip(0, len(s) - 1)] <= calls["end_ns"].to_numpy() + 50_000)
    assert ok.mean() >= 0.9
    span = (e[i[ok]] - s[i[ok]]) / 1e6 / calls["gpu_ms"].to_numpy()[ok]
    assert 0.8 < float(np.median(span)) <= 1.0
    # 2. the program on its own: bursts as the regions
    _, out2 = _run(tmp_path, "--regions", "kernels", app, "100", "0.02")
    tr2 = gpuwatch.load(out2)
    inf = tr2.inferences
    after = inf[inf["gap_ms"] > 15]
    # one after each of the 99 sleeps; a few more where tracing stalled the host over the
    # burst gap inside an inference (README)
    assert 99 <= len(after) <= 115, inf[["gap_ms", "gpu_ms"]].describe()
    assert after["name"].value_counts().iloc[0] >= 90  # they begin with the same kernel
    assert tr2.meta["regions_found"] == {"kernels": len(inf)}
    assert tr2.meta["kernel_trace"]["host_cost"]["callbacks"] > 0
