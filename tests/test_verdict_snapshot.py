"""Every committed real trace's verdicts, and those of a sweep on each simulated GPU, as the
report words them, against a snapshot (tests/data/verdicts.json): a change made for speed or
layout must leave them as they were (issue 31: "verdicts identical before and after on every
fixture and on the sim suite"). A change meant to alter a verdict updates the snapshot on
purpose, and the diff shows what moved:

    GPUWATCH_UPDATE_SNAPSHOT=1 python -m pytest tests/test_verdict_snapshot.py

The sentences carry every number at the precision the report prints, so float noise in the
last bits does not fail it, and any change a reader could see does."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import analysed

DATA = Path(__file__).resolve().parent / "data"
SNAPSHOT = DATA / "verdicts.json"
TRACES = sorted(p.relative_to(DATA).as_posix() for p in DATA.rglob("*.parquet"))
# each simulated GPU's sweep (gaps 0 and 20 ms, 300 iterations, seed 0): simulated time, so
# the same trace and verdicts every run
SIMS = ["sim:t4", "sim:flat", "sim:capped", "sim:cold", "sim:hostbound"]


def _said(key: str) -> dict[str, object]:
    """What the analysis of fixture `key` (or the sweep on simulated GPU `key`) says: the
    overall verdict, then each verdict's code and sentence (event time, then call -> result),
    and the notes on the data."""
    if key.startswith("sim:"):
        import tempfile

        import gpuwatch
        from tests.helpers import record_sim

        with tempfile.TemporaryDirectory() as d:
            a = gpuwatch.analyze(record_sim(Path(d) / "t.parquet", profile=key[4:],
                                            gaps=(0.0, 20.0), iters=300, seed=0))
    else:
        a = analysed(DATA / key)

    def rows(df: Any) -> list[list[object]]:
        cols = ["engine", "condition", "episode", "cause_code", "sentence"]
        return [[None if v != v else v for v in r]  # (NaN: null)
                for r in df.reindex(columns=cols).itertuples(index=False)]

    return {"verdict": a.verdict, "events": rows(a.verdicts), "wall": rows(a.wall_verdicts),
            "notes": list(a.data_notes)}


@pytest.fixture(scope="module")
def snapshot() -> dict[str, object]:
    if os.environ.get("GPUWATCH_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps({k: _said(k) for k in TRACES + SIMS}, indent=1,
                                       ensure_ascii=False) + "\n", encoding="utf-8")
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_the_snapshot_covers_every_fixture(snapshot):
    assert sorted(snapshot) == sorted(TRACES + SIMS)  # (a new fixture: update the snapshot)


@pytest.mark.parametrize("rel", TRACES + SIMS)
def test_the_verdicts_are_the_snapshots(snapshot, rel):
    got, want = json.loads(json.dumps(_said(rel))), snapshot.get(rel)
    assert want is not None, f"{rel} is not in the snapshot"
    assert got["verdict"] == want["verdict"]
    assert got["notes"] == want["notes"]
    for part in ("events", "wall"):
        assert len(got[part]) == len(want[part]), part
        for g, w in zip(got[part], want[part]):
            assert g == w, f"{rel} {part}: {g[:4]}"
