"""Columns as numpy arrays for the arithmetic: one place that knows pandas' dtypes."""

from __future__ import annotations

from typing import Any

import numpy as np


def floats(col: Any) -> np.ndarray:
    """A pandas Series (or array) as float64, NaN where missing. A plain numpy column converts
    directly (NaN already means missing); pandas' nullable columns map NA to NaN (pandas < 2.2
    raises on to_numpy(float) with NA)."""
    dtype = getattr(col, "dtype", None)
    if isinstance(dtype, np.dtype) or dtype is None:
        return np.asarray(col, dtype=np.float64)
    out: np.ndarray = col.to_numpy(dtype="float64", na_value=np.nan)
    return out
