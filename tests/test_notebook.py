"""gpuwatch in a notebook (docs/notebooks.md): `%load_ext gpuwatch`, the `%%gpuwatch` cell magic
and the analysis shown inline, run in a real Jupyter kernel (nbclient, the python3 kernel of
this environment); the short reprs and the inline report without one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import gpuwatch

# A recording cell: two conditions on the simulated T4, whose clock falls in the 20 ms gaps.
RECORD = """e = gw.engine("builtin:small")
for g in (0, 20):
    gw.set_condition(f"gap={g}ms", gap_ms=g)
    for _ in range(150):
        e.infer()
        e.synchronize()
        gw.wait(g)
"""


def test_importing_gpuwatch_imports_no_ipython():
    code = "import sys, gpuwatch; print('IPython' in sys.modules, callable(" \
           "gpuwatch.load_ipython_extension))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "True"]


def test_reprs_are_short_and_the_inline_report_is_a_styled_fragment(tmp_path):
    with gpuwatch.session("sim:t4", tmp_path / "t.parquet") as s:
        exec(RECORD, {"gw": s})
    assert repr(s).startswith("<gpuwatch Session on sim:t4 -> ") and repr(s).endswith("ended>")
    t = s.trace
    assert len(repr(t)) < 300 and "300 inferences" in repr(t) and "status complete" in repr(t)
    a = gpuwatch.analyze(t)
    assert len(repr(a)) < 1000 and a.verdict in repr(a)
    h = a._repr_html_()
    assert len(h) < 20_000, len(h)  # (the full page carries ~120 KB of script and plot data)
    assert h.startswith("<div class='gpuwatch-report'>") and h.endswith("</div>")
    assert "<script" not in h and "<html" not in h and "<body" not in h
    css = h[h.index("<style>") + 7:h.index("</style>")]
    assert all(rule.lstrip().startswith(".gpuwatch-report") for rule in css.split("}")[:-1])
    assert "SIMULATED GPU" in h and "gap=20ms" in h and "--html report.html" in h


def _texts(cell) -> str:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type == "error":
            out.append(f"ERROR {o.ename}: {o.evalue}")
        else:
            out.extend(str(v) for v in o.get("data", {}).values())
    return "\n".join(out)


def _html(cell) -> str:
    return "\n".join(o.data["text/html"] for o in cell.outputs if "text/html" in o.get("data", {}))


@pytest.mark.slow
def test_a_notebook_records_a_cell_and_shows_its_analysis(tmp_path):
    pytest.importorskip("ipykernel")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    v4 = nbformat.v4

    def failing(src: str) -> object:  # (nbclient runs on past a cell tagged so)
        return v4.new_code_cell(src, metadata={"tags": ["raises-exception"]})

    docs = (Path(__file__).resolve().parents[1] / "docs" / "notebooks.md").read_text()
    assert "```python\n%%gpuwatch --device sim:t4 --out run.parquet\n" + RECORD + "```" in docs
    cells = [
        v4.new_code_cell("%load_ext gpuwatch"),
        v4.new_code_cell("%%gpuwatch --device sim:t4 --out run.parquet -a report\n" + RECORD),
        v4.new_code_cell("report"),
        # run again: the trace named by --out is replaced, not refused
        v4.new_code_cell("%%gpuwatch --device sim:t4 --out run.parquet\n" + RECORD),
        # no --out: a new file each run; the cell raises: the trace is kept, and says so
        failing("%%gpuwatch --device sim:t4\n" + RECORD + "raise ValueError('bad frame')\n"),
        v4.new_code_cell("gw"),
        v4.new_code_cell("gw.trace"),
        failing("%%gpuwatch --device sim:t4 --out run.parquet --no-overwrite\npass"),
        failing("%%gpuwatch --device nonsense\npass"),
        v4.new_code_cell("import pathlib\nsorted(p.name for p in pathlib.Path('.').glob("
                         "'*.parquet*'))"),
    ]
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    out = [_texts(c) for c in nb.cells]

    assert "ERROR" not in out[0]
    assert f"trace {tmp_path / 'run.parquet'} (300 inferences, status complete)" in out[1]
    html = _html(nb.cells[1])  # the cell's result: the analysis, inline
    assert "class='gpuwatch-report'" in html and "Verdict" in html
    assert "the SM clock" in html and "gap=20ms" in html, html
    text = nb.cells[1].outputs[-1].data["text/plain"]
    assert text.startswith("<gpuwatch Analysis of 1 trace(s)") and "the SM clock" in text

    assert "class='gpuwatch-report'" in _html(nb.cells[2])  # -a: bound to a name
    assert "ERROR" not in out[3] and "status complete" in out[3]

    kept = out[4]
    assert "the cell raised ValueError: bad frame; the trace is kept: " in kept, kept
    assert "(300 inferences, status failed)" in kept and "ERROR ValueError: bad frame" in kept
    # the analysis says so first: the cell's error stopped the run (the recording is whole)
    assert "the run stopped at an error (valueerror: bad frame)" in _html(nb.cells[4]).lower()
    assert "Session on sim:t4" in out[5] and "ended" in out[5]
    assert "status failed" in out[6] and len(out[6]) < 400
    # (IPython shows a UsageError as one line on stderr, and the cell as failed)
    assert "UsageError: gpuwatch: run.parquet already exists" in out[7], out[7]
    assert "UsageError: gpuwatch: " in out[8] and "nonsense" in out[8], out[8]

    files = out[9]
    assert "run.parquet" in files and "gpuwatch-" in files and ".partial" not in files
    failed = gpuwatch.load(next(tmp_path.glob("gpuwatch-*.parquet")))
    assert failed.meta["status"] == "failed" and "bad frame" in failed.meta["error"]
    assert gpuwatch.load(tmp_path / "run.parquet").meta["status"] == "complete"


def test_the_magics_sample_gpus_follows_the_commands_rules():
    import argparse

    pytest.importorskip("IPython")
    from gpuwatch.notebook import _sample_gpus

    assert _sample_gpus("all") == "all" and _sample_gpus("0,2") == [0, 2]
    for bad, words in (("0,0", "lists GPU 0 twice"), ("-1", "takes all or NVML indices"),
                       ("0,,1", "an empty item")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            _sample_gpus(bad)


def test_a_cell_ending_with_a_semicolon_shows_no_analysis(tmp_path, monkeypatch):
    """docs/notebooks.md: end the cell with `;` and nothing is shown; -a still binds it.
    (IPython looks for the `;` in the magic's call it ran, which never has one.)"""
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.chdir(tmp_path)
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gpuwatch")
        body = "e = gw.engine()\nfor _ in range(30):\n    e.infer()\n    e.synchronize()\n"
        shown = shell.run_cell(f"%%gpuwatch --device sim:flat -o a.parquet\n{body}",
                               store_history=True)
        assert type(shown.result).__name__ == "Analysis", shown.error_in_exec
        quiet = shell.run_cell(f"%%gpuwatch --device sim:flat -o b.parquet -a an\n{body}"
                               "e.synchronize();  # done\n", store_history=True)
        assert quiet.success and quiet.result is None
        assert type(shell.user_ns["an"]).__name__ == "Analysis"
    finally:
        InteractiveShell.clear_instance()


def test_a_syntax_error_in_a_cell_is_shown_at_its_line(tmp_path, monkeypatch):
    # (it was parsed before being named and numbered: "File <unknown>, line 1")
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.chdir(tmp_path)
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gpuwatch")
        r = shell.run_cell("%%gpuwatch --device sim:flat -o a.parquet\nx = 1\nfor\n",
                           store_history=True)
        e = r.error_in_exec
        assert isinstance(e, SyntaxError) and e.lineno == 3 and e.text.strip() == "for"
        assert e.filename != "<unknown>" and not (tmp_path / "a.parquet").exists()
    finally:
        InteractiveShell.clear_instance()


def test_the_magic_names_its_own_options_and_says_a_kept_trace_once(tmp_path, monkeypatch,
                                                                    capsys):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.chdir(tmp_path)
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "gpuwatch")
        r = shell.run_cell("%%gpuwatch --device sim:flat -o a.parquet --dataset d\npass\n")
        assert "give either --out or --dataset, not both" in str(r.error_in_exec)
        (tmp_path / "a.parquet").write_bytes(b"mine")
        capsys.readouterr()
        r = shell.run_cell("%%gpuwatch --device sim:flat -o a.parquet\nraise ValueError('x')\n")
        assert isinstance(r.error_in_exec, ValueError)
        said = capsys.readouterr()
        lines = [ln for ln in (said.out + said.err).splitlines() if "was left as it was" in ln]
        assert len(lines) == 1 and (tmp_path / "a.parquet").read_bytes() == b"mine", lines
    finally:
        InteractiveShell.clear_instance()
