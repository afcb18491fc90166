"""Tables, verdicts and plots for the seed experiments recorded by seed_experiments.py.

    python benchmarks/seed_report.py benchmarks/results/h100_issue8     # writes report.md, *.png

Per experiment, in the field report's shape:
1. per step (preprocess, inference, postprocess) median / p99 / max, for the online-like stream
   (--fps 30), the loop with a 20 ms gap, and back to back, with the analysis's verdict;
2. the first 50 vs the last 100 iterations of 800 at a 20 ms gap, the layers found, and for the
   kernel-traced runs where the time went (kernels busy, GPU idle inside, host enqueue);
3. back-to-back, jump/stable iteration and stable latency tables for every preset and size,
   then latency against the gap for each way of running and waiting.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import gpuwatch
from gpuwatch.analysis.merge import merge


def md(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A DataFrame as a GitHub markdown table (no extra dependency)."""
    cols = list(df.columns)
    out = ["| " + " | ".join(map(str, cols)) + " |", "|" + " --- |" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, float) and np.isfinite(v) else
                 ("NA" if isinstance(v, float) else str(v)) for v in row]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def config(path: Path) -> str:
    return path.stem.split("_", 1)[1]


def steps(t: gpuwatch.Trace) -> pd.DataFrame:
    rows = t.inferences[~t.inferences["warmup"].astype(bool)].dropna(subset=["gpu_ms"])
    step = np.where(rows["kind"] == "inference", "inference", rows["name"])
    g = rows.assign(step=step).groupby(["condition", "step"], sort=False)["gpu_ms"]
    return g.agg(p50="median", p99=lambda x: x.quantile(0.99), max="max").reset_index()


def experiment1(d: Path, out: list[str]) -> None:
    out.append("## Experiment 1: a large model, stream vs loop vs back to back\n")
    rows = []
    for f in sorted(d.glob("e1_*_steps.parquet")):
        t = gpuwatch.load(f)
        s = steps(t)
        for r in s.itertuples():
            rows.append({"config": config(f).removesuffix("_steps"), "condition": r.condition,
                         "step": r.step, "p50 ms": r.p50, "p99 ms": r.p99, "max ms": r.max})
    for f in sorted(d.glob("e1_*_b2b.parquet")):
        s = steps(gpuwatch.load(f))
        r = s[s["step"] == "inference"].iloc[0]
        rows.append({"config": config(f).removesuffix("_b2b"), "condition": "inference only, b2b",
                     "step": "inference", "p50 ms": r.p50, "p99 ms": r.p99, "max ms": r.max})
    df = pd.DataFrame(rows)
    wide = df.pivot_table(index=["config", "condition"], columns="step",
                          values=["p50 ms", "p99 ms"], aggfunc="first", sort=False)
    wide.columns = [f"{step} {stat}" for stat, step in wide.columns]
    order = [c for s in ("preprocess", "inference", "postprocess") for c in
             (f"{s} p50 ms", f"{s} p99 ms") if c in wide.columns]
    out.append(md(wide[order].reset_index()) + "\n")
    out.append("Verdicts (gap 20 ms and fps 30 against back to back, same trace):\n")
    for f in sorted(d.glob("e1_*_steps.parquet")):
        out.append(f"- `{config(f)}`: {gpuwatch.analyze(f).verdict}")
    out.append("")


def experiment2(d: Path, out: list[str]) -> None:
    out.append("## Experiment 2: a small model at 768x448, 20 ms gap, 800 iterations\n")
    rows = []
    for f in sorted(d.glob("e2_*.parquet")):
        t = gpuwatch.load(f)
        inf = t.measured().sort_values("iteration")
        ms = inf["gpu_ms"].to_numpy(float)
        a = gpuwatch.analyze(t)
        lay = a.layers.iloc[0]
        rows.append({"config": config(f), "first 50 p50 ms": float(np.median(ms[:50])),
                     "last 100 p50 ms": float(np.median(ms[-100:])),
                     "late/early": float(np.median(ms[-100:]) / np.median(ms[:50])),
                     "p99 ms": float(np.percentile(ms, 99)), "max ms": float(ms.max()),
                     "layers found": int(lay["n_layers"]),
                     "SM MHz min": float(t.samples["sm_clock_mhz"].min())})
    out.append(md(pd.DataFrame(rows)) + "\n")
    out.append("Verdicts (each run against its own first 50 iterations, or before its jump):\n")
    for f in sorted(d.glob("e2_*.parquet")):
        out.append(f"- `{config(f)}`: {gpuwatch.analyze(f).verdict}")
    out.append("")
    out.append("Where the time went, kernel-traced runs (medians per block of iterations):\n")
    rows = []
    for f in sorted(d.glob("e2_*_kernels.parquet")):
        m = merge(gpuwatch.load(f))
        m = m[(m["kind"] == "inference") & ~m["warmup"].astype(bool)]
        m = m.assign(enqueue_ms=(m["host_enqueued_ns"] - m["host_start_ns"]) / 1e6)
        for lo, hi in ((0, 50), (50, 150), (150, 300), (300, 800), (700, 800)):
            g = m[(m["iteration"] >= lo) & (m["iteration"] < hi)]
            rows.append({"config": config(f).removesuffix("_kernels"), "iterations": f"{lo}-{hi - 1}",
                         "latency ms": g["gpu_ms"].median(), "kernels busy ms": g["busy_ms"].median(),
                         "GPU idle inside ms": g["idle_inside_ms"].median(),
                         "host enqueue ms": g["enqueue_ms"].median(),
                         "first kernel delay ms": g["first_kernel_delay_ms"].median(),
                         "kernels": int(g["kernel_count"].median()),
                         "windows by": g["aligned_by"].iloc[0]})
    out.append(md(pd.DataFrame(rows)) + "\n")


def experiment3(d: Path, out: list[str], png: Path | None) -> None:
    out.append("## Experiment 3: every preset at two sizes; the gap sweep\n")
    files = sorted(f for f in d.glob("e3_*.parquet") if "_sweep_" not in f.name)
    a = gpuwatch.analyze(*files)
    lay = a.layers.assign(config=[config(files[i]) for i in a.layers["trace"]])
    b2b = lay[lay["gap_ms"] == 0][["config", "baseline_ms"]].rename(
        columns={"baseline_ms": "back-to-back ms"})
    g20 = lay[lay["gap_ms"] == 20].assign(
        **{"jump/stable iteration": [f"{o:.0f}/{s:.0f}" if layered else "no layers" for o, s, layered
                                     in zip(lay.loc[lay["gap_ms"] == 20, "onset_iter"],
                                            lay.loc[lay["gap_ms"] == 20, "stable_iter"],
                                            lay.loc[lay["gap_ms"] == 20, "layered"])]})
    g20 = g20[["config", "jump/stable iteration", "final_ms", "ratio_to_baseline"]].rename(
        columns={"final_ms": "stable ms (gap 20)", "ratio_to_baseline": "x back-to-back"})
    out.append(md(b2b.merge(g20, on="config")) + "\n")
    ver = a.verdicts.assign(config=[config(files[i]) for i in a.verdicts["trace"]])
    out.append("Verdicts at 20 ms (against back to back, same trace):\n")
    for r in ver[ver["condition"] == "gap=20ms"].itertuples():
        cause = r.cause if isinstance(r.cause, str) else "no change"
        out.append(f"- `{r.config}`: {cause}: {r.sentence}")
    out.append("")
    sweep = sorted(d.glob("e3_sweep_*.parquet"))
    rows = []
    for f in sweep:
        t = gpuwatch.load(f)
        for r in gpuwatch.condition_summary(t).itertuples():
            rows.append({"config": config(f).removeprefix("sweep_"), "gap_ms": r.gap_ms,
                         "p50": r.p50_ms, "p99": r.p99_ms})
    sw = pd.DataFrame(rows)
    tab = sw.pivot_table(index="config", columns="gap_ms", values="p50", sort=False)
    tab.columns = [f"{c:g} ms" for c in tab.columns]
    out.append("Latency p50 (ms) against the gap (120 iterations per gap):\n")
    out.append(md(tab.reset_index()) + "\n")
    tab99 = sw.pivot_table(index="config", columns="gap_ms", values="p99", sort=False)
    tab99.columns = [f"{c:g} ms" for c in tab99.columns]
    out.append("p99 (ms):\n")
    out.append(md(tab99.reset_index()) + "\n")
    out.append("Verdicts per sweep (each gap against gap 0, same trace):\n")
    for f in sweep:
        out.append(f"- `{config(f)}`: {gpuwatch.analyze(f).verdict}")
    out.append("")
    if png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for c, g in sw.groupby("config", sort=False):
            ax.plot(g["gap_ms"], g["p50"], marker="o", label=c)
        ax.set_xscale("symlog", linthresh=2)
        ax.set_yscale("log")
        ax.set_xlabel("idle gap between inferences (ms)")
        ax.set_ylabel("inference latency p50 (ms)")
        ax.set_title("H100: latency against the idle gap")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(png / "sweep.png", dpi=110)
        plt.close(fig)


def experiment2_plot(d: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for f in sorted(d.glob("e2_*_sleep.parquet")):
        inf = gpuwatch.load(f).measured().sort_values("iteration")
        ax = axes[0] if "torch" in f.name else axes[1]
        ax.plot(inf["iteration"], inf["gpu_ms"], lw=0.6, label=config(f))
    f = d / "e2_torch_sleep_kernels.parquet"
    if f.exists():
        m = merge(gpuwatch.load(f))
        m = m[(m["kind"] == "inference") & ~m["warmup"].astype(bool)].sort_values("iteration")
        axes[0].plot(m["iteration"], m["busy_ms"], lw=0.6, label="torch: kernels busy (CUPTI)")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.legend(fontsize=7)
    axes[0].set_title("H100, 768x448, 20 ms gap, time.sleep: latency per iteration")
    axes[1].set_xlabel("iteration")
    fig.tight_layout()
    fig.savefig(png / "experiment2.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the --out directory of seed_experiments.py")
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    out = ["# The seed's experiments on this GPU (generated by benchmarks/seed_report.py)\n"]
    png = None if a.no_plots else a.root
    if (a.root / "experiment1").is_dir():
        experiment1(a.root / "experiment1", out)
    if (a.root / "experiment2").is_dir():
        experiment2(a.root / "experiment2", out)
        if png is not None:
            experiment2_plot(a.root / "experiment2", png)
    if (a.root / "experiment3").is_dir():
        experiment3(a.root / "experiment3", out, png)
    (a.root / "report.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
