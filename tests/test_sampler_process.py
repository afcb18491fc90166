"""The sampler's own process, started with subprocess and an explicit entry point, reading the
stand-in telemetry source (the real-GPU default path, on a machine without a GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import gpuwatch
from gpuwatch.clock import HostClock
from gpuwatch.sampler_process import ProcessSampler, SamplerStartError, helper_command

STANDIN = "gpuwatch.bindings.standin:open_telemetry"


def sample_rows(d: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in d.glob("p*-samples.parquet"))


def test_it_samples_pauses_reports_and_stops(tmp_path):
    p = ProcessSampler(STANDIN, [[0]], HostClock(), tmp_path, hz=500)
    p.start()
    try:
        assert p.pid not in (None, os.getpid())
        time.sleep(0.5)
        assert p.last_sm_clock_mhz == 1000  # the child's latest reading, through shared memory
        if sys.platform == "linux":  # written chunks, and yet no pandas in the child (40 MB)
            deadline = time.monotonic() + 10
            while not sample_rows(tmp_path):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            maps = Path(f"/proc/{p.pid}/maps").read_text()
            assert "pyarrow" in maps and "/pandas/" not in maps
        p.pause()
        time.sleep(0.3)
        p.resume()
        time.sleep(0.3)
    finally:
        p.stop()
    s = p.summary()
    assert s["mode"] == "process" and s["pid"] == p.pid
    assert s["paused_polls"] > 50 and 300 < s["samples"] == sample_rows(tmp_path)
    assert 400 < s["achieved_hz"] < 550
    assert p.last_sm_clock_mhz is None  # closed


def test_a_sampler_that_cannot_open_its_telemetry_says_why_and_leaves_nothing(tmp_path):
    p = ProcessSampler("gpuwatch.bindings.standin:no_such_factory", [[0]], HostClock(),
                       tmp_path, hz=100)
    with pytest.raises(SamplerStartError, match="no_such_factory"):
        p.start()
    assert p._proc is not None and p._proc.poll() is not None  # the child is gone


def test_a_sampler_that_hangs_at_start_is_given_up_on(tmp_path, monkeypatch):
    p = ProcessSampler(STANDIN, [[0]], HostClock(), tmp_path, hz=100, start_timeout_s=0.01)
    with pytest.raises(SamplerStartError, match="did not answer"):
        p.start()
    assert p._proc.poll() is not None


def test_it_stops_by_itself_when_the_recording_process_dies(tmp_path):
    """kill -9 of the program: the sampler keeps what it wrote and exits (EOF on its stdin,
    or a new parent)."""
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from gpuwatch.clock import HostClock
        from gpuwatch.sampler_process import ProcessSampler
        p = ProcessSampler({STANDIN!r}, [[0]], HostClock(), Path({str(tmp_path)!r}), hz=200)
        p.start()
        print(p.pid, flush=True)
        time.sleep(1.5)
        os._exit(9)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 9, r.stderr
    pid = int(r.stdout.split()[0])
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the sampler process outlived its recording process")
    assert sample_rows(tmp_path) > 100  # what it sampled is on disk


def test_helpers_run_this_copy_of_gpuwatch(tmp_path):
    argv, env = helper_command("gpuwatch.sampler_process")
    assert argv[:3] == [sys.executable, "-m", "gpuwatch.sampler_process"]
    root = str(Path(gpuwatch.__file__).resolve().parent.parent)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == root
    r = subprocess.run([*argv[:1], "-c", "import gpuwatch, json; print(json.dumps("
                        "gpuwatch.__file__))"], env=env, cwd=tmp_path, capture_output=True,
                       text=True)
    assert Path(json.loads(r.stdout)).resolve() == Path(gpuwatch.__file__).resolve()


def test_a_session_on_the_stand_in_device_samples_in_a_process(tmp_path):
    with gpuwatch.session("standin", tmp_path / "t.parquet", sample_hz=500) as s:
        for _ in range(20):
            s.infer(time.sleep, 0.005)
    tr = s.trace
    assert tr.simulated and tr.meta["devices"][0]["name"] == "gpuwatch stand-in (no GPU)"
    assert tr.meta["sampler"]["mode"] == "process" and len(tr.samples) > 20
    assert tr.measured()["gpu_ms"].between(5, 30).all()  # the host time of each call
    s_t, i_t = tr.samples["t_ns"], tr.inferences["start_ns"]
    assert s_t.min() < i_t.min() and s_t.max() > i_t.max()  # one time base for both
