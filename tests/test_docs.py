"""The front door and the docs: the README's example runs as written (on a simulated GPU, no
GPU needed), every relative link in README.md and docs/ points at a file that exists, and the
README stays a front door (issue 29)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_example_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- example: run as tests/test_docs.py -->\s*```python\n(.*?)```", text,
                  re.S)
    assert m, "the README lost its example"
    (tmp_path / "example.py").write_text(m.group(1))
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "the SM clock (DVFS: no power/thermal reason active) explains" in r.stdout
    assert "SM clock 1590 -> 765 MHz" in r.stdout
    # run again: the example replaces its own trace (overwrite=True), as a user re-runs it
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_every_relative_link_points_at_a_file():
    bad = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):  # (http:, mailto:)
                continue
            if not (page.parent / target).exists():
                bad.append(f"{page.relative_to(ROOT)}: {target}")
    assert bad == []


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250 and len(text) < 15_000
    for page in ("install", "api", "guide", "cli", "verdicts", "trace-format", "design"):
        assert f"docs/{page}.md" in text


def test_every_environment_variable_gpuwatch_reads_is_in_the_cli_reference():
    """The variables gpuwatch's own code reads (not the tests': GPUWATCH_FUZZ_EXAMPLES and the
    like; not the C header's include guard) each have a row in docs/cli.md's Environment."""
    read = set()
    for f in [*(ROOT / "gpuwatch").rglob("*.py"), *(ROOT / "bindings").rglob("*.py"),
              *(ROOT / "gpuwatch" / "regions").glob("*.[ch]")]:
        read |= set(re.findall(r"\b(GPUWATCH_[A-Z_]+|ARROW_DEFAULT_MEMORY_POOL)\b",
                               f.read_text()))
    read.discard("GPUWATCH_NATIVE_H")
    assert {"GPUWATCH_DEVICE", "GPUWATCH_NATIVE", "GPUWATCH_TORCH_STREAM"} <= read
    text = (ROOT / "docs" / "cli.md").read_text()
    assert "## Environment" in text
    section = text.split("## Environment", 1)[1]
    rows = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    assert read <= rows, read - rows


def test_every_results_folder_is_in_the_index():
    """benchmarks/results/README.md indexes what was measured: a folder committed without its
    row is a result no one finds (seven had none)."""
    results = ROOT / "benchmarks" / "results"
    index = (results / "README.md").read_text()
    folders = sorted(p.name for p in results.iterdir() if p.is_dir())
    assert folders and [f for f in folders if f"]({f}/" not in index] == []
