"""Only the optional C extension lives here; everything else is in setup.cfg.

gpuwatch.regions._native makes the timed path's CUDA calls directly (see regions/_native.c),
and gpuwatch run's hooks (gpuwatch/regions/_autoregions.c).
It is optional: where it cannot be compiled, the same calls go through ctypes.

gpuwatch.analysis._segment is the change-point search of analysis/layers.py (ruptures' PELT for
the linear kernel, without its per-product kernel lookup). Optional too: where it cannot be
compiled, layers.py loads ruptures' own. -ffp-contract=off keeps its sums rounded as ruptures'
are (no fused multiply-add), so both give the same path to the bit.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gpuwatch.regions._native",
                             ["gpuwatch/regions/_native.c", "gpuwatch/regions/_autoregions.c"],
                             depends=["gpuwatch/regions/_native.h"], optional=True),
                   Extension("gpuwatch.analysis._segment", ["gpuwatch/analysis/_segment.c"],
                             extra_compile_args=["-ffp-contract=off"], optional=True)])
