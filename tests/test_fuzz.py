"""Fuzz-style tests: random command lines for `record` and `analyze`, and truncated or corrupted
trace files. Whatever comes in, the answer is a result or one clear line (exit 2), never a
traceback, a hang or a session left running."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuwatch
from gpuwatch.cli import main
from gpuwatch.cli.analyze import AnalyzeCommand
from gpuwatch.cli.record import RecordCommand
from gpuwatch.errors import TraceFormatError
from tests.conftest import sentence_shares
from tests.helpers import record_sim

pytestmark = pytest.mark.slow  # (seconds a test: run first, in parallel; see docs/install.md)

REAL_TRACE = Path(__file__).parent / "data" / "h100_causes" / "cotenant_copy.parquet"

# Values per flag: valid ones (kept small, so a run takes milliseconds on sim) and bad ones.
RECORD_FLAGS: dict[str, list[str | None]] = {
    "--gap": ["0", "5", "0,2", "-1", "nan", "inf", "", ",", "a", "5,x", "1e400", "3600001"],
    "--fps": ["200", "0", "-3", "x", "1e-9", "1e9"],
    "--iters": ["1", "3", "0", "-1", "x", "1.5", ""],
    "--warmup": ["0", "1", "-1", "x"],
    "--device": ["sim:t4", "sim:flat", "sim:", "sim:t4,gpus=2", "sim:t4,gpus=0",
                 "sim:t4,index=5", "sim:t4,fault=timeout@0+0.001", "sim:t4,fault=bogus",
                 "sim:t4,fault=cuda_error@0", "sim:t4,fault=gpu_lost@0", "cuda:x", "tpu", "",
                 "auto", "cuda:0", "7"],
    "--engine": ["builtin:small", "builtin:large", "builtin:small@50", "builtin:nope",
                 "missing.plan", "builtin:small@-1", "builtin:small@x", "x"],
    "--sample-hz": ["1000", "100", "0", "-1", "nan", "x", "1e9"],
    "--sampler": ["auto", "thread", "process", "off", "x"],
    "--sample-gpus": ["all", "0", "1", "x", "5", "-1", ""],
    "--wait": ["sleep", "spin", "nap"],
    "--precision": ["fp16", "int4"],
    "--binding": ["cuda", "pycuda", "x"],
    "--seed": ["1", "x"],
    "--torch": ["a:b", "nomodule"],
    "--onnx": ["missing.onnx"],
    "--out": ["OUT", "/nonexistent/dir/x.parquet", "DIR"],
    "--kernels": [None], "--pre-post": [None], "--cuda-graph": [None], "--quiet": [None],
    "--bogus": [None],
}


@st.composite
def record_argv(draw) -> list[str]:
    flags = draw(st.lists(st.sampled_from(sorted(RECORD_FLAGS)), max_size=6, unique=True))
    argv = ["--iters", "2", "--warmup", "0", "--device", "sim:t4", "--gap", "1"]
    for f in flags:
        v = draw(st.sampled_from(RECORD_FLAGS[f]))
        argv += [f] if v is None else [f, v]
    return argv


def run_cli(command, argv: list[str], out: io.StringIO | None = None) -> tuple[int, str]:
    """The command run in this process: its exit status and stderr (stdout into `out`)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out or io.StringIO()):
        try:
            code = main(command, argv)
        except SystemExit as e:  # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 2
    return code, err.getvalue()


def assert_clean(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    if code != 0:  # 2: bad input; 1: the (simulated) GPU failed, e.g. an injected CUDA error
        assert code == 2 or (code == 1 and "CUDA_ERROR" in err), err
        lines = [x for x in err.strip().splitlines() if x]
        assert len(lines) == 1 and "error:" in lines[0], err
    assert gpuwatch.recorder.active() is None  # no session left recording


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_argv())
def test_record_command_lines(argv):
    with tempfile.TemporaryDirectory() as d:
        argv = [x.replace("OUT", f"{d}/t.parquet").replace("DIR", d) for x in argv]
        here = os.getcwd()
        os.chdir(d)  # (a command line without --out writes its default name here, not in the repo)
        try:
            code, err = run_cli(RecordCommand(), argv)
        finally:
            os.chdir(here)
        assert_clean(code, err)
        if code == 0:
            out = argv[len(argv) - 1 - argv[::-1].index("--out") + 1] if "--out" in argv \
                else None
            if out:
                assert gpuwatch.load(out).meta["status"] == "complete"
                assert not Path(out + ".partial").exists()


_SMALL: list[bytes] = []


def small_trace() -> bytes:
    """A small valid trace with every table, made once (not a fixture: hypothesis would print
    its bytes with every failing example)."""
    if not _SMALL:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "small.parquet"
            with gpuwatch.session("sim:t4", out, kernels=True) as s:
                e = s.engine()
                for _ in range(30):
                    e.infer()
                    s.wait(5)
            _SMALL.append(out.read_bytes())
    return _SMALL[0]


def _load_or_clear_error(path: Path) -> None:
    try:
        tr = gpuwatch.load(path)
    except TraceFormatError as e:
        assert "\n" not in str(e)
        return
    for df in (tr.inferences, tr.samples, tr.kernels, tr.events):
        len(df)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                           max_size=8),
       real=st.booleans())
def test_truncated_or_corrupted_traces_load_or_fail_in_one_line(cut, flips, real):
    """A small sim trace, or a real one recorded on the H100 (tests/data), cut short and with
    bytes flipped."""
    data = bytearray(REAL_TRACE.read_bytes() if real else small_trace())
    for where, byte in flips:
        data[int(where * (len(data) - 1))] = byte
    data = data[: max(1, int(cut * len(data)))] if cut < 0.999 else data
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "bad.parquet"
        p.write_bytes(bytes(data))
        _load_or_clear_error(p)
        code, err = run_cli(AnalyzeCommand(), [str(p)])
        assert_clean(code, err)


@pytest.mark.filterwarnings("ignore::gpuwatch.trace.RecoveredTraceWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damage=st.sampled_from(["meta_cut", "meta_garbage", "meta_empty", "chunk_cut",
                               "chunk_garbage", "no_chunks", "meta_list", "meta_version"]))
def test_damaged_partial_recordings_load_or_fail_in_one_line(damage):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.parquet"
        s = gpuwatch.session("sim:t4", out)
        s.start()
        e = s.engine()
        for _ in range(50):
            e.infer()
            s.wait(20)
        s._writer._chunks.close()  # chunks on disk, never merged: as after kill -9
        s._backend.close()
        s._release()
        s._restore_sigint()  # (the process lives on: its signal handlers and exit hooks go
        s._restore_sigterm()  # back, as a dead process's would not need to)
        s._restore_exit()
        partial = Path(str(out) + ".partial")
        meta = partial / "meta.json"
        chunks = sorted(partial.glob("*.parquet"))
        if damage == "meta_cut":
            meta.write_text(meta.read_text()[:40])
        elif damage == "meta_garbage":
            meta.write_bytes(b"\xff\xfe\x00garbage")
        elif damage == "meta_empty":
            meta.write_text("")
        elif damage == "meta_list":
            meta.write_text("[1, 2]")
        elif damage == "meta_version":
            meta.write_text('{"schema_version": "one"}')
        elif damage == "chunk_cut":
            chunks[0].write_bytes(chunks[0].read_bytes()[:100])
        elif damage == "chunk_garbage":
            chunks[-1].write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
        elif damage == "no_chunks":
            for c in chunks:
                c.unlink()
        with pytest.warns(Warning) if damage.startswith(("chunk", "no_")) else \
                contextlib.nullcontext():
            _load_or_clear_error(partial)
        code, err = run_cli(AnalyzeCommand(), [str(partial)])
        assert_clean(code, err)
        shutil.rmtree(partial, ignore_errors=True)


# -- property-based analysis: generated values in a valid trace --------------------------------

_VALUE_TRACE: list[Path] = []
MUTABLE = {  # column -> the table its rows belong to
    "gpu_ms": "inferences", "iteration": "inferences", "start_ns": "inferences",
    "sm_clock_inband_mhz": "inferences", "condition": "inferences",
    "sm_clock_mhz": "samples", "power_w": "samples", "clock_event_reasons": "samples",
    "gpu_util_pct": "samples", "t_ns": "samples"}
ODD = [0.0, -1.0, -5.0, 1e-12, 1e12, float("nan"), float("inf"), float("-inf"), 7.0, 1590.0,
       None]


def value_trace() -> Path:
    """A two-condition trace on the simulated T4 (the clock drops with the gap), made once."""
    if not _VALUE_TRACE:
        d = Path(tempfile.mkdtemp())
        out = d / "values.parquet"
        record_sim(out, iters=80, warmup=0, sample_hz=500)
        _VALUE_TRACE.append(out)
    return _VALUE_TRACE[0]


@settings(max_examples=int(os.environ.get("GPUWATCH_FUZZ_EXAMPLES", "20")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(MUTABLE)), st.floats(0, 1),
                                st.floats(0, 1), st.sampled_from(ODD)), max_size=12))
def test_analysis_of_any_values_is_a_result_or_one_line(edits):
    """Odd values written into a valid trace (a share of a column's rows, from a point, set to
    0, negative, tiny, huge, NaN, inf or null): `analyze --json` gives a result whose shares are
    within 0..100% in every sentence and 0..1 in every verdict row, or one clear error line.
    (The JSON is the Analysis' to_dict(): the API's result, checked without analysing twice.)"""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(value_trace())
    table = np.array(t.column("table_name").to_pylist())
    for col, start, share, value in edits:
        rows = np.nonzero(table == MUTABLE[col])[0]
        lo = int(start * len(rows))
        hit = rows[lo: lo + max(1, int(share * len(rows) / 4))]
        typ = t.schema.field(col).type
        vals = t.column(col).to_pylist()
        for i in hit:
            v = value
            if v is not None and (pa.types.is_integer(typ) or pa.types.is_string(typ)):
                if not np.isfinite(v) or abs(v) > 2**31 - 1:
                    v = None
                else:
                    v = str(int(v)) if pa.types.is_string(typ) else int(v)
            vals[i] = v
        t = t.set_column(t.schema.get_field_index(col), col, pa.array(vals, type=typ))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "v.parquet"
        pq.write_table(t, p)
        out = io.StringIO()
        code, err = run_cli(AnalyzeCommand(), [str(p), "--json"], out)
        assert_clean(code, err)
        if code != 0:
            return
        result = json.loads(out.getvalue())
        rows = result["verdicts"] + result["wall_verdicts"]
        for text in [r.get("sentence") or "" for r in rows] + [result["verdict"]]:
            assert all(0 <= x <= 100 for x in sentence_shares(text)), text
        shares = [r["share"] for r in rows if r.get("share") is not None]
        assert all(0 <= x <= 1 for x in shares), shares
