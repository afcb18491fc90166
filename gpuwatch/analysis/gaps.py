"""Conditions from the gaps a program leaves (traces of `gpuwatch run`): groups of similar
observed idle gaps, found in the data rather than fixed in advance.

A program that sleeps 2 ms after some frames and 30 ms after others should be compared as
"gap 1.9-2.1 ms" against "gap 29-31 ms", whatever fixed buckets would say; one that waits a
continuously varying time gets coarse buckets. Gaps are compared on a log scale (what matters
to a GPU's clocks is the order of magnitude), with gaps under FLOOR_MS counted as back to back:
- natural breaks: the sorted gaps are cut where one is at least JUMP times the one before,
  biggest jumps first, keeping every group at least MIN_COUNT regions and MIN_SHARE of them,
  up to MAX_GROUPS groups;
- no natural break, but gaps spread over more than a factor SPREAD: the recorder's fixed
  buckets (labels.GAP_EDGES_MS), small ones merged into a neighbour;
- else one group.
Each group is named after the range of its middle 90% ("gap 1.9-2.1 ms": a stray long gap
does not stretch the name).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..labels import GAP_EDGES_MS

__all__ = ["gap_groups", "regroup_by_gap", "observed_gaps"]

FLOOR_MS = 0.1  # gaps shorter than this are back to back: one scale
JUMP = 1.5  # a natural break: the next gap at least this many times the previous
MIN_COUNT = 10  # the smallest group worth comparing...
MIN_SHARE = 0.05  # ...and the smallest share of the regions
MAX_GROUPS = 6
SPREAD = 4.0  # gaps spread over more than this factor, with no break: fixed buckets


def observed_gaps(meta: dict[str, Any]) -> bool:
    """Whether a trace's conditions came from observed gaps (a `gpuwatch run` recording)."""
    opts = meta.get("options") or {}
    return opts.get("conditions") == "observed gaps" or opts.get("command") == "run"


def gap_groups(gap_ms: np.ndarray) -> list[tuple[float, float]]:
    """Groups of the gaps `gap_ms` (finite, >= 0) as (lowest, highest) gap of each, in order."""
    g = np.sort(np.asarray(gap_ms, dtype=float))
    g = g[np.isfinite(g)]
    n = g.size
    if n == 0:
        return []
    least = max(MIN_COUNT, int(np.ceil(MIN_SHARE * n)))
    x = np.log(np.maximum(g, 0.0) + FLOOR_MS)
    jumps = np.diff(x)
    cuts: list[int] = []  # group boundaries: a group ends before index c
    for i in np.argsort(-jumps, kind="stable"):
        if jumps[i] < np.log(JUMP) or len(cuts) >= MAX_GROUPS - 1:
            break
        c = int(i) + 1
        edges = sorted([0, *cuts, c, n])
        if min(np.diff(edges)) >= least:
            cuts.append(c)
    if not cuts and n >= 2 * least and x[-1] - x[0] > np.log(SPREAD):
        cuts = _fixed_cuts(g, least)
    bounds = [0, *sorted(cuts), n]
    return [(float(g[a]), float(g[b - 1])) for a, b in zip(bounds[:-1], bounds[1:])]


def _fixed_cuts(g: np.ndarray, least: int) -> list[int]:
    """Cut points of sorted gaps `g` at the fixed bucket edges, dropping any that would leave
    a bucket with fewer than `least` gaps."""
    cuts = [int(np.searchsorted(g, e, side="left")) for e in GAP_EDGES_MS[1:]]
    cuts = sorted({c for c in cuts if 0 < c < g.size})
    kept: list[int] = []
    for c in cuts:
        if c - (kept[-1] if kept else 0) >= least:
            kept.append(c)
    while kept and g.size - kept[-1] < least:  # the last bucket too small: join the one before
        kept.pop()
    return kept


def label(gaps_ms: np.ndarray) -> str:
    """A group's condition name from its gaps: the 5th to 95th percentile, two significant
    digits ("gap 1.9-2.1 ms", or "gap 20 ms" when both round alike)."""
    lo, hi = np.percentile(gaps_ms, [5, 95])
    a, b = _fmt(float(lo)), _fmt(float(hi))
    return f"gap {a} ms" if a == b else f"gap {a}-{b} ms"


def _fmt(v: float) -> str:
    if v < 0.01:
        return "0"
    return f"{float(f'{v:.2g}'):g}"


def regroup_by_gap(inf: pd.DataFrame) -> pd.DataFrame:
    """`inf` (merged inferences) with each series' measured rows (not warm-up, with a gap)
    given the condition of their gap's group, and their iterations counted again within it
    in GPU start order. Other rows are left as they are."""
    if inf.empty or "gap_ms" not in inf:
        return inf
    inf = inf.copy()
    cond = inf["condition"].astype(object).to_numpy(copy=True)
    it = inf["iteration"].to_numpy(copy=True)
    gap = pd.to_numeric(inf["gap_ms"], errors="coerce").to_numpy(float)
    warm = inf["warmup"].fillna(False).astype(bool).to_numpy() if "warmup" in inf else \
        np.zeros(len(inf), bool)
    is_inf = (inf["kind"] == "inference").to_numpy() if "kind" in inf else np.ones(len(inf), bool)
    use = is_inf & ~warm & np.isfinite(gap)
    used = np.nonzero(use)[0]
    for _, idx in inf[use].groupby("name", sort=False).indices.items():
        rows = used[idx]
        if rows.size == 1:  # (a name seen once: its one gap is its group; thousands of
            # names that change every iteration made this loop take seconds)
            cond[rows[0]] = f"gap {_fmt(float(gap[rows[0]]))} ms"
            continue
        groups = gap_groups(gap[rows])
        if not groups:
            continue
        uppers = np.array([hi for _, hi in groups])
        which = np.minimum(np.searchsorted(uppers, gap[rows], side="left"), len(groups) - 1)
        names = []
        for k in range(len(groups)):
            name = label(gap[rows][which == k])
            names.append(name if name not in names else f"{name} ({k + 1})")
        cond[rows] = np.array(names, dtype=object)[which]
    # iterations counted again within each (series, group), in GPU start order
    rows = np.nonzero(use)[0]
    rows = rows[np.argsort(inf["start_ns"].to_numpy()[rows], kind="stable")]
    it[rows] = pd.DataFrame({"n": inf["name"].to_numpy()[rows], "c": cond[rows]}).groupby(
        ["n", "c"], sort=False, dropna=False).cumcount().to_numpy()
    inf["condition"] = cond
    inf["iteration"] = it
    return inf
