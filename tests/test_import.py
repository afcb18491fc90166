"""The core must import, and analyse, on a machine with no GPU library loaded."""

import subprocess
import sys


def test_import_loads_no_vendor_gpu_library():
    code = (
        "import sys, gpuwatch\n"
        "bad = [m for m in ('pynvml', 'cuda', 'tensorrt', 'pycuda', 'torch', 'cupti') "
        "if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""


def test_public_surface_is_explicit():
    import gpuwatch

    assert "session" in gpuwatch.__all__ and "load" in gpuwatch.__all__
    for name in gpuwatch.__all__:
        assert hasattr(gpuwatch, name)


def test_importing_the_analyze_command_keeps_gpuwatch_analyze_callable(t4_sweep):
    """`import gpuwatch.analyze` (the `python -m gpuwatch.analyze` module) replaces the package
    attribute with the module: the module is callable, so the API keeps working either way."""
    code = ("import gpuwatch.analyze, gpuwatch, sys\n"
            "from gpuwatch import analyze\n"
            "a = gpuwatch.analyze(sys.argv[1]); b = analyze(sys.argv[1])\n"
            "print(type(a).__name__, a.verdict == b.verdict)")
    r = subprocess.run([sys.executable, "-c", code, str(t4_sweep.path)], capture_output=True,
                       text=True, check=True)
    assert r.stdout.split() == ["Analysis", "True"]
