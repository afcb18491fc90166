"""Latency layers: levels and change points per condition (the seed's Experiment 3 table).

Change points come from ruptures' KernelCPD with a linear kernel (its C search, or gpuwatch's copy
of it in _segment.c where built; `change_points`):
the least-squares piecewise-constant fit, with a penalty scaled to the series' own noise. Long series
are reduced to block medians first (at most MAX_POINTS), so a million inferences take about as
long as two thousand; each change found there is then placed at a single iteration by the same
search on the iterations around it (_refined). Adjacent segments whose levels differ by less than the noise are merged. What
remains is read as:

- baseline: the level of the first segment; where the series begins clearly above the level
  it comes back to (a co-tenant or a thermal limit already there, a cold start), that start is
  an episode (`lead`), and the baseline is the level after it.
- a *level* (layer): a segment at least MIN_LEVEL iterations long. Shorter segments are steps of
  a ramp between levels, like the seed's "linear slow-down".
- onset (the jump): where the first segment clearly above the baseline starts.
- stable: where the final plateau starts, if it is clearly above the baseline: the last
  segment and those before it whose levels lie in the band the series' end spans.
- stable latency: the median of the final plateau.
- episodes: runs of segments clearly off the baseline that end before the run does (a busy
  host for a while, another process for a while), MIN_LEVEL iterations or longer. Medians miss
  an episode that lengthens only some iterations (a busy host preempts one launch in ten, for
  seconds: the median stays, the mean triples), so episodes are also looked for in means over
  blocks of TAIL_BLOCK iterations (_tail_episodes), at least TAIL_MIN_BLOCKS blocks long.
  Within a layered run, a stretch off the plateau's band with the plateau on both sides is an
  episode too, and so is a stretch of the way up clearly above the plateau (`way_up`): a ramp
  never passes where it ends.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import asdict, dataclass, field
import sys
from typing import Any, Iterator

import numpy as np

MAX_POINTS = 2000
MIN_LEVEL = 20  # iterations
REL_THRESHOLD = 0.05  # "clearly above": 5% over the baseline and 3 noise s.d.
# ...and at least this much (ms): CUDA events resolve about 0.5 us, so a step of an empty
# region's ~1 us latency by a fraction of a microsecond is no layer and no episode
RESOLUTION_MS = 0.002
TAIL_BLOCK = 10  # iterations per block mean (_tail_episodes)
TAIL_MIN_BLOCKS = 5  # blocks: a mean episode is at least 50 iterations long


@dataclass(frozen=True)
class Layers:
    n: int
    baseline_ms: float
    final_ms: float
    layered: bool
    onset_iter: int | None
    stable_iter: int | None
    stable_ms: float | None
    n_layers: int
    noise_ms: float
    change_points: list[int] = field(default_factory=list)  # iterations where a segment starts
    levels_ms: list[float] = field(default_factory=list)  # median of each merged segment
    # Departures from the baseline that come back (not the final plateau): (first iteration,
    # last iteration, median latency), each at least MIN_LEVEL iterations long
    episodes: list[tuple[int, int, float]] = field(default_factory=list)
    # The episode at the start, where the series began well above the level it came back to
    # (also among `episodes`, first); the baseline is the level after it
    lead: tuple[int, int, float] | None = None
    # The episodes on the way up: stretches between the jump and the plateau clearly above the
    # plateau (also among `episodes`)
    way_up: list[tuple[int, int, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_PELT: Any = None  # the C PELT search for the linear kernel, once loaded


def _pelt_l2() -> Any:
    """The compiled PELT search behind `KernelCPD(kernel="linear").predict(pen=...)`:
    gpuwatch's own (_segment.c: ruptures' search step for step, without its per-product kernel
    lookup, ~3x faster, the same path to the bit) where it was built and GPUWATCH_NATIVE does
    not turn it off; else ruptures', loaded from its extension module without executing
    `import ruptures`, whose package imports scipy.stats, scipy.spatial and scipy.signal for
    other detectors (0.6 s, ten times the search itself on a 1M-inference trace). Where
    ruptures' layout differs, the public API does the same search."""
    global _PELT
    if _PELT is not None:
        return _PELT
    import importlib.machinery
    import importlib.util
    import os

    if os.environ.get("GPUWATCH_NATIVE", "").strip().lower() not in ("0", "false", "off", "no"):
        try:
            from . import _segment
        except ImportError:  # (not built: ruptures' own)
            pass
        else:
            _PELT = _segment.pelt_l2
            return _PELT
    name = "ruptures.detection._detection.ekcpd"
    try:
        mod = sys.modules.get(name)
        if mod is None:
            spec = importlib.util.find_spec("ruptures")  # (finds it; runs nothing)
            if spec is None or spec.origin is None:
                raise ImportError("ruptures is not installed")
            where = os.path.join(os.path.dirname(spec.origin), "detection", "_detection")
            so = next(os.path.join(where, f) for f in sorted(os.listdir(where))
                      if f.startswith("ekcpd.")
                      and f.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)))
            loader = importlib.machinery.ExtensionFileLoader(name, so)
            ext = importlib.util.spec_from_file_location(name, so, loader=loader)
            assert ext is not None
            mod = importlib.util.module_from_spec(ext)
            loader.exec_module(mod)
            sys.modules.setdefault(name, mod)  # (one copy, should ruptures be imported later)
        fn = mod.ekcpd_pelt_L2
    except Exception:  # another ruptures: its public API
        import ruptures as rpt

        def fn(signal: np.ndarray, pen: float, min_size: int) -> list[int]:
            bkps = rpt.KernelCPD(kernel="linear", min_size=min_size).fit(signal).predict(pen=pen)
            path = [0] * (signal.shape[0] + 1)
            prev = 0
            for b in bkps:
                path[int(b)] = prev
                prev = int(b)
            return path
    _PELT = fn
    return fn


def change_points(y: np.ndarray, pen: float, min_size: int) -> list[int]:
    """End indices of the segments of the least-squares piecewise-constant fit of `y` with
    penalty `pen` per change and segments at least `min_size` long (the last is len(y)):
    ruptures' KernelCPD(kernel="linear", min_size).fit(y).predict(pen). A series too short
    for two segments has none (ruptures' C search reads out of bounds there)."""
    if y.shape[0] < 2 * max(int(min_size), 1):
        return [int(y.shape[0])]
    path = _pelt_l2()(np.ascontiguousarray(y, dtype=np.float64).reshape(-1, 1), float(pen),
                      int(min_size))
    out, i = [], int(y.shape[0])
    while i > 0:
        out.append(i)
        i = int(path[i])
    return out[::-1]


def noise(x: np.ndarray) -> float:
    """Robust s.d. of point-to-point noise (MAD of first differences / sqrt 2)."""
    if x.size < 3:
        return 0.0
    return float(1.4826 * np.median(np.abs(np.diff(x))) / np.sqrt(2))


def detect(latency_ms: np.ndarray, iterations: np.ndarray | None = None) -> Layers:
    """Layers of one condition's latency series, in iteration order."""
    x = np.asarray(latency_ms, dtype=np.float64)
    it = np.arange(x.size) if iterations is None else np.asarray(iterations)
    n = x.size
    if n < 2 * MIN_LEVEL:
        base = float(np.median(x)) if n else float("nan")
        return Layers(n, base, base, False, None, None, None, 1 if n else 0, noise(x))
    block = max(1, int(np.ceil(n / MAX_POINTS)))
    m = n // block
    y = np.median(x[: m * block].reshape(m, block), axis=1)  # block medians (block=1: x itself)
    sigma = max(noise(y), 1e-6 * float(np.median(np.abs(y))) + 1e-12)
    min_size = max(2, 5 // block)
    bkps = change_points(y, 20.0 * sigma**2 * np.log(m), min_size)
    starts = [int(b) * block for b in bkps[:-1]]  # (where each later segment starts, in x)
    if block > 1 and starts:
        starts = _refined(x, starts, block)
    bounds = [0] + starts + [n]
    segs = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    levels = [float(np.median(x[a:b])) for a, b in segs]
    # Merge neighbours closer than the noise (and 2% of the level).
    merged: list[list[float]] = []
    for (a, b), lv in zip(segs, levels):
        if merged and abs(lv - merged[-1][2]) < max(3 * sigma, 0.02 * merged[-1][2],
                                                     RESOLUTION_MS):
            merged[-1][1] = b
            merged[-1][2] = float(np.median(x[int(merged[-1][0]):b]))
        else:
            merged.append([a, b, lv])
    _join_short_first(x, merged)
    # A leading stretch well above the level the series comes back to (a co-tenant or a
    # thermal limit already there when the recording began, a cold start the program did not
    # mark as warm-up): an episode at the start, not the baseline. Judged as the baseline, it
    # made the rest "faster" and the other conditions' reference a mix of both.
    lead = _lead(x, merged, sigma)
    if lead is not None:
        k = int(merged[lead][0])
        start = (int(it[0]), int(it[k - 1]), float(np.median(x[:k])))
        merged = merged[lead:]
        _join_short_first(x, merged)
    baseline = merged[0][2]
    margin = max(3 * sigma, RESOLUTION_MS)
    thresh = baseline * (1 + REL_THRESHOLD) + margin
    final = merged[-1][2]
    layered = final > thresh and len(merged) > 1
    onset = stable = None
    inner: list[tuple[int, int]] = []  # [start, end) in x of episodes within the layering
    up: list[tuple[int, int]] = []  # (of them, those on the way up)
    if layered:
        onset = next(int(it[int(a)]) for a, _, lv in merged if lv > thresh)
        # The plateau: back from the last segment while a segment's level lies in the band the
        # series' last stretch spans (its 5th..95th percentile, widened by REL_THRESHOLD of
        # its median): a plateau that oscillates, as two processes sharing a GPU make it, is
        # one plateau, not its last wiggle; the steps of a ramp below it are not.
        w = max(2 * MIN_LEVEL, n // 20)
        p5, mid, p95 = np.percentile(x[n - w:], [5, 50, 95])
        tol = max(3 * sigma, REL_THRESHOLD * float(mid))
        k = len(merged) - 1

        def banded(i: int) -> bool:
            return bool(p5 - tol <= merged[i][2] <= p95 + tol)
        while k > 1:
            if banded(k - 1):
                k -= 1
                continue
            # A stretch off the band with the plateau on both sides (another process for a
            # while, after the clock had settled) is an episode within the plateau, not
            # where the plateau starts; the steps of a ramp into it have no plateau before
            # them. Only where the band is clearly above the baseline: a band that takes in
            # the baseline's level (a noisy host's) is no plateau to hold episodes.
            if p5 - tol <= thresh:
                break
            j = k - 1
            while j > 1 and not banded(j):
                j -= 1
            off = int(merged[k - 1][1]) - int(merged[j + 1][0])
            # (at least a level long, and shorter than the plateau after it: a stretch most of
            # the run long is the run's own level, not a while within the plateau)
            if not banded(j) or off < MIN_LEVEL or off >= n - int(merged[k][0]):
                break
            inner.append((int(merged[j + 1][0]), int(merged[k - 1][1])))
            k = j
        stable = int(it[int(merged[k][0])])
        final = float(np.median(x[int(merged[k][0]):]))
        # A stretch of the way up clearly above the plateau it leads to, with lower steps
        # after it, is no step of that way (a ramp does not pass its end): another process
        # for a while as the clock came down after the idle gaps. An episode, like those
        # within the plateau.
        first = next(i for i, (_, _, lv) in enumerate(merged) if lv > thresh)
        i = first
        while i < k:
            if merged[i][2] <= p95 + tol:
                i += 1
                continue
            e = i
            while e + 1 < k and merged[e + 1][2] > p95 + tol:
                e += 1
            if int(merged[e][1]) - int(merged[i][0]) >= MIN_LEVEL:
                up.append((int(merged[i][0]), int(merged[e][1])))
            i = e + 1
        inner += up
    # Layers: distinct levels. The first and last segments count whatever their length; those
    # between only if long (short ones are the steps of a ramp); a level counts only if clearly
    # apart from the previous one counted.
    counted: list[float] = []
    for i, (s0, s1, lv) in enumerate(merged):
        if 0 < i < len(merged) - 1 and s1 - s0 < MIN_LEVEL:
            continue
        if not counted or abs(lv - counted[-1]) > counted[-1] * REL_THRESHOLD + margin:
            counted.append(lv)
    n_layers = len(counted)
    # Episodes: runs of consecutive segments clearly off the baseline (above or below), other
    # than a final plateau the layers already report, MIN_LEVEL iterations or longer.
    lo_thresh = baseline * (1 - REL_THRESHOLD) - margin
    # An episode comes back: a run that reaches the end of the series (a ramp into the final
    # plateau included) is the layering, not an episode.
    episodes = []
    run: list[int] | None = None  # [start index, end index) into x
    for i, (s0, s1, lv) in enumerate(merged):
        if i > 0 and (lv > thresh or lv < lo_thresh):
            run = [int(s0), int(s1)] if run is None else [run[0], int(s1)]
            continue
        if run is not None and run[1] - run[0] >= MIN_LEVEL:
            episodes.append((int(it[run[0]]), int(it[run[1] - 1]),
                             float(np.median(x[run[0]:run[1]]))))
        run = None
    episodes += [(int(it[a]), int(it[b - 1]), float(np.median(x[a:b]))) for a, b in sorted(inner)]
    if lead is not None:
        episodes.insert(0, start)
    tail = _tail_episodes(x, it)
    if layered:  # the ramp into the final plateau is the layering, not an episode
        tail = [e for e in tail if e[1] < (onset or 0)]
    # (a tail episode's edges are only as fine as its shortest segment, TAIL_MIN_BLOCKS
    # blocks: where it is the same episode as one of the medians', the medians' edges hold)
    episodes = _union(episodes, tail, slack=TAIL_MIN_BLOCKS * _tail_block(n))
    if layered and onset is not None and stable is not None and stable < onset:
        stable = onset  # (the plateau cannot begin before the jump: "from 83 (jump at 94)")
    return Layers(
        n=n, baseline_ms=baseline, final_ms=final, layered=layered, onset_iter=onset,
        stable_iter=stable, stable_ms=final if layered else None, n_layers=max(1, n_layers),
        noise_ms=sigma, change_points=[int(it[int(a)]) for a, _, _ in merged[1:]],
        levels_ms=[lv for _, _, lv in merged], episodes=episodes,
        lead=start if lead is not None else None,
        way_up=[(int(it[a]), int(it[b - 1]), float(np.median(x[a:b]))) for a, b in up])


def _join_short_first(x: np.ndarray, merged: list[list[float]]) -> None:
    """A first segment shorter than MIN_LEVEL is no baseline (a few iterations before the
    power cap bit, say): it joins the next, in place."""
    while len(merged) > 1 and merged[0][1] - merged[0][0] < MIN_LEVEL:
        merged[1] = [merged[0][0], merged[1][1],
                     float(np.median(x[int(merged[0][0]):int(merged[1][1])]))]
        merged.pop(0)


def _lead(x: np.ndarray, merged: list[list[float]], sigma: float) -> int | None:
    """How many of the first merged segments (`merged`: [start, end, level] in x) make a
    leading episode, or None: a run from the start whose every segment lies clearly above
    (REL_THRESHOLD and 3 noise s.d.) the median of the rest of the series, ending where a
    segment comes back within that margin of it for MIN_LEVEL iterations or more; no longer
    than the rest. (Judged against the rest, not the next segment: a cold start that decays
    in steps is one episode, not its first step.)"""
    n = x.size
    for j in range(1, len(merged)):
        a = int(merged[j][0])
        if a > n - a:
            return None
        rest = float(np.median(x[a:]))
        high = rest * (1 + REL_THRESHOLD) + max(3 * sigma, RESOLUTION_MS)
        if any(merged[i][2] <= high for i in range(j)):
            return None  # (the run from the start broke off before coming back)
        if merged[j][2] <= high:
            # (back for a level's length at least, not a dip: the segments from j on that
            # stay within the margin)
            back = j
            while back < len(merged) and merged[back][2] <= high:
                back += 1
            return j if merged[back - 1][1] - merged[j][0] >= MIN_LEVEL else None
    return None


_memo: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "gpuwatch_layers_memo", default=None)


@contextlib.contextmanager
def remembered_layers() -> Iterator[None]:
    """While inside, layers_of() of the same series is detected once (the baseline condition
    is searched as a condition and again as the reference the others are judged against)."""
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def layers_of(latency_ms: np.ndarray, iterations: np.ndarray) -> Layers:
    """detect(latency_ms, iterations), remembered inside remembered_layers() (by the values:
    equal series, equal layers)."""
    memo = _memo.get()
    if memo is None:
        return detect(latency_ms, iterations)
    x = np.ascontiguousarray(latency_ms, dtype=np.float64)
    it = np.ascontiguousarray(iterations)
    key = (x.size, hash(x.tobytes()), hash(it.tobytes()))
    got = memo.get(key)
    if got is not None and np.array_equal(got[0], x) and np.array_equal(got[1], it):
        return got[2]
    lay = detect(x, it)
    memo[key] = (x, it, lay)
    return lay


def _refined(x: np.ndarray, starts: list[int], block: int) -> list[int]:
    """The change points found in block medians (`starts`: positions in x, multiples of
    `block`) at the resolution of single iterations: the same search on x itself, around
    each (within REFINE_BLOCKS blocks, and no nearer a neighbour than halfway to it), with
    the penalty and shortest segment that a series short enough to need no blocks gets. A
    block-level search places a change only at a block's edge, and makes every segment at
    least two blocks long: a ramp of a few dozen iterations after an idle gap would be one
    step at a block edge, its baseline taking in part of the ramp (100,000 iterations: "jump
    at 100" for a jump at 57), and each step of a slow ramp a level of its own. Where the
    search on x finds no change around one (too small a step for single iterations' noise),
    the block's stays. Each window is at most 2 x REFINE_BLOCKS blocks: the cost is that of
    the block-level search again, whatever the series' length."""
    n = x.size
    sigma = max(noise(x), 1e-6 * float(np.median(np.abs(x))) + 1e-12)
    pen = 20.0 * sigma**2 * np.log(n)
    reach = REFINE_BLOCKS * block
    out: list[int] = []
    for i, c in enumerate(starts):
        lo = max(c - reach, 0 if i == 0 else (starts[i - 1] + c) // 2)
        hi = min(c + reach, n if i == len(starts) - 1 else (c + starts[i + 1]) // 2)
        local = [lo + int(b) for b in change_points(x[lo:hi].copy(), pen, 5)[:-1]]
        out += local if local else [c]
    return sorted(set(c for c in out if 0 < c < n))


REFINE_BLOCKS = 2  # blocks either side of a block-level change searched at full resolution


def _tail_episodes(x: np.ndarray, it: np.ndarray) -> list[tuple[int, int, float]]:
    """Episodes in the mean: change points in block means (TAIL_BLOCK iterations each, more
    for long series), segments at least TAIL_MIN_BLOCKS blocks; an episode is a run of segments
    whose mean is clearly off the typical block mean (the median block mean: robust while
    episodes cover less than half the run) that ends before the series does. Isolated slow
    iterations move a block mean but not a segment of TAIL_MIN_BLOCKS, nor (the margin) a
    stretch no longer or larger than a heavy-tailed series makes by chance."""
    n = x.size
    block = _tail_block(n)
    m = n // block
    if m < 3 * TAIL_MIN_BLOCKS:
        return []
    z = x[: m * block].reshape(m, block).mean(axis=1)
    typical = float(np.median(z))
    sigma = max(noise(z), 1e-6 * abs(typical) + 1e-12)
    bkps = change_points(z, 20.0 * sigma**2 * np.log(m), TAIL_MIN_BLOCKS)
    bounds = [0] + [int(b) for b in bkps]
    # Off the typical block mean by 5% and 3 robust s.d., and by 4 standard errors of a mean of
    # its length with the blocks' plain s.d. (heavy tails make short stretches of slow
    # iterations common; only a long or a large one is an episode)
    spread = float(z.std())
    base_margin = REL_THRESHOLD * abs(typical) + max(3 * sigma, RESOLUTION_MS)
    out, run = [], None
    for a, b in zip(bounds[:-1], bounds[1:]):
        if abs(float(z[a:b].mean()) - typical) > base_margin:
            run = [a, b] if run is None else [run[0], b]
            continue
        if run is not None and run[0] > 0 and abs(float(z[run[0]:run[1]].mean()) - typical) > \
                4 * spread / np.sqrt(run[1] - run[0]):  # (a leading run is the baseline itself)
            s, e = run[0] * block, run[1] * block
            out.append((int(it[s]), int(it[e - 1]), float(np.median(x[s:e]))))
        run = None
    return out


def _tail_block(n: int) -> int:
    """Iterations per block of _tail_episodes' means, for a series of n."""
    return max(TAIL_BLOCK, int(np.ceil(n / MAX_POINTS)))


def _union(a: list[tuple[int, int, float]], b: list[tuple[int, int, float]],
           slack: int = 0) -> list[tuple[int, int, float]]:
    """Episodes of both lists, overlapping ones and those less than MIN_LEVEL iterations apart
    joined (the wider span; the first's median): one episode, not its fragments. An episode
    of `b` (coarser) that overlaps episodes of `a` and reaches at most `slack` iterations
    beyond them at either end is theirs, seen at a coarser resolution: `a`'s edges stay (a
    co-tenant's sharp 826-1163 is not widened to the block means' 780-1209)."""
    def within(s: int, e: int) -> bool:
        over = [x for x in a if x[0] <= e and x[1] >= s]
        return bool(over) and s >= min(x[0] for x in over) - slack \
            and e <= max(x[1] for x in over) + slack
    b = [x for x in b if not within(x[0], x[1])]
    out: list[list[Any]] = []
    for s, e, v in sorted(a + b):
        if out and s <= out[-1][1] + MIN_LEVEL:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e, v])
    return [(int(s), int(e), float(v)) for s, e, v in out]
