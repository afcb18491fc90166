"""Only the optional C extension lives here; everything else is in setup.cfg.

gpuwatch.regions._native makes the timed path's CUDA calls directly (see regions/_native.c),
and gpuwatch run's hooks (gpuwatch/regions/_autoregions.c).
It is optional: where it cannot be compiled, the same calls go through ctypes.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gpuwatch.regions._native",
                             ["gpuwatch/regions/_native.c", "gpuwatch/regions/_autoregions.c"],
                             depends=["gpuwatch/regions/_native.h"], optional=True)])
