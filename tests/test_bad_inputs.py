"""Bad input, each from issue 16's list: one line naming the problem and the fix, exit status 2
on the CLI and UsageError from the API, and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import gpuwatch
from gpuwatch.errors import TraceFormatError, UsageError
from tests.helpers import gw_here

REC = ["-m", "gpuwatch.record", "--gap", "0", "--iters", "20", "--quiet"]


def _run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m gpuwatch.X ARGS` (argv: -m gpuwatch.X ARGS), run in this process: the
    commands' own checks are the subject (tests/helpers.py)."""
    assert argv[0] == "-m"
    return gw_here(*argv[2:], cwd=tmp_path, module=argv[1])


@pytest.mark.parametrize("args,says", [
    (["--device", "sim:flat", "--seed=-1"], "seed takes a whole number >= 0"),
    (["--device", "sim:flat", "--out", ""], "--out is empty"),
    (["--device", "sim:flat", "--gap", "20,20"], "lists a value twice"),
    (["--device", "sim:flat", "--sample-hz", "1e-9"], "sample rate must be"),
    (["--device", "sim:flat", "--sample-hz", "nan"], "must be a positive number"),
    (["--device", "sim:flat", "--iters", "1e30"], "expected a whole number"),
    (["--device", "sim:"], "names no profile"),
    (["--device", "sim:flat,fault=timeout@nan"], "bad sim fault"),
    (["--device", "sim:flat", "--out", "/proc/x.parquet"], "pick another --out"),
    (["--device", "sim:flat", "--dataset", "/proc"], "pick another --dataset"),
])
def test_record_rejects_with_one_line_and_exit_2(tmp_path, args, says):
    r = _run(tmp_path, *REC, *args)
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    out = d / "t.parquet"
    with gpuwatch.session("sim:flat", out, sample_hz=200) as s:
        for _ in range(60):
            s.infer(lambda: None)
    return out


@pytest.mark.parametrize("args,says", [
    (["--html", "{dir}"], "--html takes a file name"),
    (["--perfetto", "{dir}"], "--perfetto takes a file name"),
    (["--png", "{trace}"], "--png takes a directory"),
    (["--seed=-1"], "--seed takes a whole number"),
])
def test_analyze_rejects_with_one_line_and_exit_2(tmp_path, trace, args, says):
    argv = [a.format(dir=tmp_path, trace=trace) for a in args]
    r = _run(tmp_path, "-m", "gpuwatch.analyze", str(trace), *argv)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_analyze_of_an_empty_path_is_not_the_working_directory(tmp_path):
    r = _run(tmp_path, "-m", "gpuwatch.analyze", "")
    assert r.returncode == 2 and "empty path" in r.stderr


def test_a_report_that_cannot_be_written_is_one_line(tmp_path, trace):
    """(/proc takes no new files, even from root: a stand-in for a read-only filesystem.
    access() says yes to root everywhere: refused before the analysis by trying a file.)"""
    r = _run(tmp_path, "-m", "gpuwatch.analyze", str(trace), "--html", "/proc/r.html")
    assert r.returncode == 2 and "cannot write --html /proc/r.html" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kw,says", [
    ({"seed": "abc"}, "seed takes a whole number"),
    ({"seed": -1}, "seed takes a whole number"),
    ({"seed": True}, "seed takes a whole number"),
    ({"out": 123}, "out takes a file path"),
    ({"out": ""}, "out is empty"),
    ({"sample_hz": float("nan")}, "sample rate"),
])
def test_session_rejects_bad_arguments(tmp_path, kw, says):
    kw = {"out": tmp_path / "t.parquet"} | kw
    with pytest.raises(UsageError, match=says):
        gpuwatch.session("sim:flat", **kw)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("gap", [float("nan"), -1.0, float("inf"), "20"])
def test_set_condition_rejects_impossible_gaps(tmp_path, gap):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        with pytest.raises(UsageError, match="gap_ms takes milliseconds"):
            s.set_condition("x", gap_ms=gap)


@pytest.mark.parametrize("call, says", [
    (lambda s: s.span(5), "span takes a name"),
    (lambda s: s.span("  "), "span takes a name"),
    (lambda s: s.wait("20"), "wait takes 0..3600000 ms"),
    (lambda s: s.wait(True), "wait takes 0..3600000 ms"),
    (lambda s: s.wait(float("nan")), "wait takes 0..3600000 ms"),
    (lambda s: s.wait(5, keepalive_ms="1"), "keepalive_ms takes a number"),
    (lambda s: s.wait(5, keepalive_ms=float("inf")), "keepalive_ms takes a number"),
])
def test_session_methods_reject_what_they_cannot_use(tmp_path, call, says):
    # (as set_condition does: one UsageError, not a TypeError, nor a span named "5" or "")
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        with pytest.raises(UsageError, match=says):
            call(s)
        with s.span("ok"):  # (the session goes on)
            pass


def test_several_traces_as_one_list_are_as_several_arguments(trace, tmp_path):
    # (a list, as glob gives it, was refused: "got list")
    other = tmp_path / "u.parquet"
    other.write_bytes(trace.read_bytes())
    a, b = gpuwatch.analyze([trace, other]), gpuwatch.analyze(trace, other)
    assert a.verdict == b.verdict and len(a.traces) == 2


def test_one_trace_given_twice_is_refused(tmp_path, trace):
    # (it read as two recordings that agree: "2 of 4 conditions")
    with pytest.raises(UsageError, match="given twice"):
        gpuwatch.analyze(trace, trace)
    r = _run(tmp_path, "-m", "gpuwatch.analyze", str(trace), f"{trace.parent}/./{trace.name}",
             "-q")
    assert r.returncode == 2 and "is given twice (as " in r.stderr, r.stderr


@pytest.mark.parametrize("what", [5, "", None])
def test_analyze_rejects_what_is_not_a_trace(what):
    with pytest.raises(UsageError):
        gpuwatch.analyze(what)


@pytest.mark.parametrize("code,status", [(0, "complete"), (None, "complete"), (3, "failed")])
def test_sys_exit_inside_a_session_is_recorded_as_what_it_is(tmp_path, code, status):
    out = tmp_path / "t.parquet"
    with pytest.raises(SystemExit):
        with gpuwatch.session("sim:flat", out) as s:
            s.infer(lambda: None)
            sys.exit(code)
    meta = gpuwatch.load(out).meta
    assert meta["status"] == status
    assert (meta["error"] is None) == (status == "complete")


@pytest.mark.parametrize("version", [-3, True, "2", None])
def test_a_trace_with_an_impossible_schema_version_is_refused(tmp_path, trace, version):
    t = pq.read_table(trace)
    meta = json.loads(t.schema.metadata[b"gpuwatch"])
    meta["schema_version"] = version
    bad = tmp_path / "bad.parquet"
    pq.write_table(t.replace_schema_metadata({b"gpuwatch": json.dumps(meta).encode()}), bad)
    with pytest.raises(TraceFormatError, match="schema_version"):
        gpuwatch.load(bad)


def test_a_bad_device_from_the_environment_says_it_came_from_there(tmp_path, monkeypatch):
    # (a user who passed no device cannot otherwise tell where "sim:bogus" came from)
    monkeypatch.setenv("GPUWATCH_DEVICE", "sim:bogus")
    with pytest.raises(UsageError, match="GPUWATCH_DEVICE=sim:bogus .*unknown simulated GPU"):
        gpuwatch.session(out=tmp_path / "t.parquet").start()
    r = _run(tmp_path, "-m", "gpuwatch", "record", "--gap", "0", "--iters", "5", "-q",
             "-o", str(tmp_path / "t.parquet"))
    assert r.returncode == 2 and "GPUWATCH_DEVICE=sim:bogus" in r.stderr, r.stderr
    with pytest.raises(UsageError) as given:  # (given as an argument: no word of the variable)
        gpuwatch.session("sim:bogus", tmp_path / "t.parquet").start()
    assert "GPUWATCH_DEVICE" not in str(given.value)
    assert not list(tmp_path.iterdir())
