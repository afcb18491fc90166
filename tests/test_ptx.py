"""bindings/ptx.py: gpuwatch's kernels ship as PTX made from their current source, so no
run-time compiler is needed (issue 29); where NVRTC 12.0 is installed, the committed PTX is
what it makes of the source."""

import ctypes
import ctypes.util
import os

import pytest

from gpuwatch.bindings import builtin, probe, ptx


@pytest.mark.parametrize("name, source", [("probe", probe.SOURCE), ("builtin", builtin.SOURCE)])
def test_the_shipped_ptx_was_made_from_the_current_source(name, source):
    image = ptx.load(name, source)
    assert image.endswith(b"\0") and b".version 8.0" in image and b".target sm_70" in image
    for kernel in {"probe": ["gpuwatch_clock_probe"],
                   "builtin": ["layer", "normalise", "reduce_rows"]}[name]:
        assert f".entry {kernel}(".encode() in image
    with pytest.raises(ptx.PtxError, match="was not generated from the current"):
        ptx.load(name, source + "\n// changed")


def test_a_missing_ptx_file_says_reinstall(monkeypatch, tmp_path):
    monkeypatch.setattr(ptx, "HERE", tmp_path)
    with pytest.raises(ptx.PtxError, match="missing their PTX.*reinstall"):
        ptx.load("probe", probe.SOURCE)


def _nvrtc():
    path = os.environ.get("GPUWATCH_NVRTC") or ctypes.util.find_library("nvrtc")
    if not path:
        pytest.skip("NVRTC is not installed (set GPUWATCH_NVRTC to libnvrtc.so.12)")
    lib = ctypes.CDLL(path)
    if ptx.nvrtc_version(lib) != ptx.NVRTC_VERSION:
        pytest.skip(f"NVRTC {ptx.nvrtc_version(lib)} is not the generating 12.0")
    return lib


def test_the_committed_ptx_is_what_nvrtc_makes_of_the_source():
    lib = _nvrtc()
    for name, text in ptx.generate(lib).items():
        assert (ptx.HERE / f"{name}.ptx").read_text() == text, name
