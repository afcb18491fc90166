"""Offline analysis of gpuwatch traces: `gpuwatch.analyze(trace_or_path, ...)`.

This module is the package's face: its names (Analysis, analyze, ...) are analysis.pipeline's,
imported when first used, so that a module of the package that needs none of the pipeline
(fleet, columns, causes) imports neither it nor pandas: `gpuwatch analyze DIR` on a fleet
starts ~0.4 s sooner. A test that replaces one of the pipeline's functions patches
gpuwatch.analysis.pipeline, where the pipeline looks it up.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (for type checkers: what the face gives, as the pipeline defines it)
    from . import status, wall
    from .pipeline import (FACTOR_TEXT, NO_CONDITION, SAMPLE_COLUMNS, Analysis, _usable,
                           analyze, share_text)

__all__ = ["Analysis", "analyze"]


_SUBMODULES = frozenset(m.name for m in pkgutil.iter_modules(__path__))


def __getattr__(name: str) -> Any:
    if name.startswith("__") or name in _SUBMODULES:  # (dunder probes: inspect, pickle,
        # pytest; and `from . import merge`, which looks for the attribute before it imports
        # the submodule: not a reason to load the pipeline)
        raise AttributeError(name)
    pipeline = importlib.import_module(f"{__name__}.pipeline")
    try:
        return getattr(pipeline, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
