"""Packaging: setup.cfg lists every package (bindings/ maps to gpuwatch.bindings); the
distribution is ours (gpuwatch-latency: PyPI's "gpuwatch" is an unrelated project), its licence
metadata is the SPDX form, the wheel carries no C sources and the sdist no tests; every install
hint names what actually installs."""

from __future__ import annotations

import configparser
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import gpuwatch
from gpuwatch._version import DISTRIBUTION, install_hint

ROOT = Path(__file__).resolve().parents[1]
# gpuwatch's licence, the vendored uPlot's (MIT too), and ruptures' (BSD-2-Clause), whose
# change-point search analysis/_segment.c follows
LICENSE_FILES = ["LICENSE", "gpuwatch/renderers/vendor-js/uPlot.LICENSE",
                 "gpuwatch/analysis/_segment.LICENSE"]
LICENSE = "MIT AND BSD-2-Clause"


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # (Python 3.11+)
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_every_package_directory_is_listed_in_setup_cfg():
    listed = set(_setup_cfg()["options"]["packages"].split())
    found = set()
    for top, name in (("gpuwatch", "gpuwatch"), ("bindings", "gpuwatch.bindings")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found == listed


def test_the_distribution_name_is_ours_and_the_import_name_stays():
    project = _pyproject()["project"]
    assert project["name"] == DISTRIBUTION == "gpuwatch-latency"
    assert project["scripts"] == {"gpuwatch": "gpuwatch.cli:entry"}
    assert "urls" not in project  # (no public address; github.com/gpuwatch is not this project)


def _installed() -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def test_the_installed_metadata_is_the_distributions():
    dist = _installed()
    if dist is None:
        pytest.skip(f"{DISTRIBUTION} is not installed (tests run from the source tree)")
    assert dist.version == gpuwatch.__version__
    assert DISTRIBUTION in importlib.metadata.packages_distributions()["gpuwatch"]


def test_the_licence_is_an_spdx_expression_with_its_file():
    pyproject = _pyproject()
    project = pyproject["project"]
    assert project["license"] == LICENSE  # not the deprecated {file = ...} table
    assert project["license-files"] == LICENSE_FILES
    assert all((ROOT / f).is_file() for f in LICENSE_FILES)
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]  # superseded
    # PEP 639's fields need setuptools 77
    assert pyproject["build-system"]["requires"] == ["setuptools>=77"]


def test_an_install_hint_names_the_extras_packages_and_the_clone_form():
    if not _installed():
        pytest.skip(f"{DISTRIBUTION} is not installed: no metadata to read the extras from")
    extras = _pyproject()["project"]["optional-dependencies"]
    for extra in ("torch", "fleet"):  # (the installed metadata has pyproject's at install time)
        packages = " ".join(f"'{r}'" for r in extras[extra])
        assert install_hint(extra) == (f"pip install {packages} (or, in a clone of gpuwatch: "
                                       f"pip install -e '.[{extra}]')")
    assert install_hint("nonesuch") == "in a clone of gpuwatch: pip install -e '.[nonesuch]'"


# `pip install gpuwatch...` installs PyPI's unrelated gpuwatch: a hint names the packages, or the
# clone (`pip install -e ...`). Hints still to change, in files being edited elsewhere (issue 29):
# they should use gpuwatch._version.install_hint("plots") and "pip install -e ." from a clone.
PENDING: set[str] = set()
WRONG_HINT = re.compile(r"pip install (-U |--upgrade |--force-reinstall )*['\"]?gpuwatch\b")


def test_no_install_hint_fetches_pypis_gpuwatch():
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for top in ("gpuwatch", "bindings"):
        files += (ROOT / top).rglob("*.py")
    bad = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
           for path in files if path.relative_to(ROOT).as_posix() not in PENDING
           for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
           if WRONG_HINT.search(line)]
    assert bad == []


def test_the_wheel_leaves_the_c_sources_out_and_the_sdist_the_tests():
    cfg = _setup_cfg()
    assert cfg["options.exclude_package_data"]["gpuwatch.regions"].replace(",", " ").split() \
        == ["*.c", "*.h"]
    assert cfg["options.exclude_package_data"]["gpuwatch.analysis"].split() == ["*.c"]
    manifest = (ROOT / "MANIFEST.in").read_text().splitlines()
    assert "prune tests" in manifest and "include gpuwatch/regions/_native.h" in manifest


# ----- the real build: the sdist from a copy of the tree, then the wheel from the unpacked sdist
# (as `python -m build` does), with the installed setuptools as the backend.

def _tree_files() -> list[str]:
    """The files a clone would have: git's tracked and untracked-not-ignored files."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of the tree's files")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def _backend(cwd: Path, hook: str, out: Path) -> Path:
    code = f"import setuptools.build_meta as b; print(b.{hook}({str(out)!r}))"
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return out / r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    try:
        import setuptools
    except ImportError:
        pytest.skip("setuptools is not installed (the test extra has it)")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (the test extra has a newer one)")
    tmp = tmp_path_factory.mktemp("build")
    tree = tmp / "tree"
    for rel in _tree_files():
        if rel.startswith(("tests/", "benchmarks/")):
            continue  # (not packaged: MANIFEST.in prunes tests; a smaller copy)
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tree / rel)
    (tree / "tests").mkdir()
    (tree / "tests" / "test_x.py").write_text("")  # (what setuptools would take by default)
    dist = tmp / "dist"
    dist.mkdir()
    sdist = _backend(tree, "build_sdist", dist)
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter")
                                            else {}))
        sdist_files = [m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()]
    (src,) = (tmp / "unpacked").iterdir()
    wheel = _backend(src, "build_wheel", dist)
    with zipfile.ZipFile(wheel) as z:
        wheel_files = z.namelist()
        (meta,) = [n for n in wheel_files if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(z.read(meta).decode())
    return sdist, sdist_files, wheel, wheel_files, metadata


def test_the_built_metadata_names_the_distribution_and_the_licence(built):
    sdist, _, wheel, wheel_files, meta = built
    assert sdist.name == f"gpuwatch_latency-{gpuwatch.__version__}.tar.gz"
    assert wheel.name.startswith(f"gpuwatch_latency-{gpuwatch.__version__}-")
    assert meta["Name"] == DISTRIBUTION and meta["Version"] == gpuwatch.__version__
    assert meta["License-Expression"] == LICENSE
    assert meta["License"] is None  # not the whole licence text
    assert meta.get_all("License-File") == LICENSE_FILES
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]
    assert {f"gpuwatch_latency-{gpuwatch.__version__}.dist-info/licenses/{f}"
            for f in LICENSE_FILES} <= set(wheel_files)


def test_the_wheel_has_the_package_and_its_data_but_no_c_sources(built):
    _, _, _, wheel_files, _ = built
    assert not [n for n in wheel_files if n.endswith((".c", ".h"))]
    assert not [n for n in wheel_files if not n.startswith(("gpuwatch/", "gpuwatch_latency-"))]
    # every file of the packages but the C sources (and what is built or cached) is in the wheel
    want = set()
    for rel in _tree_files():
        top, _, rest = rel.partition("/")
        if top in ("gpuwatch", "bindings") and not rel.endswith((".c", ".h", ".so", ".pyc")):
            want.add(rel if top == "gpuwatch" else f"gpuwatch/bindings/{rest}")
    assert sorted(want - set(wheel_files)) == []
    assert "gpuwatch/py.typed" in wheel_files


def test_the_sdist_builds_the_extension_but_carries_no_tests(built):
    _, sdist_files, _, _, _ = built
    assert {"gpuwatch/regions/_native.c", "gpuwatch/regions/_autoregions.c",
            "gpuwatch/regions/_native.h", "gpuwatch/analysis/_segment.c", "setup.py",
            "setup.cfg", "pyproject.toml", "LICENSE", "README.md", "MANIFEST.in"} \
        <= set(sdist_files)
    assert not [n for n in sdist_files if n.startswith("tests/")]
