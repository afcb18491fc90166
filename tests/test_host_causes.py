"""The host's own causes made for real on the CPU, as a user's program makes them: a second
Python thread holding the interpreter lock, garbage collection in pre-processing. The stand-in
device runs the real-GPU path with the real host clock and the real sampler process, so the
mechanism is the real one; the H100 fixtures (test_real_causes_wall.py) hold the 10% windows,
these check the cause and that the window overlaps the truth on a loaded 2-core machine."""

import json
import threading
import time

import numpy as np
import pytest

import gpuwatch
from tests.conftest import signal_episodes

# Real time, as tests/test_sim_host_causes.py: another test's busy worker would be a host cause
# of its own; these run after the parallel tests, one at a time, on a worker of their own
# (see docs/install.md).
pytestmark = [pytest.mark.slow, pytest.mark.serial]

# Each run: RUN_S of real time, the cause present from START_S to END_S (1.5 s of baseline
# before it, 1 s after: the signals' blocks are 250 ms, their running median 5 blocks)
RUN_S, START_S, END_S = 5.0, 1.5, 4.0


def busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        pass


def overlap_s(ep, t0, start_s, end_s):
    a, b = (ep["start_ns"] - t0) / 1e9, (ep["end_ns"] - t0) / 1e9
    return min(b, end_s) - max(a, start_s)


def test_another_thread_holding_the_interpreter_lock_is_named(tmp_path):
    stop = threading.Event()
    window = {}

    def logger() -> None:
        big = {f"k{i}": list(range(20)) for i in range(3000)}
        window["start"] = time.time_ns()
        while not stop.is_set():
            json.dumps(big)
        window["end"] = time.time_ns()

    t = threading.Thread(target=logger, name="logger")
    with gpuwatch.session("standin", tmp_path / "t.parquet", sample_hz=200) as s:
        t0 = time.monotonic()
        started = False
        while (now := time.monotonic() - t0) < RUN_S:
            if now >= START_S and not started:
                t.start()
                started = True
            if now >= END_S and not stop.is_set():
                stop.set()
            s.infer(busy, 1.0)
    t.join()
    a = gpuwatch.analyze(s.trace)
    eps = signal_episodes(a, "interpreter_lock")
    assert len(eps), a.wall_verdicts["sentence"].tolist()
    ep = eps.iloc[0]
    assert "thread 'logger'" in ep["sentence"], ep["sentence"]
    inf = s.trace.inferences
    t0_ns = float(inf["host_start_ns"].min())
    truth = ((window["start"] - t0_ns) / 1e9, (window["end"] - t0_ns) / 1e9)
    assert overlap_s(ep, t0_ns, *truth) > 0.5 * (truth[1] - truth[0]), (ep["episode"], truth)
    assert ep["latency"] == "wall" and 0.5 <= ep["share"] <= 1.0


def test_garbage_collection_in_pre_processing_is_named_on_the_span(tmp_path):
    class Box:
        def __init__(self, parent=None):
            self.parent, self.children = parent, []

    kept = []
    with gpuwatch.session("standin", tmp_path / "t.parquet", sample_hz=200) as s:
        t0 = time.monotonic()
        window = [None, None]
        while (now := time.monotonic() - t0) < RUN_S:
            with s.span("preprocess"):
                if START_S <= now < END_S:
                    window[0] = window[0] or time.time_ns()
                    window[1] = time.time_ns()
                    root = Box()
                    for _ in range(300):  # a frame's boxes, each linked back to it: cycles
                        root.children.append(Box(root))
                    kept.append(root)
                    if len(kept) > 50:
                        kept.pop(0)
                busy(0.5)
            s.infer(busy, 0.3)
    a = gpuwatch.analyze(s.trace)
    eps = signal_episodes(a, "garbage_collection")
    eps = eps[eps["engine"] == "span:preprocess"]
    assert len(eps), a.wall_verdicts["sentence"].tolist()
    ep = eps.iloc[0]
    assert "garbage collection inside" in ep["sentence"] and "span preprocess" in ep["sentence"]
    t0_ns = float(s.trace.inferences["host_start_ns"].min())
    truth = ((window[0] - t0_ns) / 1e9, (window[1] - t0_ns) / 1e9)
    assert overlap_s(ep, t0_ns, *truth) > 0.5 * (truth[1] - truth[0]), (ep["episode"], truth)
    gc = s.trace.host_events
    assert (gc["kind"] == "gc").sum() > 10
    # every share of every verdict is physically possible
    for v in list(a.wall_verdicts["share"].dropna()) + list(a.verdicts["share"].dropna()):
        assert 0.0 <= v <= 1.0
    lat = a.latency[a.latency["engine"] == "span:preprocess"]
    assert np.isfinite(lat["gc_ms"]).all()


def _quota_cgroup() -> "tuple[str, str] | None":
    """A fresh cgroup (v1 cpu controller) with 20% of a CPU, and the one to return to; None
    where this machine does not let us make one (no controller, no permission)."""
    import os

    root = "/sys/fs/cgroup/cpu"
    if not os.path.exists(f"{root}/cgroup.procs"):
        return None
    cg = f"{root}/gwtest-{os.getpid()}"
    try:
        os.makedirs(cg, exist_ok=True)
        with open(f"{cg}/cpu.cfs_period_us", "w") as f:
            f.write("100000")
        with open(f"{cg}/cpu.cfs_quota_us", "w") as f:
            f.write("20000")
    except OSError:
        return None
    return cg, root


def test_a_containers_cpu_quota_is_named(tmp_path):
    import os

    import pytest

    made = _quota_cgroup()
    if made is None:
        pytest.skip("cannot make a cgroup with a CPU quota here")
    cg, root = made
    window = [None, None]
    try:
        with gpuwatch.session("standin", tmp_path / "t.parquet", sample_hz=200) as s:
            t0 = time.monotonic()
            inside = False
            while (now := time.monotonic() - t0) < RUN_S:
                if START_S <= now < END_S and not inside:  # this process only (not its sampler)
                    with open(f"{cg}/cgroup.procs", "w") as f:
                        f.write(str(os.getpid()))
                    inside, window[0] = True, time.time_ns()
                elif now >= END_S and inside:
                    with open(f"{root}/cgroup.procs", "w") as f:
                        f.write(str(os.getpid()))
                    inside, window[1] = False, time.time_ns()
                s.infer(busy, 1.0)
    finally:
        with open(f"{root}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
        os.rmdir(cg)
    a = gpuwatch.analyze(s.trace)
    w = a.wall_verdicts
    # A window found from the quota's own signal, or from the waits it causes, overlaps the
    # truth, and in it the quota's part is measured beyond doubt. (How much of the stall it
    # takes varies from run to run: the cgroup's throttled time is summed over its CPUs, and a
    # thread waiting for the interpreter lock of a throttled one shows as blocked.)
    att = a.wall_attribution
    quota = att[(att["factor"] == "cpu_quota") & (att["ci_low_ms"] > 0)]
    eps = w[w["episode"].isin(set(quota["episode"])) & w["start_ns"].notna()] \
        if "start_ns" in w else w.iloc[:0]
    assert len(eps), w["sentence"].tolist()
    ep = eps.assign(cost=eps["extra_ms"] * eps["iterations"]).sort_values("cost").iloc[-1]
    t0_ns = float(s.trace.inferences["host_start_ns"].min())
    truth = ((window[0] - t0_ns) / 1e9, (window[1] - t0_ns) / 1e9)
    assert overlap_s(ep, t0_ns, *truth) > 0.5 * (truth[1] - truth[0]), (ep["episode"], truth)
