"""Where a trace may be written (issue 16): never over an existing trace unless asked, never
onto a device or other special file, never deleting an unfinished recording, never two writers
on one path. Each refusal is one line naming the problem and the fix (exit 2 on the CLI)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import gpuwatch
from gpuwatch.errors import UsageError
from gpuwatch.trace import LOCK_NAME, partial_path
from tests.helpers import gw, gw_here

RECORD = [sys.executable, "-m", "gpuwatch.record", "--device", "sim:flat", "--gap", "0",
          "--iters", "30", "--warmup", "2", "--quiet"]


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _record(tmp_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """RECORD in this process (tests/helpers.py)."""
    return gw_here(*RECORD[3:], "--out", str(out), *extra, cwd=tmp_path,
                   module="gpuwatch.record")


def test_an_existing_trace_is_kept_unless_force(tmp_path):
    out = tmp_path / "t.parquet"
    assert _record(tmp_path, out).returncode == 0
    before = _digest(out)
    r = _record(tmp_path, out)
    assert r.returncode == 2 and "already exists" in r.stderr and "--force" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and _digest(out) == before
    with pytest.raises(UsageError, match="overwrite=True") as e:
        gpuwatch.session("sim:flat", out).start()
    assert "--" not in str(e.value)  # (session()'s own arguments, not the CLI's flags)
    assert _digest(out) == before
    r = _record(tmp_path, out, "--force", "--seed", "7")
    assert r.returncode == 0 and _digest(out) != before
    assert gpuwatch.load(out).meta["options"]["seed"] == 7


def test_a_run_that_fails_at_start_leaves_an_existing_trace_alone(tmp_path):
    """(A new user's report: a failing record replaced their trace with an empty one.)"""
    out = tmp_path / "keep.parquet"
    assert _record(tmp_path, out).returncode == 0
    before = _digest(out)
    for force in ([], ["--force"]):  # even when asked to replace it
        r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--device", "standin",
                            "--out", str(out), *force], capture_output=True, text=True,
                           cwd=tmp_path)
        assert r.returncode == 2 and _digest(out) == before
        r = _record(tmp_path, out, "--engine", "builtin:smal", *force)
        assert r.returncode == 2 and _digest(out) == before
        assert not partial_path(out).exists()


@pytest.mark.parametrize("kind", ["device", "fifo", "dangling link"])
def test_special_files_are_never_written(tmp_path, kind):
    if kind == "device":
        target = Path(os.devnull)
    elif kind == "fifo":
        target = tmp_path / "pipe.parquet"
        os.mkfifo(target)
    else:
        target = tmp_path / "link.parquet"
        target.symlink_to(tmp_path / "nowhere" / "x.parquet")
    r = _record(tmp_path, target, "--force")
    assert r.returncode == 2 and "not a regular file" in r.stderr
    if kind == "device":
        assert Path(os.devnull).is_char_device()


def test_an_unfinished_recording_is_never_deleted(tmp_path):
    """A crash left t.parquet.partial: a new recording to t.parquet refuses, and says how to
    analyse, finish or remove it; the chunks are still there."""
    out = tmp_path / "t.parquet"
    partial = partial_path(out)
    code = textwrap.dedent(f"""
        import os, gpuwatch
        s = gpuwatch.session("sim:flat", {str(out)!r}, sample_hz=200)
        s.start()
        for _ in range(50):
            s.infer(lambda: None)
        s._writer._chunks.close()  # what was buffered reaches the disk, then: a crash
        os.kill(os.getpid(), 9)
    """)
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == -9
    chunks = sorted(p.name for p in partial.iterdir())
    assert any(c.endswith("-inferences.parquet") for c in chunks)
    r = _record(tmp_path, out, "--force")
    assert r.returncode == 2 and "unfinished recording" in r.stderr
    assert "gpuwatch.analyze" in r.stderr and "gpuwatch.finish" in r.stderr
    assert sorted(p.name for p in partial.iterdir()) == chunks  # nothing deleted
    # what the message offers works: analyse it as it is, or finish it into a trace (a crash
    # loses at most the regions not yet resolved)
    with pytest.warns(UserWarning, match="unfinished recording"):
        kept = len(gpuwatch.load(partial).measured())
    assert 45 <= kept <= 50
    bad = gw_here(partial, os.devnull, module="gpuwatch.finish")
    assert bad.returncode == 2 and "not a regular file" in bad.stderr
    assert Path(os.devnull).is_char_device()
    fin = gw_here(partial, module="gpuwatch.finish")
    assert fin.returncode == 0 and "RuntimeWarning" not in fin.stderr, fin.stderr
    tr = gpuwatch.load(out)
    assert len(tr.measured()) == kept and tr.meta["status"] == "interrupted"
    assert not partial.exists()
    again = gw_here(partial, module="gpuwatch.finish")
    assert again.returncode == 2 and "not an unfinished gpuwatch recording" in again.stderr


def test_a_second_writer_to_the_same_path_fails_at_its_start(tmp_path):
    """One process is recording to t.parquet; another starting on it fails at once, naming the
    first, and the first's recording is whole."""
    out = tmp_path / "t.parquet"
    s = gpuwatch.session("sim:flat", out, sample_hz=200)
    s.start()
    try:
        for _ in range(20):
            s.infer(lambda: None)
        r = gw(*RECORD[3:], "--out", str(out), "--force", cwd=tmp_path,  # (another process)
               module="gpuwatch.record")
        assert r.returncode == 2 and f"pid {os.getpid()}" in r.stderr
        assert "recording to" in r.stderr
        for _ in range(20):
            s.infer(lambda: None)
    finally:
        s.close()
    assert len(gpuwatch.load(out).measured()) == 40
    assert not partial_path(out).exists()


def test_a_lock_left_by_a_dead_process_is_stale_not_busy(tmp_path):
    out = tmp_path / "t.parquet"
    partial = partial_path(out)
    partial.mkdir()
    (partial / LOCK_NAME).write_text("999999 somehost\n")  # no process holds it
    (partial / "c0000001-inferences.parquet").write_bytes(b"rows")
    with pytest.raises(UsageError, match="unfinished recording"):
        gpuwatch.session("sim:flat", out).start()


def test_a_partial_that_recorded_nothing_is_cleared(tmp_path):
    """A run that failed at its start (a full disk, say) leaves a .partial with no chunks:
    nothing to keep, so the next recording clears it instead of refusing."""
    out = tmp_path / "t.parquet"
    partial = partial_path(out)
    partial.mkdir()
    (partial / LOCK_NAME).write_text("999999 somehost\n")
    (partial / "meta.json.tmp").write_text("{")
    with gpuwatch.session("sim:flat", out) as s:
        s.infer(lambda: None)
    assert len(gpuwatch.load(out).measured()) == 1


def test_a_forked_child_does_not_hold_the_path(tmp_path):
    """A child forked during a session (a DataLoader worker) outlives its parent: the path is
    free once the parent is gone (POSIX record locks are the process's own)."""
    out = tmp_path / "t.parquet"
    code = textwrap.dedent(f"""
        import os, time, gpuwatch
        s = gpuwatch.session("sim:flat", {str(out)!r}, sample_hz=200)
        s.start()
        for _ in range(20):
            s.infer(lambda: None)
        s._writer._chunks.close()
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        os.kill(os.getpid(), 9)  # the parent dies (kill -9); the child lives on
    """)
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == -9
    r = _record(tmp_path, out, "--force")
    assert r.returncode == 2 and "unfinished recording" in r.stderr  # not "another process"
    subprocess.run(["pkill", "-f", "time.sleep(30)"], check=False)


def test_stray_files_in_a_partial_directory_are_ignored(tmp_path):
    out = tmp_path / "t.parquet"
    with gpuwatch.session("sim:flat", out, sample_hz=200) as s:
        for _ in range(10):
            s.infer(lambda: None)
        (s._writer.partial_dir / "junk.parquet").write_bytes(b"not ours")
        (s._writer.partial_dir / "notes.txt").write_text("hello")
    assert len(gpuwatch.load(out).measured()) == 10


def test_an_output_name_too_long_for_its_partial_directory(tmp_path):
    r = _record(tmp_path, tmp_path / ("x" * 250 + ".parquet"))
    assert r.returncode == 2 and "too long" in r.stderr


def test_a_finished_recording_releases_its_path(tmp_path):
    """After a session closes, its .partial (and lock) are gone: the same path can be recorded
    again (with overwrite=True, as the trace now exists)."""
    out = tmp_path / "t.parquet"
    with gpuwatch.session("sim:flat", out, sample_hz=200) as s:
        s.infer(time.sleep, 0)
    assert not partial_path(out).exists()
    with gpuwatch.session("sim:flat", out, sample_hz=200, overwrite=True) as s:
        s.infer(time.sleep, 0)


FIXTURE = Path(__file__).parent / "data" / "h100_small_gap0_20_fixture.parquet"


def _analyze(tmp_path: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return gw_here(*args, cwd=tmp_path, module="gpuwatch.analyze")


def test_a_report_never_replaces_a_file_unasked_nor_the_trace_it_reads(tmp_path):
    """`analyze --html/--perfetto` (as record's --out): an existing file is kept unless -f; the
    trace being analysed is never written over, -f or not; two flags never share a file."""
    trace = tmp_path / "t.parquet"
    trace.write_bytes(FIXTURE.read_bytes())
    before = _digest(trace)
    html = tmp_path / "r.html"
    html.write_text("mine")
    r = _analyze(tmp_path, trace, "--html", html, "-q")
    assert r.returncode == 2 and "--html" in r.stderr and "already exists" in r.stderr
    assert "-f/--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert html.read_text() == "mine"
    r = _analyze(tmp_path, trace, "--html", html, "-q", "-f")
    assert r.returncode == 0, r.stderr
    assert html.read_text().startswith("<!doctype html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "t.parquet"]  # (no temp)
    for flag in ("--html", "--perfetto"):
        r = _analyze(tmp_path, trace, flag, trace, "-q", "-f")
        assert r.returncode == 2 and "is the trace itself" in r.stderr, r.stderr
    assert _digest(trace) == before
    r = _analyze(tmp_path, trace, "--html", tmp_path / "x", "--perfetto", tmp_path / "x")
    assert r.returncode == 2 and "name the same file" in r.stderr
    r = _analyze(tmp_path, trace, "--png", "")
    assert r.returncode == 2 and "--png takes a directory" in r.stderr
    assert not (tmp_path / "x").exists()


def test_a_report_is_written_whole_or_not_at_all(tmp_path):
    """A renderer that fails half way (a bug, a full disk, Ctrl-C) leaves the file that was
    there, and no temporary file beside it."""
    from gpuwatch.renderers.base import write_text

    out = tmp_path / "r.html"
    write_text(out, ["<p>", "old", "</p>"])
    assert out.read_text() == "<p>old</p>"

    def failing():
        yield "<p>new"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_text(out, failing())
    assert out.read_text() == "<p>old</p>" and [p.name for p in tmp_path.iterdir()] == ["r.html"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # (an ordinary file)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
