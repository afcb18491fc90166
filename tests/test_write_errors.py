"""A trace that cannot be written (disk full, I/O error): recording stops at once with one clear
line, nothing more is buffered, what was written is kept, and the trace says `status: failed`
and why (issue 16). The failure is injected into the chunk writer's Parquet write (a real full
disk needs a filesystem the tests may not be allowed to mount)."""

from __future__ import annotations

import errno
import time

import pyarrow.parquet as pq
import pytest

import gpuwatch
import gpuwatch.trace.finish as trace_mod  # (the merge: the writer calls it through here)
from gpuwatch.cli import main
from gpuwatch.cli.record import RecordCommand
from gpuwatch.errors import TraceWriteError
from gpuwatch.trace import partial_path


def _disk_fills_after(monkeypatch, ok_writes: int) -> list[int]:
    """pq.write_table works `ok_writes` times, then fails as a full disk does."""
    calls = [0]
    real = pq.write_table

    def write_table(*a, **k):
        calls[0] += 1
        if calls[0] > ok_writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(trace_mod.pq, "write_table", write_table)
    return calls


def test_a_full_disk_stops_recording_keeps_what_was_written(tmp_path, monkeypatch, capsys):
    out = tmp_path / "t.parquet"
    s = gpuwatch.session("sim:flat", out, sample_hz=1000)
    s.start()
    for _ in range(300):
        s.infer(lambda: None)
    with s._writer._chunks._wake:  # flush what there is now, before the disk fills
        s._writer._chunks._wake.notify()
    before = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        files = list(s._writer.partial_dir.glob("*-inferences.parquet"))
        if files:
            before = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
            break
        time.sleep(0.05)
    assert before
    _disk_fills_after(monkeypatch, 0)
    for _ in range(20_000):  # the program runs on; rows are not buffered
        s.infer(lambda: None)
        if s.write_error is not None:
            break
    deadline = time.monotonic() + 10
    while s.write_error is None and time.monotonic() < deadline:
        s.infer(lambda: None)
        time.sleep(0.001)
    assert "No space left" in s.write_error
    for _ in range(5_000):
        s.infer(lambda: None)
    chunks = s._writer._chunks
    assert not any(chunks._buffers.values()) and not any(chunks._columns.values())
    err = capsys.readouterr().err
    assert err.count("cannot write the trace") == 1 and "No space left on device" in err
    monkeypatch.undo()  # (the final merge writes with ParquetWriter, which still works)
    with pytest.raises(TraceWriteError, match="holds what was written before"):
        s.close()
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "failed" and "No space left" in tr.meta["error"]
    assert tr.meta["failed_by"] == "trace"  # (writing it failed: the recording's failure)
    assert len(tr.inferences) >= before and not partial_path(out).exists()


def test_the_record_cli_stops_promptly_and_exits_1(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.parquet"
    calls = _disk_fills_after(monkeypatch, 2)
    code = main(RecordCommand(), ["--device", "sim:flat", "--gap", "0", "--iters", "200000",
                                  "--out", str(out), "--quiet"])
    assert code == 1 and calls[0] >= 3
    err = capsys.readouterr().err.strip().splitlines()
    assert any("cannot write the trace" in line for line in err)
    assert "holds what was written before" in err[-1]
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "failed"
    assert len(tr.measured()) < 200_000  # it stopped, it did not run to the end


def test_a_full_disk_at_the_final_merge_keeps_the_partial(tmp_path, monkeypatch):
    out = tmp_path / "t.parquet"
    s = gpuwatch.session("sim:flat", out, sample_hz=200)
    s.start()
    for _ in range(100):
        s.infer(lambda: None)

    def no_room(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trace_mod, "_merge_chunks", no_room)
    with pytest.raises(TraceWriteError, match="kept in .*partial"):
        s.close()
    partial = partial_path(out)
    assert partial.is_dir() and not out.exists()
    with pytest.warns(UserWarning, match="unfinished recording"):
        assert len(gpuwatch.load(partial).measured()) == 100
    monkeypatch.undo()
    with pytest.raises(gpuwatch.UsageError, match="unfinished recording"):  # never deleted
        gpuwatch.session("sim:flat", out).start()


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_while_the_trace_is_finished(tmp_path, monkeypatch, capsys, presses):
    """One Ctrl-C while the final file is written: it is finished anyway, and the user is
    told. Two: it stops, and says truthfully that the final file was not made and where the
    recording is."""
    import os
    import signal

    out = tmp_path / "t.parquet"
    real = trace_mod._merge_chunks
    before = signal.getsignal(signal.SIGINT)  # (Python's own, or SIG_IGN in a background job)

    def slow_merge(*a, **k):
        for _ in range(presses):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # (the handler runs between bytecodes)
        return real(*a, **k)

    monkeypatch.setattr(trace_mod, "_merge_chunks", slow_merge)
    s = gpuwatch.session("sim:flat", out, sample_hz=200)
    s.start()
    for _ in range(50):
        s.infer(lambda: None)
    if presses == 1:
        s.close()
        assert len(gpuwatch.load(out).measured()) == 50
        assert "Ctrl-C again to stop now" in capsys.readouterr().err
    else:
        with pytest.raises(KeyboardInterrupt):
            s.close()
        err = capsys.readouterr().err
        assert "was not written" in err and str(partial_path(out)) in err
        assert not out.exists() and partial_path(out).is_dir()
        with pytest.warns(UserWarning, match="unfinished recording"):
            assert len(gpuwatch.load(partial_path(out)).measured()) == 50
    assert signal.getsignal(signal.SIGINT) is before  # (given back as it was)


def test_ctrl_c_after_the_final_file_is_in_place_says_it_is_complete(tmp_path, monkeypatch,
                                                                     capsys):
    """(The merge helper process may finish the file while the recording process is being
    interrupted: then the trace is complete, and nothing claims otherwise.)"""
    import os
    import signal

    out = tmp_path / "t.parquet"
    real = trace_mod._merge_chunks

    def merge_then_interrupted(*a, **k):
        rows = real(*a, **k)
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return rows

    monkeypatch.setattr(trace_mod, "_merge_chunks", merge_then_interrupted)
    s = gpuwatch.session("sim:flat", out, sample_hz=200)
    s.start()
    for _ in range(30):
        s.infer(lambda: None)
    with pytest.raises(KeyboardInterrupt):
        s.close()
    assert "is complete" in capsys.readouterr().err
    assert len(gpuwatch.load(out).measured()) == 30 and not partial_path(out).exists()
