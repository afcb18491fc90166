"""The verdict as data, and the one place it becomes words.

Analysis decides a `Verdict` (what changed, by how much, which causes explain it with what
share and interval, what offset it, what is left unexplained) from numbers alone; `words()`
turns it into the sentence every renderer shows (text, HTML, JSON's `sentence`, Perfetto's
args), and `fields()` into the structured columns of `Analysis.verdicts` and
`Analysis.wall_verdicts`. Nothing edits a sentence after it is written: a note that comes later
(the episodes below, a cost offset in all) is a field of the verdict that `words()` reads.

Which cause a factor is, and how a sentence names it, come from analysis.causes (the one table).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .columns import EARLY_ITERS, LATE_ITERS, ms_text
from .causes import code_of, text_of

__all__ = ["Named", "OUTCOMES", "Verdict", "fields", "share_text", "words"]

# What a verdict found, in words' order of cases:
OUTCOMES = (
    "baseline",        # the reference the others are compared with
    "no_reference",    # nothing to compare with
    "no_change",       # within noise of the reference
    "no_telemetry",    # changed, but too little telemetry to split it by cause
    "explained",       # causes beyond doubt, the main one at least MAIN_SHARE
    "cannot_tell",     # measured causes account for it, none beyond doubt: a candidate
    "unexplained",     # nothing measured explains it
)
NVML_REFRESH_MS = 100.0  # NVML's SM clock changes about this often (H100: DEVICE.md)
NVML_SEES = "NVML can tell (its SM clock refreshes about every 100 ms: shorter changes escape it)"
LATENCY_WORDS = {"events": "GPU time (events)", "wall": "call -> result"}
# the reference of a run's only condition, when too short to compare its first iterations with
# its last (a baseline with nothing to be the baseline of)
ALONE = "itself, the only condition"


def share_text(share: float | None) -> str:
    """A share of the extra latency as a sentence says it: within 0..100% (a factor can
    exceed the change only where another one offsets it; the tables keep the signed values)."""
    if share is None or not np.isfinite(share):
        return "-"
    return f"{min(max(float(share), 0.0), 1.0) + 0.0:.0%}"  # (+ 0.0: never "-0%")


@dataclass(frozen=True)
class Named:
    """A cause a verdict names: its attribution factor, its part of the change (share of all
    that moved the latency this way, 0..1, with its 95% interval on the same scale), the ms it
    moved the latency per call, and the evidence in words ("(SM clock 1980 -> 1590 MHz)")."""
    factor: str
    share: float
    share_low: float
    share_high: float
    contribution_ms: float
    ci_low_ms: float
    ci_high_ms: float
    evidence: str = ""

    def code(self, reasons: int = 0) -> str | None:
        return code_of(self.factor, reasons)


@dataclass(frozen=True)
class Verdict:
    """One verdict: about `subject` (a condition, an episode, a span), on one latency."""
    subject: str
    latency: str  # "events" (between the region's CUDA events) or "wall" (call -> result)
    outcome: str  # one of OUTCOMES
    latency_ms: float  # the target's mean
    reference_ms: float | None = None  # the reference's mean
    reference: str = ""  # what the reference is ("gap=0ms", "the rest of the condition")
    span: bool = False  # a span's host time (pre/post-processing)
    layered: tuple[int, int] | None = None  # (stable from iteration, jump at iteration)
    causes: tuple[Named, ...] = ()  # beyond doubt, the main one first
    offsets: tuple[Named, ...] = ()  # moved it the other way: both sizes said
    unexplained: Named | None = None  # what nothing measured explains (factor "unexplained")
    clock_share: float = 0.0  # the SM clock's and throttling's shares together
    clocks_known: bool = True  # an SM clock was recorded on both sides
    # the clocks compared are NVML's alone, over regions shorter than its refresh (~100 ms):
    # a clock change within them could escape it, so "not explained by clocks" is qualified
    nvml_blind: bool = False
    kernels_known: bool = False  # a kernel timeline could split "slower kernels"
    # the slower rows span less than two of the process list's readings (~1 s apart) and
    # neither lists another process: one there between them would escape it
    list_blind: bool = False
    # the SM clock moved against the change (lower on a faster side, or higher on a slower
    # one), and the fit gave it no part: (clock of the reference, clock here), MHz
    clock_against: tuple[float, float] | None = None
    candidate: Named | None = None  # cannot_tell: the likeliest cause (no share claimed)
    reasons: int = 0  # clock-event reasons of the slower-clocked side (power_cap vs thermal)
    # notes that come after the decision (fields, never edits of the words):
    episodes_below: int = 0  # no change as a whole, but this many episodes came and went
    episodes_to_end: int = 0  # ...of which this many were still there at the condition's end
    to_end: bool = False  # an episode still there at its condition's end (came, not gone)
    cost_in_all: Named | None = None  # a signal episode held its latency, but this cause cost
    sustained_mhz: tuple[float, float] | None = None  # power cap, faster than back to back:
    #                                                  (clock back to back, clock here)

    @property
    def unexplained_share(self) -> float:
        return 0.0 if self.unexplained is None else float(self.unexplained.share)

    @property
    def extra_ms(self) -> float:
        return 0.0 if self.reference_ms is None else self.latency_ms - self.reference_ms

    @property
    def factor(self) -> str | None:
        """The cause's attribution factor; None where nothing changed."""
        if self.cost_in_all is not None:
            return self.cost_in_all.factor
        if self.outcome in ("explained",):
            return self.causes[0].factor
        if self.outcome in ("no_telemetry", "cannot_tell", "unexplained"):
            return "unexplained"
        return None

    def with_(self, **changes: Any) -> "Verdict":
        return dataclasses.replace(self, **changes)


def words(v: Verdict) -> str:
    """The sentence every renderer shows for `v`."""
    what = "host time" if v.span else LATENCY_WORDS[v.latency]
    if v.outcome in ("baseline", "no_reference"):
        role = ("the only condition: no layers within it, and too few iterations to compare "
                f"its first {EARLY_ITERS} with its last {LATE_ITERS}"
                if v.outcome == "baseline" and v.reference == ALONE else
                "the baseline the other conditions are compared with" if v.outcome == "baseline"
                else "no reference to compare with (no condition with a gap_ms to serve as the "
                     "baseline, and no layers within it)")
        return _notes(v, f"{v.subject}: {what} {ms_text(v.latency_ms)} ms, {role}")
    r_ms = float(v.reference_ms or 0.0)
    delta = v.extra_ms
    where = (f" from iteration {v.layered[0]} (jump at {v.layered[1]})"
             if v.layered is not None else "")
    subject = f"{v.subject} (lasting to the end)" if v.to_end else v.subject
    scale = max(abs(v.latency_ms), abs(r_ms))  # (the latencies set the digits, the change too)
    head = (f"{subject}: {what} {_ms(v.latency_ms, scale=scale)} ms{where} vs "
            f"{_ms(r_ms, scale=scale)} ms ({v.reference}), {_ms(delta, '+', scale)} ms "
            f"({v.latency_ms / r_ms:.2f}x)")
    no_clock = ("the SM clock was not recorded (no telemetry for these rows), so clocks "
                "cannot be ruled out")
    if v.outcome == "no_change":
        text = f"{head}: no meaningful change"
    elif v.outcome == "no_telemetry":
        text = (f"{head}; cannot tell why: the trace has too little telemetry for these rows "
                f"(sampler off, or its readings lost) to split the change by cause")
    elif v.outcome == "explained":
        parts = [f"{text_of(n.factor)} explains {share_text(n.share)} "
                 f"({share_text(n.share_low)}..{share_text(n.share_high)}){n.evidence}"
                 for n in v.causes]
        if v.offsets:
            parts.append("offset by " + ", ".join(
                f"{text_of(n.factor)} ({n.contribution_ms:+.3f} ms{n.evidence})"
                for n in v.offsets))
        # (faster than its reference: what is named slowed the reference, not this)
        slower_ref = ("the reference was the slower: " if delta < 0 and v.sustained_mhz is None
                      else "")
        text = f"{head}; {slower_ref}" + "; ".join(parts)
        if not v.clocks_known:
            text += f"; {no_clock}"
        elif v.clock_against is not None:
            text += f"; {_against(v)}, so the share above is net of it"
        elif v.clock_share < 0.05 and not v.span and not any(
                n.factor in ("sm_clock", "throttling", "mem_clock") for n in v.offsets):
            # (a clock that took a part the other way is said above, as an offset)
            text += "; not explained by clocks" + (f" as far as {NVML_SEES}" if v.nvml_blind
                                                   else "")
        if v.unexplained_share >= 0.25:
            text += f"; {share_text(v.unexplained_share)} is not explained by anything measured"
    elif v.outcome == "cannot_tell":
        c = v.candidate
        assert c is not None
        text = (f"{head}; cannot tell which cause: {text_of(c.factor)} would explain "
                f"{share_text(c.share)}, but its 95% interval "
                f"({c.ci_low_ms:+.3f}..{c.ci_high_ms:+.3f} ms) includes 0 ms: it may have cost "
                f"nothing")
    elif not v.clocks_known:
        text = (f"{head}; cannot tell why: {no_clock}; {share_text(v.unexplained_share)} is not "
                f"explained by what was recorded")
    else:
        blind = ("another process for less than a second, between the GPU's process-list "
                 "readings" if v.list_blind else "")
        hint = (f" (candidates it cannot see yet: {blind})" if v.kernels_known and blind else
                "" if v.kernels_known else
                f" (candidates it cannot see yet: cold caches, slower kernels at the same "
                f"clock{'; ' + blind if blind else ''}; record --kernels would split it)")
        seen = f" as far as {NVML_SEES}" if v.nvml_blind else ""
        clocks = (f"{_against(v)}; not explained by" if v.clock_against is not None else
                  f"not explained by clocks ({share_text(v.clock_share)}{seen}),")
        text = (f"{head}; {clocks} throttling or host launch delay: "
                f"{share_text(v.unexplained_share)} is not explained by anything gpuwatch "
                f"measured{hint}")
    return _notes(v, text)


def _against(v: Verdict) -> str:
    """The words for an SM clock that moved against the change and was given no part."""
    assert v.clock_against is not None
    f0, f1 = v.clock_against
    by = " by NVML's reading (it refreshes about every 100 ms)" if v.nvml_blind else ""
    return (f"the SM clock moved the other way ({f0:.0f} -> {f1:.0f} MHz){by}, which alone "
            f"would have made it {'slower' if f1 < f0 else 'faster'}: its part could not be "
            f"told apart")


def _offset_words(factor: str) -> str:
    return "changes gpuwatch did not measure" if factor == "unexplained" else text_of(factor)


def _ms(ms: float, sign: str = "", scale: float | None = None) -> str:
    """A latency in a comparison: two decimals, as the reader compares them; two significant
    digits where latencies of that `scale` (the larger compared) would read 0.00 (a 4.5 us
    call is 0.0045, not 0.00; a change of 0.16 us between 0.76 ms calls stays -0.00)."""
    if ms == ms and abs(ms) < 1e-9:  # (float dust, below any clock's resolution: 0)
        ms = 0.0
    s = abs(ms) if scale is None else scale
    if ms != ms or ms == 0 or s != s or s >= 0.005:
        return f"{ms:{sign}.2f}"
    return f"{ms:{sign}.2g}"


def _notes(v: Verdict, text: str) -> str:
    """`text` with the notes that came after the decision, and its full stop."""
    if v.episodes_below:
        text += f", but {episodes_text(v.episodes_below, v.episodes_to_end)} (below)"
    if v.cost_in_all is not None:
        c = v.cost_in_all
        by = ("other changes" if not v.offsets else ", ".join(
            f"{_offset_words(n.factor)} ({n.contribution_ms:+.3f} ms)" for n in v.offsets))
        text += (f" in all, but {text_of(c.factor)} cost {c.contribution_ms:+.3f} ms per call"
                 f"{c.evidence}, offset by {by}")
    if v.sustained_mhz is not None:
        text += (": sustained load is slower because the power cap lowered the clock "
                 f"({v.sustained_mhz[0]:.0f} MHz back to back, {v.sustained_mhz[1]:.0f} MHz here)")
    return text + "."


def episodes_text(n: int, to_end: int) -> str:
    """'3 episode(s) came and went', or what is true where some were still there at their
    condition's end (a cause that arrived and stayed has not gone)."""
    if not to_end:
        return f"{n} episode(s) came and went"
    if to_end == n:
        return (f"{n} episode(s) came and lasted to the end"
                if n > 1 else "1 episode came and lasted to the end")
    return f"{n} episode(s) came, {to_end} of them lasting to the end"


def fields(v: Verdict) -> dict[str, Any]:
    """The verdict as the columns of Analysis.verdicts / wall_verdicts (and their JSON):
    cause (factor), cause_code, candidate_code, share and interval of the main cause (as its
    sentence says it: within 0..1), the outcome, every cause named with its share, and the
    sentence."""
    # the main cause's share and interval; an unexplained change's: the unexplained part's
    main = (v.causes[0] if v.outcome == "explained" else
            v.unexplained if v.outcome == "unexplained" and v.cost_in_all is None else None)
    share = None if main is None else float(np.clip(main.share, 0.0, 1.0))

    def named(ns: tuple[Named, ...]) -> list[dict[str, Any]]:
        return [{"cause_code": n.code(v.reasons), "factor": n.factor,
                 "share": float(np.clip(n.share, 0.0, 1.0)),
                 "share_low": float(np.clip(n.share_low, 0.0, 1.0)),
                 "share_high": float(np.clip(n.share_high, 0.0, 1.0)),
                 "contribution_ms": float(n.contribution_ms)} for n in ns]

    return {
        "cause": v.factor,
        "extra_ms": float(v.extra_ms),
        "sentence": words(v),
        "cause_code": code_of(v.factor, v.reasons),
        "candidate_code": None if v.candidate is None else v.candidate.code(v.reasons),
        "share": share,
        "ci_low_ms": None if main is None else float(main.ci_low_ms),
        "ci_high_ms": None if main is None else float(main.ci_high_ms),
        "latency": v.latency,
        "reference_ms": v.reference_ms,
        "latency_ms": float(v.latency_ms),
        "outcome": v.outcome,
        "causes": named(v.causes),
        "offsets": named(v.offsets),
        "unexplained_share": (None if v.unexplained is None
                              else float(np.clip(v.unexplained.share, 0.0, 1.0))),
    }
