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
