"""Issue 30's faults, replayed: each is a way a user can break a recording or an analysis, as
they would cause it, with what must hold afterwards (nothing lost, nothing made up, one line
naming the problem). Grouped by the issue's classes; each test failed before its fix."""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import gpuwatch
from gpuwatch.trace import LOCK_NAME, RecoveredTraceWarning, claim_for_finish, partial_path
from tests.helpers import gw, gw_here, record_sim

FINISH = [sys.executable, "-m", "gpuwatch.finish"]


def _sigint_default() -> None:
    """(preexec_fn) Ctrl-C as a terminal delivers it: a shell that starts a job in the
    background (`bash .ci/run &`) leaves SIGINT ignored, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _finish(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m gpuwatch.finish ARGS`, run in this process (tests/helpers.py); a test where
    another process must be the one finishing runs FINISH itself."""
    return gw_here(*args, module="gpuwatch.finish")


_CRASHED: dict[tuple[str, int], Path] = {}  # (name, n): a crashed recording, made once


def _crashed(tmp_path: Path, name: str = "t.parquet", n: int = 50) -> Path:
    """A recording whose process died (as kill -9) after `n` regions reached the disk: its
    .partial, in tmp_path. Made once per (name, n) in this test process, then copied (the
    copy is what the crash left: its writer's pid is dead, its lock stale)."""
    key = (name, n)
    if key not in _CRASHED or not _CRASHED[key].is_dir():
        where = Path(tempfile.mkdtemp(prefix="gpuwatch-crashed-"))
        atexit.register(shutil.rmtree, where, True)
        _CRASHED[key] = _crash(where, name, n)
    dest = partial_path(tmp_path / name)
    shutil.copytree(_CRASHED[key], dest)
    return dest


def _crash(tmp_path: Path, name: str, n: int) -> Path:
    out = tmp_path / name
    code = textwrap.dedent(f"""
        import os, gpuwatch
        s = gpuwatch.session("sim:flat", {str(out)!r}, sample_hz=200)
        s.start()
        for _ in range({n}):
            s.infer(lambda: None)
        s._writer._chunks.close()  # what was buffered reaches the disk, then: kill -9
        os.kill(os.getpid(), 9)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == -9, r.stderr
    return partial_path(out)


def _kept(partial: Path) -> int:
    """How many regions an unfinished recording holds (read as analyze would)."""
    with pytest.warns(gpuwatch.RecoveredTraceWarning):
        return len(gpuwatch.load(partial).measured())


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _files(d: Path) -> dict[str, bytes]:
    """A directory's files and contents (but its lock file: it names who holds it)."""
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != LOCK_NAME}


# -- 1. finish never writes inside, nor deletes what it did not write ---------------------------

def test_finish_refuses_to_write_the_trace_inside_the_recording_it_finishes(tmp_path):
    partial = _crashed(tmp_path)
    before, kept = _files(partial), _kept(partial)
    for inside in (partial / "t.parquet", partial / "sub" / ".." / "t.parquet"):
        r = _finish(partial, inside)
        assert r.returncode == 2 and "inside the recording" in _one_line(r.stderr)
        assert _files(partial) == before
    r = _finish(partial)
    assert r.returncode == 0 and not partial.exists()
    assert len(gpuwatch.load(tmp_path / "t.parquet").measured()) == kept >= 45


def test_finish_says_what_it_wrote_in_a_sentence_or_as_json(tmp_path):
    """By default one line a person reads: the trace, its rows per table, the next command;
    with --json the same facts for a script."""
    partial = _crashed(tmp_path)
    kept = _kept(partial)
    r = _finish(partial)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "t.parquet"
    line = r.stdout.strip()
    assert line.startswith(f"gpuwatch finish: wrote {out} (") and "\n" not in line
    assert f"python -m gpuwatch.analyze {out}" in line
    n_regions = len(gpuwatch.load(out).inferences)
    assert f"(rows: inferences {n_regions:,}" in line and n_regions >= kept
    again = _crashed(tmp_path / "j")
    r = _finish(again, "--json")
    got = json.loads(r.stdout)
    assert got["trace"] == str(tmp_path / "j" / "t.parquet")
    assert got["rows"]["inferences"] == n_regions and got["skipped_chunks"] == []


def test_finish_removes_only_what_gpuwatch_wrote_there(tmp_path):
    partial = _crashed(tmp_path)
    kept = _kept(partial)
    (partial / "notes.txt").write_text("mine")
    (partial / "plots").mkdir()
    r = _finish(partial, "--json")
    assert r.returncode == 0, r.stderr
    assert "did not write" in r.stderr and "notes.txt" in r.stderr
    assert sorted(p.name for p in partial.iterdir()) == ["notes.txt", "plots"]
    assert (partial / "notes.txt").read_text() == "mine"
    assert json.loads(r.stdout)["left_in_partial"] == ["notes.txt", "plots"]
    assert len(gpuwatch.load(tmp_path / "t.parquet").measured()) == kept


# -- 3 and 4. the lock is not the only guard; --out is checked again at close ------------------

RECORDING = """
import sys, time, gpuwatch
out, signal_file = sys.argv[1], sys.argv[2]
with gpuwatch.session("sim:flat", out, sample_hz=200) as s:
    n = 0
    while True:
        s.infer(lambda: time.sleep(0.001)); n += 1
        if n == 300:
            open(signal_file, "w").close()  # the test acts now
        try:
            open(signal_file + ".go").close(); break  # ... and says when to stop
        except OSError:
            pass
print(n)
"""


def _recording(tmp_path: Path, out: Path) -> tuple[subprocess.Popen[str], Path]:
    flag = tmp_path / "flag"
    p = subprocess.Popen([sys.executable, "-c", RECORDING, str(out), str(flag)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return p, flag


def _stop(p: subprocess.Popen[str], flag: Path) -> tuple[int, str, str]:
    Path(str(flag) + ".go").touch()
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


def test_finish_refuses_a_live_recording_whose_lock_file_was_removed(tmp_path):
    out = tmp_path / "t.parquet"
    p, flag = _recording(tmp_path, out)
    try:
        (partial_path(out) / LOCK_NAME).unlink()
        r = _finish(partial_path(out))
        assert r.returncode == 2 and "still being recorded by pid" in _one_line(r.stderr)
        assert not out.exists()
    finally:
        code, stdout, err = _stop(p, flag)
    # the recorder sees its lock gone: it does not finalise a directory it cannot vouch for,
    # and says so; what it recorded is kept where it was
    assert code != 0 and "taken over by another process" in err
    assert not out.exists() and partial_path(out).is_dir()
    assert _finish(partial_path(out)).returncode == 0
    assert len(gpuwatch.load(out).measured()) == int(stdout or 0) or len(
        gpuwatch.load(out).measured()) >= 300


def test_a_file_put_at_out_during_the_recording_is_not_replaced(tmp_path):
    out = tmp_path / "t.parquet"
    p, flag = _recording(tmp_path, out)
    out.write_text("someone else's")
    code, stdout, err = _stop(p, flag)
    assert out.read_text() == "someone else's"
    assert code != 0 and "did not replace it" in err and "gpuwatch.finish" in err
    partial = partial_path(out)
    assert partial.is_dir() and not list(tmp_path.glob("*.tmp-*"))
    other = tmp_path / "other.parquet"
    assert _finish(partial, other).returncode == 0
    assert len(gpuwatch.load(other).measured()) == int(stdout.strip().splitlines()[-1]) \
        if stdout.strip() else len(gpuwatch.load(other).measured()) >= 300


def test_a_trace_replaced_with_force_is_still_replaced(tmp_path):
    """(The check at close must not refuse the file --force allowed.)"""
    out = tmp_path / "t.parquet"
    with gpuwatch.session("sim:flat", out) as s:
        s.infer(lambda: None)
    with gpuwatch.session("sim:flat", out, overwrite=True) as s:
        for _ in range(3):
            s.infer(lambda: None)
    assert len(gpuwatch.load(out).measured()) == 3


# -- 7. finish as careful as analyze ----------------------------------------------------------

def _chunks(partial: Path) -> list[Path]:
    return sorted(partial.glob("*-inferences.parquet"))


def _flipped(chunk: Path) -> bytes:
    """`chunk`'s bytes with 8 flipped inside its gpu_ms column's data (the footer intact)."""
    import pyarrow.parquet as pq

    rg = pq.ParquetFile(chunk).metadata.row_group(0)
    c = next(rg.column(i) for i in range(rg.num_columns)
             if rg.column(i).path_in_schema == "gpu_ms")
    data = bytearray(chunk.read_bytes())
    at = c.data_page_offset + c.total_compressed_size // 2
    data[at:at + 8] = bytes(x ^ 0x5A for x in data[at:at + 8])
    return bytes(data)


@pytest.mark.parametrize("damage", ["cut", "empty", "junk", "flipped"])
def test_finish_leaves_out_an_unreadable_chunk_and_says_so(tmp_path, damage):
    if damage == "flipped" and not gpuwatch.trace.PAGE_CHECKSUMS:
        pytest.skip("page checksums need pyarrow 15")
    partial = _crashed(tmp_path)
    kept = _kept(partial)
    bad = partial / "c9999999-events.parquet"
    chunk = next(partial.glob("*-inferences.parquet"))
    good = chunk.read_bytes()
    bad.write_bytes({"cut": good[: len(good) // 2], "empty": b"", "junk": b"PAR1 junk",
                     "flipped": _flipped(chunk) if damage == "flipped" else b""}[damage])
    r = _finish(partial)
    assert r.returncode == 0, r.stderr
    assert "unreadable chunk" in r.stderr and bad.name in r.stderr
    tr = gpuwatch.load(tmp_path / "t.parquet")
    assert len(tr.measured()) == kept and tr.meta["skipped_chunks"] == [bad.name]
    assert tr.meta["rows"]["events"] == len(tr.events)  # (the rows the file holds)


@pytest.mark.parametrize("meta, words", [
    (b"{not json", "meta.json is damaged"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"schema_version": 99, "status": "recording"}).encode(), "schema v99"),
    (json.dumps({"schema_version": -3}).encode(), "no valid schema_version"),
    (json.dumps({"schema_version": True}).encode(), "no valid schema_version"),
    (b"[" * 100_000 + b"]" * 100_000, "meta.json is damaged"),
])
def test_finish_refuses_bad_metadata_in_one_line_and_keeps_the_recording(tmp_path, meta, words):
    partial = _crashed(tmp_path)
    (partial / "meta.json").write_bytes(meta)
    before = _files(partial)
    r = _finish(partial)
    assert r.returncode == 2 and words in _one_line(r.stderr)
    assert _files(partial) == before and not (tmp_path / "t.parquet").exists()


def test_finish_on_a_full_disk_is_one_line_and_keeps_the_recording(tmp_path):
    """RLIMIT_FSIZE makes writes past a size fail as a full disk would (EFBIG, not ENOSPC)."""
    partial = _crashed(tmp_path, n=400)
    before = _files(partial)
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000)); "
            "from gpuwatch.cli import entry; sys.exit(entry(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "finish", str(partial)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "is kept" in _one_line(r.stderr)
    assert _files(partial) == before
    assert not (tmp_path / "t.parquet").exists() and not list(tmp_path.glob("*.tmp-*"))


def test_a_second_finish_of_the_same_recording_is_refused(tmp_path):
    partial = _crashed(tmp_path)
    fd = claim_for_finish(partial)  # (this process is finishing it; another one tries)
    try:
        r = subprocess.run(FINISH + [str(partial), str(tmp_path / "other.parquet")],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "being recorded or finished by pid" in _one_line(r.stderr)
    finally:
        os.close(fd) if fd is not None else None
    assert not (tmp_path / "other.parquet").exists() and _chunks(partial)


def test_sigterm_at_any_moment_of_a_finish_leaves_the_trace_or_the_recording(tmp_path):
    """Whenever SIGTERM or SIGHUP lands: either the trace is whole and the .partial gone, or no trace and
    the .partial as it was; never a temporary file left behind, never neither."""
    rng = random.Random(30)
    for k in range(4):
        d = tmp_path / f"r{k}"
        d.mkdir()
        partial = _crashed(d, n=3000)
        before, kept = _files(partial), _kept(partial)
        p = subprocess.Popen(FINISH + [str(partial)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.05, 0.6))
        sig = (signal.SIGTERM, signal.SIGHUP)[k % 2]
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        assert "Traceback" not in err, err
        assert not list(d.glob("*.tmp-*"))
        out = d / "t.parquet"
        if out.exists():
            assert len(gpuwatch.load(out).measured()) == kept and not partial.exists()
        else:
            assert p.returncode in (128 + sig, -sig) and _files(partial) == before
            assert p.returncode == -sig or "is kept" in err  # (-sig: before Python ran)


# -- 8 and 12. attributes and API arguments checked at the call --------------------------------

@pytest.mark.parametrize("attr, value, words", [
    ("warmup", "no", "s.warmup takes True or False"),
    ("warmup", 1.0, "s.warmup takes True or False"),
    ("iteration", "x", "s.iteration takes a whole number"),
    ("iteration", 2.5, "s.iteration takes a whole number"),
    ("iteration", True, "s.iteration takes a whole number"),
])
def test_a_bad_session_attribute_is_a_usage_error_and_recording_goes_on(tmp_path, attr, value,
                                                                        words):
    out = tmp_path / "t.parquet"
    with gpuwatch.session("sim:flat", out) as s:
        s.infer(lambda: None)
        with pytest.raises(gpuwatch.UsageError, match=words):
            setattr(s, attr, value)
        s.infer(lambda: None)
        assert s.write_error is None
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "complete" and len(tr.measured()) == 2
    assert tr.measured()["iteration"].tolist() == [0, 1]


def test_good_session_attributes_still_label_the_rows(tmp_path):
    import numpy as np

    out = tmp_path / "t.parquet"
    with gpuwatch.session("sim:flat", out) as s:
        s.warmup, s.iteration = np.bool_(True), np.int64(-1)
        s.infer(lambda: None)
        s.warmup = False
        s.infer(lambda: None)
    inf = gpuwatch.load(out).inferences
    assert inf["iteration"].tolist() == [-1, 0] and inf["warmup"].tolist() == [True, False]


@pytest.mark.parametrize("name", [5, None, "", "  "])
def test_set_condition_takes_a_name(tmp_path, name):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        with pytest.raises(gpuwatch.UsageError, match="set_condition takes a name"):
            s.set_condition(name)
        s.set_condition("gap=0ms", gap_ms=0)
        s.infer(lambda: None)
    assert gpuwatch.load(tmp_path / "t.parquet").meta["status"] == "complete"


@pytest.mark.parametrize("call, words", [
    (lambda d: gpuwatch.session(5, d / "t.parquet"), "device takes a device spec string"),
    (lambda d: gpuwatch.session(["sim:t4"], d / "t.parquet"), "device takes a device spec"),
    (lambda d: gpuwatch.session("sim:t4", d / "t.parquet", sample_gpus="some"),
     "sample_gpus takes None"),
    (lambda d: gpuwatch.session("sim:t4", d / "t.parquet", sample_gpus=[True]),
     "sample_gpus takes None"),
    (lambda d: gpuwatch.session("sim:t4", d / "t.parquet", sample_gpus=[1, 1]),
     r"sample_gpus lists a GPU twice \(\[1, 1\]\)"),
    (lambda d: gpuwatch.load(5), "load takes a trace's path"),
    (lambda d: gpuwatch.load(None), "load takes a trace's path"),
    (lambda d: gpuwatch.condition_summary(5), "condition_summary takes a Trace"),
])
def test_api_arguments_of_the_wrong_type_are_usage_errors_naming_them(tmp_path, call, words):
    with pytest.raises(gpuwatch.UsageError, match=words):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_engine_spec_of_the_wrong_type_is_a_usage_error(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        with pytest.raises(gpuwatch.UsageError, match="engine takes a spec string"):
            s.engine(5)


def test_condition_summary_takes_a_path_too(flat_trace):
    assert gpuwatch.condition_summary(flat_trace.path).equals(
        gpuwatch.condition_summary(flat_trace))


# -- 9. usage checked before anything is written -----------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--engine", "builtin:nope"], "unknown built-in engine preset"),
    (["--torch", "nope.mod:f"], "cannot run on a simulated GPU"),
    (["--onnx", "missing.onnx"], "cannot run on a simulated GPU"),
    (["--engine", "missing.plan"], "cannot run on a simulated GPU"),
    (["--device", "cuda:0", "--onnx", "missing.onnx"], "does not exist"),
    (["--device", "cuda:0", "--torch", "no_such_module_here:build"], "cannot find module"),
    (["--device", "cuda:0", "--torch", "nofactory"], "takes module:factory"),
    (["--device", "sim:t4,fault=gpu_lost@nan"], "bad sim fault"),
])
def test_a_usage_error_leaves_nothing_so_the_corrected_command_runs(tmp_path, args, words):
    base = ["--device", "sim:t4", "--iters", "5", "--warmup", "1", "--gap", "0", "--quiet",
            "--out", "x.parquet"]
    r = gw_here(*base, *args, cwd=tmp_path, module="gpuwatch.record")
    assert r.returncode == 2 and words in _one_line(r.stderr)
    assert list(tmp_path.iterdir()) == []
    ok = gw_here(*base, cwd=tmp_path, module="gpuwatch.record")
    assert ok.returncode == 0, ok.stderr


def test_kernel_tracing_a_device_cannot_do_is_refused_before_anything_is_written(tmp_path):
    """(A new user's try: `gpuwatch run --device standin --kernels` said "nothing was timed: no
    trace was written" and then the usage error: the check came after the recording began.)"""
    out = tmp_path / "k.parquet"
    with pytest.raises(gpuwatch.UsageError, match="needs a real NVIDIA GPU with cupti-python"):
        gpuwatch.session("standin", out, kernels=True).start()
    assert list(tmp_path.iterdir()) == []
    assert gpuwatch.recorder.active() is None


# -- 2 and 6. signals at any moment, os._exit, a session never closed --------------------------

PROGRAMS = Path(__file__).parent / "programs"


def _run_long_loop(tmp_path: Path, out: Path, device: str = "standin",
                   *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(PROGRAMS / "standins"), GPUWATCH_DEVICE=device)
    p = subprocess.Popen([sys.executable, "-m", "gpuwatch", "run", "-q", "-o", str(out),
                          *extra, str(PROGRAMS / "long_loop.py")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
                         preexec_fn=_sigint_default)
    assert p.stdout is not None and p.stdout.readline().strip() == "started"
    return p


def test_two_ctrl_c_close_together_on_the_real_gpu_path_keep_the_trace(tmp_path):
    """The second press lands while the trace is being closed: it says so and lets it finish."""
    rng = random.Random(2)
    for k in range(3):
        out = tmp_path / f"s{k}.parquet"
        p = _run_long_loop(tmp_path, out)
        time.sleep(0.8)
        p.send_signal(signal.SIGINT)
        time.sleep(rng.uniform(0.01, 0.1))
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        tr = gpuwatch.load(out)
        assert tr.meta["status"] == "interrupted" and len(tr.inferences) > 20
        assert not partial_path(out).exists()


@pytest.mark.parametrize("old", [False, True], ids=["new", "over an old trace (-f)"])
def test_ctrl_c_pressed_on_and_on_leaves_a_named_recording(tmp_path, old):
    """Presses while the trace is closed: the .partial is named with the command that
    finishes it; over an old trace (-f), the command as given works (a new user's try: it
    was refused, "output already exists")."""
    out = tmp_path / "s.parquet"
    if old:
        out.write_bytes(b"the old trace")
    p = _run_long_loop(tmp_path, out, "standin", *(["-f"] if old else []))
    time.sleep(0.8)
    for _ in range(4):
        p.send_signal(signal.SIGINT)
        time.sleep(0.003)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback (most recent call last)" not in err.split(
        "KeyboardInterrupt")[-1]
    if not partial_path(out).exists():  # (the trace was finished before the presses could
        assert gpuwatch.load(out).meta["status"] == "interrupted"  # stop it)
    else:  # the message names the .partial, which holds what was recorded
        assert str(partial_path(out)) in err and "gpuwatch.finish" in err
        said = err[err.index("(python -m gpuwatch.finish ") + len("(python -m gpuwatch.finish "):]
        command = said.split(" finishes it")[0].split()
        if old:
            assert out.read_bytes() == b"the old trace" and "add -f to replace it" in err
            command.append("-f")  # (as the line says to)
        assert _finish(*command).returncode == 0
        assert len(gpuwatch.load(out).inferences) > 20


@pytest.mark.parametrize("how", ["record", "run"])
def test_sighup_keeps_the_trace_and_exits_as_the_signal_would(tmp_path, how):
    out = tmp_path / "h.parquet"
    if how == "run":
        p = _run_long_loop(tmp_path, out, device="sim:t4")
    else:
        p = subprocess.Popen([sys.executable, "-m", "gpuwatch.record", "--device", "sim:t4",
                              "--gap", "5", "--iters", "100000", "--quiet", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not list(partial_path(out).glob("*-inferences.parquet")):
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.05)
        # meanwhile, the .partial analysed is a snapshot of a live recording, and says so
        with pytest.warns(RecoveredTraceWarning, match=r"is being recorded now \(pid"):
            a = gpuwatch.analyze(partial_path(out))
        st = a.to_dict()["traces"][0]["status"]
        assert st["live"] == f"pid {p.pid} on {socket.gethostname()}", st
        assert "is still in progress" in a.verdict and "never finished" not in a.verdict
        from gpuwatch.renderers import TextRenderer
        assert f"recording IN PROGRESS (pid {p.pid}" in TextRenderer().render(a)
    time.sleep(0.5)
    p.send_signal(signal.SIGHUP)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 129, err
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "interrupted" and len(tr.inferences) > 20


OS_EXIT = """
import os, gpuwatch
s = gpuwatch.session("sim:t4", "t.parquet")
s.start()
e = s.engine("builtin:tiny")
for _ in range(200):
    e.infer(); e.synchronize()
{end}
"""


@pytest.mark.parametrize("end, code, status", [
    ("os._exit(0)", 0, "complete"),
    ("os._exit(4)", 4, "failed"),
    ("", 0, "complete"),  # never closed: the program just ends
    ("raise RuntimeError('boom')", 1, "failed"),  # never closed, ended by an error
    ("raise KeyboardInterrupt", -signal.SIGINT, "interrupted"),  # never closed, Ctrl-C: it
    # dies by SIGINT, as Python does (an import while closing at exit once made it exit 1)
    ("os.kill(os.getpid(), 15)", 143, "interrupted"),  # never closed, SIGTERM (it said
    ("os.kill(os.getpid(), 1)", 129, "interrupted"),  # "complete": a SystemExit), SIGHUP
])
def test_a_session_ended_by_os_exit_or_never_closed_still_writes_its_trace(tmp_path, end, code,
                                                                           status):
    r = subprocess.run([sys.executable, "-c", OS_EXIT.format(end=end)], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == code, r.stderr
    assert "the trace was closed then" in r.stderr
    tr = gpuwatch.load(tmp_path / "t.parquet")
    assert len(tr.measured()) == 200 and tr.meta["status"] == status
    if end.startswith("raise"):  # (what ended it, in the trace and on stderr)
        assert tr.meta["error"].startswith("the program ended with ")
        assert "without closing the session" in r.stderr
    if end.startswith("os.kill"):
        name = "SIGTERM" if code == 143 else "SIGHUP"
        assert tr.meta["error"] == f"the program was stopped by {name}, without closing the " \
            f"session" and tr.meta["error"] in r.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_that_lands_in_the_import_machinery_while_recording_comes_again(signum):
    """An exception raised in importlib's own frames can be dropped (its module-lock callback
    prints and drops it): a Ctrl-C that landed there, in pandas' lazy import, let a recording
    run on and exit 0 (the start-up test below, about 1 in 100 under load). The session's
    handler sends such a signal again 50 ms later instead of raising it there, and in code an
    extension module's initialisation called; anywhere else (a module's own code included)
    it raises at once, as Python does."""
    import types

    import gpuwatch.recorder as recorder

    s = gpuwatch.session("sim:t4", out=None)
    s._pid, s._closing = os.getpid(), False
    handler = s._on_sigint if signum == signal.SIGINT else s._on_sigterm
    def frame(filename: str, name: str, back: object = None) -> object:
        return types.SimpleNamespace(f_code=types.SimpleNamespace(co_filename=filename,
                                                                  co_name=name), f_back=back)

    machinery = frame("<frozen importlib._bootstrap>", "_find_and_load", sys._getframe())
    # numpy.random's extension module, initialising, registers a class with an ABC: a Ctrl-C
    # in that Python frame (called by the extension's C, called by importlib) was lost too
    in_extension = frame("<frozen abc>", "register",
                         frame("<frozen importlib._bootstrap>", "_call_with_frames_removed",
                               machinery))
    body = frame("/site-packages/torch/__init__.py", "<module>",
                 frame("<frozen importlib._bootstrap>", "_call_with_frames_removed", machinery))
    in_body = frame("/site-packages/torch/_ops.py", "load", body)  # (called by the body)
    for where in (machinery, in_extension):
        got: list[int] = []
        prev = signal.signal(signum, lambda n, f: got.append(n))
        try:
            handler(signum, where)  # (no exception: sent again instead)
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                time.sleep(0.01)
            assert got == [signum]
        finally:
            signal.signal(signum, prev)
    # a module's own code, and the program's: raised at once, as Python does
    for where in (body, in_body, sys._getframe()):
        with pytest.raises(KeyboardInterrupt if signum == signal.SIGINT else recorder.Terminated):
            handler(signum, where)


def test_a_never_closed_session_stopped_before_its_first_inference_leaves_nothing(tmp_path):
    code = ("import gpuwatch\ns = gpuwatch.session('sim:t4', 't.parquet')\ns.start()\n"
            "raise KeyboardInterrupt\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path)
    assert "nothing was timed, so no trace was written" in r.stderr, r.stderr
    assert not (tmp_path / "t.parquet").exists()
    assert not (tmp_path / "t.parquet.partial").exists()


# a program's first line that times one region under `run` (the nvtx stand-in; with
# PYTHONPATH=standins): a run that times nothing leaves no trace (see below)
ONE_REGION = "import nvtx\nwith nvtx.annotate('infer'):\n    pass\n"
STANDINS_ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).parent / "programs" / "standins"),
                    GPUWATCH_DEVICE="sim:t4")


def test_os_exit_under_run_keeps_the_trace_and_the_status(tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text(ONE_REGION + "import os, time\nfor _ in range(20):\n    time.sleep(0.001)\n"
                    "os._exit(3)\n")
    env = STANDINS_ENV
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-q", "-o", "r.parquet",
                        str(prog)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 3 and "os._exit(3)" in r.stderr
    assert gpuwatch.load(tmp_path / "r.parquet").meta["status"] == "failed"


def test_os_exit_in_a_forked_child_is_the_childs_own(tmp_path):
    """A multiprocessing worker forked while recording exits with os._exit: it must not
    close (or touch) the parent's recording."""
    code = textwrap.dedent("""
        import os, gpuwatch
        with gpuwatch.session("sim:t4", "t.parquet") as s:
            s.infer(lambda: None)
            pid = os.fork()
            if pid == 0:
                os._exit(7)
            _, st = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(st) == 7
            s.infer(lambda: None)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0 and "closed then" not in r.stderr, r.stderr
    assert len(gpuwatch.load(tmp_path / "t.parquet").measured()) == 2


# -- 11. run leaves the program's exit status and streams as python would ----------------------

@pytest.mark.parametrize("program", [
    "import sys\nsys.stderr.close()\nprint('out')\n",
    "import os\nos.close(2)\nprint('out')\n",
    "import sys\nsys.stderr = None\nprint('out')\n",
    "import sys\nsys.stderr.close()\nprint('out')\nsys.exit(5)\n",
])
def test_a_program_that_closes_or_drops_its_stderr_keeps_its_status_and_stdout(tmp_path,
                                                                              program):
    prog = tmp_path / "p.py"
    prog.write_text(ONE_REGION + program)
    env = STANDINS_ENV
    bare = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True, env=env)
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-o", "r.parquet", str(prog)],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert (r.returncode, r.stdout) == (bare.returncode, bare.stdout) == (r.returncode, "out\n")
    assert "trace:" in r.stderr and "Traceback" not in r.stderr  # (the report: on stderr)
    assert gpuwatch.load(tmp_path / "r.parquet").meta["status"] in ("complete", "failed")


# -- 10. what used to be a traceback: one line, or a result that says what it left out ---------

def _edited(src: Path, dest: Path, column: str | None = None, fn=None, typ=None,
            meta: dict | bytes | None = None) -> Path:
    """`src` rewritten with one column's values changed and/or its metadata replaced."""
    import pyarrow as pa

    t = pq.read_table(src)
    if column is not None:
        old = t.schema.field(column)
        t = t.set_column(t.schema.get_field_index(column), pa.field(column, typ or old.type),
                         pa.array(fn(t.column(column).to_pylist()), type=typ or old.type))
    raw = t.schema.metadata[b"gpuwatch"] if meta is None else (
        meta if isinstance(meta, bytes) else json.dumps(meta).encode())
    pq.write_table(t.replace_schema_metadata({b"gpuwatch": raw}), dest)
    return dest


def _analyze_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return gw("analyze", *args)


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("small") / "small.parquet"
    record_sim(out, engine="builtin:tiny", iters=60, warmup=0, sample_hz=500)
    return out


def _as_text(values: list) -> list:
    return [None if v is None else str(v) for v in values]


@pytest.mark.parametrize("column", ["gpu_ms", "iteration"])
def test_a_column_of_the_wrong_type_is_refused_in_one_line(tmp_path, small_trace, column):
    import pyarrow as pa

    p = _edited(small_trace, tmp_path / "t.parquet", column, _as_text, pa.string())
    r = _analyze_cli(p, "--json")
    assert r.returncode == 2 and f"column '{column}' holds string" in _one_line(r.stderr)
    with pytest.raises(gpuwatch.TraceFormatError, match="changed by another tool"):
        gpuwatch.load(p)


def test_absurd_latencies_are_left_out_and_counted(tmp_path, small_trace):
    p = _edited(small_trace, tmp_path / "t.parquet", "gpu_ms",
                lambda v: [None if x is None else x * 1e300 for x in v])
    r = _analyze_cli(p, "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "no valid latency" in json.dumps(json.loads(r.stdout))


def test_a_missing_warmup_flag_reads_as_measured_with_a_warning(tmp_path, small_trace):
    p = _edited(small_trace, tmp_path / "t.parquet", "warmup", lambda v: [None for _ in v])
    with pytest.warns(gpuwatch.DamagedTraceWarning, match="no warm-up flag"):
        tr = gpuwatch.load(p)
    assert not tr.inferences["warmup"].any()
    r = _analyze_cli(p)
    assert r.returncode == 0 and "warning: 120 inference rows have no warm-up flag" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("devices", [["a", "b"], {"a": 1}, "gpu", 5])
def test_metadata_of_the_wrong_shape_is_left_out_with_a_warning(tmp_path, small_trace, devices):
    meta = json.loads(pq.read_schema(small_trace).metadata[b"gpuwatch"])
    p = _edited(small_trace, tmp_path / "t.parquet", meta=dict(meta, devices=devices,
                                                                options=[1]))
    r = _analyze_cli(p, "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "metadata entries devices, options have the wrong type" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_metadata_nested_a_hundred_thousand_deep_is_one_line(tmp_path, small_trace):
    raw = b'{"schema_version": 4, ' + b'"a": {' * 100_000 + b"}" * 100_001
    p = _edited(small_trace, tmp_path / "t.parquet", meta=raw)
    r = _analyze_cli(p)
    assert r.returncode == 2 and "not valid JSON" in _one_line(r.stderr)


def test_a_fleet_leaves_out_members_it_cannot_read_and_says_which(tmp_path, small_trace):
    import shutil

    meta = json.loads(pq.read_schema(small_trace).metadata[b"gpuwatch"])
    f = tmp_path / "fleet"
    f.mkdir()
    for i in range(2):
        shutil.copy(small_trace, f / f"m{i}.parquet")
    (f / "cut.parquet").write_bytes(small_trace.read_bytes()[:3000])
    (f / "empty.parquet").write_bytes(b"")
    (f / "dir.parquet").mkdir()
    _edited(small_trace, f / "nonjson.parquet", meta=b"{nope")
    _edited(small_trace, f / "neg.parquet", meta=dict(meta, schema_version=-3))
    _edited(small_trace, f / "bool.parquet", meta=dict(meta, schema_version=True))
    r = _analyze_cli(f, "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert out["files"] == 2 and sorted(Path(p).name for p in out["skipped"]) == [
        "bool.parquet", "cut.parquet", "dir.parquet", "empty.parquet", "neg.parquet",
        "nonjson.parquet"]
    assert "left out 6 Parquet file(s)" in r.stderr
    shutil.rmtree(f / "dir.parquet")
    for p in ("bool", "cut", "empty", "neg", "nonjson"):
        (f / f"{p}.parquet").unlink()
    _edited(small_trace, f / "future.parquet", meta=dict(meta, schema_version=99))
    r = _analyze_cli(f, "--json")  # (one newer trace does not stop the fleet: it is named)
    assert r.returncode == 0 and json.loads(r.stdout)["files"] == 2
    assert "future.parquet" in r.stderr and "upgrade gpuwatch" in r.stderr


def test_a_fifo_is_not_read_as_a_trace(tmp_path):
    fifo = tmp_path / "t.parquet"
    os.mkfifo(fifo)
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "analyze", str(fifo)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a regular file" in _one_line(r.stderr)


def test_a_fleet_leaves_out_latencies_that_are_no_measurement(tmp_path, small_trace):
    f = tmp_path / "fleet"
    f.mkdir()

    def spoil(v: list) -> list:  # negative, NaN and absurd, among real ones
        bad = [-9.291, float("nan"), 1e300]
        return [x if x is None or i % 4 == 3 else bad[i % 4 % 3] for i, x in enumerate(v)]

    _edited(small_trace, f / "spoilt.parquet", "gpu_ms", spoil)
    r = _analyze_cli(f, "--json")
    assert r.returncode == 0 and "no valid latency" in r.stderr
    out = json.loads(r.stdout)
    assert out["invalid_latencies"] > 0
    for run in out["runs"]:
        assert 0.1 < run["p50_ms"] < 1.0  # (the real ones: 0.25-0.28 ms)


def test_a_chunk_damaged_during_the_recording_is_left_out_at_close(tmp_path):
    out = tmp_path / "t.parquet"
    s = gpuwatch.session("sim:flat", out, sample_hz=200)
    s.start()
    for _ in range(50):
        s.infer(lambda: None)
    deadline = time.monotonic() + 10  # (the writer flushes once a second)
    while not list(partial_path(out).glob("*-inferences.parquet")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    chunk = sorted(partial_path(out).glob("*-inferences.parquet"))[0]
    chunk.write_bytes(chunk.read_bytes()[:100])  # another process damages it
    for _ in range(10):
        s.infer(lambda: None)
    s.close(status="interrupted")  # (as after a Ctrl-C)
    tr = gpuwatch.load(out)
    assert tr.meta["skipped_chunks"] == [chunk.name] and 10 <= len(tr.measured()) < 60


def test_stdout_that_fails_is_one_line_and_a_closed_pipe_is_quiet(tmp_path, small_trace):
    r = subprocess.run(f"{sys.executable} -m gpuwatch analyze {small_trace} | true", shell=True,
                       capture_output=True, text=True)
    assert r.stderr == ""
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "gpuwatch", "analyze", str(small_trace)],
                           stdout=full, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 1 and "No space left on device" in _one_line(r.stderr)
    # record's summary to a full disk: the trace itself was written, and the line says so
    out = tmp_path / "f.parquet"
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "gpuwatch", "record", "--device", "sim:t4",
                            "--gap", "0", "--iters", "20", "--out", str(out)],
                           stdout=full, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 1 and _one_line(r.stderr).endswith(f"the trace was written: {out}")
    assert gpuwatch.load(out).meta["status"] == "complete"
    for flag in ("--help", "--version"):  # the top-level ones too
        with open("/dev/full", "w") as full:
            r = subprocess.run([sys.executable, "-m", "gpuwatch", flag], stdout=full,
                               stderr=subprocess.PIPE, text=True)
        assert r.returncode == 1 and "No space left on device" in _one_line(r.stderr)


def test_names_the_terminal_cannot_encode_are_escaped(tmp_path):
    out = tmp_path / "u.parquet"
    with gpuwatch.session("sim:t4", out) as s:
        e = s.engine("builtin:tiny")
        s.set_condition("gäp=0ms ✓", gap_ms=0)
        for _ in range(60):
            e.infer()
            e.synchronize()
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "analyze", str(out)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "g\\xe4p=0ms \\u2713" in r.stdout, r.stderr


def test_a_full_disk_at_the_start_is_one_line_and_leaves_nothing(tmp_path):
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)); "
            "from gpuwatch.cli import entry; sys.exit(entry(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "record", "--device", "sim:t4", "--iters",
                        "5", "--gap", "0", "--out", "z.parquet"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 1 and "cannot write the trace" in _one_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["metadata", "writer thread"])
def test_ctrl_c_while_the_trace_is_opened_leaves_no_partial(tmp_path, monkeypatch, where):
    """A Ctrl-C that lands while the writer opens the trace (its .partial claimed, nothing
    recorded yet: reading its own start time, starting its thread) left that .partial, named
    as "not finished", and a writer thread (seen in the start-up test below, 3 of 150 under
    load). The writer takes back what it made, then the Ctrl-C goes on."""
    import gpuwatch.trace.writer as writer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "metadata":
        monkeypatch.setattr(writer, "_proc_start_ticks", interrupted)
    else:
        real = writer.ChunkWriter.start

        def started_then_interrupted(self):
            real(self)
            writer_of[0] = self
            raise KeyboardInterrupt

        writer_of: list = [None]
        monkeypatch.setattr(writer.ChunkWriter, "start", started_then_interrupted)
    out = tmp_path / "t.parquet"
    with pytest.raises(KeyboardInterrupt):
        with gpuwatch.session("sim:t4", out):
            pass
    assert not partial_path(out).exists() and not out.exists()
    assert list(tmp_path.iterdir()) == []
    if where == "writer thread":  # (its thread started: stopped again)
        writer_of[0]._thread.join(timeout=5)
        assert not writer_of[0]._thread.is_alive()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_trace_is_opened_comes_again_once_it_is(tmp_path, monkeypatch,
                                                                  signum):
    """A Ctrl-C or SIGTERM that lands while the writer opens the trace (between creating its
    .partial and handing it to the session: seen once in 150 start-ups under load, in
    mkdir) is sent again once the session holds the writer: the session then closes it (here
    with nothing timed: no trace, no .partial) and the signal goes on as usual."""
    import gpuwatch.recorder as recorder
    import gpuwatch.trace.writer as writer

    real = writer.TraceWriter.__init__
    seen = []

    def signalled_while_opening(self, *args, **kwargs):
        real(self, *args, **kwargs)
        s = recorder.active()
        handler = s._on_sigint if signum == signal.SIGINT else s._on_sigterm
        handler(signum, sys._getframe())  # (returns: the signal comes again a moment later)
        seen.append(self.partial_dir.exists())

    monkeypatch.setattr(writer.TraceWriter, "__init__", signalled_while_opening)
    out = tmp_path / "t.parquet"
    with pytest.raises(KeyboardInterrupt if signum == signal.SIGINT else recorder.Terminated):
        with gpuwatch.session("sim:t4", out):
            time.sleep(2)  # (the signal again: raised here)
    assert seen == [True]
    assert not partial_path(out).exists() and not out.exists()


def test_ctrl_c_while_the_command_starts_is_quiet(tmp_path):
    """Anywhere in the first second (loading libraries, opening the GPU, the first regions):
    exit 130 and no traceback; a trace if the recording had begun."""
    rng = random.Random(3)
    for k in range(6):
        out = tmp_path / f"e{k}.parquet"
        p = subprocess.Popen([sys.executable, "-m", "gpuwatch.record", "--device", "sim:t4",
                              "--gap", "5", "--iters", "2000", "--quiet", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=_sigint_default)
        time.sleep(rng.uniform(0.1, 1.0))  # (from 0.1 s: past the interpreter's own start)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode in (130, -2) and "Traceback" not in err, err
        assert not partial_path(out).exists()
        if out.exists():
            assert gpuwatch.load(out).meta["status"] == "interrupted"


def test_a_condition_with_no_valid_latency_is_named_not_dropped_silently(flat_trace):
    import dataclasses

    inf = flat_trace.inferences.copy()
    m = inf["condition"] == "gap=20ms"
    inf.loc[m, "gpu_ms"] = -inf.loc[m, "gpu_ms"]
    a = gpuwatch.analyze(dataclasses.replace(flat_trace, inferences=inf))
    assert "nothing is left of builtin:small, gap=20ms" in a.data_notes[0]
    assert a.verdict.startswith("No condition that could be compared is slower or faster")
    assert "1 condition(s) had no valid latency at all and were not compared" in a.verdict
    assert "gap=20ms" not in set(a.layers["condition"])


def test_an_unmarked_cold_start_is_noted(flat_trace):
    import dataclasses

    inf = flat_trace.inferences.copy()
    first = inf.index[(inf["condition"] == "gap=0ms") & ~inf["warmup"].astype(bool)][:60]
    inf.loc[first, "gpu_ms"] = inf.loc[first, "gpu_ms"] * 3
    a = gpuwatch.analyze(dataclasses.replace(flat_trace, inferences=inf))
    notes = [n for n in a.data_notes if "cold start not marked as warm-up" in n]
    assert len(notes) == 1 and "builtin:small, gap=0ms" in notes[0]
    assert "begins with 60 iterations at 3.0x" in notes[0]
    assert not any("cold start" in n for n in gpuwatch.analyze(flat_trace).data_notes)


def test_record_s_table_does_not_lend_a_lost_gpu_s_last_clock(tmp_path):
    """After the GPU is lost, the table's clock is unknown, not the last reading (1590 MHz
    where the clock was 765)."""
    out = tmp_path / "t.parquet"
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--device",
                        "sim:t4,fault=gpu_lost@0.5", "--gap", "0,20", "--iters", "200",
                        "--warmup", "5", "--json", "--out", str(out)], capture_output=True,
                       text=True)
    summary = {row["condition"]: row for row in json.loads(r.stdout)["summary"]}
    assert summary["gap=20ms"]["sm_clock_p50_mhz"] is None, summary["gap=20ms"]
    assert 300 < summary["gap=0ms"]["sm_clock_p50_mhz"] < 2000


def test_samples_of_another_gpu_are_not_an_inference_s(flat_trace):
    import dataclasses

    samples = flat_trace.samples.assign(gpu=1)
    a = gpuwatch.analyze(dataclasses.replace(flat_trace, samples=samples))
    inf = a.merged[a.merged["kind"] == "inference"]
    assert inf["sm_clock_nvml_mhz_mean"].isna().all() and inf["power_w_mean"].isna().all()


@pytest.mark.parametrize("kwargs, words", [
    ({"overwrite": "no"}, "overwrite takes True or False"),
    ({"kernels": "false"}, "kernels takes True or False"),
    ({"options": [1, 2]}, "options takes a dict"),
])
def test_flags_of_the_wrong_type_are_refused_not_read_as_true(tmp_path, kwargs, words):
    out = tmp_path / "t.parquet"
    with gpuwatch.session("sim:flat", out) as s:
        s.infer(lambda: None)
    before = out.read_bytes()
    with pytest.raises(gpuwatch.UsageError, match=words):
        gpuwatch.session("sim:flat", out, **kwargs)
    assert out.read_bytes() == before


def test_an_iteration_the_trace_cannot_hold_is_refused_and_nothing_is_lost(tmp_path):
    out = tmp_path / "t.parquet"
    with gpuwatch.session("sim:flat", out) as s:
        for _ in range(20):
            s.infer(lambda: None)
        for big in (2**63, 2**70, -2**63):
            with pytest.raises(gpuwatch.UsageError, match="within"):
                s.iteration = big
        s.infer(lambda: None)
    assert len(gpuwatch.load(out).measured()) == 21


def test_a_session_records_once(tmp_path):
    s = gpuwatch.session("sim:flat", tmp_path / "t.parquet")
    with s:
        s.infer(lambda: None)
    with pytest.raises(gpuwatch.SessionError, match="has already ended"):
        s.start()
    assert not partial_path(tmp_path / "t.parquet").exists()
    with gpuwatch.session("sim:flat", tmp_path / "u.parquet") as again:  # (nothing stuck)
        again.infer(lambda: None)
    assert len(gpuwatch.load(tmp_path / "u.parquet").measured()) == 1


def test_record_on_the_stand_in_is_refused_before_anything_is_written(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--device", "standin",
                        "--iters", "5", "--out", "e.parquet"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 2 and "runs no engines" in _one_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fn", [None, 42, "model"])
def test_infer_of_something_not_callable_is_refused_and_records_nothing(tmp_path, fn):
    out = tmp_path / "t.parquet"
    with gpuwatch.session("sim:flat", out) as s:
        with pytest.raises(gpuwatch.UsageError, match="s.infer takes the function to time"):
            s.infer(fn)
        s.infer(lambda: None)
    inf = gpuwatch.load(out).measured()
    assert len(inf) == 1 and inf["iteration"].tolist() == [0]


@pytest.mark.parametrize("flag", ["--onnx=", "--torch="])
def test_an_empty_model_is_refused_not_replaced_by_the_builtin_engine(tmp_path, flag):
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--device", "cuda:0",
                        "--iters", "5", "--gap", "0", flag, "--out", "o.parquet"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and list(tmp_path.iterdir()) == []


SLOW_START = """
import sys, time
print("started", flush=True)
time.sleep(30)  # (loading a model: no inference yet)
"""


def test_stopped_before_anything_was_timed_leaves_no_trace_to_block_the_rerun(tmp_path):
    """SIGTERM to `run` while the program is still starting: nothing was timed, so no empty
    'interrupted' trace is left at -o (the same command run again would be refused)."""
    prog = tmp_path / "slow.py"
    prog.write_text(SLOW_START)
    out = tmp_path / "r.parquet"
    env = dict(os.environ, GPUWATCH_DEVICE="sim:t4")
    p = subprocess.Popen([sys.executable, "-m", "gpuwatch", "run", "-o", str(out), str(prog)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                         env=env)
    assert p.stdout is not None and p.stdout.readline().strip() == "started"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "stopped before anything was timed: no trace was written" in err
    assert "nothing to analyse" not in err and "inference(s) found" not in err
    assert not out.exists() and not partial_path(out).exists()
    prog.write_text(ONE_REGION + "print('started')\n")
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-q", "-o", str(out),
                        str(prog)], capture_output=True, text=True, cwd=tmp_path,
                       env=STANDINS_ENV)
    assert r.returncode == 0 and "already exists" not in r.stderr, r.stderr
    assert out.exists()


@pytest.mark.parametrize("program, code, status", [
    ("print('ran')\n", 0, "complete"),
    ("import missing_module_of_the_user\n", 1, "failed"),
])
def test_a_run_that_timed_nothing_leaves_no_trace_to_block_the_next(tmp_path, program, code,
                                                                    status):
    """A program that timed nothing (no NVTX range, no torch call; or one that failed on its
    first line): no empty trace is left at -o, so the next command (--kernels, the program
    fixed) is not refused as 'already exists'; the report says no trace was written."""
    prog = tmp_path / "p.py"
    prog.write_text(program)
    out = tmp_path / "r.parquet"
    argv = [sys.executable, "-m", "gpuwatch", "run", "-o", str(out)]
    r = subprocess.run(argv + ["--json", str(prog)], capture_output=True, text=True,
                       cwd=tmp_path, env=STANDINS_ENV)
    assert r.returncode == code, r.stderr
    assert "nothing was timed: no trace was written to" in r.stderr
    doc = json.loads(r.stderr.splitlines()[-1])
    assert doc["run"]["trace"] is None and doc["run"]["status"] == status
    assert "cannot see your program's GPU work" in doc["run"]["warning"]  # (no trace carries it)
    assert not out.exists() and not partial_path(out).exists()
    prog.write_text(ONE_REGION)
    r = subprocess.run(argv + [str(prog)], capture_output=True, text=True, cwd=tmp_path,
                       env=STANDINS_ENV)
    assert r.returncode == 0, r.stderr
    assert len(gpuwatch.load(out).inferences) == 1
    # over a trace it was asked to replace (--force), a run that timed nothing keeps that one
    prog.write_text(program)
    r = subprocess.run(argv + ["--force", str(prog)], capture_output=True, text=True,
                       cwd=tmp_path, env=STANDINS_ENV)
    assert r.returncode == code and "was left as it was" in r.stderr, r.stderr
    assert "trace: none written (" + str(out) + " is the one that was there)" in r.stderr
    assert len(gpuwatch.load(out).inferences) == 1


def test_a_session_interrupted_before_its_first_inference_writes_nothing(tmp_path):
    out = tmp_path / "s.parquet"
    s = gpuwatch.session("sim:t4", out)
    s.start()
    s.engine("builtin:tiny")
    s.close(status="interrupted")
    assert s.discarded and not s.left_previous
    assert not out.exists() and not partial_path(out).exists()
    # one that timed something keeps its trace, interrupted or not
    s = gpuwatch.session("sim:t4", out)
    s.start()
    e = s.engine("builtin:tiny")
    e.infer()
    e.synchronize()
    s.close(status="interrupted")
    assert not s.discarded and gpuwatch.load(out).meta["status"] == "interrupted"


def test_a_ctrl_c_turned_into_an_import_error_is_still_an_interruption(monkeypatch, capsys):
    """numpy's C import turns a Ctrl-C into ImportError("PyCapsule_Import could not import
    module 'datetime'"): with a press seen while loading, that is exit 130, not a traceback;
    without one, an ImportError is an ImportError."""
    import gpuwatch.cli as cli

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    before = signal.getsignal(signal.SIGINT)
    cli.WRITTEN.clear()  # (traces an earlier in-process command wrote: not this one's)
    with pytest.raises(SystemExit) as e:
        with cli.loading():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except KeyboardInterrupt:
                raise ImportError("PyCapsule_Import could not import module 'datetime'")
    assert e.value.code == 130  # (one line, no traceback: nothing had begun)
    assert capsys.readouterr().err == "gpuwatch: interrupted before it began; nothing was done\n"
    signal.signal(signal.SIGINT, before)  # (loading() leaves SIGINT ignored when it exits)
    with pytest.raises(SystemExit) as e:  # dropped where it landed (an importlib callback)
        with cli.loading():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            except KeyboardInterrupt:
                pass
    assert e.value.code == 130
    capsys.readouterr()
    signal.signal(signal.SIGINT, before)
    # a press in the import machinery itself is sent again a moment later, not raised there
    # (where importlib prints "Exception ignored ... Traceback" and drops it)
    import types

    machinery = types.SimpleNamespace(f_back=None, f_code=types.SimpleNamespace(
        co_filename="<frozen importlib._bootstrap>", co_name="cb"))
    raised_there = []
    with pytest.raises(SystemExit) as e:
        with cli.loading():
            try:
                signal.getsignal(signal.SIGINT)(signal.SIGINT, machinery)
            except KeyboardInterrupt:
                raised_there.append(True)
            time.sleep(1)  # (the press again: raised here)
    assert not raised_there
    assert e.value.code == 130 and "interrupted before it began" in capsys.readouterr().err
    signal.signal(signal.SIGINT, before)
    with pytest.raises(ImportError):
        with cli.loading():
            raise ImportError("no module named nope")
    assert signal.getsignal(signal.SIGINT) is before
    monkeypatch.setattr(cli, "WRITTEN", ["t.parquet"])  # (record's summary was loading)
    with pytest.raises(SystemExit):
        with cli.loading():
            raise KeyboardInterrupt
    signal.signal(signal.SIGINT, before)
    assert capsys.readouterr().err == "interrupted; the trace was written: t.parquet\n"


def test_finish_refusals_name_finishs_own_arguments(tmp_path):
    """An existing OUT, or a place that takes no file: one line naming OUT and -f/--force
    (finish has no --out, and session(...) is not what was used), exit 2, the .partial kept."""
    partial = _crashed(tmp_path)
    (tmp_path / "t.parquet").write_text("mine")
    r = _finish(partial)
    assert r.returncode == 2 and "pick another OUT, or replace it with -f/--force" in r.stderr
    assert "--out" not in r.stderr and "session(" not in r.stderr and partial.is_dir()
    if Path("/proc/self").is_dir():  # (root "may write" there by access(); no file can be made)
        r = _finish(partial, "/proc/t.parquet")
        assert r.returncode == 2 and "cannot take a new file" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and partial.is_dir()


def test_a_killed_recorder_not_yet_reaped_is_not_still_recording():
    """kill -9, then finish before the recorder's parent has reaped it: the zombie runs no
    more, and never will (a new user's try: "still being recorded by pid N; let it finish",
    for good where PID 1 reaps no orphans)."""
    import socket

    from gpuwatch.trace.paths import _proc_start_ticks, live_writer

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    ticks = _proc_start_ticks(p.pid)
    assert ticks is not None
    meta = {"writer": {"hostname": socket.gethostname(), "pid": p.pid, "pid_start_ticks": ticks}}
    assert live_writer(meta) == f"pid {p.pid} on {socket.gethostname()}"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)  # (exited, not waited for: a zombie)
    assert live_writer(meta) is None
    p.wait()


def test_a_ctrl_c_as_loading_begins_is_the_same_one_line(monkeypatch, capsys):
    """A press that lands as `python -m gpuwatch.record` enters loading(), before its handler
    is in place (seen on the H100: a traceback through loading()'s own import): exit 130 and
    one line, as anywhere else while the command loads."""
    import gpuwatch.cli as cli

    calls = []

    def pressed(signum):  # (the press, where loading() asks for the current handler)
        calls.append(signum)
        raise KeyboardInterrupt
    cli.WRITTEN.clear()
    monkeypatch.setattr(signal, "getsignal", pressed)
    with pytest.raises(SystemExit) as e:
        cli.module_main("record")
    monkeypatch.undo()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # (loading() left it ignored)
    assert calls and e.value.code == 130
    assert capsys.readouterr().err == "gpuwatch: interrupted before it began; nothing was done\n"
