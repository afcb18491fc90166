"""Layer detection against known series and the simulated staircase's ground truth."""

import os

import numpy as np
import pytest

from gpuwatch.analysis.layers import change_points, detect


def test_flat_series_has_one_layer():
    rng = np.random.default_rng(0)
    lay = detect(5 + rng.normal(0, 0.02, 800))
    assert not lay.layered and lay.n_layers == 1 and lay.onset_iter is None
    assert abs(lay.baseline_ms - 5) < 0.01


def test_step_ramp_plateau():
    rng = np.random.default_rng(1)
    x = np.concatenate([np.full(60, 4.7), np.linspace(4.7, 9.4, 70), np.full(670, 9.4)])
    lay = detect(x + rng.normal(0, 0.02, x.size))
    assert lay.layered and lay.n_layers == 2
    assert 58 <= lay.onset_iter <= 70
    assert 120 <= lay.stable_iter <= 135
    assert abs(lay.stable_ms - 9.4) < 0.05


def test_three_levels_are_counted():
    x = np.concatenate([np.full(200, 5.0), np.full(200, 7.0), np.full(400, 10.0)])
    lay = detect(x + np.random.default_rng(2).normal(0, 0.03, x.size))
    assert lay.n_layers == 3 and lay.onset_iter == 200 and lay.stable_iter == 400


def test_iterations_are_reported_in_the_series_own_numbering():
    x = np.concatenate([np.full(100, 5.0), np.full(100, 8.0)])
    lay = detect(x, iterations=np.arange(1000, 1200))
    assert lay.onset_iter == 1100


def test_a_million_points_are_reduced_not_refused():
    x = np.concatenate([np.full(400_000, 5.0), np.full(600_000, 6.0)])
    lay = detect(x + np.random.default_rng(3).normal(0, 0.05, x.size))
    assert lay.layered and abs(lay.onset_iter - 400_000) <= 1000


def test_a_long_run_finds_the_jump_where_a_short_one_does():
    """The same start (a ramp from iteration 57 to 130 after the baseline, as an idle gap's
    clock makes it) followed by 1,000 or 100,000 iterations of plateau: the jump, the
    plateau's start, the baseline and the layer count do not depend on how long the run
    went on (block medians alone put the jump at a block edge: 100 for 100,000 iterations,
    and counted each step of the ramp as a layer)."""
    rng = np.random.default_rng(7)
    head = np.concatenate([np.full(57, 4.73), np.linspace(4.73, 9.29, 73)])
    found = []
    for n in (1_000, 20_000, 100_000):
        x = np.concatenate([head, np.full(n - head.size, 9.29)])
        lay = detect(x + rng.normal(0, 0.01, n))
        found.append((lay.onset_iter, lay.stable_iter, lay.n_layers))
        assert lay.layered and 55 <= lay.onset_iter <= 65, (n, lay)
        assert 118 <= lay.stable_iter <= 132, (n, lay)
        assert abs(lay.baseline_ms - 4.73) < 0.01 and lay.n_layers == 2, (n, lay)
    assert max(f[0] for f in found) - min(f[0] for f in found) <= 6, found


def test_an_episode_keeps_its_own_edges_in_a_long_run():
    """A co-tenant's sharp episode (iterations 825-1164 at 2.5x) in 3,100 iterations: its
    edges to within an iteration or two, not widened to the mean blocks' 780-1209."""
    rng = np.random.default_rng(8)
    x = np.full(3100, 4.70)
    x[825:1165] = 11.75
    lay = detect(x + rng.normal(0, 0.01, x.size))
    assert len(lay.episodes) == 1, lay.episodes
    first, last, level = lay.episodes[0]
    assert abs(first - 825) <= 2 and abs(last - 1164) <= 2 and abs(level - 11.75) < 0.05


def test_an_episode_within_the_plateau_is_an_episode_not_where_the_plateau_starts():
    """A ramp after an idle gap (57-130) to a 9.29 ms plateau, and another process for 92
    iterations (148-239) at 23.2 ms after the clock had settled: the plateau starts at the
    ramp's end, and the co-tenant's stretch is an episode within it (before: "from iteration
    240", the co-tenant in no verdict)."""
    rng = np.random.default_rng(9)
    x = np.concatenate([np.full(57, 4.73), np.linspace(4.73, 9.29, 73), np.full(670, 9.29)])
    x[148:240] = 23.19
    lay = detect(x + rng.normal(0, 0.01, x.size))
    assert lay.layered and 120 <= lay.stable_iter <= 132 and 55 <= lay.onset_iter <= 70
    assert [(a, b) for a, b, _ in lay.episodes] == [(148, 239)]
    assert abs(lay.stable_ms - 9.29) < 0.02


def test_a_series_that_begins_high_and_comes_back_has_an_episode_at_the_start():
    """Another process for the first 150 iterations at 11.75 ms, then 4.71 ms: the baseline
    is the level it came back to, and the start is an episode (before: the baseline was
    11.75 ms, and the rest a stretch below it that reached the end, in no verdict). A thermal
    limit that lifts in a few steps of a ramp is one episode up to the ramp's end."""
    rng = np.random.default_rng(3)
    x = np.concatenate([np.full(150, 11.75), np.full(650, 4.71)]) + rng.normal(0, 0.01, 800)
    lay = detect(x)
    assert abs(lay.baseline_ms - 4.71) < 0.02 and not lay.layered
    assert lay.lead is not None and lay.lead[:2] == (0, 149)
    assert [(a, b) for a, b, _ in lay.episodes] == [(0, 149)]
    ramp = np.concatenate([np.full(245, 7.52), np.linspace(7.52, 4.71, 25), np.full(530, 4.71)])
    lay = detect(ramp + rng.normal(0, 0.01, 800))
    assert lay.lead is not None and lay.lead[0] == 0 and 245 <= lay.lead[1] <= 269
    assert abs(lay.baseline_ms - 4.71) < 0.02
    # a series that rises after idle gaps keeps its first level as the baseline
    rise = np.concatenate([np.full(57, 4.73), np.full(743, 9.29)]) + rng.normal(0, 0.01, 800)
    lay = detect(rise)
    assert lay.lead is None and lay.layered and abs(lay.baseline_ms - 4.73) < 0.02
    # and a high start longer than the rest is the series' level, not an episode
    late = np.concatenate([np.full(500, 11.75), np.full(300, 4.71)]) + rng.normal(0, 0.01, 800)
    assert detect(late).lead is None


def test_a_noisy_run_whose_band_takes_in_the_baseline_holds_no_episodes_within_it():
    """A host-bound series on the H100 (cotenant_heavier, gap 2 ms): its last stretch spreads
    down to the baseline's level, so there is no plateau to hold episodes; the stretches off
    the baseline are its episodes, and the plateau is its last level (read within a plateau,
    it began at 588 and every episode was inside it and vanished)."""
    from pathlib import Path

    import gpuwatch

    fixture = Path(__file__).parent / "data" / "h100_issue27" / "cotenant_heavier.parquet"
    m = gpuwatch.analyze(fixture).regions
    rows = m[(m["kind"] == "inference") & ~m["warmup"].astype(bool)].sort_values("iteration")
    lay = detect(rows["gpu_ms"].to_numpy(float), rows["iteration"].to_numpy())
    assert lay.stable_iter is not None and lay.stable_iter > 5000, lay.stable_iter
    assert len(lay.episodes) >= 5 and all(b < lay.stable_iter for _, b, _ in lay.episodes)


def test_change_points_on_a_series_too_short_for_two_segments_is_one_segment():
    """(ruptures' C search reads out of bounds there: seen as a crash, munmap_chunk())"""
    for n in range(1, 10):
        assert change_points(np.arange(n, dtype=float), 0.1, 5) == [n]


def test_short_series_degrade_gracefully():
    lay = detect(np.array([5.0, 5.1, 5.0]))
    assert not lay.layered and lay.n == 3


def test_sim_ground_truth_onset_matches_the_clock_drop(t4_analysis, t4_sweep):
    """The detected jump is where the simulated clock is first clearly down (5%, the detector's
    own threshold: one 15 MHz step moves latency by 1%, which no detector should call a jump)."""
    lay = t4_analysis.layers.set_index("condition")
    m = t4_analysis.merged
    g = m[(m["condition"] == "gap=20ms") & ~m["warmup"].astype(bool)].sort_values("iteration")
    first_slow = int(g[g["sm_clock_mhz_mean"] < 0.95 * 1590]["iteration"].iloc[0])
    assert abs(lay.loc["gap=20ms", "onset_iter"] - first_slow) <= 10
    # (the in-band clock reads the final level to within a thousandth of a MHz: 32 ns timer)
    final = g["sm_clock_mhz_mean"].iloc[-1] + 0.5
    settled = int(g[g["sm_clock_mhz_mean"] <= final]["iteration"].iloc[0])
    assert abs(lay.loc["gap=20ms", "stable_iter"] - settled) <= 15
    assert 1.8 < lay.loc["gap=20ms", "ratio_to_baseline"] < 2.2
    assert not lay.loc["gap=0ms", "layered"]
    assert lay.loc["gap=50ms", "onset_iter"] < lay.loc["gap=20ms", "onset_iter"]


def _series(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.integers(30, 400, size=6)
    return np.concatenate([rng.normal(lv, 0.3, k) for lv, k in zip(rng.uniform(1, 5, 6), steps)])


def test_change_points_are_ruptures_kernelcpd_without_importing_ruptures():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from gpuwatch.analysis.layers import change_points; "
            "print(change_points(np.r_[np.zeros(50), np.ones(50)], 1.0, 2)); "
            "print('ruptures' in sys.modules, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[50, 100]", "False False"]
    import ruptures as rpt

    for seed in range(6):
        y = _series(seed)
        for pen, min_size in ((0.5, 2), (5.0, 5), (50.0, 3)):
            want = rpt.KernelCPD(kernel="linear", min_size=min_size).fit(
                y.reshape(-1, 1)).predict(pen=pen)
            assert change_points(y, pen, min_size) == [int(b) for b in want]


def test_change_points_fall_back_to_ruptures_public_api(monkeypatch):
    import importlib.util

    from gpuwatch.analysis import layers

    monkeypatch.setattr(layers, "_PELT", None)
    monkeypatch.setenv("GPUWATCH_NATIVE", "0")  # (not gpuwatch's own search either)
    monkeypatch.delitem(__import__("sys").modules, "ruptures.detection._detection.ekcpd",
                        raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # "another layout"
    y = _series(7)
    got = change_points(y, 2.0, 4)
    monkeypatch.setattr(layers, "_PELT", None)  # (the next test loads the C search again)
    import ruptures as rpt

    assert got == [int(b) for b in rpt.KernelCPD(kernel="linear", min_size=4).fit(
        y.reshape(-1, 1)).predict(pen=2.0)]


def _ruptures_search():
    """ruptures' own compiled search (what layers loads where _segment is not built)."""
    from gpuwatch.analysis import layers

    old = layers._PELT
    try:
        layers._PELT = None
        os.environ["GPUWATCH_NATIVE"] = "0"
        return layers._pelt_l2()
    finally:
        del os.environ["GPUWATCH_NATIVE"]
        layers._PELT = old


def test_our_compiled_search_gives_ruptures_path_to_the_bit():
    """_segment.c is ruptures' PELT search step for step (without its per-product kernel
    lookup): the same path array, not only the same change points, on series with steps, ties
    (quantised values, constant stretches, all zeros) and every penalty from none up, for every
    shortest segment layers uses and more."""
    segment = pytest.importorskip("gpuwatch.analysis._segment")
    theirs = _ruptures_search()
    assert theirs is not segment.pelt_l2
    rng = np.random.default_rng(11)
    checked = 0
    for trial in range(1500):
        n = int(rng.integers(2, 500))
        min_size = int(rng.integers(1, 8))
        if n < 2 * min_size:
            continue
        kind = trial % 5
        y = rng.normal(size=n)
        if kind == 1:
            y += np.repeat(rng.normal(size=5) * 3, -(-n // 5))[:n]
        elif kind == 2:
            y = np.round(y * 2) / 2
        elif kind == 3:
            y = np.where(np.arange(n) < n // 2, 1.5, 2.5)
        elif kind == 4:
            y = np.zeros(n)
        pen = float(rng.choice([0.0, 0.1, 1.0, 10.0, 100.0])) * np.log(n)
        signal = np.ascontiguousarray(y, dtype=np.float64).reshape(-1, 1)
        assert segment.pelt_l2(signal, pen, min_size) == list(theirs(signal, pen, min_size)), \
            (trial, n, min_size, pen)
        checked += 1
    assert checked > 1000


def test_gpuwatch_native_0_takes_ruptures_search(monkeypatch):
    pytest.importorskip("gpuwatch.analysis._segment")
    from gpuwatch.analysis import _segment, layers

    monkeypatch.setattr(layers, "_PELT", None)
    assert layers._pelt_l2() is _segment.pelt_l2
    monkeypatch.setattr(layers, "_PELT", None)
    monkeypatch.setenv("GPUWATCH_NATIVE", "off")
    assert layers._pelt_l2() is not _segment.pelt_l2
    monkeypatch.setattr(layers, "_PELT", None)  # (the next test loads its own)


def test_our_compiled_search_refuses_what_it_cannot_read():
    segment = pytest.importorskip("gpuwatch.analysis._segment")
    with pytest.raises(ValueError, match="float64"):
        segment.pelt_l2(b"12345", 1.0, 2)
    with pytest.raises(ValueError, match="min_size"):
        segment.pelt_l2(np.zeros(10), 1.0, 0)
    # (a series too short for two segments: ruptures' search writes past its arrays there, and
    # aborted the interpreter, "free(): invalid next size")
    with pytest.raises(ValueError, match="2 x min_size"):
        segment.pelt_l2(np.ones((3, 1)), 1.0, 5)
    assert segment.pelt_l2(np.ones(10), 1.0, 5) == [0] * 11


def test_steps_below_what_events_resolve_are_no_layer_nor_episode():
    """An empty region measures about a microsecond; a step of 0.6 us there is 50% but below
    what CUDA events resolve (about 0.5 us) a few times over: no layer, no episode. The same
    step on a 1 ms inference is no layer either; 8% of it is."""
    rng = np.random.default_rng(0)
    x = 0.0012 + rng.normal(0, 0.00003, 400)
    x[150:250] += 0.0006  # an episode of +0.6 us
    x[330:] += 0.0006  # and a final plateau
    lay = detect(x)
    assert not lay.layered and lay.episodes == [] and lay.n_layers == 1
    y = 1.0 + rng.normal(0, 0.002, 400)
    y[200:] += 0.08
    assert detect(y).layered


def test_a_stretch_above_the_plateau_on_the_way_up_is_an_episode():
    """A ramp from 4.7 to 9.3 ms (the clock coming down after idle gaps) interrupted by 70
    iterations at 21 ms (another process for a while) before the plateau: no step of a ramp
    lies above where the ramp ends, so that stretch is an episode; the steps either side of
    it are the ramp's, and the plateau begins after them."""
    rng = np.random.default_rng(5)
    x = np.concatenate([np.full(50, 4.7), np.linspace(4.7, 8.4, 70), np.full(70, 21.2),
                        np.linspace(8.4, 9.3, 20), np.full(590, 9.3)])
    x = x + rng.normal(0, 0.02, x.size)
    lay = detect(x)
    assert lay.layered and 180 <= lay.stable_iter <= 215, lay.stable_iter
    assert len(lay.episodes) == 1, lay.episodes
    a, b, level = lay.episodes[0]
    assert abs(a - 120) <= 3 and abs(b - 189) <= 3 and abs(level - 21.2) < 0.1
    # the same ramp without it has no episode
    y = np.concatenate([np.full(50, 4.7), np.linspace(4.7, 9.3, 90), np.full(660, 9.3)])
    assert detect(y + rng.normal(0, 0.02, y.size)).episodes == []
