"""`gpuwatch run` on a real GPU: an ordinary PyTorch program (benchmarks/run_app.py), profiled
unmodified, against a `record --torch` run of the same model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import gpuwatch

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
