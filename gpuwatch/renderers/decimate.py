"""Which rows of a long series a plot draws: a few thousand real rows that keep every spike.

`pick` chooses from columns held whole; `Picker` chooses the same rows from columns given a
chunk at a time (a trace's 10M samples read a few row groups at a time), holding only each
bucket's candidates: the HTML report's clock panel, which would otherwise hold three columns of
every sample (240 MB per 10M) to plot 4,000 of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_POINTS = 4000  # per plotted series: what a browser draws at once, and what the file carries
GRID = 60  # latency vs clock: one point per cell of a GRID x GRID grid (GRID**2 <= MAX_POINTS)


def _width(n: int, columns: int, limit: int) -> int:
    """Rows per bucket when `columns` columns share `limit` points over `n` rows (the last
    bucket may be shorter)."""
    buckets = max(1, (limit - 2) // (2 * columns))
    return -(-n // buckets)  # (ceil)


def _extremes(v: np.ndarray, width: int) -> list[np.ndarray]:
    """Positions in `v` (whose length is a multiple of `width`) of each bucket's minimum and
    maximum; NaN never wins a bucket (a bucket of NaN gives its first row)."""
    full = v.size // width
    nan = np.isnan(v)
    out = []
    for fill, arg in ((np.inf, np.argmin), (-np.inf, np.argmax)):
        w = np.where(nan, fill, v) if nan.any() else v
        out.append(np.arange(full) * width + arg(w.reshape(full, width), axis=1))
    return out


def pick(columns: Sequence[np.ndarray], limit: int = MAX_POINTS) -> np.ndarray:
    """The rows to plot, in order: every row when they fit in `limit`; else, in each of equal
    buckets of consecutive rows, the rows holding each column's minimum and maximum, so a spike
    survives decimation and every plotted point is a real row (at most `limit` in all)."""
    n = len(columns[0]) if columns else 0
    if n <= limit:
        return np.arange(n)
    cols = [c for c in columns if np.isfinite(c).any()] or list(columns[:1])
    width = _width(n, len(cols), limit)
    full = n // width
    picks = [np.array([0, n - 1])]
    for c in cols:
        picks += _extremes(c[:full * width], width)
        if full * width < n:
            picks += [full * width + p for p in _extremes(c[full * width:], n - full * width)]
    return np.unique(np.concatenate(picks))


def pick_2d(x: np.ndarray, y: np.ndarray, cells: int = GRID) -> np.ndarray:
    """Rows of a scatter to plot: all when they fit; else one row per occupied cell of a
    cells x cells grid over the data's range, so outliers keep cells of their own."""
    n = len(x)
    if n <= MAX_POINTS:
        return np.arange(n)

    def cell(v: np.ndarray) -> np.ndarray:
        lo, hi = float(v.min()), float(v.max())
        return np.minimum(((v - lo) / ((hi - lo) or 1.0) * cells).astype(np.int64), cells - 1)

    _, first = np.unique(cell(x) * cells + cell(y), return_index=True)
    return np.sort(first)


class Picker:
    """`pick` over `k` columns of `n` rows (n known up front) that arrive a chunk at a time,
    with the rows' values: `add` each chunk in order, then `rows()` gives what
    `pick(whole columns)` would have chosen, and each chosen row's values.

    Which columns `pick` uses (those with any finite value) is known only at the end, and it
    sets the buckets' width; so each column is bucketed at every width it may get (1 to k
    columns used), and each bucketing carries its last, unfinished bucket's rows to the next
    chunk. What is held: those carries (under a bucket each) and the candidate rows."""

    def __init__(self, n: int, k: int, limit: int = MAX_POINTS) -> None:
        self.n, self.k, self.limit = n, k, limit
        self._seen = 0
        self._finite = [False] * k
        self._whole: list[list[np.ndarray]] | None = [] if n <= limit else None
        # per number of columns used: its width, its carried rows and their first position
        self._carry: dict[int, tuple[int, list[np.ndarray] | None, int]] = {
            m: (_width(n, m, limit), None, 0) for m in range(1, k + 1)}
        # candidates (positions, the rows' values), per number of columns used and column; and
        # the first and last rows, which pick always keeps
        self._cand: dict[tuple[int, int], list[tuple[np.ndarray, list[np.ndarray]]]] = {
            (m, c): [] for m in self._carry for c in range(k)}
        self._ends: list[tuple[np.ndarray, list[np.ndarray]]] = []

    def add(self, row_values: Sequence[np.ndarray]) -> None:
        """The next rows: `row_values[0]` what is plotted against (time), then the k columns,
        all of one length."""
        cols = [np.asarray(v) for v in row_values]
        if len(cols) != self.k + 1 or any(v.shape != cols[0].shape for v in cols):
            raise ValueError(f"Picker: give {self.k + 1} arrays of one length")
        size = cols[0].size
        if self._seen + size > self.n:
            raise ValueError(f"Picker: more than the {self.n} rows announced")
        if size == 0:
            return
        for c in range(self.k):
            self._finite[c] = self._finite[c] or bool(np.isfinite(cols[1 + c]).any())
        if self._whole is not None:
            self._whole.append(cols)
            self._seen += size
            return
        for pos in ([0] if self._seen == 0 else []) + ([size - 1] if self._seen + size == self.n
                                                       else []):
            self._ends.append((np.array([self._seen + pos]), [v[pos:pos + 1] for v in cols]))
        last = self._seen + size == self.n
        for m, (width, carry, at) in self._carry.items():
            lo = 0  # (the chunk's first row not yet in a finished bucket)
            if carry is not None and carry[0].size:
                # (the carried, unfinished bucket, completed from the chunk's head: a copy of
                # at most a bucket, never of the chunk)
                take = min(width - carry[0].size, size)
                head = [np.concatenate([a, b[:take]]) for a, b in zip(carry, cols)]
                lo = take
                if head[0].size == width or last:
                    self._bucket(m, head, at, head[0].size)
                    at += head[0].size
                else:
                    self._carry[m] = (width, head, at)
                    continue
            rest = [v[lo:] for v in cols]
            full = rest[0].size // width * width
            if full:
                self._bucket(m, [v[:full] for v in rest], at, width)
            if last and full < rest[0].size:  # (the last, shorter bucket)
                self._bucket(m, [v[full:] for v in rest], at + full, rest[0].size - full)
                full = rest[0].size
            # (a copy: a view would keep the whole chunk alive)
            self._carry[m] = (width, [v[full:].copy() for v in rest], at + full)
        self._seen += size

    def _bucket(self, m: int, rows: list[np.ndarray], at: int, width: int) -> None:
        """Candidates of buckets of `width` over `rows` (their first at position `at`), for
        `m` columns used."""
        for c in range(self.k):
            for p in _extremes(rows[1 + c], width):
                self._cand[(m, c)].append((at + p, [v[p] for v in rows]))

    @property
    def finite(self) -> list[bool]:
        """Per column, whether any value so far is finite (pick draws only those columns)."""
        return list(self._finite)

    def rows(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """(positions, [time, column 1, ..., column k] at those positions), as `pick` of the
        whole columns chooses them."""
        if self._seen != self.n:
            raise ValueError(f"Picker: {self._seen} of the {self.n} rows announced were given")
        if self._whole is not None:
            whole = ([np.concatenate([ch[i] for ch in self._whole]) for i in range(self.k + 1)]
                     if self._whole else [np.zeros(0)] * (self.k + 1))
            idx = pick(whole[1:], self.limit)
            return idx, [v[idx] for v in whole]
        used = [c for c in range(self.k) if self._finite[c]] or [0]
        found = self._ends + [f for c in used for f in self._cand[(len(used), c)]]
        pos = np.concatenate([p for p, _ in found])
        idx, first = np.unique(pos, return_index=True)  # (a row found twice: the same values)
        return idx, [np.concatenate([v[j] for _, v in found])[first]
                     for j in range(self.k + 1)]
