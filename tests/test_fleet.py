"""Fleet datasets: `record --dataset`, `analyze DIR` streamed trace by trace, and the same
question answered by DuckDB and Dask from benchmarks/fleet/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import gpuwatch
from gpuwatch.analysis.fleet import fleet, format_fleet
from gpuwatch.errors import TraceFormatError, UsageError
from tests.helpers import gw_here

FLEET_DIR = Path(__file__).parents[1] / "benchmarks" / "fleet"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`gpuwatch ARGS`, run in this process (tests/helpers.py)."""
    return gw_here(*args, cwd=cwd)


@pytest.fixture(scope="session")  # (not module: slow tests run first, splitting the module)
def fleet_root(tmp_path_factory) -> Path:
    """Three T4 runs (gaps 0, 5, 20 ms) and one locked-clock run, as `record --dataset` writes."""
    root = tmp_path_factory.mktemp("fl") / "fleet"
    root.mkdir()
    for seed in (1, 2, 3):
        r = cli("record", "--device", "sim:t4", "--gap", "0,5,20", "--iters", "300", "--seed",
                str(seed), "--dataset", str(root), "--quiet", cwd=root.parent)
        assert r.returncode == 0, r.stderr
    r = cli("record", "--device", "sim:flat", "--gap", "20", "--iters", "300", "--dataset",
            str(root), "--quiet", cwd=root.parent)
    assert r.returncode == 0, r.stderr
    return root


@pytest.mark.slow
def test_record_writes_a_hive_partitioned_dataset(fleet_root):
    files = sorted(fleet_root.rglob("*.parquet"))
    assert len(files) == 4
    for f in files:
        host, model, run, name = f.relative_to(fleet_root).parts
        assert host.startswith("host=") and run.startswith("run=") and name == "trace.parquet"
        assert model in ("gpu_model=Simulated_Tesla_T4", "gpu_model=Simulated_GPU_locked_clocks")
        assert gpuwatch.load(f).meta["status"] == "complete"


def test_fleet_numbers_are_each_runs_own(fleet_root):
    f = fleet(fleet_root)
    assert f.files == 4 and len(f.runs) == 3 * 3 + 1
    for path, rows in f.runs.groupby("file"):
        own = gpuwatch.condition_summary(gpuwatch.load(path)).set_index("condition")
        for r in rows.itertuples():
            assert r.late_p50_ms == pytest.approx(own.loc[r.condition, "late_p50_ms"], abs=1e-9)
            assert r.early_p50_ms == pytest.approx(own.loc[r.condition, "early_p50_ms"], abs=1e-9)
            assert r.p50_ms == pytest.approx(own.loc[r.condition, "p50_ms"], rel=0.006)
            assert r.n == own.loc[r.condition, "n"] == 300
        # (each run's partition values are its own directory's: host=, gpu_model=, run=)
        parts = dict(p.split("=", 1) for p in Path(path).relative_to(fleet_root).parts[:-1])
        for k in ("host", "gpu_model", "run"):
            assert set(rows[k].astype(str)) == {parts[k]}, (k, path)
    t4 = f.by_model_gap[f.by_model_gap["gpu_model"] == "Simulated_Tesla_T4"].set_index("gap_ms")
    assert list(t4["runs"]) == [3, 3, 3]
    assert t4.loc[20.0, "stable_ms"] > 1.8 * t4.loc[0.0, "stable_ms"]  # the T4 staircase


def test_duckdb_and_dask_answer_the_same_fleet_question(fleet_root):
    duckdb = pytest.importorskip("duckdb")
    pytest.importorskip("dask.dataframe")
    sys.path.insert(0, str(FLEET_DIR))
    try:
        from stable_latency_dask import stable_latency
    finally:
        sys.path.remove(str(FLEET_DIR))
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{fleet_root.parent}'")
    ours = fleet(fleet_root).by_model_gap[["gpu_model", "engine", "gap_ms", "runs", "stable_ms"]]
    sql = con.sql((FLEET_DIR / "stable_latency.sql").read_text()).df()
    dask = stable_latency(str(fleet_root))
    for other in (sql, dask):
        other = other.astype({"runs": "int64"})
        pd.testing.assert_frame_equal(other.reset_index(drop=True),
                                      ours.astype({"runs": "int64"}).reset_index(drop=True),
                                      check_dtype=False, rtol=1e-9)


def test_analyze_a_directory_streams_the_fleet(fleet_root):
    r = cli("analyze", str(fleet_root), cwd=fleet_root.parent)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "4 traces"
    assert lines[-1].startswith("stable ms: the median over runs of each run's last 100 "
                                "iterations' median GPU time (events, gpu_ms)")
    assert any(x.startswith("Simulated_Tesla_T4") and x.split()[1:3] == ["20", "3"]
               for x in lines)
    j = cli("analyze", str(fleet_root), "--json", cwd=fleet_root.parent)
    assert j.returncode == 0 and '"by_model_gap"' in j.stdout
    # -q: one line, the group whose late inferences ran slowest against its early ones
    q = cli("analyze", str(fleet_root), "-q", cwd=fleet_root.parent)
    assert q.returncode == 0, q.stderr
    t = fleet(fleet_root).by_model_gap
    worst = t.loc[t["late_over_early_max"].idxmax()]
    assert q.stdout.count("\n") == 1 and q.stdout.startswith("4 traces, ")
    assert f"{worst['late_over_early_max']:.2f}x ({worst['gpu_model']}" in q.stdout
    assert f"gap {worst['gap_ms']:g} ms" in q.stdout, q.stdout


def test_unfinished_recordings_and_foreign_files_are_left_out(tmp_path, fleet_root):
    import shutil

    root = tmp_path / "mixed"
    shutil.copytree(fleet_root, root)
    partial = root / "host=x" / "gpu_model=y" / "run=z" / "trace.parquet.partial"
    partial.mkdir(parents=True)
    (partial / "c0000001-samples.parquet").write_bytes(b"junk")
    pd.DataFrame({"a": [1]}).to_parquet(root / "host=x" / "foreign.parquet")
    (root / "host=x" / "junk.parquet").write_bytes(b"junk")
    (root / "host=x" / "empty.parquet").write_bytes(b"")
    with pytest.warns(UserWarning, match="left out 3 Parquet file.s. that are not readable gpuwatch traces"):
        f = fleet(root)
    assert f.files == 4 and len(f.skipped) == 3
    # (each one's reason, not only the first's as the warning gives it)
    why = f.to_dict()["skipped_why"]
    assert why[str(root / "host=x" / "foreign.parquet")] == "not a gpuwatch trace"
    assert why[str(root / "host=x" / "junk.parquet")].startswith("not a readable Parquet file (")
    assert why[str(root / "host=x" / "empty.parquet")] == "empty (0 bytes): not a trace"


@pytest.mark.parametrize("make, exc, words", [
    (lambda d: None, UsageError, "no traces"),
    (lambda d: pd.DataFrame({"a": [1]}).to_parquet(d / "x.parquet"), TraceFormatError,
     "none of the 1 Parquet files"),
])
def test_empty_or_foreign_directories_are_clear_errors(tmp_path, make, exc, words):
    make(tmp_path)
    with pytest.warns(UserWarning) if exc is TraceFormatError else _nothing():
        with pytest.raises(exc, match=words):
            fleet(tmp_path)
    r = cli("analyze", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr


def test_dataset_usage_errors(tmp_path):
    # a dataset directory that does not exist yet is created (issue 29); a file is refused
    r = cli("record", "--device", "sim:t4", "--iters", "5", "--dataset", str(tmp_path / "no"),
            cwd=tmp_path)
    assert r.returncode == 0 and len(list((tmp_path / "no").rglob("trace.parquet"))) == 1, \
        r.stderr
    (tmp_path / "f").write_text("")
    r = cli("record", "--device", "sim:t4", "--iters", "5", "--dataset", str(tmp_path / "f"),
            cwd=tmp_path)
    assert r.returncode == 2 and "is a file, not a directory" in r.stderr
    r = cli("record", "--device", "sim:t4", "--iters", "5", "--dataset", str(tmp_path),
            "--out", "x.parquet", cwd=tmp_path)
    assert r.returncode == 2 and "either --out or --dataset" in r.stderr
    r = cli("analyze", str(tmp_path), "--html", "r.html", cwd=tmp_path)
    assert r.returncode == 2
    r = cli("record", "--device", "sim:t4", "--iters", "5", "--dataset", "", cwd=tmp_path)
    assert r.returncode == 2 and "dataset (--dataset) is empty" in r.stderr  # (not "both")


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def test_an_unfinished_run_in_a_dataset_is_named_not_skipped_silently(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    with gpuwatch.session("sim:flat", dataset=ds, sample_hz=200) as s:
        for _ in range(30):
            s.infer(lambda: None)
    run = next(ds.rglob("trace.parquet")).parent
    crashed = run.with_name(run.name + "-crashed")
    crashed.mkdir()
    (crashed / "trace.parquet.partial").mkdir()
    with pytest.warns(UserWarning, match="1 unfinished recording"):
        f = fleet(ds)
    assert f.files == 1
    # (said where a script reads, not only in the warning: the JSON and the one line)
    partial = str(crashed / "trace.parquet.partial")
    assert f.unfinished == (partial,) and f.to_dict()["unfinished"] == [partial]
    assert f.headline().startswith("1 trace (1 unfinished .partial left out), ")


def test_a_recording_still_in_progress_is_not_sent_to_finish(tmp_path, fleet_root):
    """A .partial whose recording process lives (here: this test's parent, named as its
    writer) is left out as in progress; `finish` would refuse it."""
    import json
    import os
    import shutil
    import socket

    from gpuwatch.trace import _proc_start_ticks

    root = tmp_path / "live"
    shutil.copytree(fleet_root, root)
    partial = root / "host=x" / "gpu_model=y" / "run=z" / "trace.parquet.partial"
    partial.mkdir(parents=True)
    writer = {"hostname": socket.gethostname(), "pid": os.getppid(),
              "pid_start_ticks": _proc_start_ticks(os.getppid())}
    (partial / "meta.json").write_text(json.dumps({"schema_version": 4, "status": "recording",
                                                   "writer": writer}))
    with pytest.warns(UserWarning, match=r"left out 1 recording\(s\) still in progress") as w:
        f = fleet(root)
    assert f.files == 4
    assert f.in_progress == (str(partial),) and f.to_dict()["in_progress"] == [str(partial)]
    assert f.headline().startswith("4 traces (1 still recording, left out), ")
    assert not any("gpuwatch.finish" in str(x.message) for x in w)


def test_the_headline_counts_in_words_that_agree():
    from gpuwatch.analysis.fleet import Fleet

    one = pd.DataFrame([{"gpu_model": "T4", "engine": "e", "gap_ms": 20.0, "runs": 1,
                         "late_over_early_max": 1.5, "late_over_early_p50": 1.5}])
    f = Fleet(runs=pd.DataFrame(), by_model_gap=one, files=1)
    assert f.headline() == ("1 trace, 1 group; the largest late/early ratio is 1.50x (T4, "
                            "engine e, gap 20 ms; its one run)")
    two = pd.concat([one, one.assign(gap_ms=0.0, runs=3, late_over_early_max=1.0)],
                    ignore_index=True)
    assert "2 groups" in Fleet(runs=pd.DataFrame(), by_model_gap=two, files=4).headline()


def test_plain_traces_are_grouped_by_the_gpu_in_their_metadata(tmp_path):
    """A folder of traces written with -o (no host=/gpu_model= directories): each run's host
    and GPU model come from its metadata, spelled as `record --dataset` would, so two GPU
    models are two groups (they were one: "stable 7.003 ms (4.730-9.277)")."""
    import socket

    from gpuwatch.trace import partition_value

    d = tmp_path / "plain"
    d.mkdir()
    for dev, name in (("sim:t4", "t4"), ("sim:flat", "flat")):
        r = cli("record", "--device", dev, "--gap", "20", "--iters", "200", "-q", "-o",
                str(d / f"{name}.parquet"), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    f = fleet(d)
    assert sorted(f.by_model_gap["gpu_model"]) == ["Simulated_GPU_locked_clocks",
                                                   "Simulated_Tesla_T4"]
    # (the columns of a dataset's, so that a script reads both: no run directory, no run)
    assert list(f.runs.columns[:3]) == ["host", "gpu_model", "run"]
    assert f.runs["run"].isna().all()
    assert all(r["run"] is None for r in f.to_dict()["runs"])
    assert set(f.runs["host"]) == {partition_value(socket.gethostname())}
    t4 = f.by_model_gap.set_index("gpu_model").loc["Simulated_Tesla_T4"]
    assert t4["runs"] == 1 and t4["stable_ms"] > 1.8 * f.by_model_gap["stable_ms"].min()


def test_a_member_that_repeats_its_rows_counts_each_once(tmp_path):
    """A fleet member holding one inference row 200,000 times over (a tool's copy) reads as
    the trace it copies: each run's numbers the same as its original's, the repeats counted
    (`repeated_rows`) and said in a warning, read a batch at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tests.helpers import H100_FIXTURE, table_kinds, with_inferences

    whole = pq.read_table(H100_FIXTURE)
    inf = whole.filter(pc.equal(table_kinds(whole), "inferences"))
    measured = inf.filter(pc.and_(pc.invert(inf["warmup"]), pc.equal(inf["kind"], "inference")))
    for run, extra in (("1", None), ("2", measured.take(np.zeros(200_000, dtype=np.int64)))):
        d = tmp_path / "host=a" / "gpu_model=g" / f"run={run}"
        d.mkdir(parents=True)
        if extra is None:
            (d / "trace.parquet").write_bytes(H100_FIXTURE.read_bytes())
        else:
            with_inferences(d / "trace.parquet", whole, extra)
    with pytest.warns(UserWarning, match="200,000 inference row"):
        f = fleet(tmp_path)
    assert f.repeated_rows == 200_000 and f.to_dict()["repeated_rows"] == 200_000
    runs = f.runs.drop(columns=[c for c in ("run", "file") if c in f.runs])
    one, two = (runs[f.runs["run"].astype(str) == r].reset_index(drop=True) for r in ("1", "2"))
    assert len(one) and len(one) == len(two)
    pd.testing.assert_frame_equal(one, two)


def test_a_member_whose_row_groups_mix_tables_reads_as_one_that_does_not(tmp_path):
    """The fleet reads the discriminator only where the statistics do not give a row group to
    the inferences alone: a member written in row groups that mix its tables (another tool's
    copy), with calls that raised, gives the runs that the same rows in gpuwatch's own row
    groups give."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tests.helpers import H100_FIXTURE, table_kinds

    whole = pq.read_table(H100_FIXTURE)
    kinds = table_kinds(whole).to_numpy(zero_copy_only=False)
    raised = np.zeros(len(whole), bool)
    raised[np.flatnonzero(kinds == "inferences")[5:400:7]] = True  # (these calls raised)
    err = whole.schema.get_field_index("error")
    whole = whole.set_column(err, "error", pc.if_else(pa.array(raised), pa.scalar("boom"),
                                                      whole.column("error")))
    for run, group_rows in (("own", None), ("mixed", 150)):
        d = tmp_path / "host=a" / "gpu_model=g" / f"run={run}"
        d.mkdir(parents=True)
        if group_rows is None:  # (one table per row group, as gpuwatch writes)
            with pq.ParquetWriter(d / "trace.parquet", whole.schema) as w:
                for name in dict.fromkeys(kinds):
                    w.write_table(whole.filter(pa.array(kinds == name)))
        else:
            pq.write_table(whole, d / "trace.parquet", row_group_size=group_rows)
    md = pq.ParquetFile(tmp_path / "host=a/gpu_model=g/run=mixed/trace.parquet").metadata
    assert md.num_row_groups > 10
    f = fleet(tmp_path)
    runs = f.runs.drop(columns=[c for c in ("run", "file") if c in f.runs])
    own, mixed = (runs[f.runs["run"].astype(str) == r].reset_index(drop=True)
                  for r in ("own", "mixed"))
    measured = ((kinds == "inferences") & (whole.column("kind").to_numpy(zero_copy_only=False)
                                           == "inference")
                & ~whole.column("warmup").to_numpy(zero_copy_only=False).astype(bool))
    # (the calls that raised are not measurements)
    assert len(own) and own["n"].sum() == (measured & ~raised).sum() < measured.sum()
    pd.testing.assert_frame_equal(own, mixed)


# -- the fleet's command without pandas (issue 31 part 3): each piece against the library it
# stands in for (pyarrow.dataset's hive partitions, pyarrow's to_numpy, pandas' groupby) --


def test_analyze_dir_never_imports_pandas(fleet_root):
    """`gpuwatch analyze DIR` answers from the fleet's rows; pandas (whose import is ~0.4 s of
    the command) is not loaded by it, nor by pyarrow on its behalf."""
    prog = ("import runpy, sys\n"
            f"sys.argv = ['gpuwatch', 'analyze', '--json', {str(fleet_root)!r}]\n"
            "try:\n    runpy.run_module('gpuwatch', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('pandas' in sys.modules, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "False"
    assert '"by_model_gap"' in r.stdout


def test_partition_values_are_typed_as_pyarrow_dataset_types_them(tmp_path):
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from gpuwatch.analysis.fleet import _hive_typed

    for values in (["1", "02", "-3"], ["1", "x"], ["3000000000"], ["1.5"], ["a%20b", "c"],
                   ["__HIVE_DEFAULT_PARTITION__", "2"], ["+4"]):
        root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        paths = []
        for i, v in enumerate(values):
            d = root / "host=h" / f"run={v}" / f"x{i}"
            d.mkdir(parents=True)
            pq.write_table(pa.table({"x": [1]}), d / "t.parquet")
            paths.append(str(d / "t.parquet"))
        want = {f.path: ds.get_partition_keys(f.partition_expression) for f in ds.dataset(
            paths, format="parquet", partitioning="hive", partition_base_dir=str(root)
        ).get_fragments()}
        got = _hive_typed(root, paths)
        assert got == want, values


def test_columns_read_from_arrow_buffers_as_to_numpy_reads_them():
    import numpy as np
    import pyarrow as pa

    from gpuwatch.analysis.fleet import _array, _codes

    a = pa.chunked_array([pa.array([1.5, None, 3.0, 4.0]), pa.array([None, 6.0])])
    for col in (a, a.combine_chunks().slice(1, 4), pa.chunked_array([], pa.float64())):
        want = col.to_numpy(zero_copy_only=False).astype(np.float64)
        np.testing.assert_array_equal(_array(col, np.float64), want)
    s = pa.chunked_array([pa.array(["b", None, "", "a", "b"]), pa.array([None, "c"])])
    codes, values = _codes(s)
    assert [values[c] for c in codes] == ["b", "", "", "a", "b", "", "c"]
    assert values == ["b", "", "a", "c"]  # (first seen first; null and "" one value)


def test_the_per_model_gap_table_is_pandas_groupby_of_the_runs():
    """fleet's own grouping (no pandas) against the groupby it replaces: sorted keys, missing
    ones last, NaN skipped in the medians and extremes, all-NaN groups NaN."""
    import numpy as np

    from gpuwatch.analysis.fleet import _by_model_gap, _frame

    nan = float("nan")
    runs = [{"gpu_model": m, "engine": e, "gap_ms": g, "late_p50_ms": late,
             "late_over_early": r}
            for m, e, g, late, r in [("T4", "e", 20.0, 2.0, 1.5), ("A", "e", 20.0, 1.0, nan),
                                     ("T4", "e", 20.0, 4.0, 1.1), ("T4", "e", 0.0, nan, nan),
                                     (None, "e", 5.0, 3.0, 1.0), ("T4", "f", nan, 1.0, 2.0),
                                     ("T4", "e", 20.0, 3.0, 1.2)]]
    cols = ["gpu_model", "engine", "gap_ms", "late_p50_ms", "late_over_early"]
    rows, out_cols = _by_model_gap(runs, cols)
    g = _frame(runs, cols).groupby(["gpu_model", "engine", "gap_ms"], sort=True, dropna=False)
    want = g.agg(runs=("late_p50_ms", "size"), stable_ms=("late_p50_ms", "median"),
                 stable_ms_min=("late_p50_ms", "min"), stable_ms_max=("late_p50_ms", "max"),
                 late_over_early_p50=("late_over_early", "median"),
                 late_over_early_max=("late_over_early", "max")).reset_index()
    got = _frame(rows, out_cols)
    assert list(got.columns) == list(want.columns)
    assert got["gpu_model"].tolist()[:-1] == want["gpu_model"].tolist()[:-1]
    assert pd.isna(got["gpu_model"].iloc[-1]) and pd.isna(want["gpu_model"].iloc[-1])
    for c in want.columns[1:]:
        np.testing.assert_array_equal(got[c].to_numpy(dtype=object if c == "engine" else float),
                                      want[c].to_numpy(dtype=object if c == "engine" else float))


def test_a_run_that_did_not_complete_is_counted_and_said(tmp_path, fleet_root):
    """A member whose program raised after 50 inferences (a short run that never reached its
    plateau) counts with what it kept, as DuckDB's query counts it; but a warning, the text's
    first line, the JSON's `incomplete` and the runs table's `status` say so."""
    import json
    import shutil

    root = tmp_path / "fleet"
    shutil.copytree(fleet_root, root)
    with pytest.raises(ValueError, match="bad frame"):
        with gpuwatch.session("sim:t4", dataset=root) as s:
            e = s.engine()
            s.set_condition("gap=20ms", gap_ms=20)
            for _ in range(50):
                e.infer()
            raise ValueError("bad frame")
    with pytest.warns(UserWarning, match=r"1 of the 5 traces did not complete \(first: .*: "
                      r"failed \(the run stopped at an error: ValueError: bad frame\)\)"):
        f = fleet(root)
    assert len(f.incomplete) == 1 and f.to_dict()["incomplete"] == list(f.incomplete)
    runs = f.runs
    bad = runs[runs["file"] == f.incomplete[0]]
    assert len(bad) == 1 and bad["status"].iloc[0] == ("failed (the run stopped at an error: "
                                                       "ValueError: bad frame)")
    assert (runs.loc[runs["file"] != f.incomplete[0], "status"] == "complete").all()
    r = cli("analyze", str(root), cwd=root.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == ("5 traces (1 did not complete, counted with what it "
                                        "kept); --json gives each run's status")
    q = cli("analyze", str(root), "-q", cwd=root.parent)  # (the one line scripts read)
    assert q.stdout.startswith("5 traces (1 did not complete, counted with what it kept), "), \
        q.stdout
    assert "did not complete" in r.stderr
    j = json.loads(cli("analyze", str(root), "--json", cwd=root.parent).stdout)
    assert [x["status"] for x in j["runs"] if x["file"] == f.incomplete[0]] == [
        "failed (the run stopped at an error: ValueError: bad frame)"]


def test_a_run_without_a_gap_shows_a_dash_not_nan(tmp_path):
    # (a session that set no condition: its runs have no gap_ms; the table said "nan")
    d = tmp_path / "plain"
    d.mkdir()
    for k in range(2):
        with gpuwatch.session("sim:t4", d / f"{k}.parquet") as s:
            e = s.engine("builtin:small")
            for _ in range(60):
                e.infer()
                e.synchronize()
    f = fleet(d)
    text = format_fleet(f)
    row = next(ln for ln in text.splitlines() if ln.startswith("Simulated_Tesla_T4"))
    assert row.split()[1:3] == ["-", "2"] and "nan" not in text, text
    # (their rows of no condition: "all", as the analysis calls them, not "")
    assert {r["condition"] for r in f.to_dict()["runs"]} == {"all"}
