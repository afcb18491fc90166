import pytest

from gpuwatch.summary import condition_summary, format_summary


def test_summary_per_condition_in_recording_order(t4_sweep):
    df = condition_summary(t4_sweep)
    assert list(df["condition"]) == ["gap=0ms", "gap=20ms", "gap=50ms"]
    assert list(df["n"]) == [800, 800, 800]
    g0, g20 = df.iloc[0], df.iloc[1]
    assert g0["p50_ms"] == pytest.approx(4.7, abs=0.1)
    assert g0["sm_clock_p50_mhz"] == 1590 and g0["late_over_early"] == pytest.approx(1, abs=0.02)
    assert g20["late_over_early"] > 1.7
    assert g20["sm_clock_min_mhz"] < 900 and g20["sm_clock_max_mhz"] == 1590
    assert g20["p50_ms"] <= g20["p90_ms"] <= g20["p99_ms"]
    text = format_summary(df)
    assert "gap=20ms" in text and "late/early" in text


def test_two_things_timed_per_iteration_are_two_rows_and_no_name_is_cut(tmp_path):
    """The README's own API example times a callable and an engine in each iteration: the
    summary keeps them apart (it mixed them: p50 from a 0.001 ms callable and a 9 ms engine)."""
    import gpuwatch

    with gpuwatch.session("sim:t4", tmp_path / "t.parquet", sampler="off") as s:
        eng = s.engine("builtin:small")
        for cond in ("gap=1000.5ms-long-label", "gap=0ms"):
            s.set_condition(cond)
            for _ in range(60):
                s.infer(lambda: None)
                eng.infer()
    df = condition_summary(s.trace)
    lam = df["engine"].iloc[0]
    assert lam.endswith("<locals>.<lambda>")  # (a function's qualified name)
    assert list(zip(df["engine"], df["condition"])) == [
        (lam, "gap=1000.5ms-long-label"), ("builtin:small", "gap=1000.5ms-long-label"),
        (lam, "gap=0ms"), ("builtin:small", "gap=0ms")]
    fast, slow = df.iloc[0], df.iloc[1]
    assert slow["p50_ms"] > 50 * fast["p50_ms"]
    text = format_summary(df)
    assert "gap=1000.5ms-long-label" in text and "builtin:small" in text
    assert text.splitlines()[0].startswith("engine")
