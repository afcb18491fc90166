"""renderers.decimate: Picker, given a series a chunk at a time, keeps the rows pick keeps
over the whole series, with their values (times exact)."""

from __future__ import annotations

import numpy as np
import pytest

from gpuwatch.renderers.decimate import MAX_POINTS, Picker, pick


def _columns(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, list[np.ndarray]]:
    t = np.sort(rng.integers(10**18, 2 * 10**18, n))  # (epoch ns: a float would round them)
    cols = [rng.normal(1500, 30, n) for _ in range(k)]
    for c in cols:
        mode = rng.integers(0, 4)
        if mode == 1:
            c[rng.random(n) < 0.3] = np.nan  # readings missing here and there
        elif mode == 2:
            c[:] = np.nan  # a column of NA: pick leaves it out, and the buckets widen
        elif mode == 3:
            c[: n // 2] = np.nan
    return t, cols


@pytest.mark.parametrize("seed", range(6))
def test_picker_keeps_what_pick_keeps_in_any_chunking(seed):
    rng = np.random.default_rng(seed)
    for n in (0, 1, 11, 12, 13, 4000, 4001, 12_345, 100_003):
        for limit in (11, 100, MAX_POINTS):
            k = int(rng.integers(1, 4))
            t, cols = _columns(rng, n, k)
            want = pick(cols, limit)
            p = Picker(n, k, limit)
            at, tiny = 0, rng.random() < 0.3  # (chunks shorter than a bucket, or longer)
            while at < n:
                size = int(rng.integers(1, 40 if tiny else max(2, n // 3)))
                p.add([t[at:at + size], *(c[at:at + size] for c in cols)])
                at += size
            idx, (tt, *vals) = p.rows()
            np.testing.assert_array_equal(idx, want, err_msg=f"n={n} limit={limit}")
            np.testing.assert_array_equal(tt, t[want])
            assert n == 0 or tt.dtype == np.int64
            for v, c in zip(vals, cols):
                np.testing.assert_array_equal(v, c[want])
            assert p.finite == [bool(np.isfinite(c).any()) for c in cols]


def test_a_spike_in_any_chunk_is_kept():
    rng = np.random.default_rng(7)
    n = 1_000_003
    t, (clock,) = np.arange(n, dtype=np.int64), [rng.normal(1980, 2, n)]
    clock[654_321] = 345.0  # one dip
    p = Picker(n, 1)
    for at in range(0, n, 65_536):  # (a row group at a time)
        p.add([t[at:at + 65_536], clock[at:at + 65_536]])
    idx, (tt, v) = p.rows()
    assert len(idx) <= MAX_POINTS and 654_321 in idx and v.min() == 345.0
    assert idx[0] == 0 and idx[-1] == n - 1 and (np.diff(idx) > 0).all()


def test_rows_given_are_checked_against_those_announced():
    p = Picker(5000, 1)
    with pytest.raises(ValueError, match="give 2 arrays of one length"):
        p.add([np.arange(3), np.zeros(4)])
    p.add([np.arange(4000), np.zeros(4000)])
    with pytest.raises(ValueError, match="more than the 5000 rows announced"):
        p.add([np.arange(1001), np.zeros(1001)])
    with pytest.raises(ValueError, match="4000 of the 5000 rows announced were given"):
        p.rows()
