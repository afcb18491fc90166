"""Latency layers: levels and change points per condition (the seed's Experiment 3 table).

Change points come from ruptures' KernelCPD with a linear kernel: the least-squares
piecewise-constant fit, solved in C, with a penalty scaled to the series' own noise. Long series
are reduced to block medians first (at most MAX_POINTS), so a million inferences take as long
as two thousand. Adjacent segments whose levels differ by less than the noise are merged. What
remains is read as:

- baseline: the level of the first segment.
- a *level* (layer): a segment at least MIN_LEVEL iterations long. Shorter segments are steps of
  a ramp between levels, like the seed's "linear slow-down".
- onset (the jump): where the first segment clearly above the baseline starts.
- stable: where the last segment starts, if it is clearly above the baseline.
- stable latency: the median of that last segment.
- episodes: runs of segments clearly off the baseline that end before the run does (a busy
  host for a while, another process for a while), MIN_LEVEL iterations or longer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

MAX_POINTS = 2000
MIN_LEVEL = 20  # iterations
REL_THRESHOLD = 0.05  # "clearly above": 5% over the baseline and 3 noise s.d.


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

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def noise(x: np.ndarray) -> float:
    """Robust s.d. of point-to-point noise (MAD of first differences / sqrt 2)."""
    if x.size < 3:
        return 0.0
    return float(1.4826 * np.median(np.abs(np.diff(x))) / np.sqrt(2))


def detect(latency_ms: np.ndarray, iterations: np.ndarray | None = None) -> Layers:
    """Layers of one condition's latency series, in iteration order."""
    import ruptures as rpt

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
    bkps = rpt.KernelCPD(kernel="linear", min_size=min_size).fit(y.reshape(-1, 1)).predict(
        pen=20.0 * sigma**2 * np.log(m))
    bounds = [0] + [int(b) for b in bkps]
    segs = [(bounds[i] * block, bounds[i + 1] * block) for i in range(len(bounds) - 1)]
    segs[-1] = (segs[-1][0], n)
    levels = [float(np.median(x[a:b])) for a, b in segs]
    # Merge neighbours closer than the noise (and 2% of the level).
    merged: list[list[float]] = []
    for (a, b), lv in zip(segs, levels):
        if merged and abs(lv - merged[-1][2]) < max(3 * sigma, 0.02 * merged[-1][2]):
            merged[-1][1] = b
            merged[-1][2] = float(np.median(x[int(merged[-1][0]):b]))
        else:
            merged.append([a, b, lv])
    baseline = merged[0][2]
    thresh = baseline * (1 + REL_THRESHOLD) + 3 * sigma
    final = merged[-1][2]
    layered = final > thresh and len(merged) > 1
    onset = stable = None
    if layered:
        onset = next(int(it[int(a)]) for a, _, lv in merged if lv > thresh)
        stable = int(it[int(merged[-1][0])])
    # Layers: distinct levels. The first and last segments count whatever their length; those
    # between only if long (short ones are the steps of a ramp); a level counts only if clearly
    # apart from the previous one counted.
    counted: list[float] = []
    for i, (a, b, lv) in enumerate(merged):
        if 0 < i < len(merged) - 1 and b - a < MIN_LEVEL:
            continue
        if not counted or abs(lv - counted[-1]) > counted[-1] * REL_THRESHOLD + 3 * sigma:
            counted.append(lv)
    n_layers = len(counted)
    # Episodes: runs of consecutive segments clearly off the baseline (above or below), other
    # than a final plateau the layers already report, MIN_LEVEL iterations or longer.
    lo_thresh = baseline * (1 - REL_THRESHOLD) - 3 * sigma
    # An episode comes back: a run that reaches the end of the series (a ramp into the final
    # plateau included) is the layering, not an episode.
    episodes = []
    run: list[int] | None = None  # [start index, end index) into x
    for i, (a, b, lv) in enumerate(merged):
        if i > 0 and (lv > thresh or lv < lo_thresh):
            run = [int(a), int(b)] if run is None else [run[0], int(b)]
            continue
        if run is not None and run[1] - run[0] >= MIN_LEVEL:
            episodes.append((int(it[run[0]]), int(it[run[1] - 1]),
                             float(np.median(x[run[0]:run[1]]))))
        run = None
    return Layers(
        n=n, baseline_ms=baseline, final_ms=final, layered=layered, onset_iter=onset,
        stable_iter=stable, stable_ms=final if layered else None, n_layers=max(1, n_layers),
        noise_ms=sigma, change_points=[int(it[int(a)]) for a, _, _ in merged[1:]],
        levels_ms=[lv for _, _, lv in merged], episodes=episodes)
