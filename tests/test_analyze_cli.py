"""`python -m gpuwatch.analyze` and its outputs: the command run in this process
(tests/helpers.py), and `gpuwatch analyze` as a user runs it, in a subprocess."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import gw_here

FIXTURE = Path(__file__).parent / "data" / "h100_small_gap0_20_fixture.parquet"


def analyze(*args, cwd=None):
    return gw_here(*args, cwd=cwd, module="gpuwatch.analyze")


def test_summary_of_a_sim_sweep_and_a_real_trace(t4_sweep):
    r = analyze(t4_sweep.path, FIXTURE)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "(SIMULATED)" in out and "NVIDIA H100 80GB HBM3" in out
    assert re.search(r"gap=20ms\s+800\s+4\.7\d\s+\d+\s+\d+\s+9\.\d\d\s+1\.9\dx", out)
    assert out.strip().splitlines()[-1].startswith("verdict: ")
    assert "the SM clock" in out.splitlines()[-1]


def test_json_output(t4_sweep):
    r = analyze(t4_sweep.path, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) == {"version", "verdict", "traces", "verdicts", "layers", "attribution",
                      "spans", "stream_checks", "stream_note", "clocks", "data_notes",
                      "wall_verdicts", "wall_attribution", "latency"}
    assert d["stream_note"] == ""  # the engine's events bracket all its work
    assert all(r["checked"] >= 3 for r in d["stream_checks"]) and \
        all(r["outside"] == 0 for r in d["stream_checks"])


def test_html_png_and_perfetto(t4_sweep, tmp_path):
    html, png, pf = tmp_path / "r.html", tmp_path / "png", tmp_path / "t.json"
    r = analyze(FIXTURE, "--html", html, "--png", png, "--perfetto", pf)
    assert r.returncode == 0, r.stderr
    page = html.read_text()
    assert "id='gw-plots'" in page and "uPlot" in page  # interactive, embedded
    assert "http://" not in page and "https://" not in page  # opens offline
    assert "no meaningful change" in page and "preprocess" in page
    assert {p.name for p in png.glob("*.png")} >= {"latency_vs_iteration_0.png",
                                                   "latency_vs_clock_0.png", "final_vs_gap.png"}
    trace = json.loads(pf.read_text())
    ev = trace["traceEvents"]
    slices = [e for e in ev if e["ph"] == "X" and e["tid"] == 1]
    assert len(slices) == 340  # 300 measured + 40 warm-up inferences
    assert all(e["dur"] > 0 and e["ts"] >= 0 for e in slices)
    counters = {e["name"] for e in ev if e["ph"] == "C"}
    assert {"SM clock (MHz)", "power (W)"} <= counters
    assert any(e["ph"] == "M" and "H100" in e["args"].get("name", "") for e in ev)


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing.parquet", "no trace at"),
    (lambda d: (d / "bad.parquet").write_bytes(b"garbage") and d / "bad.parquet",
     "not a readable Parquet file"),
    (lambda d: d, "no traces (*.parquet) under"),  # a directory is read as a fleet
])
def test_bad_traces_are_one_line_and_exit_2(tmp_path, make, words):
    target = make(tmp_path)
    r = analyze(target)
    assert r.returncode == 2, r.stdout + r.stderr
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_json_and_quiet_together_are_refused():
    """--json prints everything and -q one line: asked for both, neither is guessed."""
    r = analyze(FIXTURE, "--json", "-q")
    assert r.returncode == 2 and r.stdout == ""
    assert "give one of them" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unwritable_report_path_is_a_usage_error(tmp_path):
    r = analyze(FIXTURE, "--html", tmp_path / "no" / "r.html")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_no_arguments_is_usage(tmp_path):
    r = analyze()
    assert r.returncode == 2 and "TRACE" in r.stderr


def test_gpuwatch_analyze_subcommand(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "analyze", str(FIXTURE), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["traces"][0]["simulated"] is False


# The command as its entry point runs it, in a fresh process (numpy not yet loaded), then the
# BLAS thread counts it ran with
_BLAS_AFTER = """
import json, sys
from gpuwatch.cli import main
from gpuwatch.cli.analyze import AnalyzeCommand
rc = main(AnalyzeCommand(), sys.argv[1:])
import threadpoolctl
print(json.dumps([rc] + [i["num_threads"] for i in threadpoolctl.threadpool_info()
                         if i["user_api"] == "blas"]))
"""


@pytest.mark.parametrize("told", [None, "2"], ids=["default", "user-set"])
def test_the_command_loads_blas_with_one_thread_unless_the_user_said(tmp_path, told):
    """OpenBLAS starts a thread per core as numpy loads (~70 ms of CPU here, a fifth of a
    small fleet's command) for matrices the analysis runs on one thread anyway; a count the
    user set is theirs."""
    (tmp_path / "fleet").mkdir()
    (tmp_path / "fleet" / "a.parquet").write_bytes(FIXTURE.read_bytes())
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if told:
        env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = told
    for args in (["--json", str(tmp_path / "fleet")], ["-q", str(FIXTURE)]):
        r = subprocess.run([sys.executable, "-c", _BLAS_AFTER, *args], capture_output=True,
                           text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        rc, *threads = json.loads(r.stdout.strip().splitlines()[-1])
        assert rc == 0 and threads, r.stdout
        want = int(told) if told else 1
        assert set(threads) == {min(want, os.cpu_count() or 1)}, (args, threads)


def _on_a_terminal(args, timeout=120, columns=None):
    """`gpuwatch analyze ARGS` with stderr on a pseudo-terminal (as in a user's shell; of
    `columns`, if given) and stdout on a pipe: (exit status, stdout, what the terminal
    received)."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    if columns:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    p = subprocess.Popen([sys.executable, "-m", "gpuwatch", "analyze", *map(str, args)],
                         stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    got = b""
    while True:  # (read as it comes: a full pseudo-terminal would block the command)
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # (EIO: the command closed its end)
            break
        if not chunk:
            break
        got += chunk
    out, _ = p.communicate(timeout=timeout)
    os.close(leader)
    return p.returncode, out.decode(), got.decode(errors="replace")


def test_a_terminal_sees_each_step_and_then_only_the_answer(t4_sweep, tmp_path):
    """On a terminal, analyze draws one self-overwriting line per step (each trace read, its
    telemetry joined, each engine and condition, a report written) and clears it before the
    answer; through a pipe (the tests' other runs, a log) it writes nothing of the kind."""
    html = tmp_path / "r.html"
    rc, out, tty = _on_a_terminal([t4_sweep.path, FIXTURE, "-q", "--html", html])
    assert rc == 0 and html.exists()
    piped = analyze(t4_sweep.path, FIXTURE, "-q")  # (stderr a pipe: no progress)
    assert out == piped.stdout and out.count("\n") == 1  # (the same answer, and only it)
    assert "\r" not in piped.stderr and "joining" not in piped.stderr
    assert "\x1b" not in tty  # (no escape sequences: a dumb terminal shows it too)
    steps = [s.strip() for s in tty.split("\r") if s.strip()]
    assert any(s.startswith("reading trace 0: ") for s in steps), steps
    assert any(s.startswith("trace 1: joining the telemetry onto ") for s in steps)
    assert any(re.match(r"trace 0: .+, gap=\d+ms \(condition \d of \d, [\d,]+ "
                        r"inferences\)$", s) for s in steps), steps
    assert any(s.startswith("writing the HTML report ") for s in steps), steps
    said: list[str] = []  # (every step is drawn, none dropped for coming soon after another)
    from gpuwatch.analysis import analyze as analyse
    analyse(t4_sweep.path, FIXTURE, progress=said.append)
    assert [s for s in steps if not s.startswith("writing")] == said
    assert re.search(r"\r +\r$", tty)  # (cleared: the answer starts at the margin)


def test_progress_is_called_at_each_step_and_must_be_a_function():
    from gpuwatch.analysis import analyze as analyse
    from gpuwatch.errors import UsageError

    said: list[str] = []
    a = analyse(FIXTURE, progress=said.append)
    assert said[0] == f"reading {FIXTURE}"  # (one trace: not named "trace 0" in each line)
    assert said[1].startswith("joining the telemetry onto ")
    conds = [s for s in said if "(condition " in s]
    assert len(conds) == len(a.layers) >= 2
    with pytest.raises(UsageError, match="progress takes a function"):
        analyse(FIXTURE, progress="yes")


def test_a_fleet_on_a_terminal_counts_its_traces_then_clears_the_line(tmp_path):
    (tmp_path / "fleet").mkdir()
    for n in ("a", "b"):
        (tmp_path / "fleet" / f"{n}.parquet").write_bytes(FIXTURE.read_bytes())
    rc, out, tty = _on_a_terminal([tmp_path / "fleet", "-q"])
    assert rc == 0 and out.count("\n") == 1
    assert "2/2 traces" in tty and re.search(r"\r +\r$", tty)


def test_a_narrow_terminal_gets_lines_that_fit_and_warnings_at_the_margin(tmp_path):
    """The line is cut to stderr's own terminal (stdout is a pipe here, as with `> out.json`),
    its middle left out; a warning clears it first."""
    (tmp_path / "fleet").mkdir()
    for n in ("a", "b"):
        (tmp_path / "fleet" / f"{n}.parquet").write_bytes(FIXTURE.read_bytes())
    (tmp_path / "fleet" / "broken.parquet").write_bytes(b"not parquet")
    rc, out, tty = _on_a_terminal([FIXTURE, "--json"], columns=40)
    assert rc == 0 and json.loads(out)["verdict"]
    lines = [s for s in tty.split("\r") if s.strip()]
    assert lines and all(len(s.rstrip()) <= 39 for s in lines), lines
    assert any(s.rstrip().endswith("inferences)") and "..." in s for s in lines), lines
    rc, out, tty = _on_a_terminal([tmp_path / "fleet", "-q"], columns=40)
    assert rc == 0 and "warning: left out 1" in tty
    assert re.search(r"(^|\r +\r)gpuwatch analyze: warning: left out 1", tty), tty
