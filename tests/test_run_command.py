"""`gpuwatch run`: unmodified programs (tests/programs/) recorded on a simulated GPU, as
subprocesses, with stand-ins for the nvtx package and PyTorch's module and NVTX API
(tests/programs/standins/: this machine has neither; the H100 run uses the real ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gpuwatch
from tests.helpers import gw

PROGRAMS = Path(__file__).resolve().parent / "programs"


def run(tmp_path: Path, *argv: str, out: str = "t.parquet") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PROGRAMS / "standins"), GPUWATCH_DEVICE="sim:t4")
    return gw("run", "-o", tmp_path / out, *argv, cwd=tmp_path, env=env)


def test_nvtx_ranges_are_the_inferences_and_gaps_become_conditions(tmp_path):
    r = run(tmp_path, str(PROGRAMS / "nvtx_marks.py"), "x", "--y")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "nvtx done ['x', '--y']\n"  # the program's output, untouched
    tr = gpuwatch.load(tmp_path / "t.parquet")
    inf = tr.inferences
    assert sorted(set(inf["name"])) == ["nvtx:infer", "nvtx:post"]
    assert len(inf) == 80 and inf["warmup"].sum() == 1  # the first region is warm-up
    infer = inf[(inf["name"] == "nvtx:infer") & ~inf["warmup"].astype(bool)]
    # the gap before an inference is the idle time since the previous region ("post")
    # (a loaded machine may oversleep a 2 ms sleep past 5 ms: the buckets go by the gap seen)
    assert set(infer["condition"]) == {"gap 1-5 ms", "gap 5-50 ms"}
    assert (infer["condition"] == "gap 5-50 ms").to_numpy().tolist() == \
        (infer["gap_ms"] >= 5).to_numpy().tolist()
    # 19 sleeps of 20 ms (after each odd iteration but the last): at least that long; the
    # 2 ms ones mostly short (a loaded machine may oversleep a few: no wall-clock upper bound)
    gaps = infer["gap_ms"].sort_values(ascending=False)
    assert (gaps.iloc[:19] >= 19).all() and gaps.iloc[19:].median() < 12
    assert tr.meta["regions_found"] == {"nvtx": 80, "call": 0}
    assert "gpuwatch: 80 inference(s) found" in r.stderr and "verdict:" in r.stderr


def test_a_simulated_gpu_under_run_is_said_to_see_nothing_of_the_program(tmp_path):
    """`gpuwatch run` on sim: its regions are timed on the simulator's clock: a warning before
    the program runs, in the trace and in the report (issue 29)."""
    r = run(tmp_path, str(PROGRAMS / "nvtx_marks.py"))
    assert r.returncode == 0, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("gpuwatch: warning: a simulated GPU cannot see your program's GPU work")
    tr = gpuwatch.load(tmp_path / "t.parquet")
    assert tr.meta["warning"].startswith("a simulated GPU cannot see")
    assert "   warning: a simulated GPU cannot see" in r.stderr  # (the report's header)


def test_the_outermost_torch_module_call_is_the_inference(tmp_path):
    r = run(tmp_path, str(PROGRAMS / "torch_loop.py"))
    assert r.returncode == 0, r.stderr
    tr = gpuwatch.load(tmp_path / "t.parquet")
    names = tr.inferences["name"].tolist()
    assert names.count("call:Net") == 30  # not Sequential or Conv: nested calls
    assert names[-1] == "nvtx:marked" and len(names) == 31  # the range wins over the call
    assert tr.meta["regions_found"] == {"nvtx": 1, "call": 30}
    conds = tr.measured()["condition"].value_counts().to_dict()
    # iterations 1-15 come 10 ms after the previous, 16-29 and the marked call 60 ms after
    assert conds == {"gap 5-50 ms": 15, "gap 50-500 ms": 15}
    # the analysis groups them by the gaps it finds (analysis.gaps), not the fixed buckets
    lay = gpuwatch.analyze(tmp_path / "t.parquet").layers
    net = lay[lay["engine"] == "call:Net"].sort_values("gap_ms")
    assert net["n"].tolist() == [15, 14]  # (the first is warm-up)
    short, long = net["gap_ms"].tolist()
    assert 9.9 < short < 20 and 59.9 < long < 80
    assert net["condition"].iloc[1].startswith("gap 6")  # named after the gaps: "gap 60 ms"


def test_regions_flag_chooses_the_source(tmp_path):
    r = run(tmp_path, "--regions", "calls", str(PROGRAMS / "torch_loop.py"))
    assert r.returncode == 0, r.stderr
    names = gpuwatch.load(tmp_path / "t.parquet").inferences["name"].tolist()
    assert names == ["call:Net"] * 31  # the NVTX range is not a source now
    r = run(tmp_path, "--regions", "nvtx", "-f", str(PROGRAMS / "torch_loop.py"))
    assert gpuwatch.load(tmp_path / "t.parquet").inferences["name"].tolist() == ["nvtx:marked"]


def test_a_program_that_raises_keeps_its_traceback_status_and_trace(tmp_path):
    r = run(tmp_path, str(PROGRAMS / "raises.py"))
    assert r.returncode == 1
    assert "ValueError: the program's own error" in r.stderr and "in deep" in r.stderr
    assert "runpy" not in r.stderr  # the traceback is the program's, not gpuwatch's
    tr = gpuwatch.load(tmp_path / "t.parquet")
    assert len(tr.inferences) == 3 and tr.meta["status"] == "failed"  # (as a block that raises)


def test_exit_status_argv_and_main_pass_through(tmp_path):
    r = run(tmp_path, str(PROGRAMS / "exits3.py"))
    assert r.returncode == 3 and len(gpuwatch.load(tmp_path / "t.parquet").inferences) == 1
    r = run(tmp_path, str(PROGRAMS / "reads_argv.py"), "a", "-b", "--c=1", out="u.parquet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("argv: ['" + str(PROGRAMS / "reads_argv.py")
                                + "', 'a', '-b', '--c=1'] name: __main__ file: reads_argv.py")
    assert "nothing to analyse" in r.stderr


def test_a_module_runs_as_python_m_does(tmp_path):
    env_path = str(PROGRAMS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROGRAMS / "standins"), env_path]),
               GPUWATCH_DEVICE="sim:t4")
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-q", "-o",
                        str(tmp_path / "m.parquet"), "-m", "apppkg", "p", "q"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "module argv: ['p', 'q'] __main__" and r.stderr == ""
    assert gpuwatch.load(tmp_path / "m.parquet").inferences["name"].tolist() == ["nvtx:step"] * 3


def test_the_in_band_clock_can_be_turned_off_or_spaced_as_record_does(tmp_path):
    """--no-probe: no region stamped (the sim stamps every one by default), and the trace's
    options say so; --probe-every out of range: one line, exit 2, before the program runs."""
    prog = str(PROGRAMS / "nvtx_marks.py")
    r = run(tmp_path, prog)
    assert r.returncode == 0, r.stderr
    on = gpuwatch.load(tmp_path / "t.parquet")
    assert on.inferences["sm_clock_inband_mhz"].notna().all() and on.meta["options"]["probe"]
    r = run(tmp_path, "--no-probe", prog, out="off.parquet")
    assert r.returncode == 0, r.stderr
    off = gpuwatch.load(tmp_path / "off.parquet")
    assert off.inferences["sm_clock_inband_mhz"].isna().all()
    assert off.meta["options"]["probe"] is False and len(off.inferences) == len(on.inferences)
    # (its value is the option's, not taken for the script: found on the H100, where
    # `--probe-every 20 prog.py` ran "20")
    r = run(tmp_path, "--probe-every", "20", prog, out="spaced.parquet")
    assert r.returncode == 0, r.stderr
    assert gpuwatch.load(tmp_path / "spaced.parquet").meta["options"]["probe_every_ms"] == 20
    r = run(tmp_path, "--probe-every", "-3", prog, out="bad.parquet")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--probe-every" in r.stderr and not (tmp_path / "bad.parquet").exists()


@pytest.mark.parametrize("argv, says", [
    ((), "give the program to run"),
    (("missing.py",), "no program at missing.py"),
    (("--regions", "cupti", "x.py"), "invalid choice"),
    (("--burst-gap-ms", "0", "x.py"), "--burst-gap-ms takes a time in ms, > 0"),
    (("--burst-gap-ms", "inf", "x.py"), "> 0 and finite"),
    (("-m", "no_such_pkg.mod"), "no module no_such_pkg.mod to run"),
    (("--html", "/no/such/folder/r.html", "x.py"), "directory /no/such/folder does not exist"),
    (("--html", "t.parquet", "x.py"), "--html t.parquet is the trace itself"),
])
def test_bad_command_lines_are_one_line_and_exit_2(tmp_path, argv, says):
    r = run(tmp_path, *argv)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("sig, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stopped_program_keeps_its_trace(tmp_path, sig, status):
    import signal
    import time

    env = dict(os.environ, PYTHONPATH=str(PROGRAMS / "standins"), GPUWATCH_DEVICE="sim:t4")
    p = subprocess.Popen([sys.executable, "-m", "gpuwatch", "run", "-q", "-o",
                          str(tmp_path / "s.parquet"), str(PROGRAMS / "long_loop.py")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                         env=env,  # (SIGINT as a terminal gives it, also from a background job)
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert p.stdout is not None and p.stdout.readline().strip() == "started"
    time.sleep(1.0)
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=60)
    assert p.returncode == status, err
    tr = gpuwatch.load(tmp_path / "s.parquet")
    assert tr.meta["status"] == "interrupted" and len(tr.inferences) > 20
    # as python prints it: the program's traceback on Ctrl-C, nothing on SIGTERM
    assert ("KeyboardInterrupt" in err and "long_loop.py" in err and "gpuwatch/" not in err) \
        == (sig == "SIGINT"), err
    # -q prints no report, but says where the trace of a run cut short is (as record -q)
    what = "terminated" if sig == "SIGTERM" else "interrupted"
    assert err.strip().splitlines()[-1] == \
        f"gpuwatch: {what}: what was recorded is in {tmp_path / 's.parquet'}", err


def test_tensorrt_execution_calls_are_the_inferences_on_their_stream(tmp_path):
    """execute_async_v3(stream) and execute_v2, against a stand-in with TensorRT 10's call
    shape (the standin device takes any stream handle)."""
    env = dict(os.environ, PYTHONPATH=str(PROGRAMS / "standins"), GPUWATCH_DEVICE="standin")
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-q", "-o",
                        str(tmp_path / "t.parquet"), str(PROGRAMS / "trt_pipeline.py")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    inf = gpuwatch.load(tmp_path / "t.parquet").inferences
    assert inf["name"].tolist() == ["call:detector.plan"] * 26
    assert (inf["stream"].iloc[:25] == 0x7000).all() and inf["stream"].iloc[25] != 0x7000
    assert (inf["gpu_ms"] > 0.2).all()  # (the stand-in's events are host clock reads)


def test_a_run_can_join_a_fleet_dataset(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PROGRAMS / "standins"), GPUWATCH_DEVICE="sim:t4")
    (tmp_path / "fleet").mkdir()  # (as for record: the dataset's directory must exist)
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-q", "--dataset",
                        str(tmp_path / "fleet"), str(PROGRAMS / "exits3.py")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 3, r.stderr
    (trace,) = (tmp_path / "fleet").rglob("trace.parquet")
    assert "gpu_model=" in str(trace) and len(gpuwatch.load(trace).inferences) == 1


def test_kernel_bursts_are_the_inferences_when_nothing_marks_them(tmp_path):
    r = run(tmp_path, "--regions", "kernels", str(PROGRAMS / "kernel_bursts.py"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "bursts done\n"
    tr = gpuwatch.load(tmp_path / "t.parquet")
    inf = tr.inferences.sort_values("start_ns")
    assert len(inf) == 40 and set(inf["name"]) == {"kernels:layer"}
    assert set(inf["stream_source"]) == {"kernels"} and inf["host_start_ns"].isna().all()
    assert inf["warmup"].tolist() == [True] + [False] * 39
    k = tr.kernels[tr.kernels["kind"] == "kernel"]
    assert len(k) == 40 * 24  # builtin:small: 24 kernels a burst
    # each burst runs from its first kernel's start to its last kernel's end
    assert inf["start_ns"].iloc[0] == k["start_ns"].min()
    assert inf["end_ns"].iloc[-1] == k["end_ns"].max()
    assert (inf["gpu_ms"] - (inf["end_ns"] - inf["start_ns"]) / 1e6).abs().max() < 1e-9
    # the GPU idle before a burst is its gap: 2 ms after odd iterations, 30 ms after even ones
    gaps = inf["gap_ms"].iloc[1:].to_numpy()
    assert ((gaps > 1.9) & (gaps < 3)).sum() == 19 and ((gaps > 29.9) & (gaps < 31)).sum() == 20
    assert set(inf["condition"].iloc[1:]) == {"gap 1-5 ms", "gap 5-50 ms"}
    assert tr.meta["regions_found"] == {"kernels": 40}  # (the only source asked for)
    assert tr.meta["kernel_bursts"]["bursts"] == 40
    # it waits for each result: the waits end the bursts, and idle alone must last 10 ms
    assert tr.meta["kernel_bursts"]["syncs"] == 40
    assert tr.meta["kernel_bursts"]["burst_gap_ms"] == 10.0
    assert (tr.kernels["kind"] == "sync").sum() == 40
    assert "gpuwatch: 40 inference(s) found" in r.stderr and "verdict:" in r.stderr


def test_kernel_bursts_of_a_program_that_never_waits_split_at_idle_time(tmp_path):
    # no synchronize calls: only GPU idle ends a burst (1 ms by default). builtin:small is
    # ~5 ms of GPU work: during a 2 ms sleep the GPU is still busy with the queued inference
    # (no idle: one burst), after a 30 ms sleep it idles ~25 ms. So: the first inference on
    # its own, then 19 pairs, then the last: 21 bursts
    r = run(tmp_path, "--regions", "kernels", str(PROGRAMS / "kernel_bursts.py"), "nosync")
    assert r.returncode == 0, r.stderr
    tr = gpuwatch.load(tmp_path / "t.parquet")
    inf = tr.inferences.sort_values("start_ns")
    assert len(inf) == 21 and (inf["gap_ms"].iloc[1:] > 20).all()
    assert tr.meta["kernel_bursts"]["syncs"] == 0
    assert tr.meta["kernel_bursts"]["burst_gap_ms"] == 1.0
    # idle must now last 40 ms to end a burst: none does
    r = run(tmp_path, "--regions", "kernels", "--burst-gap-ms", "40", "-f",
            str(PROGRAMS / "kernel_bursts.py"), "nosync")
    assert r.returncode == 0, r.stderr
    assert len(gpuwatch.load(tmp_path / "t.parquet").inferences) == 1


def test_auto_regions_with_kernels_prefer_the_calls(tmp_path):
    r = run(tmp_path, "--kernels", str(PROGRAMS / "torch_loop.py"))
    assert r.returncode == 0, r.stderr
    tr = gpuwatch.load(tmp_path / "t.parquet")
    assert not tr.inferences["name"].str.startswith("kernels:").any()
    assert tr.meta["kernel_bursts"]["why_none"] == "other sources found the inferences"


def test_the_programs_own_options_pass_through_with_m_and_a_script(tmp_path):
    # python -m pkg.mod --x 1 passes --x 1 on: so does gpuwatch run -m pkg.mod --x 1, even
    # where an option is also one of gpuwatch's (-q, -o)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROGRAMS / "standins"),
                                                        str(PROGRAMS)]), GPUWATCH_DEVICE="sim:t4")
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-o", str(tmp_path / "m.parquet"),
                        "-m", "apppkg", "--x", "1", "-q"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "module argv: ['--x', '1', '-q']" in r.stdout
    r = run(tmp_path, "-f", str(PROGRAMS / "reads_argv.py"), "-o", "mine", "--json")
    assert r.returncode == 0, r.stderr
    assert "reads_argv.py', '-o', 'mine', '--json']" in r.stdout


def test_a_program_that_raises_is_a_failed_recording_and_json_is_all_of_stderr(tmp_path):
    r = run(tmp_path, str(PROGRAMS / "raises.py"))
    meta = gpuwatch.load(tmp_path / "t.parquet").meta
    assert meta["status"] == "failed" and meta["error"].startswith("ValueError")
    assert meta["program_exit_status"] == 1 and meta["failed_by"] == "program"
    r = run(tmp_path, "--json", "-f", str(PROGRAMS / "nvtx_marks.py"))
    assert r.returncode == 0
    assert json.loads(r.stderr)["traces"]  # nothing else on stderr: the JSON parses
    r = run(tmp_path, "-q", "-f", "--html", str(tmp_path / "r.html"), str(PROGRAMS / "nvtx_marks.py"))
    assert r.returncode == 0 and r.stderr == "" and (tmp_path / "r.html").stat().st_size > 1000


@pytest.mark.parametrize("how", ["exit", "raise"])
def test_ranges_left_open_get_their_row(tmp_path, how):
    """The program ends (or raises) inside two nested push/pop ranges: the outer one is still a
    region, with the program's error on its row if it raised."""
    r = run(tmp_path, "-q", str(PROGRAMS / "left_open.py"), how)
    assert r.returncode == (1 if how == "raise" else 0), r.stderr
    tr = gpuwatch.load(tmp_path / "t.parquet")
    inf = tr.inferences
    assert inf["name"].tolist() == ["nvtx:step"] * 5 + ["nvtx:outer"]
    assert tr.meta["regions_found"]["nvtx"] == 6
    last = inf["error"].iloc[-1]
    assert (last == "RuntimeError: inside a range") if how == "raise" else pd_isna(last)


def pd_isna(v):
    return v is None or v != v


SHOW = """import os, sys
try:
    import helper_in_cwd  # python sub/show.py cannot import it: sys.path[0] is sub/
    found = True
except ImportError:
    found = False
print(sys.argv, os.path.isabs(__file__), __file__.endswith("show.py"), __name__,
      sys.path[0] == os.path.dirname(os.path.abspath(__file__)), found,
      type(sys.modules["__main__"]).__name__, sys.modules["__main__"].__dict__ is globals())
"""


def test_a_script_sees_what_python_script_would_show_it(tmp_path):
    """sys.argv as typed, __file__ absolute, sys.path[0] the script's directory (and nothing of
    gpuwatch's before it), __main__ in sys.modules: the same lines as plain python prints."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "show.py").write_text(SHOW)
    (tmp_path / "helper_in_cwd.py").write_text("")
    plain = subprocess.run([sys.executable, "sub/show.py", "a", "-b"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=60)
    r = run(tmp_path, "-q", "sub/show.py", "a", "-b")
    assert r.returncode == 0 and plain.returncode == 0, r.stderr + plain.stderr
    assert r.stdout == plain.stdout
    assert plain.stdout.startswith("['sub/show.py', 'a', '-b'] True True __main__ True False")


def test_sys_exit_inside_a_range_is_on_its_row(tmp_path):
    (tmp_path / "exit_inside.py").write_text(
        "import sys\nimport torch\ntorch.cuda.nvtx.range_push('step')\nsys.exit(3)\n")
    r = run(tmp_path, "-q", "exit_inside.py")
    assert r.returncode == 3, r.stderr
    tr = gpuwatch.load(tmp_path / "t.parquet")
    assert tr.inferences["error"].tolist() == ["SystemExit: 3"]
    assert tr.meta["program_exit_status"] == 3 and tr.meta["status"] == "complete"


def test_a_program_that_exited_with_an_error_status_is_said_in_the_analysis(tmp_path):
    """sys.exit(3) after its ranges: the recording is complete, but the report's first line
    and the JSON's status say how the program ended (a new user's try: only run --json did)."""
    (tmp_path / "exit_after.py").write_text(
        "import sys, torch\nfor i in range(12):\n    torch.cuda.nvtx.range_push('s')\n"
        "    torch.cuda.nvtx.range_pop()\nsys.exit(3)\n")
    assert run(tmp_path, "-q", "exit_after.py").returncode == 3
    a = gpuwatch.analyze(tmp_path / "t.parquet")
    assert a.status[0]["status"] == "complete" and a.status[0]["program_exit_status"] == 3
    from gpuwatch.analysis.status import line

    assert "complete" in line(a.status[0])
    assert "the program exited with status 3" in line(a.status[0])
    (tmp_path / "ok.py").write_text("import torch\ntorch.cuda.nvtx.range_push('s')\n"
                                   "torch.cuda.nvtx.range_pop()\n")
    assert run(tmp_path, "-q", "-f", "ok.py").returncode == 0
    st = gpuwatch.analyze(tmp_path / "t.parquet").status[0]
    assert st["program_exit_status"] == 0 and "exited" not in line(st)


def test_json_comes_after_the_programs_stderr_and_says_how_the_run_went(tmp_path):
    """--json (with or without -q): the program's own stderr first, then one JSON document with
    the run's facts (`run`) and the analysis; a program that never ran says so."""
    (tmp_path / "noisy.py").write_text(
        "import sys, torch\nprint('log line', file=sys.stderr)\n"
        "for i in range(12):\n    torch.cuda.nvtx.range_push('s')\n"
        "    torch.cuda.nvtx.range_pop()\nsys.exit(4)\n")
    for quiet in ([], ["-q"]):
        r = run(tmp_path, "-f", "--json", *quiet, "noisy.py")
        assert r.returncode == 4
        assert r.stderr.startswith("log line\n")
        doc = json.loads(r.stderr.splitlines()[-1])  # (the last line)
        assert doc["run"]["program_exit_status"] == 4 and doc["run"]["status"] == "complete"
        assert doc["run"]["regions_found"] == {"nvtx": 12, "call": 0} and doc["traces"]
    (tmp_path / "broken.py").write_text("def f(:\n")
    r = run(tmp_path, "-f", "--html", "r.html", "broken.py")
    assert r.returncode == 1 and "SyntaxError" in r.stderr
    assert "the program raised (SyntaxError" in r.stderr and "no HTML written" in r.stderr
    assert not (tmp_path / "r.html").exists()
    r = run(tmp_path, "-f", "--json", "broken.py")
    doc = json.loads(r.stderr.splitlines()[-1])
    assert doc["nothing_to_analyse"].startswith("the program raised (SyntaxError")


def test_a_name_that_changes_every_iteration_is_pointed_out(tmp_path):
    (tmp_path / "frames.py").write_text(
        "import torch\nfor i in range(40):\n    torch.cuda.nvtx.range_push(f'frame {i}')\n"
        "    torch.cuda.nvtx.range_pop()\n")
    r = run(tmp_path, "frames.py")
    assert r.returncode == 0, r.stderr
    assert "40 region names, most seen once or twice" in r.stderr


def test_a_program_that_changes_directory_or_forks_keeps_its_trace(tmp_path):
    """The trace goes where `-o` pointed when the run began, whatever directory the program
    moves to; a child it forks that runs to its end leaves the parent's trace alone."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "moves.py").write_text(
        "import os, sys, torch\nos.chdir(sys.argv[1])\nfor i in range(30):\n"
        "    torch.cuda.nvtx.range_push('s')\n    torch.cuda.nvtx.range_pop()\n"
        "if os.fork() == 0:\n    torch.cuda.nvtx.range_push('child')\n"
        "    torch.cuda.nvtx.range_pop()\n    sys.exit(0)\nos.wait()\n"
        "for i in range(10):\n    torch.cuda.nvtx.range_push('after')\n"
        "    torch.cuda.nvtx.range_pop()\n")
    env = dict(os.environ, PYTHONPATH=str(PROGRAMS / "standins"), GPUWATCH_DEVICE="sim:t4")
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-o", "rel.parquet",
                        "moves.py", str(tmp_path / "elsewhere")], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    tr = gpuwatch.load(tmp_path / "rel.parquet")
    assert tr.meta["status"] == "complete"
    assert tr.inferences["name"].value_counts().to_dict() == {"nvtx:s": 30, "nvtx:after": 10}
    assert not list((tmp_path / "elsewhere").iterdir())
    assert r.stderr.count("inference(s) found") == 1  # (one report: the parent's)


def test_a_directory_with_main_runs_as_python_runs_it(tmp_path):
    """sys.path[0] is the directory (absolute), and nothing of gpuwatch's follows it: a module
    in the working directory is as unimportable as under python."""
    (tmp_path / "appdir").mkdir()
    (tmp_path / "appdir" / "__main__.py").write_text(
        "import os, sys\ntry:\n    import only_in_cwd\n    found = True\n"
        "except ImportError:\n    found = False\nprint(sys.path[0], found)\n")
    (tmp_path / "only_in_cwd.py").write_text("")
    plain = subprocess.run([sys.executable, "appdir"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=60)
    r = run(tmp_path, "-q", "appdir")
    assert r.returncode == 0 and plain.returncode == 0, r.stderr + plain.stderr
    assert r.stdout == plain.stdout == f"{tmp_path / 'appdir'} False\n"


def test_a_run_that_wrote_nothing_does_not_pass_off_the_old_trace(tmp_path):
    (tmp_path / "ok.py").write_text(
        "import torch\nfor i in range(5):\n    torch.cuda.nvtx.range_push('s')\n"
        "    torch.cuda.nvtx.range_pop()\n")
    (tmp_path / "broken.py").write_text("def f(:\n")
    assert run(tmp_path, "-q", "ok.py").returncode == 0
    r = run(tmp_path, "-f", "broken.py")
    assert r.returncode == 1 and "trace: none written" in r.stderr
    assert len(gpuwatch.load(tmp_path / "t.parquet").inferences) == 5  # the old one, kept
    r = run(tmp_path, "-f", "--json", "broken.py")
    assert json.loads(r.stderr.splitlines()[-1])["run"]["trace"] is None


def test_a_report_is_checked_before_the_program_runs_and_a_lost_one_is_not_success(tmp_path):
    """An existing --html file is refused before the program runs (it would cost the whole
    run); a report that cannot be written at the end (here the program removes its folder)
    is said, with where the trace is, and a program that succeeded exits 1."""
    (tmp_path / "r.html").write_text("mine")
    marker = tmp_path / "ran"
    prog = tmp_path / "p.py"
    prog.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    r = run(tmp_path, "--html", str(tmp_path / "r.html"), str(prog))
    assert r.returncode == 2 and "already exists" in r.stderr and not marker.exists()
    assert (tmp_path / "r.html").read_text() == "mine"
    (tmp_path / "reports").mkdir()
    prog.write_text(
        "import shutil, sys\n"
        f"sys.path.insert(0, {str(PROGRAMS)!r})\n"
        "import nvtx_marks\n"
        f"shutil.rmtree({str(tmp_path / 'reports')!r})\n")
    r = run(tmp_path, "--html", str(tmp_path / "reports" / "r.html"), str(prog))
    assert "could not write the HTML report" in r.stderr, r.stderr
    assert f"the trace is {tmp_path / 't.parquet'}" in r.stderr
    assert r.returncode == 1 and (tmp_path / "t.parquet").exists()
