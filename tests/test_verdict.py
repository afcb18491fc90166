"""analysis.verdict: the verdict is data (a Verdict), and words() is the one place it becomes a
sentence; every verdict row's sentence is words() of its Verdict, and JSON gives the same as
fields."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpuwatch
from tests import helpers
from gpuwatch.analysis import causes
from gpuwatch.analysis.verdict import (OUTCOMES, Named, Verdict, episodes_text, fields, share_text,
                                       words)

DATA = Path(__file__).parent / "data"


def named(factor, share, lo=None, hi=None, ms=0.3, evidence=""):
    lo = share * 0.8 if lo is None else lo
    hi = min(share * 1.2, 1.0) if hi is None else hi
    return Named(factor, share, lo, hi, ms, ms * lo / share if share else 0.0,
                 ms * hi / share if share else 0.0, evidence)


def base(**kw):
    v = dict(subject="gap=20ms", latency="events", outcome="explained", latency_ms=6.0,
             reference_ms=5.0, reference="gap=0ms")
    v.update(kw)
    return Verdict(**v)


def test_an_explained_change_names_each_cause_with_its_share_and_interval():
    v = base(causes=(named("sm_clock", 0.8, evidence=" (SM clock 1980 -> 1590 MHz)"),
                     named("host_launch", 0.15)),
             unexplained=named("unexplained", 0.05), clock_share=0.8)
    assert words(v) == (
        "gap=20ms: GPU time (events) 6.00 ms vs 5.00 ms (gap=0ms), +1.00 ms (1.20x); "
        "the SM clock (DVFS: no power/thermal reason active) explains 80% (64%..96%) (SM clock "
        "1980 -> 1590 MHz); host launch delay explains 15% (12%..18%).")
    f = fields(v)
    assert f["cause"] == "sm_clock" and f["cause_code"] == "idle_clock_downscale"
    assert f["share"] == pytest.approx(0.8) and f["outcome"] == "explained"
    assert [c["cause_code"] for c in f["causes"]] == ["idle_clock_downscale",
                                                      "host_launch_delay"]
    assert f["extra_ms"] == pytest.approx(1.0) and f["sentence"] == words(v)


def test_shares_are_said_and_given_within_0_and_100_percent():
    """A share above 1 (possible only where another factor offsets it) is said as 100%, and
    the offset with both sizes; the fields clip as the sentence does."""
    v = base(causes=(named("throttling", 1.2, 1.05, 1.4),),
             offsets=(named("host_launch", -0.2, ms=-0.2),), clock_share=1.2, reasons=0x4)
    text = words(v)
    assert "explains 100% (100%..100%)" in text and "offset by host launch delay (-0.200 ms" \
        in text and "120%" not in text
    f = fields(v)
    assert f["cause_code"] == "power_cap" and f["share"] == 1.0
    assert all(0 <= c[k] <= 1 for c in f["causes"] + f["offsets"]
               for k in ("share", "share_low", "share_high"))
    assert fields(v.with_(reasons=0x40))["cause_code"] == "thermal"
    assert share_text(-0.001) == "0%" and share_text(float("nan")) == "-"


@pytest.mark.parametrize("outcome,expect", [
    ("baseline", "6.00 ms, the baseline the other conditions are compared with."),
    ("no_reference", "no reference to compare with"),
    ("no_change", "+1.00 ms (1.20x): no meaningful change."),
    ("no_telemetry", "cannot tell why: the trace has too little telemetry"),
    ("unexplained", "not explained by clocks (0%), throttling or host launch delay: 90% is "
                    "not explained by anything gpuwatch measured (candidates it cannot see"),
])
def test_every_outcome_has_its_words(outcome, expect):
    assert outcome in OUTCOMES
    v = base(outcome=outcome, unexplained=named("unexplained", 0.9))
    assert expect in words(v)
    want = {"baseline": None, "no_reference": None, "no_change": None}
    assert fields(v)["cause"] == want.get(outcome, "unexplained")


def test_cannot_tell_gives_a_candidate_not_a_share():
    v = base(outcome="cannot_tell", candidate=named("other_process", 0.6, -0.1, 0.9),
             unexplained=named("unexplained", 0.1))
    assert "cannot tell which cause: another process on the GPU would explain 60%" in words(v)
    f = fields(v)
    assert f["cause_code"] == "unexplained" and f["candidate_code"] == "other_process"
    assert f["share"] is None


def test_episodes_still_there_at_the_end_are_not_said_to_have_gone():
    """An episode that reached its condition's last iteration came and did not go (as far as
    the run saw): the sentence says so, whole or in part."""
    assert words(base(outcome="no_change", episodes_below=1, episodes_to_end=1)).endswith(
        "no meaningful change, but 1 episode came and lasted to the end (below).")
    assert words(base(outcome="no_change", episodes_below=3, episodes_to_end=1)).endswith(
        "no meaningful change, but 3 episode(s) came, 1 of them lasting to the end (below).")
    assert episodes_text(2, 2) == "2 episode(s) came and lasted to the end"
    assert episodes_text(2, 0) == "2 episode(s) came and went"


def test_an_episode_row_says_whether_it_reached_the_end_of_its_condition():
    from gpuwatch.analysis.pipeline import _mark_to_end
    from gpuwatch.analysis.verdict import fields
    rows = pd.DataFrame({"iteration": np.arange(100, 3000)})

    def episode(a, b):
        v = base(subject=f"gap=20ms, episode at iterations {a}-{b}",
                 causes=(named("other_process", 0.9),))
        return {"episode": f"iterations {a}-{b}", "first_iter": a, "last_iter": b,
                **fields(v), "verdict": v}
    eps = [episode(500, 900), episode(1205, 2999),
           episode(1164, 2996),  # (a window trimmed to its last raised
           episode(1164, 2970)]  # call, a few before the end)
    _mark_to_end(eps, rows)
    assert [e["to_end"] for e in eps] == [False, True, True, False]
    # (and its sentence says so; the others' are as they were)
    assert eps[1]["sentence"].startswith(
        "gap=20ms, episode at iterations 1205-2999 (lasting to the end): GPU time (events)")
    assert eps[1]["verdict"].to_end and eps[1]["cause_code"] == "other_process"
    assert "lasting" not in eps[0]["sentence"] + eps[3]["sentence"]


def test_notes_after_the_decision_are_fields_not_edits():
    v = base(outcome="no_change", episodes_below=3)
    assert words(v).endswith("no meaningful change, but 3 episode(s) came and went (below).")
    cost = Named("gc", np.nan, np.nan, np.nan, 0.42, 0.3, 0.5, " (garbage collection inside)")
    w = base(outcome="no_change", latency="wall", cost_in_all=cost)
    assert words(w).endswith("no meaningful change in all, but garbage collection (Python's "
                             "cyclic collector) cost +0.420 ms per call (garbage collection "
                             "inside), offset by other changes.")
    assert fields(w)["cause_code"] == "garbage_collection" and fields(w)["share"] is None
    s = base(causes=(named("throttling", 0.9),), reasons=0x4, latency_ms=4.0,
             sustained_mhz=(1590.0, 1980.0))
    assert words(s).endswith(": sustained load is slower because the power cap lowered the "
                             "clock (1590 MHz back to back, 1980 MHz here).")


def test_every_verdict_of_a_real_trace_is_words_of_its_verdict():
    """On real H100 traces: each row's sentence is words() of its Verdict, its fields are the
    Verdict's, every code is in the table of causes, and JSON gives the structure (no
    objects)."""
    a = gpuwatch.analyze(DATA / "h100_causes" / "power_cap.parquet",
                         DATA / "h100_issue27" / "gc_preprocess.parquet")
    rows = list(a.verdicts.itertuples()) + list(a.wall_verdicts.itertuples())
    assert len(rows) > 5
    for r in rows:
        assert isinstance(r.verdict, Verdict)
        assert r.sentence == words(r.verdict)
        code = fields(r.verdict)["cause_code"]
        assert r.cause_code == code or (code is None and r.cause_code != r.cause_code)
        assert code is None or code in causes.CAUSE_CODES
        assert r.share is None or r.share != r.share or 0 <= r.share <= 1
    outcomes = {r.outcome for r in rows}
    assert "explained" in outcomes and "baseline" in outcomes
    d = json.loads(a.to_json())
    assert "verdict" not in d["verdicts"][0]
    explained = [v for v in d["verdicts"] + d["wall_verdicts"] if v["outcome"] == "explained"]
    assert explained and all(v["causes"][0]["cause_code"] == v["cause_code"] for v in explained)


@pytest.mark.slow
def test_a_clock_nvml_could_not_see_is_not_ruled_out_plainly():
    """Only NVML's clock, over regions shorter than its ~100 ms refresh: "not explained by
    clocks" says how far NVML can tell; with the in-band clock it is said plainly."""
    v = base(causes=(named("host_launch", 0.9),), clock_share=0.0)
    assert words(v).endswith("; not explained by clocks.")
    blind = words(v.with_(nvml_blind=True))
    assert blind.endswith("; not explained by clocks as far as NVML can tell (its SM clock "
                          "refreshes about every 100 ms: shorter changes escape it).")
    u = words(base(outcome="unexplained", unexplained=named("unexplained", 1.0),
                   nvml_blind=True))
    assert "not explained by clocks (0% as far as NVML can tell" in u
    # real traces: a busy host recorded without the probe, regions of ~1 ms
    a = helpers.analysed(DATA / "h100_issue27" / "busy_host.parquet")
    said = [s for s in a.verdicts["sentence"] if "not explained by clocks" in s]
    assert said and all("as far as NVML can tell" in s for s in said)
    assert all(r.verdict.nvml_blind for r in a.verdicts.itertuples()
               if r.verdict.outcome == "explained")
    probed = helpers.analysed(DATA / "h100_causes" / "power_cap.parquet")  # --probe
    assert not any(r.verdict.nvml_blind for r in probed.verdicts.itertuples())


def test_a_comparison_of_microsecond_latencies_keeps_its_digits():
    # ("call -> result 0.00 ms vs 0.00 ms (gap=0ms), +0.00 ms" said nothing)
    from gpuwatch.analysis.verdict import _ms

    assert [_ms(x) for x in (0.0045, 0.86, 4.7, 0.0)] == ["0.0045", "0.86", "4.70", "0.00"]
    assert [_ms(x, "+") for x in (0.0001, -0.0032, 1.76)] == ["+0.0001", "-0.0032", "+1.76"]
    assert _ms(-0.00016, "+", scale=0.76) == "-0.00"  # (the latencies set the digits)
    assert _ms(-8.7e-19, "+") == "+0.00" and _ms(3e-12) == "0.00"  # (float dust: a new user saw -8.7e-19 ms)


def test_a_clock_that_moved_against_the_change_is_said_not_denied():
    """The target is faster without another process, while its clock fell: the fit gives the
    clock no part, and the sentence says the clock moved the other way (not "not explained
    by clocks", which read as if it had not moved)."""
    v = base(latency_ms=9.3, reference_ms=11.7, causes=(named("other_process", 1.0),),
             clock_share=0.0, clock_against=(1590.0, 765.0))
    text = words(v)
    assert "the reference was the slower: another process on the GPU explains 100%" in text
    assert ("the SM clock moved the other way (1590 -> 765 MHz), which alone would have made "
            "it slower: its part could not be told apart, so the share above is net of it."
            ) in text
    assert "not explained by clocks" not in text
    assert "not explained by clocks" in words(base(latency_ms=9.3, reference_ms=11.7,
                                                   causes=(named("other_process", 1.0),)))


def test_a_clock_that_moved_against_an_unexplained_change_is_said_too():
    """In an unexplained verdict too (a trial's case: "not explained by clocks (0%)" where the
    clock rose 765 -> 795 MHz on the slower side), and with NVML's caveat where only NVML's
    clock was read."""
    v = base(outcome="unexplained", unexplained=named("unexplained", 1.0),
             clock_against=(765.0, 795.0))
    text = words(v)
    assert ("; the SM clock moved the other way (765 -> 795 MHz), which alone would have made "
            "it faster: its part could not be told apart; not explained by throttling or host "
            "launch delay: 100% is not explained by anything gpuwatch measured") in text
    assert "not explained by clocks" not in text
    assert "(1590 -> 765 MHz) by NVML's reading (it refreshes about every 100 ms)" in words(
        base(latency_ms=9.3, reference_ms=11.7, causes=(named("other_process", 1.0),),
             clock_against=(1590.0, 765.0), nvml_blind=True))
