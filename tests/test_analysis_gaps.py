"""analysis.gaps: conditions from the gaps a program leaves, grouped as they are found."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gpuwatch.analysis.gaps import gap_groups, label, observed_gaps, regroup_by_gap

rng = np.random.default_rng(0)


def test_natural_breaks_make_the_groups():
    g = np.r_[rng.normal(2, .05, 50), rng.normal(30, .5, 50)]
    (lo1, hi1), (lo2, hi2) = gap_groups(g)
    assert hi1 < 2.5 and lo2 > 25  # split between 2 and 30 ms, not at a fixed edge (5 ms)
    # back to back (under 0.1 ms) and 20 ms: two groups
    assert len(gap_groups(np.r_[rng.uniform(0.01, .05, 100), rng.normal(20, .5, 100)])) == 2
    steps = np.repeat([0.02, 5, 10, 20, 40], 50)  # a program stepping through its gaps
    assert [lo for lo, _ in gap_groups(steps)] == [0.02, 5, 10, 20, 40]


def test_one_gap_is_one_group_and_stray_gaps_do_not_make_their_own():
    assert len(gap_groups(rng.normal(20, .5, 100))) == 1
    assert len(gap_groups(np.r_[rng.normal(20, .5, 100), [500.0]])) == 1  # too few to compare


def test_continuous_gaps_fall_back_to_coarse_buckets():
    groups = gap_groups(rng.uniform(0, 100, 300))
    assert len(groups) == 2 and groups[0][1] < 50 <= groups[1][0]  # the 50 ms edge


def test_labels_name_the_middle_of_a_group():
    assert label(np.r_[rng.normal(20, .3, 100), [500.0]]) == "gap 20 ms"
    assert label(np.linspace(1.9, 2.1, 50)) == "gap 1.9-2.1 ms"
    assert label(np.full(10, 0.004)) == "gap 0 ms"


def frame(gaps: np.ndarray, name: str = "call:Net") -> pd.DataFrame:
    n = gaps.size
    return pd.DataFrame({"kind": "inference", "name": name, "warmup": [True] + [False] * (n - 1),
                         "gap_ms": np.r_[np.nan, gaps[1:]], "condition": "recorded",
                         "iteration": np.arange(n), "start_ns": np.arange(n) * 10**8})


def test_regroup_relabels_measured_rows_and_counts_iterations_again():
    gaps = np.where(np.arange(101) % 2, 2.0, 30.0)
    out = regroup_by_gap(frame(gaps))
    assert out["condition"].iloc[0] == "recorded"  # warm-up: as recorded
    assert out["condition"].iloc[1:].value_counts().to_dict() == {"gap 2 ms": 50,
                                                                  "gap 30 ms": 50}
    for _, rows in out.iloc[1:].groupby("condition"):
        assert rows["iteration"].tolist() == list(range(50))


def test_regroup_groups_each_series_on_its_own():
    a = frame(np.full(60, 2.0), "call:A")
    b = frame(np.r_[np.full(30, 0.05), np.full(30, 40.0)], "call:B")
    out = regroup_by_gap(pd.concat([a, b], ignore_index=True))
    assert set(out[out["name"] == "call:A"]["condition"].iloc[1:]) == {"gap 2 ms"}
    assert set(out[out["name"] == "call:B"]["condition"].iloc[1:]) == {"gap 0.05 ms",
                                                                       "gap 40 ms"}


@pytest.mark.parametrize("options, yes", [({"command": "run"}, True),
                                          ({"conditions": "observed gaps"}, True),
                                          ({"command": "record"}, False), (None, False)])
def test_which_traces_have_observed_gaps(options, yes):
    assert observed_gaps({"options": options} if options is not None else {}) is yes
