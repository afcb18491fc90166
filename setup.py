"""Only the optional C extension lives here; everything else is in setup.cfg.

gpuwatch.bindings._native makes the timed path's CUDA calls directly (see bindings/_native.c),
and gpuwatch run's hooks (bindings/_autoregions.c).
It is optional: where it cannot be compiled, the same calls go through ctypes.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gpuwatch.bindings._native",
                             ["bindings/_native.c", "bindings/_autoregions.c"],
                             depends=["bindings/_native.h"], optional=True)])
