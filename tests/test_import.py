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
