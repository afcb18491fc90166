"""The session API: engines, user functions, spans, conditions, failures, nesting."""

import pytest

import gpuwatch
from gpuwatch.bindings.sim import SimEngine


def test_infer_times_a_user_function_on_the_stream_it_is_given(tmp_path):
    with gpuwatch.session("sim:t4", tmp_path / "t.parquet") as s:
        raw = s.engine("builtin:large").raw
        assert isinstance(raw, SimEngine)

        def my_model(x):
            raw.infer()
            return x * 2

        assert s.infer(my_model, 21, stream=s.stream) == 42
    inf = s.trace.inferences
    assert list(inf["name"]) == [
        "test_infer_times_a_user_function_on_the_stream_it_is_given.<locals>.my_model"]
    assert inf["gpu_ms"].iloc[0] == pytest.approx(15.2 * 1.4, rel=0.5)  # parked GPU: slow start
    assert inf["stream"].iloc[0] == s.stream.ptr and inf["stream_source"].iloc[0] == "argument"
    assert inf["outside_ms"].iloc[0] == pytest.approx(0, abs=0.05)  # checked: nothing outside


def test_spans_and_inferences_share_iterations(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        e = s.engine()
        for _ in range(3):
            with s.span("preprocess"):
                s.wait(1, "spin")
            e.infer()
    inf = s.trace.inferences
    assert list(inf["kind"]) == ["span", "inference"] * 3
    assert list(inf["iteration"]) == [0, 0, 1, 1, 2, 2]
    spans = inf[inf["kind"] == "span"]
    # Events on an idle stream complete as soon as they are recorded (as on real CUDA), so a
    # span with no GPU work measures the host's wall time: the 1 ms spin.
    assert spans["gpu_ms"].to_numpy() == pytest.approx([1.0] * 3, abs=0.01)


def test_conditions_label_rows_and_restart_iterations(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        e = s.engine()
        for gap in (0, 5):
            s.set_condition(f"gap={gap}ms", gap_ms=gap)
            for _ in range(2):
                e.infer()
    tr = s.trace
    assert list(tr.inferences["condition"]) == ["gap=0ms"] * 2 + ["gap=5ms"] * 2
    assert list(tr.inferences["iteration"]) == [0, 1, 0, 1]
    assert list(tr.events.query("kind == 'condition'")["name"]) == ["gap=0ms", "gap=5ms"]


def test_an_error_in_user_code_still_leaves_a_valid_trace(tmp_path):
    out = tmp_path / "t.parquet"
    with pytest.raises(ZeroDivisionError):
        with gpuwatch.session("sim:t4", out) as s:
            e = s.engine()
            e.infer()
            s.infer(lambda: 1 / 0)
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "failed" and tr.meta["failed_by"] == "program"
    assert "ZeroDivisionError" in tr.meta["error"]
    assert list(tr.inferences["error"].isna()) == [True, False]
    # (the report says the program's error stopped the run, not that the recording failed)
    assert gpuwatch.analyze(out).verdict.startswith("The run stopped at an error "
                                                   "(ZeroDivisionError")
    assert len(tr.samples) > 0


def test_ctrl_c_finalises_the_trace_as_interrupted(tmp_path):
    out = tmp_path / "t.parquet"
    with pytest.raises(KeyboardInterrupt):
        with gpuwatch.session("sim:t4", out) as s:
            e = s.engine()
            for i in range(100):
                e.infer()
                s.wait(20)
                if i == 49:
                    raise KeyboardInterrupt
    tr = gpuwatch.load(out)
    assert tr.meta["status"] == "interrupted"
    assert len(tr.inferences) == 50
    assert tr.meta["error"] == "KeyboardInterrupt"  # (not "KeyboardInterrupt: ": no message)


def test_nested_sessions_fail_clearly_and_the_first_goes_on(tmp_path):
    with gpuwatch.session("sim:t4", tmp_path / "a.parquet") as s:
        with pytest.raises(gpuwatch.SessionError, match="already recording"):
            with gpuwatch.session("sim:t4", tmp_path / "b.parquet"):
                pass
        s.engine().infer()
    assert len(s.trace.inferences) == 1
    with gpuwatch.session("sim:t4", tmp_path / "c.parquet") as s2:  # free again afterwards
        s2.engine().infer()


def test_session_objects_refuse_use_outside_their_block(tmp_path):
    s = gpuwatch.session("sim:t4", tmp_path / "t.parquet")
    with pytest.raises(gpuwatch.SessionError, match="not recording"):
        s.engine()
    with s:
        with pytest.raises(gpuwatch.SessionError, match="leave the with-block"):
            s.trace
    with pytest.raises(gpuwatch.SessionError):
        s.infer(print)


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(gpuwatch.UsageError, match="sample rate"):
        gpuwatch.session("sim:t4", tmp_path / "t.parquet", sample_hz=0)
    with pytest.raises(gpuwatch.UsageError, match="unknown device"):
        gpuwatch.session("tpu:0", tmp_path / "t.parquet").start()
    with gpuwatch.session("sim:t4", tmp_path / "t.parquet") as s:
        with pytest.raises(gpuwatch.UsageError, match="sleep or spin"):
            s.wait(1, "nap")
    assert not (tmp_path / "t.parquet.partial").exists()


def test_the_timebase_is_reanchored_on_long_runs(tmp_path):
    with gpuwatch.session("sim:t4", tmp_path / "t.parquet") as s:
        e = s.engine()
        for _ in range(200):
            e.infer()
            s.wait(20)
    tb = s.trace.meta["timebase"]
    assert tb["anchors"] >= 4  # ~5 s of virtual time, one anchor a second
    # sim: an anchor completes ~7 us after the host starts recording it (1 us to record, 6 us
    # launch latency); polling it (0.5 us a query) sees that at once: +-3.5 us
    assert tb["anchor_uncertainty_us_p50"] == pytest.approx(3.5, abs=0.5)
    assert tb["reanchor_drift_us_max"] < 5 and tb["failed_tries"] == 0


def test_a_ctrl_c_while_the_session_starts_is_an_interrupted_recording(tmp_path, monkeypatch):
    """Ctrl-C lands while the session starts (after the trace was opened): it is an
    interruption, not a failure, and as nothing was timed no trace is left to block the next
    recording to the same path."""
    import pytest

    from gpuwatch import recorder

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(recorder, "RegionTimer", interrupted)  # (the last step of start)
    s = gpuwatch.session("sim:t4", tmp_path / "t.parquet")
    with pytest.raises(KeyboardInterrupt):
        s.start()
    assert s.discarded and not (tmp_path / "t.parquet").exists()
    assert not (tmp_path / "t.parquet.partial").exists()
    monkeypatch.undo()
    with gpuwatch.session("sim:t4", tmp_path / "t.parquet") as s:
        s.infer(lambda: None)
    assert gpuwatch.load(tmp_path / "t.parquet").meta["status"] == "complete"
