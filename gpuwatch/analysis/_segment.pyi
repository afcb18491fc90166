"""gpuwatch.analysis._segment: the change-point search of layers.change_points in C
(_segment.c). Its reference is ruptures' own compiled search, which layers.py loads where this
module is not built; tests/test_analysis_layers.py checks both give the same path."""

from typing_extensions import Buffer

def pelt_l2(signal: Buffer, pen: float, min_size: int, /) -> list[int]: ...
