"""Stable latency by GPU model, engine and gap with Dask, for fleets too big for one machine: the same
question as benchmarks/fleet/stable_latency.sql. Point a Dask cluster (dask.distributed) at the
dataset's shared location (s3://..., hdfs://...) and the same code runs across it.

    python benchmarks/fleet/stable_latency_dask.py fleet/
"""

from __future__ import annotations

import sys

import dask.dataframe as dd
import pandas as pd


def late_p50(inf: pd.DataFrame) -> pd.DataFrame:
    """Per run, engine and condition: the median of its last 100 iterations (one file's rows)."""
    keys = ["gpu_model", "engine", "gap_ms", "host", "run", "condition"]
    last = inf.sort_values("iteration").groupby(keys, observed=True).tail(100)
    return last.groupby(keys, observed=True)["gpu_ms"].median().rename("late_p50_ms").reset_index()


def stable_latency(root: str) -> pd.DataFrame:
    inf = dd.read_parquet(  # one partition per trace file, so a run never spans two
        root, dataset={"partitioning": "hive"}, split_row_groups=False,
        columns=["gpu_model", "host", "run", "name", "condition", "gap_ms", "iteration", "gpu_ms"],
        filters=[("table_name", "==", "inferences"), ("kind", "==", "inference"),
                 ("warmup", "==", False), ("gpu_ms", "is not", None), ("error", "is", None)])
    inf = inf.astype({"gpu_model": str, "host": str, "run": str})  # hive keys: categoricals
    inf = inf.rename(columns={"name": "engine"})
    meta = pd.DataFrame({"gpu_model": pd.Series(dtype=str), "engine": pd.Series(dtype=str),
                         "gap_ms": pd.Series(dtype="f8"),
                         "host": pd.Series(dtype=str), "run": pd.Series(dtype=str),
                         "condition": pd.Series(dtype=str), "late_p50_ms": pd.Series(dtype="f8")})
    per_run = inf.map_partitions(late_p50, meta=meta).compute()
    out = per_run.groupby(["gpu_model", "engine", "gap_ms"])["late_p50_ms"].agg(["count", "median"])
    return (out.rename(columns={"count": "runs", "median": "stable_ms"})
            .reset_index().sort_values(["gpu_model", "engine", "gap_ms"], ignore_index=True))


if __name__ == "__main__":
    print(stable_latency(sys.argv[1] if len(sys.argv) > 1 else "fleet").to_string(index=False))
