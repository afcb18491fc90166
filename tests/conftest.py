"""Shared fixtures: recorded sim traces (made once per test run), a leak check, and `impl`,
the region engine a test runs on (the C code and its Python reference, each in turn)."""

from __future__ import annotations

import fcntl
import os
import re
import threading
from pathlib import Path
from typing import Callable

import pytest

import gpuwatch
import gpuwatch.recorder as session_mod
from tests.helpers import record_sim


def _run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of this test run that every xdist worker shares."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # (each worker's base is popen-gwN/ in the run's own)
    d = root / "shared"
    d.mkdir(exist_ok=True)
    return d


def shared(tmp_path_factory: pytest.TempPathFactory, name: str,
           make: Callable[[Path], object]) -> gpuwatch.Trace:
    """The trace `make(path)` records, made once per test run: the first xdist worker to ask
    records it, the others wait for it and load the same file (a session fixture is otherwise
    made again in every worker: ~10 s of CPU each for the sim sweeps below)."""
    d = _run_dir(tmp_path_factory)
    path = d / name
    with open(d / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # (released when the file closes)
        if not path.exists():
            # made under another name, renamed only when whole: a recording that failed
            # raises here, and in each worker that asks after it, not a broken trace to share
            tmp = d / f"making-{os.getpid()}-{name}"
            make(tmp)
            os.replace(tmp, path)
    return gpuwatch.load(path)


@pytest.fixture(scope="session")
def t4_sweep(tmp_path_factory: pytest.TempPathFactory) -> gpuwatch.Trace:
    """The seed's setting on the simulated T4: 800 iterations at gaps 0, 20 and 50 ms."""
    return shared(tmp_path_factory, "t4_sweep.parquet",
                  lambda p: record_sim(p, gaps=(0.0, 20.0, 50.0)))


@pytest.fixture(scope="session")
def flat_trace(tmp_path_factory: pytest.TempPathFactory) -> gpuwatch.Trace:
    return shared(tmp_path_factory, "flat.parquet",
                  lambda p: record_sim(p, profile="flat", gaps=(0.0, 20.0)))


ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first (a stable reorder, the same in every xdist worker): spread over
    the workers from the start, they do not leave one worker finishing alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def gpu_tests_run_alone(request: pytest.FixtureRequest,
                        tmp_path_factory: pytest.TempPathFactory):
    """A test marked `gpu` runs alone: under xdist, the other workers finish the test they are
    in and wait until it is done. Its timing checks (anchor uncertainty, overlap kept, the
    probe outside the events, the cost over a bare loop) assume a GPU no other test launches
    work on (8 workers sharing one H100 failed 6 of them) and CPUs no other test keeps busy
    (with GPU tests one at a time but CPU tests beside them, a pipelined program's overlap
    and a stream-handle ratio still failed on the H100).
    A readers-writer lock on two files the run's workers share: every other test holds
    `run.lock` shared; a GPU test holds it exclusively, and `gate.lock` while it waits and
    runs, so that tests starting meanwhile queue behind it instead of starving it."""
    d = _run_dir(tmp_path_factory)
    alone = request.node.get_closest_marker("gpu") is not None
    with open(d / "gate.lock", "w") as gate, open(d / "run.lock", "w") as run:
        fcntl.flock(gate, fcntl.LOCK_EX)  # (released when the files close)
        try:
            fcntl.flock(run, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:  # (a shared holder lets the next test through the gate at once)
                fcntl.flock(gate, fcntl.LOCK_UN)
        yield


@pytest.fixture(autouse=True)
def no_leftover_recording():
    """Fail any test that leaves a session open or a sampler thread running, or that writes a
    trace under its default name into the repository (run such a command in tmp_path)."""
    before = set(ROOT.glob("gpuwatch-*.parquet*"))
    yield
    leftover = session_mod.active()
    if leftover is not None:  # (closed first: a later check failing must not leave it open)
        leftover.close(status="failed", error="left open by a test")
    threads = [t.name for t in threading.enumerate()
               if t.name.startswith("gpuwatch-") and t.is_alive()]
    # (under xdist, a file another worker's test wrote at the same moment is seen here too:
    # the message names the file, whoever wrote it)
    stray = set(ROOT.glob("gpuwatch-*.parquet*")) - before
    for p in stray:
        p.unlink() if p.is_file() else None
    assert not stray, f"test wrote {sorted(p.name for p in stray)} into the repository"
    assert leftover is None, "test left a gpuwatch session recording"
    assert not threads, f"test left gpuwatch threads running: {threads}"


@pytest.fixture(scope="session")
def t4_analysis(t4_sweep):
    return gpuwatch.analyze(t4_sweep)


@pytest.fixture(scope="session")
def cause_traces(tmp_path_factory):
    """Sim profiles whose slow-down has a known cause other than clocks (or none)."""
    return {p: shared(tmp_path_factory, f"cause_{p}.parquet",
                      lambda path, p=p: record_sim(path, profile=p, gaps=(0.0, 20.0), iters=300))
            for p in ("flat", "cold", "hostbound")}


@pytest.fixture(scope="session")
def kernel_traces(tmp_path_factory):
    """The same causes, recorded with the kernel timeline."""
    return {p: shared(tmp_path_factory, f"kernels_{p}.parquet",
                      lambda path, p=p: record_sim(path, profile=p, gaps=(0.0, 20.0),
                                                   iters=300, kernels=True))
            for p in ("t4", "cold", "hostbound")}


@pytest.fixture(params=["c", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The region engine a test runs on, each in turn: regions/_native.c's (skipped where it
    was not built) and its Python reference (GPUWATCH_NATIVE=0, which a subprocess inherits):
    the timed call, open/close, the hooks of `gpuwatch run`, the event calls."""
    if request.param == "c":
        pytest.importorskip("gpuwatch.regions._native")
        monkeypatch.delenv("GPUWATCH_NATIVE", raising=False)
    else:
        monkeypatch.setenv("GPUWATCH_NATIVE", "0")
    return request.param


@pytest.fixture(scope="module")
def torch():
    """PyTorch with a CUDA GPU (the GPU tests), or the test is skipped."""
    t = pytest.importorskip("torch")
    if not t.cuda.is_available():
        pytest.skip("PyTorch sees no GPU")
    return t


def sentence_shares(text: str) -> list[float]:
    """Every percentage a verdict sentence states (each must lie within 0..100)."""
    return [float(v) for v in re.findall(r"(-?\d+(?:\.\d+)?)%", text)]


def signal_episodes(a: gpuwatch.Analysis, code: str):
    """The call -> result verdicts found from a cause's own signal (analysis.signals) that name
    `code`, costliest (extra ms x iterations) first."""
    w = a.wall_verdicts
    if "found_from" not in w:
        return w.iloc[:0]
    w = w[(w["cause_code"] == code) & w["found_from"].notna()]
    return w.assign(cost=w["extra_ms"] * w["iterations"]).sort_values("cost", ascending=False)
