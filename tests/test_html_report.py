"""`analyze --html`: a report a person would send a colleague (issue 17). Verdict first, readable
tables, interactive plots drawn by the embedded uPlot, decimated data, no network, no matplotlib."""

from __future__ import annotations

import dataclasses
import html as htmllib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpuwatch
from tests import helpers
from gpuwatch.renderers import HtmlRenderer
from gpuwatch.renderers import html as report
from tests.helpers import gw_here

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "data" / "h100_small_gap0_20_fixture.parquet"
EPISODES = Path(__file__).parent / "data" / "h100_causes" / "busy_host.parquet"


def cli(*args):
    return gw_here(*args, module="gpuwatch.analyze")


def embedded(page: str) -> dict:
    """The plot data the page carries (the JSON in its gw-data script)."""
    m = re.search(r"<script type='application/json' id='gw-data'>(.*?)</script>", page, re.S)
    assert m, "no embedded plot data"
    return json.loads(m.group(1))


def section(page: str, anchor: str) -> str:
    """The page from heading `anchor` to the next h2."""
    start = page.index(f"<h2 id='{anchor}'>")
    end = page.find("<h2", start + 1)
    return page[start:end if end > 0 else None]


def cells(table_html: str) -> list[list[str]]:
    """The body rows' cells as text (headings and group rows have none)."""
    rows = [[htmllib.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", table_html, re.S)]
    return [r for r in rows if r]


@pytest.fixture(scope="module")
def sweep_page(t4_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "r.html"
    r = cli(t4_sweep.path, "--html", out)
    assert r.returncode == 0, r.stderr
    return out.read_text(encoding="utf-8")


def test_the_report_opens_offline_with_the_library_inline(sweep_page):
    page = sweep_page
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page) and "<link" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(//|[a-z]+:)""", page, re.I)
    lib = (report.VENDOR / report.UPLOT_JS).read_text(encoding="utf-8")
    body = lib[lib.index("*/") + 2:]  # the library itself, inline, as vendored
    assert body[:2000] in page and body[-2000:] in page
    assert "Copyright (c) 2022 Leon Sorokin" in page  # its MIT licence travels with it
    assert (report.VENDOR / report.UPLOT_CSS).read_text(encoding="utf-8")[:500] in page


def test_the_verdict_comes_before_any_table_or_plot(sweep_page, t4_analysis):
    page = sweep_page
    verdict = page.index(htmllib.escape(t4_analysis.verdict))
    assert verdict < page.index("<table") and verdict < page.index("id='gw-plots'")
    # and every condition's sentence is in the verdict section
    v = section(page, "verdict") if "<h2 id='verdict'>" in page else \
        page[page.index("<section id='verdict'>"):page.index("</section>")]
    for s in t4_analysis.verdicts["sentence"]:
        assert htmllib.escape(s) in v


def test_numbers_are_readable(sweep_page, t4_analysis):
    rows = cells(section(sweep_page, "layers"))
    lay = t4_analysis.layers
    assert len(rows) == len(lay)
    gap20 = next(r for r in rows if r[1] == "gap=20ms")
    truth = lay[lay["condition"] == "gap=20ms"].iloc[0]
    # engine, condition, gap, n, base, jump, stable, stable ms, ratio, layers, noise, reference
    assert gap20[3] == "800"
    assert gap20[5] == str(int(truth["onset_iter"])) and gap20[6] == str(int(truth["stable_iter"]))
    assert gap20[4] == f"{truth['baseline_ms']:.2f}" and gap20[8].endswith("\u00d7")
    gap0 = next(r for r in rows if r[1] == "gap=0ms")
    assert gap0[5] == gap0[6] == "\u2014"  # no layers: no jump, not "nan"
    # (the latency section's cells are all milliseconds: 23.00 ms is a latency, not a count)
    page = re.sub(r"<h2 id='latency'>.*?</table>", "", sweep_page, flags=re.S)
    tables = "".join(re.findall(r"<table.*?</table>", page, re.S))
    assert not re.search(r">\d+\.0+<", tables)  # no iteration or count as 56.000
    assert "nan" not in tables.lower()
    att = cells(section(sweep_page, "attribution"))
    clock = [r for r in att if r[0] == "SM clock (DVFS)"]
    assert clock and all(re.fullmatch(r"\d+(\.\d)?%", r[3]) for r in clock)  # shares as %


def test_formats():
    assert report.fmt_ms(4.70481) == "4.70" and report.fmt_ms(123.456) == "123.5"
    assert report.fmt_ms(0.023456) == "0.0235" and report.fmt_ms(0.00012345) == "0.000123"
    assert report.fmt_ms(0.0245, signed=True) == "+0.0245" and report.fmt_ms(0.0) == "0"
    assert report.fmt_ms(float("nan")) == report.fmt_ms(None) == "\u2014"
    assert report.fmt_int(56.0) == "56" and report.fmt_int(200000) == "200,000"
    assert report.fmt_pct(0.994882) == "99%" and report.fmt_pct(0.005135) == "0.5%"
    assert report.fmt_pct(-0.000017) == "0%" and report.fmt_pct(float("nan")) == "\u2014"


def test_a_negligible_change_gets_no_share(flat_trace, t4_analysis):
    """Clocks locked: gap 20 ms is 0.02 ms slower, within noise. Its attribution still says
    host launch delay is 100% of that; the report must not print it as a share."""
    a = gpuwatch.analyze(flat_trace)
    att = a.attribution.set_index("factor")
    assert att.loc["host_launch", "share"] == pytest.approx(1.0, abs=0.05)  # the raw share
    page = HtmlRenderer().render(a)
    part = section(page, "attribution")
    assert "no meaningful change" in part
    rows = cells(part)
    launch = next(r for r in rows if r[0] == "host launch delay")
    assert launch[1] == "+0.0245" or launch[1].startswith("+0.02")
    assert launch[3] == "\u2014" and "%" not in "".join(r[3] for r in rows)
    # a share the analysis leaves NA (the change under 0.1% of the reference) is NA too, even
    # where the verdict names a cause
    t = t4_analysis
    nan_att = t.attribution.assign(share=np.where(t.attribution["factor"] == "sm_clock",
                                                  np.nan, t.attribution["share"]))
    page = HtmlRenderer().render(dataclasses.replace(t, attribution=nan_att))
    clock = [r for r in cells(section(page, "attribution")) if r[0] == "SM clock (DVFS)"]
    assert clock and all(r[3] == "\u2014" for r in clock)


def test_the_embedded_data_parses_and_marks_layers(sweep_page, t4_analysis):
    d = embedded(sweep_page)
    assert set(d) >= {"latency", "clock", "scatter", "gap"}
    lay = t4_analysis.layers
    assert len(d["latency"]) == len(lay)
    for p in d["latency"]:
        truth = lay[lay["condition"] == p["condition"]].iloc[0]
        assert p["n"] == p["plotted"] == len(p["x"]) == len(p["y"]) == 800  # all fit: no cut
        assert all(isinstance(i, int) for i in p["x"]) and p["x"] == sorted(p["x"])
        assert p["onset"] == (int(truth["onset_iter"]) if truth["layered"] else None)
        assert p["stable"] == (int(truth["stable_iter"]) if truth["layered"] else None)
        assert min(p["clock"]) >= 299 and max(p["clock"]) <= 1591  # (in-band: 1590.01)
    assert d["clock"] and d["clock"][0]["conditions"][0]["name"] == "gap=0ms"
    assert [s["label"] for s in d["scatter"][0]["series"]] == list(lay["condition"])
    assert d["gap"] and d["gap"][0]["x"] == [0.0, 20.0, 50.0]


def test_episodes_are_marked(tmp_path):
    """A real H100 trace (40 busy processes on 16 cores): the episodes the verdicts report are
    in the data the latency plot shades, with their iterations."""
    a = helpers.analysed(EPISODES)
    page = HtmlRenderer().render(a)
    v = a.verdicts[a.verdicts["episode"].notna()]
    eps = embedded(page)["latency"][0]["episodes"]
    assert [(e["first"], e["last"]) for e in eps] == list(zip(v["first_iter"], v["last_iter"]))
    assert {e["cause"] for e in eps} <= set(v["cause_code"])
    sentences = page[page.index("<section id='verdict'>"):page.index("</section>")]
    assert sentences.count("class='episode'") == len(v)


@pytest.fixture(scope="module")
def big_trace(tmp_path_factory):
    """benchmarks/analyze_scale.py's synthetic trace, small: 5 conditions x 12,000 iterations,
    300,000 samples at 1 kHz."""
    spec = importlib.util.spec_from_file_location("analyze_scale",
                                                  ROOT / "benchmarks" / "analyze_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    mod.make(path, 60_000, 300_000)
    return path


def test_plotted_points_are_bounded_on_a_large_trace(big_trace):
    a = gpuwatch.analyze(big_trace)
    page = HtmlRenderer().render(a)
    d = embedded(page)
    cap = report.MAX_POINTS
    assert len(d["latency"]) == 5 and len(d["clock"]) == 1
    for p in d["latency"]:
        assert p["n"] == 12_000 and len(p["x"]) == len(p["y"]) == p["plotted"] <= cap
        assert p["x"] == sorted(p["x"]) and p["x"][0] == 0 and p["x"][-1] == 11_999
        rows = a.merged[(a.merged["condition"] == p["condition"])
                        & (a.merged["kind"] == "inference")]
        # each bucket's extremes are kept: the slowest and fastest inference are plotted
        assert max(p["y"]) == pytest.approx(rows["gpu_ms"].max(), rel=1e-4)
        assert min(p["y"]) == pytest.approx(rows["gpu_ms"].min(), rel=1e-4)
    c = d["clock"][0]
    assert c["n"] == 300_000 and len(c["t"]) == len(c["clock"]) == c["plotted"] <= cap
    for s in d["scatter"][0]["series"]:
        assert len(s["x"]) == len(s["y"]) == s["plotted"] <= cap < s["n"]
    assert len(page) < 2_000_000  # the whole report stays small


def test_pick_keeps_spikes_and_never_exceeds_the_limit():
    rng = np.random.default_rng(0)
    for n in (10, 4000, 4001, 12_345, 1_000_003):
        y = rng.normal(5, 0.1, n)
        y[n // 3] = 500.0  # one spike
        y[n // 2] = np.nan  # a missing reading
        clk = rng.normal(1500, 5, n)
        idx = report.pick([y, clk])
        assert len(idx) <= report.MAX_POINTS and (np.diff(idx) > 0).all()
        assert n // 3 in idx and 0 in idx and n - 1 in idx
        assert np.nanargmin(y) in idx and np.argmax(clk) in idx
    x, y = rng.normal(1000, 300, 100_000), rng.normal(5, 1, 100_000)
    y[7] = 1e3
    keep = report.pick_2d(x, y)
    assert len(keep) <= report.MAX_POINTS and 7 in keep


def test_without_the_library_the_report_says_what_to_install(t4_analysis, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(report, "VENDOR", tmp_path / "missing")
    out = HtmlRenderer().write(t4_analysis, tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    assert "No plots" in page and "in its clone: <code>pip install -e .</code>" in page
    assert "<script" not in page  # nothing to draw with, so no data either
    assert htmllib.escape(t4_analysis.verdict) in page and "<table" in page


def test_no_matplotlib_is_needed(t4_sweep, tmp_path):
    """matplotlib made unimportable: --html still writes the full report."""
    out = tmp_path / "r.html"
    code = ("import sys, runpy; sys.modules['matplotlib'] = None; "
            f"sys.argv = ['analyze', {str(t4_sweep.path)!r}, '--html', {str(out)!r}]; "
            "runpy.run_module('gpuwatch.analyze', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    page = out.read_text(encoding="utf-8")
    assert "id='gw-plots'" in page and embedded(page)["latency"]


def test_the_page_cannot_overflow_sideways(sweep_page):
    assert re.search(r"body\{[^}]*max-width:\s*\d+px", sweep_page)
    assert re.search(r"\.scroll\{overflow-x:auto", sweep_page)
    # every table scrolls inside its own container
    assert sweep_page.count("<table") == sweep_page.count("<div class='scroll'><table")
    assert "<img" not in sweep_page  # nothing of a fixed width


def test_several_traces_and_spans(t4_sweep, tmp_path):
    a = gpuwatch.analyze(t4_sweep, FIXTURE)
    page = HtmlRenderer().render(a)
    assert "Trace 0:" in page and "Trace 1:" in page and "NVIDIA H100" in page
    assert "preprocess" in section(page, "spans")
    d = embedded(page)
    assert {p["trace"] for p in d["latency"]} == {0, 1}
    assert any("trace 1" in p["title"] for p in d["latency"])


CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome"), "/usr/bin/chromium")
                 if p and Path(p).exists()), None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_the_page_renders_in_a_browser_without_errors(sweep_page, tmp_path):
    page = tmp_path / "r.html"
    page.write_text(sweep_page, encoding="utf-8")
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                        "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Uncaught" not in r.stderr, r.stderr[-2000:]
    assert r.stdout.count("class=\"uplot") >= 4  # a chart per latency panel and more
    assert "could not be drawn" not in r.stdout


def test_the_clock_panel_streamed_equals_pick_over_the_whole_samples(tmp_path, monkeypatch):
    """The clock panel reads the samples a few row groups at a time (Picker): on a trace whose
    samples hold a second GPU between the inference GPU's, it plots what pick over that GPU's
    whole columns plots."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(Path(__file__).parent / "data" / "h100_issue27" / "cotenant_light.parquet")
    names = np.asarray(t.column("table_name").cast("string").to_pylist())
    smp = t.filter(pa.array(names == "samples"))
    other = smp.set_column(smp.schema.get_field_index("gpu"), "gpu",
                           pa.array(np.ones(len(smp), np.int64)).cast(smp.schema.field("gpu").type))
    other = other.set_column(other.schema.get_field_index("t_ns"), "t_ns",
                             pc.add(other.column("t_ns"), 1))
    both = pa.concat_tables([smp, other])
    both = both.take(np.argsort(both.column("t_ns").to_numpy(), kind="stable"))
    path = tmp_path / "two_gpus.parquet"
    with pq.ParquetWriter(path, t.schema) as w:  # (one table per row group, as gpuwatch's)
        for name in dict.fromkeys(names):
            w.write_table(both if name == "samples" else t.filter(pa.array(names == name)),
                          row_group_size=4096)
    from gpuwatch import tablecolumns

    monkeypatch.setattr(tablecolumns, "BATCH_GROUPS", 1)  # (a chunk per row group of 4096)
    a = gpuwatch.analyze(path)
    src = a.traces[0].columns("samples")
    assert type(src).__name__ == "FileColumns" and src.constant("gpu") is None
    (panel,) = embedded(HtmlRenderer().render(a))["clock"]
    whole = a.traces[0].samples
    g0 = whole[whole["gpu"] == 0]
    cols = [np.where((v >= lo) & (v <= hi), v, np.nan) for v, (lo, hi) in
            ((g0[c].to_numpy(np.float64), report.BOUNDS[c]) for c in ("sm_clock_mhz", "power_w"))]
    idx = report.pick(cols)
    starts = a.regions.loc[a.regions["kind"] == "inference", "start_ns"].to_numpy(np.int64)
    t0 = min(int(whole["t_ns"].min()), int(starts.min()))
    times = g0["t_ns"].to_numpy(np.int64)
    assert panel["gpu"] == 0 and panel["n"] == len(g0) and panel["plotted"] == len(idx)
    assert panel["t"] == np.round((times[idx] - t0) / 1e9, 4).tolist()
    assert panel["clock"] == report._values(cols[0][idx])
    assert panel["power"] == report._values(cols[1][idx])
