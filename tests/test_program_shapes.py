"""gpuwatch from every kind of program a user writes, each run as a real subprocess: a script
with no `__main__` guard, `python -c`, `python -m pkg`, programs that use multiprocessing (fork,
spawn, forkserver), a Jupyter kernel. Each must record with the separate sampler process and
never run the user's code twice; if the sampler process cannot start, the session samples from
a thread, says so in one line and in the trace.

On a machine without a GPU the programs record on the stand-in device (`GPUWATCH_DEVICE=
standin`: the real-GPU code path, process sampler included, with a stand-in telemetry source).
On the GPU machine, `GPUWATCH_SHAPES_DEVICE=auto` runs the same programs on the real GPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gpuwatch

DEVICE = os.environ.get("GPUWATCH_SHAPES_DEVICE", "standin")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("GPUWATCH_DEVICE", None)
    if DEVICE != "auto":
        e["GPUWATCH_DEVICE"] = DEVICE
    return e


# The body every program runs: a session at module level, as people write quick experiments.
BODY = """
import os, sys, time
import gpuwatch
print("BODY RAN", os.getpid(), flush=True)

def work(ms):
    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        pass
    return ms

with gpuwatch.session(out=OUT, sample_hz=500) as s:
    for i in range(20):
        assert s.infer(work, 1.0) == 1.0
        time.sleep(0.01)
"""


def run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def check(out: Path, r: subprocess.CompletedProcess[str], regions: int = 20,
          sampler: str = "process") -> gpuwatch.Trace:
    assert r.stdout.count("BODY RAN") == 1, r.stdout  # the user's code ran once, only once
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "complete"
    assert tr.meta["sampler"]["mode"] == sampler, tr.meta["sampler"]
    if sampler == "process":
        assert "warning" not in r.stderr, r.stderr
        assert tr.meta["sampler"]["pid"] not in (None, os.getpid())
    assert len(tr.samples) >= 50  # 0.3 s or more at 500 Hz
    inf = tr.measured()
    assert len(inf) == regions and inf["gpu_ms"].between(0.5, 50).all()
    return tr


def test_a_script_without_a_main_guard(tmp_path):
    out = tmp_path / "t.parquet"
    script = tmp_path / "quick.py"
    script.write_text(f"OUT = {str(out)!r}\n" + BODY)
    check(out, run([sys.executable, str(script)], tmp_path))


def test_python_dash_c(tmp_path):
    out = tmp_path / "t.parquet"
    check(out, run([sys.executable, "-c", f"OUT = {str(out)!r}\n" + BODY], tmp_path))


def test_python_dash_m_package(tmp_path):
    out = tmp_path / "t.parquet"
    pkg = tmp_path / "myapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(f"OUT = {str(out)!r}\n" + BODY)
    check(out, run([sys.executable, "-m", "myapp"], tmp_path))


def test_an_unguarded_script_that_set_the_spawn_start_method(tmp_path):
    """The start method a program chose for its own multiprocessing is not gpuwatch's."""
    out = tmp_path / "t.parquet"
    script = tmp_path / "spawny.py"
    script.write_text(f"import multiprocessing as mp\nmp.set_start_method('spawn')\n"
                      f"OUT = {str(out)!r}\n" + BODY)
    check(out, run([sys.executable, str(script)], tmp_path))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_program_that_uses_multiprocessing(tmp_path, method):
    """A pool of workers running while the session records (and started inside it)."""
    out = tmp_path / "t.parquet"
    script = tmp_path / "pool.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing as mp, os, sys, time
        import gpuwatch

        def square(v):
            return v * v

        def work(ms):
            end = time.perf_counter() + ms / 1e3
            while time.perf_counter() < end:
                pass

        if __name__ == "__main__":
            print("BODY RAN", os.getpid(), flush=True)
            ctx = mp.get_context({method!r})
            with gpuwatch.session(out={str(out)!r}, sample_hz=500) as s:
                with ctx.Pool(2) as pool:
                    for i in range(20):
                        s.infer(work, 1.0)
                        assert pool.map(square, [i, i + 1]) == [i * i, (i + 1) ** 2]
                        time.sleep(0.01)
    """))
    check(out, run([sys.executable, str(script)], tmp_path))


def test_a_jupyter_kernel(tmp_path):
    """A notebook: the code runs in an IPython kernel, whose __main__ is no file at all."""
    pytest.importorskip("ipykernel")
    jc = pytest.importorskip("jupyter_client")
    out = tmp_path / "t.parquet"
    km = jc.KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(tmp_path), env=env())
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        seen: list[str] = []

        def collect(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                seen.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                seen.append("ERROR " + "\n".join(msg["content"]["traceback"]))

        for cell in (f"OUT = {str(out)!r}", BODY, "print('cells done')"):
            reply = kc.execute_interactive(cell, timeout=120, output_hook=collect)
            assert reply["content"]["status"] == "ok", "".join(seen)
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    text = "".join(seen)
    assert "cells done" in text and "warning" not in text, text
    fake = subprocess.CompletedProcess([], 0, stdout=text, stderr="")
    check(out, fake)


def test_the_sampler_falls_back_to_a_thread_when_its_process_cannot_start(tmp_path):
    """An interpreter nobody can start again (frozen apps, odd embeddings): never crash, never
    hang; sample from a thread, print one warning line, and say why in the trace."""
    out = tmp_path / "t.parquet"
    script = tmp_path / "frozen.py"
    script.write_text(f"import sys\nsys.executable = '/nonexistent/python'\nOUT = {str(out)!r}\n"
                      + BODY)
    r = run([sys.executable, str(script)], tmp_path)
    warnings = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("gpuwatch: warning: sampling from a "
                                                         "thread"), r.stderr
    tr = check(out, r, sampler="thread")
    assert tr.meta["sampler"]["requested"] == "process"
    assert "/nonexistent/python" in tr.meta["sampler"]["fallback"]


def test_a_child_forked_during_a_session_is_not_part_of_it(tmp_path):
    """A forked child (a multiprocessing worker, say) records nothing and dies of SIGTERM as
    it would without gpuwatch (Pool.terminate() sends it). Unwinding through Python's exit
    code instead made a fork pool's shutdown hang now and then."""
    out = tmp_path / "t.parquet"
    script = tmp_path / "forks.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, time, gpuwatch
        print("BODY RAN", flush=True)
        with gpuwatch.session(out={str(out)!r}, sample_hz=500) as s:
            for _ in range(20):
                s.infer(time.sleep, 0.002)
            pid = os.fork()
            if pid == 0:
                ok = gpuwatch.recorder.active() is None
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                os._exit(3)
            _, status = os.waitpid(pid, 0)
            print("child", os.WIFSIGNALED(status) and os.WTERMSIG(status), flush=True)
            time.sleep(0.3)
    """))
    r = run([sys.executable, str(script)], tmp_path)
    assert f"child {int(signal.SIGTERM)}" in r.stdout, r.stdout + r.stderr
    check(out, r)
