"""Turns a device spec ("auto", "cuda:0", "sim:t4") into a Backend, importing bindings lazily."""

from __future__ import annotations

from typing import Sequence

from .device import Backend
from .errors import DeviceUnavailable, UsageError

DEVICE_HELP_ENGINES = ("auto (first NVIDIA GPU), cuda:N, N, or sim:PROFILE[,gpus=N,index=I,"
                       "fault=...] (e.g. sim:t4, sim:flat, sim:t4,gpus=8,index=3)")
# (where the program's own code runs, the stand-in device too; it runs no engines: not record)
DEVICE_HELP = (DEVICE_HELP_ENGINES[:-1].replace(", or sim:", ", sim:") + "), or standin (no "
               "GPU: the real code path with a stand-in telemetry source, for tests)")


BINDINGS = ("cuda", "pycuda")


def open_backend(spec: str, seed: int = 0, sample_gpus: str | Sequence[int] | None = None,
                 binding: str = "cuda", kernels: bool = False, telemetry: bool = True) -> Backend:
    """`binding` picks the CUDA library on a real GPU: cuda (cuda-python) or pycuda.
    `kernels`: kernel tracing will be asked for (a real GPU then starts CUPTI before CUDA).
    `telemetry=False`: no NVML on a real GPU (an engine made outside a session)."""
    if binding not in BINDINGS:
        raise UsageError(f"unknown binding {binding!r}; use cuda (cuda-python) or pycuda")
    spec = (spec or "auto").strip()
    kind, colon, rest = spec.partition(":")
    if kind == "sim":
        from gpuwatch.bindings import sim

        if colon and not rest.strip():  # "sim:" is a spec cut short; plain "sim" means sim:t4
            raise UsageError("sim: names no profile; use sim:PROFILE (e.g. sim:t4), or sim")
        return sim.open_backend(rest or "t4", seed=seed, sample_gpus=sample_gpus)
    if kind == "standin":
        from gpuwatch.bindings.standin import StandInBackend

        return StandInBackend(rest)
    if spec == "auto" or kind == "cuda" or spec.isdigit():
        index = 0 if spec == "auto" else _index(rest if kind == "cuda" else spec, spec)
        return _open_real(index, sample_gpus, binding, kernels, telemetry)
    raise UsageError(f"unknown device {spec!r}; use {DEVICE_HELP}")


def _index(text: str, spec: str) -> int:
    if not text.isdigit():
        raise UsageError(f"bad device {spec!r}: the GPU index must be a number, e.g. cuda:0")
    return int(text)


def _open_real(index: int, sample_gpus: str | Sequence[int] | None, binding: str,
               kernels: bool, telemetry: bool = True) -> Backend:
    reason = _nvml_probe()
    if reason is not None:
        raise DeviceUnavailable(
            f"no NVIDIA GPU is usable here ({reason}); record gpuwatch's engines on a simulated "
            "GPU with --device sim:t4 (session(device='sim:t4'), or GPUWATCH_DEVICE=sim:t4), or "
            "try your own program's code path on the stand-in, --device standin (a simulated GPU "
            "cannot see your program's own GPU work)"
        )
    from gpuwatch.bindings.real import RealBackend

    return RealBackend(index, sample_gpus, binding=binding, kernels=kernels, telemetry=telemetry)


def _nvml_probe() -> str | None:
    """None if NVML initialises and sees a GPU, else why not (one short phrase)."""
    from gpuwatch.bindings.nvml import probe  # (pynvml only inside bindings, when asked)

    return probe()
