"""`python -m gpuwatch.record`: the command's own logic run in this process (`record`), and
as a user runs it, in a subprocess, where the process is the subject (the entry points, the
device from the environment, signals, --help and --version)."""

import subprocess
import sys

import numpy as np
import pytest

import gpuwatch
from gpuwatch.backends import _nvml_probe
from tests.helpers import gw, gw_here


def record(*args, cwd=None):
    return gw_here(*args, cwd=cwd, module="gpuwatch.record")


def test_records_a_sweep_on_the_simulated_t4(tmp_path):
    out = tmp_path / "run.parquet"
    r = record("--gap", "0,20", "--iters", "300", "--device", "sim:t4", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["condition", "n"]
    assert lines[1].startswith("gap=0ms") and lines[2].startswith("gap=20ms")
    assert "simulated GPU" in lines[-1]
    tr = gpuwatch.load(out)
    assert tr.meta["options"]["gaps_ms"] == [0.0, 20.0]
    assert tr.meta["options"]["command"] == "record"
    assert len(tr.measured()) == 600 and tr.inferences["warmup"].sum() == 40


def test_default_output_name_lands_in_the_working_directory(tmp_path):
    r = record("--iters", "5", "--warmup", "0", "--device", "sim:flat", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    (made,) = tmp_path.glob("gpuwatch-*.parquet")
    assert len(gpuwatch.load(made).inferences) == 5


@pytest.mark.parametrize("args, words", [
    (["--gap", "-5"], "--gap values must be 0..3600000 ms"),
    (["--gap", "nan"], "--gap values must be 0..3600000 ms"),
    (["--sample-hz", "1e9"], "must be at most 20000 Hz"),
    (["--fps", "1e-9"], "from one frame an hour"),
    (["--gap", "fast"], "--gap takes milliseconds"),
    (["--gap", "1,,2"], "--gap has an empty item in '1,,2'"),
    (["--gap", "0,20,"], "--gap has an empty item"),
    (["--fps", "15,,30"], "--fps has an empty item"),
    (["--device", "sim:t4", "--sample-gpus", "0,,1"],
     "--sample-gpus has an empty item in '0,,1': separate values with single commas (e.g. 0,1)"),
    (["--device", "sim:t4", "--sample-gpus", "-1"],
     "--sample-gpus takes all or NVML indices (0, 1, ...) like 0,1, not '-1'"),
    (["--device", "sim:t4", "--sample-gpus", "0,0"], "--sample-gpus lists GPU 0 twice"),
    (["--iters", "0"], "must be at least 1"),
    (["--warmup", "-1"], "must be 0 or more"),
    (["--sample-hz", "0"], "must be a positive number"),
    (["--wait", "nap"], "invalid choice"),
    (["--device", "tpu:0"], "unknown device 'tpu:0'"),
    (["--device", "sim:v100"], "unknown simulated GPU profile 'v100'"),
    (["--device", "cuda:x"], "GPU index must be a number"),
    (["--device", "sim:t4", "--engine", "builtin:huge"], "unknown built-in engine preset"),
    (["--device", "sim:t4", "--out", "/nonexistent/dir/x.parquet"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    r = record(*args, "--iters" if "--iters" not in args else "--quiet",
               *(["5"] if "--iters" not in args else []), cwd=tmp_path)
    assert r.returncode == 2
    assert words in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.skipif(_nvml_probe() is None, reason="this machine has an NVIDIA GPU")
def test_default_device_without_a_gpu_suggests_the_simulator(tmp_path):
    r = gw("--iters", "5", cwd=tmp_path, module="gpuwatch.record")
    assert r.returncode == 2
    assert "--device sim:t4" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_gpuwatch_entry_point_dispatches_and_rejects_unknown_commands(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "frobnicate"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "give a command: record" in r.stderr
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "record", "--device", "sim:flat",
                        "--iters", "3", "--quiet", "--out", str(tmp_path / "x.parquet")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_fps_holds_the_frame_rate_on_sim(tmp_path):
    out = tmp_path / "fps.parquet"
    r = record("--fps", "25", "--iters", "100", "--device", "sim:t4", "--pre-post",
               "--out", str(out))
    assert r.returncode == 0, r.stderr
    tr = gpuwatch.load(out)
    inf = tr.measured().sort_values("iteration")
    period = np.diff(inf["host_start_ns"].to_numpy(np.int64)) / 1e6
    # Each iteration starts 40 ms after the last (pre + infer + post, then the rest of the frame),
    # give or take the sleep's oversleep.
    assert np.median(period) == pytest.approx(40.0, abs=0.2)
    assert set(tr.inferences["name"]) == {"builtin:small", "preprocess", "postprocess"}
    assert list(tr.measured()["condition"].unique()) == ["fps=25"]


def test_cuda_graph_and_spin_on_sim(tmp_path):
    out = tmp_path / "g.parquet"
    r = record("--gap", "2", "--iters", "50", "--device", "sim:flat", "--cuda-graph",
               "--wait", "spin", "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr
    tr = gpuwatch.load(out)
    assert set(tr.inferences["name"]) == {"builtin:small+graph"}
    assert tr.meta["options"]["wait"] == "spin" and tr.meta["options"]["cuda_graph"] is True


@pytest.mark.parametrize("args, words", [
    (["--sampler", "process"], "needs a real GPU"),
    (["--torch", "gpuwatch.bindings.torch:convnet"], "cannot run on a simulated GPU"),
    (["--sample-gpus", "x,y"], "--sample-gpus takes all or NVML indices"),
    (["--fps", "0"], "--fps values must be positive"),
    (["--no-probe", "--probe-every", "3"], "--no-probe turns the in-band clock's stamps off"),
])
def test_more_bad_input_on_sim(tmp_path, args, words):
    r = record("--device", "sim:t4", "--iters", "5", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_stopped_recording_never_calls_the_file_already_there_the_recording(tmp_path):
    """`record -f` over an existing trace, stopped before its first region: the old file is
    still there, and the line must not say the recording is in it (a new user's try:
    "interrupted: what was recorded is in keep.parquet", the old trace, byte for byte). A
    trace published over it, or an unfinished recording beside it, is said as before."""
    import os

    from gpuwatch.cli.record import stopped_line
    from gpuwatch.trace.paths import file_identity
    from gpuwatch.trace import partial_path

    out = tmp_path / "keep.parquet"
    assert stopped_line("interrupted", out, None) == \
        "interrupted: nothing was timed; no trace was written"
    record("--device", "sim:t4", "--iters", "5", "--gap", "0", "-q", "--out", str(out),
           cwd=tmp_path)
    before = file_identity(out)
    assert stopped_line("interrupted", out, before) == (
        f"interrupted: nothing was timed; no trace was written ({out} is as it was)")
    new = tmp_path / "new.parquet"  # (a trace published over it: another file, renamed there)
    record("--device", "sim:t4", "--iters", "5", "--gap", "0", "-q", "--out", str(new),
           cwd=tmp_path)
    os.replace(new, out)
    assert stopped_line("terminated", out, before) == \
        f"terminated: what was recorded is in {out}"
    partial_path(out).mkdir()
    assert stopped_line("interrupted", out, before) == \
        f"interrupted: the recording is in {partial_path(out)} (not finished)"


@pytest.mark.parametrize("sig, code, word", [("SIGINT", 130, "interrupted"),
                                            ("SIGTERM", 143, "terminated")])
def test_a_signal_mid_recording_keeps_the_trace(tmp_path, sig, code, word):
    """Ctrl-C, or the SIGTERM a service manager sends, finalises the trace with every row so far."""
    import signal
    import time

    out = tmp_path / "int.parquet"
    p = subprocess.Popen([sys.executable, "-m", "gpuwatch.record", "--device", "sim:t4",
                          "--gap", "20", "--iters", "10000000", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         # (SIGINT as a terminal gives it, also from a background job)
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    partial = tmp_path / "int.parquet.partial"
    deadline = time.monotonic() + 60
    while not list(partial.glob("*inferences.parquet")) and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until rows are on disk
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert f"{word}: what was recorded is in {out}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # (said once: not again as "interrupted")
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "interrupted"
    assert len(tr.inferences) > 100 and len(tr.samples) > 1000
    assert not partial.exists()
    # the trace holds everything up to the signal: no gap in the iterations
    it = tr.measured()["iteration"].to_numpy()
    assert (it == range(len(it))).all()


def test_keepalive_work_runs_in_the_gaps_only(tmp_path):
    """--keepalive 2: a trivial GPU op every 2 ms of each gap, never inside a timed region.
    (sim:t4's governor follows utilisation, which 2 us every 2 ms barely moves: it still
    layers; what a real GPU does is measured in benchmarks/results/h100_issue8.)"""
    out = tmp_path / "ka.parquet"
    r = record("--device", "sim:t4", "--gap", "20", "--iters", "300", "--keepalive", "2",
               "--kernels", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tr = gpuwatch.load(out)
    assert tr.meta["options"]["keepalive_ms"] == 2.0
    ka = tr.kernels[tr.kernels["name"] == "keepalive"]
    assert len(ka) >= 300 * 9  # ~10 a gap (20 ms / 2 ms), outside the timed regions
    inside = tr.inferences.dropna(subset=["start_ns"])
    starts = ka["start_ns"].to_numpy()
    for a, b in zip(inside["start_ns"], inside["end_ns"]):
        assert not ((starts > a) & (starts < b)).any()


@pytest.mark.slow
def test_version_short_flags_and_json_summary(tmp_path):
    """--version on every command, -o/-q/-f as the long flags, record --json for scripts,
    analyze -q for the one-line verdict."""
    import json
    import subprocess
    import sys

    import gpuwatch

    def run(*argv):
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                              cwd=tmp_path)

    for argv in (["-m", "gpuwatch.record", "--version"], ["-m", "gpuwatch.analyze", "-V"],
                 ["-m", "gpuwatch", "--version"]):
        r = run(*argv)
        assert r.returncode == 0 and r.stdout.strip() == f"gpuwatch {gpuwatch.__version__}"
    out = tmp_path / "r.parquet"
    r = run("-m", "gpuwatch.record", "--device", "sim:t4", "--gap", "0,20", "--iters", "80",
            "-o", str(out), "-q", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["trace"] == str(out) and j["simulated"] and j["status"] == "complete"
    assert [(s["engine"], s["condition"], s["n"]) for s in j["summary"]] == [
        ("builtin:small", "gap=0ms", 80), ("builtin:small", "gap=20ms", 80)]
    r = run("-m", "gpuwatch.record", "--device", "sim:t4", "--iters", "5", "-o", str(out), "-q")
    assert r.returncode == 2 and "--force" in r.stderr  # (refuses to overwrite)
    r = run("-m", "gpuwatch.record", "--device", "sim:t4", "--iters", "5", "-o", str(out), "-q",
            "-f")
    assert r.returncode == 0 and r.stdout == ""
    r = run("-m", "gpuwatch.analyze", "-q", str(out))
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 1


def test_record_takes_its_device_from_gpuwatch_device(tmp_path):
    """The no-GPU error suggests GPUWATCH_DEVICE=sim:t4: record honours it (--device wins)."""
    import os
    import subprocess
    import sys

    import gpuwatch

    env = dict(os.environ, GPUWATCH_DEVICE="sim:t4")
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--gap", "20", "--iters", "30",
                        "-o", str(tmp_path / "e.parquet"), "-q"], capture_output=True,
                       text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert gpuwatch.load(tmp_path / "e.parquet").simulated


def test_record_help_offers_only_devices_record_accepts():
    """record runs engines, which the stand-in device has none of: its --help does not offer
    it (gpuwatch run's does; issue 29)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--help"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "sim:PROFILE" in r.stdout and "standin" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "--help"], capture_output=True,
                       text=True)
    assert "standin" in r.stdout


def test_a_repeated_gap_or_fps_adds_conditions_and_a_value_twice_is_refused(tmp_path):
    """`--gap 0 --gap 20` is the sweep `--gap 0,20` (it kept the last value alone, silently);
    a value given twice, across repeats too, is refused before anything is written."""
    out = tmp_path / "r.parquet"
    r = record("--gap", "0", "--gap", "20", "--iters", "40", "--quiet", "--device", "sim:t4",
               "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert set(gpuwatch.load(out).measured()["condition"]) == {"gap=0ms", "gap=20ms"}
    again = tmp_path / "again.parquet"
    r = record("--gap", "20", "--gap", "0,20", "--device", "sim:t4", "--out", str(again))
    assert r.returncode == 2 and "--gap gives a value twice (20, 0, 20)" in r.stderr
    assert not again.exists() and not (tmp_path / "again.parquet.partial").exists()
    r = record("--fps", "30", "--fps", "30", "--device", "sim:t4", "--out", str(again))
    assert r.returncode == 2 and "--fps gives a value twice" in r.stderr
