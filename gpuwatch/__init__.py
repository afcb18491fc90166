"""gpuwatch: explain why GPU inference latency changes when there are idle gaps between inferences.

Times every inference with GPU events while a background sampler logs clocks, P-state, power,
utilisation, temperature and clock-event reasons; writes both timelines to one Parquet trace.
Importing gpuwatch loads no GPU library: offline analysis works anywhere.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import GpuwatchError, SessionError, TraceFormatError, UsageError

# Everything else is imported on first use (PEP 562): `import gpuwatch` stays cheap (no pandas,
# no pyarrow until a trace is touched), so a CLI started and stopped at once, or a program that
# only imports gpuwatch, pays nothing. Names resolve to the same objects as before.
_LAZY = {
    "Analysis": "analysis", "analyze": "analysis",
    "FIELDS": "fields", "ClockEventReason": "fields",
    "TensorRTEngine": "engines", "engine": "engines", "timed": "engines",
    "Session": "recorder", "session": "recorder",
    "condition_summary": "summary",
    "SCHEMA_VERSION": "trace", "DamagedTraceWarning": "trace", "RecoveredTraceWarning": "trace",
    "Trace": "trace", "load": "trace",
}
_SUBMODULES = frozenset({"analysis", "backends", "bindings", "cli", "clock", "device", "engines",
                         "fields", "hostevents", "hoststat", "kernelregions", "log",
                         "notebook", "recorder", "region", "renderers", "sampler",
                         "sampler_process", "streams", "summary", "timebase", "trace",
                         "autoregions", "active", "labels", "helper_process"})

if TYPE_CHECKING:
    from .analysis import Analysis, analyze
    from .engines import TensorRTEngine, engine, timed
    from .fields import FIELDS, ClockEventReason
    from .recorder import Session, session
    from .summary import condition_summary
    from .trace import (SCHEMA_VERSION, DamagedTraceWarning, RecoveredTraceWarning, Trace,
                        load)


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # (once: later lookups are plain attribute reads)
        return value
    if name in _SUBMODULES:  # (gpuwatch.recorder.active() and the like, without an import)
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'gpuwatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "session",
    "Session",
    "engine",
    "timed",
    "TensorRTEngine",
    "load",
    "Trace",
    "analyze",
    "Analysis",
    "condition_summary",
    "ClockEventReason",
    "FIELDS",
    "SCHEMA_VERSION",
    "GpuwatchError",
    "UsageError",
    "SessionError",
    "TraceFormatError",
    "RecoveredTraceWarning",
    "DamagedTraceWarning",
]


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext gpuwatch` in IPython or Jupyter: the `%%gpuwatch` cell magic, which records a
    cell and shows its analysis (docs/notebooks.md). IPython is imported here, not before."""
    from .notebook import load_ipython_extension as load

    load(ipython)
