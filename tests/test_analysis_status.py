"""analysis.status: how each recording went comes before any verdict, in the text and HTML
reports' first lines and as a `status` object per trace in the JSON (issue 29)."""

import json

import pytest

import gpuwatch
from gpuwatch.renderers.html import HtmlRenderer
from gpuwatch.renderers.text import TextRenderer
from tests.helpers import gw


def record(tmp_path, name, *args):
    out = tmp_path / name
    return out, gw("--gap", "0,20", "--iters", "60", "--out", out, "--quiet", *args,
                   module="gpuwatch.record")


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    out, r = record(tmp_path_factory.mktemp("s"), "f.parquet", "--device",
                    "sim:t4,fault=cuda_error@0.2")
    assert r.returncode == 1 and out.exists(), r.stderr
    return gpuwatch.analyze(out)


def test_a_failed_recording_says_so_before_any_verdict(failed):
    st = failed.status[0]
    assert st["status"] == "failed" and "CUDA_ERROR_ILLEGAL_ADDRESS" in st["error"]
    assert st["planned"] == 120 and 0 < st["kept"] < 120
    assert st["schema_version"] == 4 and st["recorded_by"] == gpuwatch.__version__
    # (the engine's call raised: the run stopped, the recording is whole up to then)
    assert st["failed_by"] == "program"
    assert failed.verdict.startswith("The run stopped at an error (SimCudaError: "
                                     "CUDA_ERROR_ILLEGAL_ADDRESS")
    assert (f") after {st['kept']} of 120 planned inferences; the trace holds everything up to "
            f"it, and what follows is about the inferences it kept") in failed.verdict
    lines = TextRenderer().render(failed).splitlines()
    assert lines[1].startswith("   recording ENDED AT THE RUN'S ERROR (SimCudaError") and \
        f"{st['kept']} of 120 planned inferences kept; schema v4" in lines[1]
    assert "The run stopped at an error" in HtmlRenderer().render(failed)
    d = json.loads(failed.to_json())
    assert d["version"] == gpuwatch.__version__
    assert d["traces"][0]["status"]["status"] == "failed"
    assert d["traces"][0]["status"]["failed_by"] == "program"
    assert d["traces"][0]["status"]["kept"] == st["kept"]


def test_a_complete_recording_is_said_in_one_line_and_no_more(tmp_path):
    out, r = record(tmp_path, "c.parquet", "--device", "sim:t4", "--sampler", "off")
    assert r.returncode == 0, r.stderr
    a = gpuwatch.analyze(out)
    st = a.status[0]
    assert (st["status"], st["planned"], st["kept"]) == ("complete", 120, 120)
    assert not a.verdict.startswith("The recording")
    text = TextRenderer().render(a).splitlines()
    assert text[1] == (f"   recording complete, 120 of 120 planned inferences kept; schema v4, "
                       f"written by gpuwatch {gpuwatch.__version__}")
    assert text[2] == "   telemetry: no telemetry: the sampler was off"


def test_an_interrupted_session_and_several_traces(tmp_path, failed):
    out = tmp_path / "s.parquet"
    s = gpuwatch.session("sim:t4", out)
    s.__enter__()
    e = s.engine("builtin:small")
    for _ in range(30):
        e.infer()
    s.close(status="interrupted")  # (what a Ctrl-C leaves)
    a = gpuwatch.analyze(out, failed.traces[0])
    assert [x["status"] for x in a.status] == ["interrupted", "failed"]
    assert a.status[0]["planned"] is None and a.status[0]["kept"] == 30
    assert a.verdict.startswith("Trace 0: the recording was cut short (interrupted: Ctrl-C, a "
                                "signal, or the process died) with 30 measured inferences; ")
    assert "Trace 1: the run stopped at an error (SimCudaError" in a.verdict
    assert a.status[0]["failed_by"] is None  # (said only of a failed recording)


@pytest.mark.parametrize("failed_by, words, word", [
    ("program", "The run stopped at an error (ValueError: boom) after 7 measured inferences; "
     "the trace holds everything up to it", "ENDED AT THE RUN'S ERROR"),
    ("trace", "The recording failed with 7 measured inferences (ValueError: boom); what "
     "follows", "FAILED"),
    ("gpu", "The recording failed with 7 measured inferences (ValueError: boom)", "FAILED"),
    (None, "The recording failed with 7 measured inferences (ValueError: boom)", "FAILED"),
])
def test_what_failed_is_said(failed_by, words, word):
    """A recording whose timed code raised is whole up to the error: the run stopped, the
    recording did not fail. Writing the trace failing, a GPU error found as it closed, or a
    trace that does not say (recorded before failed_by) is the recording's failure."""
    from gpuwatch.analysis import status

    st = {"trace": 0, "status": "failed", "live": None, "error": "ValueError: boom",
          "failed_by": failed_by, "planned": None, "kept": 7, "warmup": 0,
          "schema_version": 4, "recorded_by": "x"}
    assert status.headline(st, several=False).startswith(words)
    assert status.line(st).startswith(f"recording {word} (ValueError: boom), 7 measured")


def test_warm_up_inferences_of_a_run_without_a_plan_are_counted(tmp_path):
    """`gpuwatch run` has no planned count: the header says how many warm-up inferences (its
    first call) it recorded besides the measured ones (a user saw "300 inference(s) found",
    then "299 measured inferences", and took one for lost)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    programs = Path(__file__).parent / "programs"
    env = dict(os.environ, PYTHONPATH=str(programs / "standins"), GPUWATCH_DEVICE="standin")
    r = subprocess.run([sys.executable, "-m", "gpuwatch", "run", "-q", "-o",
                        str(tmp_path / "t.parquet"), str(programs / "trt_pipeline.py")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    a = gpuwatch.analyze(tmp_path / "t.parquet")
    st = a.status[0]
    inf = a.traces[0].inferences
    warm = int(inf["warmup"].astype(bool).sum())
    assert warm >= 1 and st["warmup"] == warm and st["kept"] == len(inf) - warm
    assert (f"{st['kept']} measured inferences (and {warm} warm-up, not compared); "
            in TextRenderer().render(a))


def test_an_error_without_a_message_reads_as_its_type():
    """Earlier recorders wrote "KeyboardInterrupt: " for an exception with no message; the
    status and the fleet's runs read it as "KeyboardInterrupt"."""
    from gpuwatch.analysis.fleet import _status
    from gpuwatch.analysis.status import error_of
    from gpuwatch.errors import described

    assert described(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert described(ValueError("boom")) == "ValueError: boom"
    assert error_of({"error": "KeyboardInterrupt: "}) == "KeyboardInterrupt"
    assert error_of({"error": "ValueError: boom"}) == "ValueError: boom"
    assert error_of({"error": ""}) is None and error_of({}) is None
    assert _status({"status": "interrupted", "error": "KeyboardInterrupt: "}) == \
        "interrupted (KeyboardInterrupt)"
