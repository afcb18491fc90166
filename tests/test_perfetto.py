"""The Perfetto / Chrome trace-event export (issue 17): one timeline with the kernels and copies
on their CUDA streams, the inferences, the analysis's conditions and episodes, and the telemetry
counters, one process per trace and GPU. Every document is checked against the trace-event
format first (validate), then for its content, on traces the simulated GPU records."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

import gpuwatch
from gpuwatch.renderers import PerfettoRenderer
from gpuwatch.renderers import perfetto as pf

PHASES = {"X", "C", "M", "i"}  # what the renderer writes
META = {"process_name", "thread_name", "process_sort_index", "thread_sort_index"}
OWN_TRACK = "gpuwatch's own records (region CUDA events, clock probes)"
H100_FIXTURE = Path(__file__).parent / "data" / "h100_small_gap0_20_fixture.parquet"


# -- traces ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def streams_trace(tmp_path_factory):
    """Three engines on three streams of one simulated GPU, kernels recorded; two of them are
    launched back to back before either is waited for, so their inferences overlap."""
    out = tmp_path_factory.mktemp("pf") / "streams.parquet"
    a = gpuwatch.engine("builtin:small", "sim:flat")
    b = gpuwatch.engine("builtin:small@300", "sim:flat")
    with gpuwatch.session("sim:flat", out, kernels=True) as s:
        c = s.engine()
        s.set_condition("gap=2ms", 2.0)
        for _ in range(30):
            a.infer()
            b.infer()
            a.synchronize()
            b.synchronize()
            c.infer()
            c.synchronize()
            s.wait(2)
    return s.trace


@pytest.fixture(scope="module")
def episode_trace(tmp_path_factory):
    """sim:flat at a 20 ms gap with another process on the GPU from 4 s to 8 s: an episode
    that comes and goes (tests/test_attribution_bounds.py), with the kernel timeline."""
    out = tmp_path_factory.mktemp("pf") / "episode.parquet"
    with gpuwatch.session("sim:flat,fault=cotenant@4+4", out, kernels=True) as s:
        e = s.engine()
        s.set_condition("gap=20ms", 20.0)
        for _ in range(600):
            e.infer()
            e.synchronize()
            s.wait(20)
    return s.trace


def render(analysis) -> dict:
    text = PerfettoRenderer().render(analysis)
    return json.loads(text)


def own_mask(kernels):
    """Rows of a kernels table that are not the program's GPU work: gpuwatch's own (region
    CUDA events and clock probes) and the program's waits ("sync", not drawn)."""
    return (kernels["kind"].isin(pf.OWN_KINDS) | kernels["name"].isin(pf.OWN_KERNEL_NAMES)
            | (kernels["kind"] == "sync")).to_numpy(bool)


# -- the format --------------------------------------------------------------------------------
def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate(doc) -> list[dict]:
    """Check `doc` against the trace-event format as this renderer uses it, and return its
    events: each event's fields and types, names for every process and every slice's track,
    distinct process names, and slices that nest on each track (never a partial overlap)."""
    assert isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list)
    events = doc["traceEvents"]
    assert events
    procs: dict[int, str] = {}
    threads: dict[tuple[int, int], str] = {}
    used_pids, x_tracks = set(), set()
    for e in events:
        assert e["ph"] in PHASES, e
        assert type(e["pid"]) is int and type(e["tid"]) is int, e
        assert isinstance(e["name"], str) and e["name"], e
        if e["ph"] == "M":
            assert e["name"] in META, e
            if e["name"] in ("process_name", "thread_name"):
                name = e["args"]["name"]
                assert isinstance(name, str) and name, e
                if e["name"] == "process_name":
                    assert e["pid"] not in procs, f"pid {e['pid']} named twice"
                    procs[e["pid"]] = name
                else:
                    threads[(e["pid"], e["tid"])] = name
            else:
                assert type(e["args"]["sort_index"]) is int, e
            continue
        assert _num(e["ts"]) and e["ts"] >= 0, e
        used_pids.add(e["pid"])
        if e["ph"] == "X":
            assert _num(e["dur"]) and e["dur"] >= 0, e
            assert isinstance(e.get("args", {}), dict)
            x_tracks.add((e["pid"], e["tid"]))
        elif e["ph"] == "C":
            assert isinstance(e["args"], dict) and e["args"], e
            assert all(_num(v) for v in e["args"].values()), e
        elif e["ph"] == "i":
            assert e["s"] in ("g", "p", "t"), e
    assert used_pids <= set(procs), f"pids with no process_name: {used_pids - set(procs)}"
    assert x_tracks <= set(threads), f"tracks with no thread_name: {x_tracks - set(threads)}"
    assert len(set(procs.values())) == len(procs), "two processes share a name"
    # slices on one track nest or follow each other (in integer ns, as a viewer reads them)
    by_track = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            s = round(e["ts"] * 1000)
            by_track[(e["pid"], e["tid"])].append((s, s + round(e["dur"] * 1000)))
    for track, spans in by_track.items():
        open_ends: list[int] = []
        for s, t in sorted(spans, key=lambda x: (x[0], -x[1])):
            while open_ends and open_ends[-1] <= s:
                open_ends.pop()
            assert not open_ends or t <= open_ends[-1], (
                f"track {threads[track]!r}: slice {s}-{t} ns overlaps one ending at "
                f"{open_ends[-1]} without nesting in it")
            open_ends.append(t)
    return events


def names(events, what="thread_name") -> dict:
    return {(e["pid"], e["tid"]) if what == "thread_name" else e["pid"]: e["args"]["name"]
            for e in events if e["ph"] == "M" and e["name"] == what}


def origin_ns(doc, ti=0) -> int:
    return doc["otherData"]["traces"][ti]["t0_ns"]


# -- content -----------------------------------------------------------------------------------
def test_every_kernel_is_on_its_own_streams_track(streams_trace):
    tr = streams_trace
    doc = render(gpuwatch.analyze(tr))
    ev = validate(doc)
    threads = names(ev)
    k = tr.kernels
    own = own_mask(k)
    work = k[~own]
    assert len(work) == 3 * 30 * 24 and work["stream_id"].nunique() == 3
    kernels = [e for e in ev if e["ph"] == "X" and e["cat"] in ("kernel", "memcpy", "memset")
               and threads[(e["pid"], e["tid"])] != OWN_TRACK]
    assert len(kernels) == len(work)
    # one track per stream, named by it, holding exactly that stream's kernels
    per_track = Counter(threads[(e["pid"], e["tid"])] for e in kernels)
    assert per_track == {f"CUDA stream {sid}" + " (timed regions)": n
                         for sid, n in work.groupby("stream_id").size().items()}
    assert all(e["args"]["stream"] == int(threads[(e["pid"], e["tid"])].split()[2])
               for e in kernels)
    # gpuwatch's own records (region start/end events, clock probes) on a track of their own
    mine = [e for e in ev if e["ph"] == "X" and threads.get((e["pid"], e["tid"])) == OWN_TRACK]
    assert len(mine) == int((own & (k["kind"] != "sync").to_numpy()).sum()) > 0
    assert {e["name"] for e in mine} == {"region start event", "region end event",
                                         "gpuwatch_clock_probe"}
    # times: integer ns from the trace's origin, written exactly in microseconds
    t0 = origin_ns(doc)
    first = work.sort_values("start_ns").iloc[0]
    e = min(kernels, key=lambda e: e["ts"])
    assert round(e["ts"] * 1000) == int(first["start_ns"]) - t0
    assert round(e["dur"] * 1000) == int(first["end_ns"]) - int(first["start_ns"])


def test_inferences_overlapping_on_two_streams_get_lanes(streams_trace):
    tr = streams_trace
    ev = validate(render(gpuwatch.analyze(tr)))  # (validate: slices nest on every track)
    threads = names(ev)
    inf = [e for e in ev if e["ph"] == "X" and e["cat"] == "inference"]
    rows = tr.inferences
    assert len(inf) == int(((rows["kind"] == "inference") & rows["start_ns"].notna()
                            & rows["end_ns"].notna()).sum()) == 90
    lanes = Counter(threads[(e["pid"], e["tid"])] for e in inf)
    assert set(lanes) == {"inferences", "inferences, lane 2"}  # a and b ran at the same time
    assert lanes["inferences, lane 2"] >= 25
    host = [e for e in ev if e["ph"] == "X" and e["cat"] == "host"]
    assert len(host) == 90 and {e["name"] for e in host} <= {"host", "host enqueue"}
    process = names(ev, "process_name")
    assert process == {1000: f"trace 0: {tr.path.name}, GPU 0 (Simulated GPU (locked clocks))"}


def test_an_episode_and_the_conditions_are_on_the_timeline(episode_trace):
    tr = episode_trace
    a = gpuwatch.analyze(tr)
    ep = a.verdicts[a.verdicts["episode"].notna()]
    assert len(ep) == 1
    ep = ep.iloc[0]
    doc = render(a)
    ev = validate(doc)
    threads = names(ev)
    slices = [e for e in ev if e["ph"] == "X" and e["cat"] == "episode"]
    # the events' episode, and each of the latency the user sees (call -> result), on one track
    wall = [e for e in slices if e["name"].startswith("call -> result episode")]
    wv = a.wall_verdicts
    assert len(wall) == int(wv["start_ns"].notna().sum()) if "start_ns" in wv else not wall
    for e, (_, v) in zip(wall, wv[wv["start_ns"].notna()].iterrows()):
        assert e["args"]["sentence"] == v["sentence"] and e["args"]["latency"] == "call -> result"
        assert round(e["dur"] * 1000) == pytest.approx(v["end_ns"] - v["start_ns"], abs=1000)
    slices = [e for e in slices if e not in wall]
    assert len(slices) == 1
    s = slices[0]
    assert threads[(s["pid"], s["tid"])] == "episodes (analysis)"
    assert s["name"] == f"episode: {ep['cause_code']}"
    assert (s["args"]["first_iter"], s["args"]["last_iter"]) == (ep["first_iter"],
                                                                 ep["last_iter"])
    assert s["args"]["sentence"] == ep["sentence"]
    # mapped to time through the inferences: the first one's GPU start, the last one's end
    m = a.merged[(a.merged["kind"] == "inference") & ~a.merged["warmup"].astype(bool)]
    first = m[m["iteration"] == ep["first_iter"]].iloc[0]
    last = m[m["iteration"] == ep["last_iter"]].iloc[0]
    t0 = origin_ns(doc)
    assert round(s["ts"] * 1000) == int(first["start_ns"]) - t0
    assert round((s["ts"] + s["dur"]) * 1000) == pytest.approx(int(last["end_ns"]) - t0, abs=1)
    # the whole condition, with its verdict, on its own track; it contains the episode
    cond = [e for e in ev if e["ph"] == "X" and e["cat"] == "condition"]
    assert len(cond) == 1 and cond[0]["args"]["sentence"] == a.verdicts.iloc[0]["sentence"]
    assert cond[0]["ts"] <= s["ts"] and s["ts"] + s["dur"] <= cond[0]["ts"] + cond[0]["dur"]
    # and the other tracks of one timeline: kernels, inferences, telemetry
    cats = Counter(e.get("cat") for e in ev if e["ph"] == "X")
    assert cats["kernel"] == int((~own_mask(tr.kernels)).sum()) and cats["inference"] == 600
    counters = {e["name"] for e in ev if e["ph"] == "C"}
    assert {"SM clock (MHz)", "power (W)", "SM clock, in-band, per inference (MHz)"} <= counters


def test_a_layered_condition_marks_its_jump_and_stable_iterations(t4_sweep):
    a = gpuwatch.analyze(t4_sweep)
    ev = validate(render(a))
    marks = [e for e in ev if e["ph"] == "X" and e["cat"] == "layers"]
    lay = a.layers[a.layers["layered"]]
    assert len(lay) >= 1 and len(marks) == 2 * len(lay)
    want = {f"jump (layer onset): iteration {int(r.onset_iter)}" for r in lay.itertuples()} | {
        f"stable (final plateau): iteration {int(r.stable_iter)}" for r in lay.itertuples()}
    assert {e["name"] for e in marks} == want


def test_two_traces_are_two_processes_with_distinct_names(streams_trace, episode_trace):
    for traces in ((streams_trace, episode_trace), (episode_trace, episode_trace)):
        doc = render(gpuwatch.analyze(*traces))
        ev = validate(doc)  # (validate: no two processes share a name)
        process = names(ev, "process_name")
        assert len(process) == 2
        assert sorted(process.values())[0].startswith(f"trace 0: {traces[0].path.name}, GPU 0")
        assert sorted(process.values())[1].startswith(f"trace 1: {traces[1].path.name}, GPU 0")
        per_pid = Counter(e["pid"] for e in ev if e["ph"] == "X" and e["cat"] == "inference")
        assert sorted(per_pid.values()) == sorted((90, 600) if traces[0] is streams_trace
                                                  else (600, 600))
    # recorded at other times, each trace starts at 0; recorded together, they share one
    origins = [t["t0_ns"] for t in doc["otherData"]["traces"]]
    assert origins[0] == origins[1]


def test_traces_recorded_at_other_times_each_start_at_zero(streams_trace):
    """A trace recorded on an H100 days before the simulated one: each starts at ts 0, and
    otherData keeps each one's origin (Unix epoch ns)."""
    doc = render(gpuwatch.analyze(H100_FIXTURE, streams_trace))
    ev = validate(doc)
    o = [t["t0_ns"] for t in doc["otherData"]["traces"]]
    assert o[1] - o[0] > 3600 * 10**9
    firsts = {pid: min(e["ts"] for e in ev if e["ph"] != "M" and e["pid"] == pid)
              for pid in names(ev, "process_name")}
    assert sorted(firsts) == [1000, 2000] and list(firsts.values()) == [0, 0]
    process = names(ev, "process_name")
    assert process[1000] == ("trace 0: h100_small_gap0_20_fixture.parquet, GPU 0 "
                             "(NVIDIA H100 80GB HBM3)")


def test_long_telemetry_is_decimated_and_says_so(episode_trace, monkeypatch):
    s = episode_trace.samples
    power = s["power_w"].to_numpy(float)
    changes = int(np.count_nonzero(np.diff(power))) + 1
    monkeypatch.setattr(pf, "MAX_COUNTER_POINTS", 200)
    assert changes > 200
    ev = validate(render(gpuwatch.analyze(episode_trace)))
    pts = [e["args"]["power_w"] for e in ev if e["ph"] == "C" and e["name"] == "power (W)"]
    assert 100 <= len(pts) <= 204
    assert max(pts) == np.nanmax(power) and min(pts) == np.nanmin(power)  # spikes kept
    note = [e for e in ev if e["ph"] == "i" and e["name"] == "gpuwatch: power (W) decimated"]
    assert len(note) == 1 and note[0]["s"] == "p"
    assert note[0]["args"]["changes"] == changes and note[0]["args"]["points"] == len(pts)
    # a counter with few changes is left whole
    sm = [e for e in ev if e["ph"] == "C" and e["name"] == "SM clock (MHz)"]
    assert 0 < len(sm) < 200


def test_times_are_exact_decimal_microseconds():
    assert pf._us(0) == "0" and pf._us(1) == "0.001" and pf._us(1_000) == "1"
    assert pf._us(1_795_664_533_580_244_321) == "1795664533580244.321"
    assert pf._us(-1_500) == "-1.500"


def test_write_streams_the_same_document(streams_trace, tmp_path):
    a = gpuwatch.analyze(streams_trace)
    out = PerfettoRenderer().write(a, tmp_path / "t.json")
    assert out.read_text() == PerfettoRenderer().render(a)


def test_the_command_line_exports_the_kernels(streams_trace, tmp_path):
    out = tmp_path / "t.json"
    r = subprocess.run([sys.executable, "-m", "gpuwatch.analyze", str(streams_trace.path),
                        "--perfetto", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ev = validate(json.loads(out.read_text()))
    assert sum(e["ph"] == "X" and e["cat"] == "kernel" for e in ev) == int(
        (~own_mask(streams_trace.kernels)).sum())


def test_perfetto_trace_processor_reads_it(streams_trace, tmp_path):
    """Perfetto's own importer, where its Python package and trace_processor binary are
    available (set TRACE_PROCESSOR_SHELL to a binary where it cannot be downloaded)."""
    tp_mod = pytest.importorskip("perfetto.trace_processor")
    path = tmp_path / "t.json"
    PerfettoRenderer().write(gpuwatch.analyze(streams_trace), path)
    shell = os.environ.get("TRACE_PROCESSOR_SHELL")
    try:
        config = {"config": tp_mod.TraceProcessorConfig(bin_path=shell)} if shell else {}
        tp = tp_mod.TraceProcessor(trace=str(path), **config)
    except Exception as e:  # no binary here and none can be downloaded
        pytest.skip(f"trace_processor is not available: {type(e).__name__}: {e}")
    try:
        rows = tp.query("""
            select thread.name as track, count(*) as n from slice
            join thread_track on slice.track_id = thread_track.id
            join thread using (utid) group by thread.name""").as_pandas_dataframe()
        n = dict(zip(rows["track"], rows["n"]))
        work = streams_trace.kernels[~own_mask(streams_trace.kernels)]
        for sid, count in work.groupby("stream_id").size().items():
            assert n[f"CUDA stream {sid} (timed regions)"] == count
        assert n["inferences"] + n["inferences, lane 2"] == 90
        procs = tp.query("select name from process where name like 'trace %'"
                         ).as_pandas_dataframe()
        assert list(procs["name"]) == [
            f"trace 0: {streams_trace.path.name}, GPU 0 (Simulated GPU (locked clocks))"]
        errors = tp.query("select name, value from stats where severity in ('error', 'data_loss')"
                          " and value > 0").as_pandas_dataframe()
        assert errors.empty, errors
    finally:
        tp.close()
