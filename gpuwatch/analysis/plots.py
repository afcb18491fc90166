"""Plots of an Analysis (matplotlib, the `plots` extra): what a person looks at first.

- latency vs iteration, coloured by SM clock (as the field report's charts), jump/stable marked;
- latency vs SM clock;
- final latency vs gap, for a sweep;
- telemetry timeline around the jump of the most-changed condition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .pipeline import Analysis
from .columns import floats


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        from .._version import install_hint

        raise UsageError(f"plots need matplotlib: {install_hint('plots')}") from e
    return plt


def _measured(a: Analysis, ti: int) -> Any:
    m = a.regions
    return m[(m["trace"] == ti) & (m["kind"] == "inference") & ~m["warmup"].astype(bool)]


def latency_vs_iteration(a: Analysis, ti: int = 0) -> Any:
    plt = _plt()
    m = _measured(a, ti)
    groups = list(m.groupby(["name", "condition"], sort=False))[:9]
    cols = min(3, max(1, len(groups)))
    rows = int(np.ceil(len(groups) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False,
                             layout="constrained")
    clk = m["sm_clock_mhz_mean"].pipe(floats)
    vmin, vmax = (np.nanmin(clk), np.nanmax(clk)) if np.isfinite(clk).any() else (0, 1)
    if vmax - vmin < 10:  # a steady clock (the in-band one reads it to a thousandth of a MHz)
        vmin, vmax = (vmin + vmax) / 2 - 5, (vmin + vmax) / 2 + 5
    sc = None
    for ax, ((name, cond), g) in zip(axes.flat, groups):
        g = g.sort_values("iteration")
        sc = ax.scatter(g["iteration"], g["gpu_ms"], c=g["sm_clock_mhz_mean"], s=6,
                        cmap="viridis", vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1)
        lay = a.details.get((ti, name, cond))
        if lay is not None and lay.layered:
            ax.axvline(lay.onset_iter, color="tab:red", lw=0.8, ls="--", label="jump")
            ax.axvline(lay.stable_iter, color="tab:orange", lw=0.8, ls="--", label="stable")
        v = a.verdicts
        eps = v[(v["trace"] == ti) & (v["engine"] == name) & (v["condition"] == cond)
                & v["episode"].notna()] if "episode" in v else v.iloc[0:0]
        for k, e in enumerate(eps.itertuples()):  # the episodes verdicts report
            ax.axvspan(e.first_iter, e.last_iter, color="tab:red", alpha=0.12,
                       label=f"episode: {e.cause_code}" if k == 0 else None)
        if (lay is not None and lay.layered) or len(eps):
            ax.legend(fontsize=7, loc="best")
        ax.set_title(f"{name} {cond}", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("latency (ms, GPU events)")
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    if sc is not None:
        fig.colorbar(sc, ax=axes, label="SM clock (MHz)", shrink=0.8)
    fig.suptitle("Latency by iteration, coloured by SM clock")
    return fig


def latency_vs_clock(a: Analysis, ti: int = 0) -> Any:
    plt = _plt()
    m = _measured(a, ti)
    fig, ax = plt.subplots(figsize=(6, 4))
    several = m["name"].nunique() > 1
    for (name, cond), g in m.groupby(["name", "condition"], sort=False):
        ax.scatter(g["sm_clock_mhz_mean"], g["gpu_ms"], s=6, alpha=0.7,
                   label=f"{name}, {cond}" if several else str(cond))
    ax.set_xlabel("SM clock during the inference (MHz)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency against SM clock")
    ax.legend(fontsize=7)
    return fig


def final_vs_gap(a: Analysis) -> Any | None:
    lay = a.layers.dropna(subset=["gap_ms"]) if not a.layers.empty else a.layers
    if lay.empty or lay["gap_ms"].nunique() < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (ti, eng), g in lay.groupby(["trace", "engine"], sort=False):
        g = g.sort_values("gap_ms")
        ax.plot(g["gap_ms"], g["final_ms"], marker="o", label=f"{eng} (trace {ti})")
        ax.plot(g["gap_ms"], g["baseline_ms"], ls=":", color="grey")
    ax.set_xlabel("idle gap between inferences (ms)")
    ax.set_ylabel("settled latency (ms); dotted: first iterations")
    ax.set_title("Settled latency against the gap")
    ax.legend(fontsize=7)
    return fig


def telemetry_timeline(a: Analysis, ti: int = 0) -> Any | None:
    v = a.verdicts[a.verdicts["trace"] == ti] if not a.verdicts.empty else a.verdicts
    m = _measured(a, ti)
    if m.empty:
        return None
    if not v.empty and v["extra_ms"].abs().max() > 0:
        row = v.loc[v["extra_ms"].abs().idxmax()]
        m = m[(m["name"] == row["engine"]) & (m["condition"] == row["condition"])]
    lay = a.details.get((ti, m["name"].iloc[0], m["condition"].iloc[0]))
    m = m.sort_values("iteration")
    center = (lay.onset_iter if lay is not None and lay.layered and lay.onset_iter is not None
              else int(m["iteration"].median()))
    win = m[(m["iteration"] >= center - 60) & (m["iteration"] <= center + 120)]
    t0, t1 = int(win["start_ns"].min()), int(win["end_ns"].max())
    tr = a.traces[ti]
    s = tr.samples[(tr.samples["t_ns"] >= t0) & (tr.samples["t_ns"] <= t1)]
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 6), sharex=True, layout="constrained")
    ts = (s["t_ns"].to_numpy(np.int64) - t0) / 1e9
    ax1.step(ts, s["sm_clock_mhz"].pipe(floats), where="post", label="SM")
    ax1.set_ylabel("clock (MHz)")
    p = s.dropna(subset=["power_w"])
    ax2.plot((p["t_ns"].to_numpy(np.int64) - t0) / 1e9, p["power_w"].pipe(floats), lw=0.8)
    ax2.set_ylabel("power (W)")
    starts = (win["start_ns"].to_numpy(np.int64) - t0) / 1e9
    ax3.vlines(starts, 0, win["gpu_ms"].pipe(floats), lw=1.2)
    ax3.set_ylabel("latency (ms)")
    ax3.set_xlabel("time (s)")
    fig.suptitle(f"Telemetry around iteration {center} of {m['condition'].iloc[0]}")
    return fig


def figures(a: Analysis) -> dict[str, Any]:
    figs: dict[str, Any] = {}
    for ti in range(len(a.traces)):
        if _measured(a, ti).empty:
            continue
        figs[f"latency_vs_iteration_{ti}"] = latency_vs_iteration(a, ti)
        figs[f"latency_vs_clock_{ti}"] = latency_vs_clock(a, ti)
        tl = telemetry_timeline(a, ti)
        if tl is not None:
            figs[f"telemetry_{ti}"] = tl
    fg = final_vs_gap(a)
    if fg is not None:
        figs["final_vs_gap"] = fg
    return figs


def save_pngs(a: Analysis, directory: str | Path) -> list[Path]:
    plt = _plt()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures(a).items():
        p = d / f"{name}.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths
