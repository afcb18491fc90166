"""Which CUDA stream a timed region's events go on: the stream contract.

Events only time what is ordered with them. So with no stream given, a region's events go on
the stream the user's work goes on: PyTorch's current stream when PyTorch has started CUDA,
else CuPy's current stream when CuPy is in use, else the legacy default stream (handle 0),
which waits for, and is waited on by, every blocking stream of the context. Never a private
stream the user's work is not ordered with.

A stream may be given as anything a user has: a raw handle (int), a cuda-python `CUstream` or
`cudaStream_t`, a pycuda `Stream`, a torch `Stream`/`ExternalStream`, a CuPy `Stream`, or
gpuwatch's own stream objects; or the string "device", which brackets the whole device instead
(see `regions/timer.py`). Nothing here imports a vendor library: frameworks are looked up in
`sys.modules`, so a program that never imported PyTorch never pays for it.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

from .errors import UsageError

DEVICE = "device"  # bracket the whole device: synchronise it before and after the region
LEGACY_DEFAULT = 0  # CUstream 0: the legacy default ("NULL") stream


class StreamRef(NamedTuple):
    """A stream as the timed region uses it: the raw CUstream handle, and where it came from
    ("argument", "session", "engine", "torch", "cupy", "default" or "device")."""

    handle: int
    source: str


def stream_handle(obj: Any) -> int:
    """The raw CUstream handle of `obj` (see module docstring for what is accepted)."""
    if isinstance(obj, bool):
        raise UsageError(f"{obj!r} is not a CUDA stream")
    if isinstance(obj, int):
        if obj < 0:
            raise UsageError(f"a CUDA stream handle cannot be negative, got {obj}")
        return obj
    for attr in ("cuda_stream",  # torch.cuda.Stream / ExternalStream
                 "ptr"):  # cupy.cuda.Stream, gpuwatch's Stream
        v = getattr(obj, attr, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    h = getattr(obj, "handle", None)  # pycuda.driver.Stream (int), or gpuwatch's Stream
    if isinstance(h, int) and not isinstance(h, bool):
        return h
    if h is not None and h is not obj:
        try:
            return stream_handle(h)
        except UsageError:
            pass
    if callable(getattr(obj, "getPtr", None)):  # cuda-python CUstream / cudaStream_t: int() is
        return int(obj)  # the handle (getPtr() is the address of the Python object's copy)
    raise UsageError(
        f"cannot time on {type(obj).__module__}.{type(obj).__qualname__}: give a CUDA stream as "
        "an int handle, a torch/cupy/pycuda stream, a cuda-python CUstream, or 'device'")


def resolve(stream: Any, source: str = "argument") -> StreamRef | None:
    """A user's `stream=` argument as a StreamRef; None means "not given" (use the default)."""
    if stream is None:
        return None
    if isinstance(stream, str):
        if stream == DEVICE:
            return StreamRef(LEGACY_DEFAULT, DEVICE)
        raise UsageError(f"unknown stream {stream!r}: give a stream object, a handle, or 'device'")
    return StreamRef(stream_handle(stream), source)


_torch_stream: Any = None  # torch's current-stream getter, once torch has started CUDA
_torch_refs: dict[int, StreamRef] = {}  # handle -> its StreamRef (torch's streams are few)
_DEFAULT_REF = StreamRef(LEGACY_DEFAULT, "default")


def torch_getter() -> Any:
    """torch's current-stream getter (device -> raw handle), once current() has seen torch
    start CUDA; else None."""
    return _torch_stream


def current(ordinal: int) -> StreamRef:
    """Where the user's work goes now on CUDA device `ordinal`, with no stream given. (The
    Python path's answer; the C timed path (regions/timer.py) follows the same rules by itself.)"""
    global _torch_stream
    if _torch_stream is not None:
        h = _torch_stream(ordinal)
        ref = _torch_refs.get(h)
        if ref is None:
            if len(_torch_refs) > 4096:  # a program making streams without end
                _torch_refs.clear()
            ref = _torch_refs[h] = StreamRef(int(h), "torch")
        return ref
    torch = sys.modules.get("torch")
    if torch is not None:
        cuda = getattr(torch, "cuda", None)
        if cuda is not None and cuda.is_initialized():
            raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # ~0.3 us, no object
            if raw is None:  # another torch: the public way
                def raw(dev: int) -> int:
                    return cuda.current_stream(dev).cuda_stream
            _torch_stream = raw  # CUDA, once started, stays started in this process
            return current(ordinal)
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            return StreamRef(int(cupy.cuda.get_current_stream().ptr), "cupy")
        except Exception:  # CuPy imported but unusable here: it cannot be running work either
            pass
    return _DEFAULT_REF
