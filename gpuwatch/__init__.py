"""gpuwatch: explain why GPU inference latency changes when there are idle gaps between inferences.

Times every inference with GPU events while a background sampler logs clocks, P-state, power,
utilisation, temperature and clock-event reasons; writes both timelines to one Parquet trace.
Importing gpuwatch loads no GPU library: offline analysis works anywhere.
"""

from ._version import __version__
from .analysis import Analysis, analyze
from .errors import GpuwatchError, SessionError, TraceFormatError, UsageError
from .fields import FIELDS, ClockEventReason
from .engines import TensorRTEngine, engine, timed
from .recorder import Session, session
from .summary import condition_summary
from .trace import SCHEMA_VERSION, RecoveredTraceWarning, Trace, load

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
]


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext gpuwatch` in IPython or Jupyter: the `%%gpuwatch` cell magic, which records a
    cell and shows its analysis (docs/notebooks.md). IPython is imported here, not before."""
    from .notebook import load_ipython_extension as load

    load(ipython)
