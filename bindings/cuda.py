"""CUDA through cuda-python's driver API (`cuda.bindings.driver`, `cuda.bindings.nvrtc`).

The runtime uses the device's primary context, the one the CUDA runtime (and so PyTorch) uses,
so streams and memory are shared with frameworks in the same process. Every call's status is
checked; a failure raises CudaError naming the call.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from gpuwatch.errors import DeviceUnavailable, GpuwatchError, UsageError

from .ptx import MIN_DRIVER_VERSION


class CudaError(GpuwatchError):
    """A CUDA driver or NVRTC call failed."""


def _modules() -> tuple[Any, Any]:
    try:
        from cuda.bindings import driver, nvrtc
    except ImportError as e:
        raise DeviceUnavailable("cuda-python is not installed: pip install cuda-python") from e
    return driver, nvrtc


def native_module() -> Any:
    """gpuwatch.regions._native (gpuwatch/regions/_native.c), or None where it was not built or
    GPUWATCH_NATIVE=0 turns it off: then every region, hook and event call takes its Python
    implementation (the reference the C code follows; a way round a fault in the C path).
    Read when a session opens its device, not at import."""
    raw = os.environ.get("GPUWATCH_NATIVE", "")
    value = raw.strip().lower()
    if value in ("0", "false", "off", "no"):
        return None
    if value not in ("", "1", "true", "on", "yes"):  # (a typo must not pass for "on")
        raise UsageError(f"GPUWATCH_NATIVE takes 0 (or false, off, no) to leave the C path "
                         f"unused, or 1 (true, on, yes), got {raw!r}")
    try:
        return importlib.import_module("gpuwatch.regions._native")
    except ImportError:
        return None


class _EventCalls:
    """cuEventRecord, cuEventQuery and cuEventElapsedTime on raw handles (ints), returning the
    CUresult (elapsed: the float on success): the timed path's calls. Through the C extension
    (regions/_native.c: a direct call, ~0.1 us of overhead) where it was built, else libcuda by
    ctypes (~1-2 us); both hold the GIL: the calls return in about a microsecond, and releasing
    the GIL around them (as cuda-python's wrappers and ctypes.CDLL do) lets any other Python
    thread (the trace writer) take it for up to a switch interval (5 ms) in the middle of the
    user's launches."""

    def __init__(self, lib: Any, use_native: bool = True):
        addr = {n: ctypes.cast(getattr(lib, n), ctypes.c_void_p).value
                for n in ("cuEventRecord", "cuEventQuery", "cuEventElapsedTime")}
        _native = native_module() if use_native else None
        self.native = _native is not None
        self.record_addr: int | None = None
        self.record: Callable[..., Any]
        self.query: Callable[..., Any]
        self.elapsed: Callable[..., Any]
        if _native is not None:
            self.record_addr = addr["cuEventRecord"]
            self.record = functools.partial(_native.status2, addr["cuEventRecord"])
            self.query = functools.partial(_native.status, addr["cuEventQuery"])
            self.elapsed = functools.partial(_native.elapsed, addr["cuEventElapsedTime"])
            return
        rec, query, el = lib.cuEventRecord, lib.cuEventQuery, lib.cuEventElapsedTime
        rec.argtypes, rec.restype = (ctypes.c_void_p, ctypes.c_void_p), ctypes.c_int
        query.argtypes, query.restype = (ctypes.c_void_p,), ctypes.c_int
        el.argtypes = (ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_void_p)
        el.restype = ctypes.c_int
        ms = ctypes.c_float()
        ref = ctypes.byref(ms)

        def elapsed(a: int, b: int) -> float | int:
            rc = el(ref, a, b)
            return ms.value if rc == 0 else rc

        self.record, self.query, self.elapsed = rec, query, elapsed


def libcuda() -> Any:
    """The driver library by ctypes (PyDLL: calls hold the GIL), or None where it cannot be
    loaded this way."""
    try:
        return ctypes.PyDLL("libcuda.so.1")
    except OSError:
        return None


def _event_calls(lib: Any) -> _EventCalls | None:
    """None without libcuda by ctypes (cuda-python's wrappers are used then)."""
    try:
        return None if lib is None else _EventCalls(lib)
    except AttributeError:
        return None


_NOT_READY = 600  # CUDA_ERROR_NOT_READY


def check(result: Any, what: str = "CUDA call") -> Any:
    """Unwrap cuda-python's (status, *values) tuples; raise CudaError on failure."""
    driver, nvrtc = _modules()
    status, *values = result if isinstance(result, tuple) else (result,)
    if isinstance(status, driver.CUresult):
        if status != driver.CUresult.CUDA_SUCCESS:
            _, name = driver.cuGetErrorName(status)
            _, text = driver.cuGetErrorString(status)
            raise CudaError(f"{what} failed: {name.decode() if name else status} "
                            f"({text.decode() if text else ''})")
    elif isinstance(status, nvrtc.nvrtcResult):
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise CudaError(f"{what} failed: {status}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@dataclass
class Stream:
    """A binding's stream object and its raw CUstream handle (for TensorRT, PyTorch)."""

    handle: Any
    ptr: int


class CudaRuntime:
    """Streams, events, memory and kernels on one GPU (CUDA ordinal `ordinal`).

    The GPU-runtime protocol that the built-in engine and the TensorRT runner use; PycudaRuntime
    (bindings.pycuda) implements the same methods over pycuda.
    """

    name = "cuda-python"

    def __init__(self, ordinal: int = 0, blocking_sync: bool = False):
        self.driver, self.nvrtc = d, _ = _modules()
        try:
            check(d.cuInit(0), "cuInit")
        except Exception as e:
            raise DeviceUnavailable(f"CUDA could not start ({e}); is the NVIDIA driver loaded?") from e
        driver = check(d.cuDriverGetVersion(), "cuDriverGetVersion")
        if driver < MIN_DRIVER_VERSION:  # (gpuwatch's kernels ship as PTX ISA 8.0)
            raise DeviceUnavailable(
                f"the NVIDIA driver supports CUDA {driver // 1000}.{driver % 1000 // 10}; "
                f"gpuwatch needs CUDA 12.0 or newer (driver R525+): update the driver")
        count = check(d.cuDeviceGetCount(), "cuDeviceGetCount")
        if not 0 <= ordinal < count:
            raise DeviceUnavailable(f"there is no CUDA device {ordinal}: CUDA sees {count}")
        self.ordinal = ordinal
        self.device = check(d.cuDeviceGet(ordinal), "cuDeviceGet")
        self.context = check(d.cuDevicePrimaryCtxRetain(self.device), "cuDevicePrimaryCtxRetain")
        check(d.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
        A = d.CUdevice_attribute
        self.cc = (check(d.cuDeviceGetAttribute(A.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                                self.device)),
                   check(d.cuDeviceGetAttribute(A.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                                self.device)))
        self.sm_count = check(d.cuDeviceGetAttribute(
            A.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, self.device))
        self.uuid = "GPU-" + _uuid_text(check(d.cuDeviceGetUuid(self.device), "cuDeviceGetUuid"))
        # Blocking sync makes cuEventSynchronize sleep instead of spinning (less CPU, more
        # wake-up latency); default off, as the CUDA runtime's default schedule spins.
        F = d.CUevent_flags
        self._event_flags = F.CU_EVENT_BLOCKING_SYNC if blocking_sync else F.CU_EVENT_DEFAULT
        self._owned: list[tuple[str, Any]] = []
        # Events are raw handles (ints) to the timed path; the CUevent objects stay here
        # (released one by one).
        self._events: dict[int, Any] = {}
        self._touch_buf: int | None = None  # for touch() (keep-alives)
        self._success = d.CUresult.CUDA_SUCCESS
        self._lib = libcuda()
        self._calls = _event_calls(self._lib)
        self._clock_probe: Any = None  # bindings.probe.ClockProbe, once start_probe() ran
        self.native_calls = self._calls is not None and self._calls.native
        # cuEventRecord for the C timed path (regions/timer.py: a whole region in one C call), where
        # the extension is built; this runtime's streams are their raw handles, as it needs
        self.record_addr = None if self._calls is None else self._calls.record_addr

    def versions(self) -> dict[str, str]:
        d = self.driver
        v = check(d.cuDriverGetVersion())
        out = {"cuda_driver_api": f"{v // 1000}.{v % 1000 // 10}"}
        try:
            import cuda.bindings

            out["cuda-bindings"] = cuda.bindings.__version__
        except Exception:
            pass
        return out

    # -- the Runtime protocol ----------------------------------------------------------------
    def stream(self) -> Stream:
        d = self.driver
        s = check(d.cuStreamCreate(d.CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate")
        self._owned.append(("stream", s))
        return Stream(s, int(s))

    def keep_stream(self, stream: Stream) -> None:
        """Never destroy `stream`: another library (PyTorch) has wrapped it and may still use
        it after this runtime closes. Seen on the H100: PyTorch's pinned-memory allocator
        records an event on every stream that used a buffer when the buffer is freed, and a
        destroyed stream there aborts the process. One stream per session is the cost."""
        self._owned = [(k, h) for k, h in self._owned if not (k == "stream" and h is stream.handle)]

    def native_stream(self, handle: int) -> Any:
        """What record() takes for a raw handle (0: the legacy default stream), e.g. torch's:
        the handle itself."""
        return handle

    def event(self) -> int:
        """A new event, as its raw handle."""
        e = check(self.driver.cuEventCreate(self._event_flags), "cuEventCreate")
        h = int(e)
        self._events[h] = e
        return h

    def release_event(self, event: int) -> None:
        e = self._events.pop(event, None)
        if e is not None:
            self.driver.cuEventDestroy(e)

    def record(self, event: int, stream: Any) -> None:
        """Record `event` on `stream` (a raw handle, a CUstream, or Stream.handle)."""
        calls = self._calls
        if calls is not None:
            rc = calls.record(event, int(stream))
            if rc:
                self.fail(rc, "cuEventRecord")
            return
        res = self.driver.cuEventRecord(self._events[event], stream)
        if res[0] != self._success:
            check(res, "cuEventRecord")

    def query(self, event: int) -> bool:
        """Has `event` completed? (never waits; a sticky error raises)"""
        calls = self._calls
        if calls is not None:
            rc = calls.query(event)
        else:
            rc = int(self.driver.cuEventQuery(self._events[event])[0])
        if rc == 0:
            return True
        if rc == _NOT_READY:
            return False
        self.fail(rc, "cuEventQuery")
        return False

    # -- the in-band clock probe (bindings/probe.py; regions/timer.py calls these) -----------------
    def start_probe(self) -> None:
        """Set up the clock probe in this runtime's context; raises ProbeError if it cannot."""
        if self._clock_probe is None:
            from .probe import ClockProbe, ProbeError

            if self._lib is None:
                raise ProbeError("libcuda.so.1 cannot be loaded by ctypes")
            check(self.driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
            self._clock_probe = ClockProbe(self._lib, self.cc, self.sm_count)

    def probe(self, stream: Any) -> int:
        """Enqueue a clock stamp on `stream` (a raw handle or CUstream); its slot."""
        return self._clock_probe.probe(int(stream or 0))

    def read_probe(self, slot: int, wait: bool = False) -> tuple[int, float] | None:
        return self._clock_probe.read(slot, wait)

    def fail(self, status: int, what: str) -> None:
        """Raise CudaError for CUresult `status` of call `what`."""
        check((self.driver.CUresult(status),), what)
        raise CudaError(f"{what} failed: CUresult {status}")  # (check raises for any failure)

    def synchronize(self, event: int) -> None:
        check(self.driver.cuEventSynchronize(self._events[event]), "cuEventSynchronize")

    def bind_thread(self) -> None:
        """Make this runtime's context current in the calling thread (a helper thread that
        queries events)."""
        check(self.driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def synchronize_device(self) -> None:
        """Wait for all work in this context, on every stream (the stream checks)."""
        check(self.driver.cuCtxSynchronize(), "cuCtxSynchronize")

    def elapsed_ms(self, start: int, end: int) -> float:
        calls = self._calls
        if calls is not None:
            ms = calls.elapsed(start, end)
            if ms.__class__ is float:
                return float(ms)
            self.fail(int(ms), "cuEventElapsedTime")
        ev = self._events
        status, ms = self.driver.cuEventElapsedTime(ev[start], ev[end])
        if status != self._success:
            check((status, ms), "cuEventElapsedTime")
        return float(ms)

    # -- memory and kernels, for the built-in engine -------------------------------------------
    def alloc(self, nbytes: int) -> int:
        p = check(self.driver.cuMemAlloc(nbytes), "cuMemAlloc")
        self._owned.append(("mem", p))
        return int(p)

    def alloc_host(self, nbytes: int) -> np.ndarray:
        """Pinned host memory as a uint8 array (pinned, so async copies really are async)."""
        p = check(self.driver.cuMemHostAlloc(nbytes, 0), "cuMemHostAlloc")
        self._owned.append(("host", p))
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(int(p)))

    def copy_htod(self, dst: int, src: np.ndarray, stream: Stream) -> None:
        check(self.driver.cuMemcpyHtoDAsync(dst, src.ctypes.data, src.nbytes, stream.handle),
              "cuMemcpyHtoDAsync")

    def copy_dtoh(self, dst: np.ndarray, src: int, stream: Stream) -> None:
        check(self.driver.cuMemcpyDtoHAsync(dst.ctypes.data, src, dst.nbytes, stream.handle),
              "cuMemcpyDtoHAsync")

    def stream_synchronize(self, stream: Stream) -> None:
        check(self.driver.cuStreamSynchronize(stream.handle), "cuStreamSynchronize")

    def touch(self, stream: Stream) -> None:
        """Enqueue a trivial piece of GPU work (a 4-byte memset): a keep-alive."""
        if self._touch_buf is None:
            self._touch_buf = self.alloc(4)
        check(self.driver.cuMemsetD8Async(self._touch_buf, 0, 4, stream.handle),
              "cuMemsetD8Async")

    def load_ptx(self, image: bytes, kernels: list[str]) -> dict[str, Any]:
        """Load PTX (NUL-terminated; the driver JIT-compiles it for this GPU: bindings/ptx.py);
        returns {kernel name: CUfunction}."""
        d = self.driver
        module = check(d.cuModuleLoadData(image), "cuModuleLoadData (gpuwatch's PTX)")
        self._owned.append(("module", module))
        return {k: check(d.cuModuleGetFunction(module, k.encode()), f"cuModuleGetFunction({k})")
                for k in kernels}

    def compile(self, source: str, name: str, kernels: list[str]) -> dict[str, Any]:
        """NVRTC-compile `source` to a cubin for this GPU; returns {kernel name: CUfunction}.
        (gpuwatch's own kernels ship as PTX instead: load_ptx; this needs NVRTC.)"""
        nv, d = self.nvrtc, self.driver
        prog = check(nv.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []),
                     "nvrtcCreateProgram")
        arch = f"--gpu-architecture=sm_{self.cc[0]}{self.cc[1]}".encode()
        status = nv.nvrtcCompileProgram(prog, 1, [arch])  # NVRTC optimises by default
        if status[0] != nv.nvrtcResult.NVRTC_SUCCESS:
            size = check(nv.nvrtcGetProgramLogSize(prog))
            log = b" " * size
            check(nv.nvrtcGetProgramLog(prog, log))
            text = log.decode(errors='replace').rstrip(' \x00\n')
            raise CudaError(f"NVRTC could not compile {name}: {text}")
        size = check(nv.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = b" " * size
        check(nv.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        module = check(d.cuModuleLoadData(cubin), "cuModuleLoadData")
        self._owned.append(("module", module))
        return {k: check(d.cuModuleGetFunction(module, k.encode()), f"cuModuleGetFunction({k})")
                for k in kernels}

    def prepare(self, fn: Any, *args: tuple[Any, Any]) -> tuple[Any, "KernelArgs"]:
        """A kernel with its arguments bound, as (numpy scalar type, value) pairs."""
        return fn, KernelArgs(*args)

    def launch(self, prepared: tuple[Any, "KernelArgs"], grid: int, block: int,
               stream: Stream) -> None:
        fn, args = prepared
        check(self.driver.cuLaunchKernel(fn, grid, 1, 1, block, 1, 1, 0, stream.handle,
                                         args.ptr, 0), "cuLaunchKernel")

    def capture_graph(self, stream: Stream, enqueue: Any) -> Any:
        """Capture what `enqueue()` puts on `stream` into an instantiated CUDA graph."""
        d = self.driver
        check(d.cuStreamBeginCapture(stream.handle,
                                     d.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
              "cuStreamBeginCapture")
        try:
            enqueue()
        finally:
            graph = check(d.cuStreamEndCapture(stream.handle), "cuStreamEndCapture")
        self._owned.append(("graph", graph))
        exec_ = check(d.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
        self._owned.append(("graph_exec", exec_))
        return exec_

    def launch_graph(self, graph_exec: Any, stream: Stream) -> None:
        check(self.driver.cuGraphLaunch(graph_exec, stream.handle), "cuGraphLaunch")

    def close(self) -> None:
        d = self.driver
        if self._clock_probe is not None:
            self._clock_probe.close()
            self._clock_probe = None
        for e in self._events.values():
            try:
                d.cuEventDestroy(e)
            except Exception:
                pass
        self._events.clear()
        for kind, h in reversed(self._owned):
            try:
                {"stream": d.cuStreamDestroy, "mem": d.cuMemFree,
                 "host": d.cuMemFreeHost, "module": d.cuModuleUnload, "graph": d.cuGraphDestroy,
                 "graph_exec": d.cuGraphExecDestroy}[kind](h)
            except Exception:
                pass
        self._owned.clear()
        d.cuDevicePrimaryCtxRelease(self.device)


class KernelArgs:
    """cuLaunchKernel's kernelParams: an array of pointers to each argument's storage.
    Built once per launch configuration, so a launch costs one call."""

    def __init__(self, *values: tuple[Any, Any]):
        # values: (numpy scalar type, value); pointers as np.uint64
        self._store = [np.array([v], dtype=t) for t, v in values]
        self._ptrs = np.array([a.ctypes.data for a in self._store], dtype=np.uint64)

    @property
    def ptr(self) -> int:
        return int(self._ptrs.ctypes.data)


def _uuid_text(uuid: Any) -> str:
    b = bytes(uuid.bytes) if hasattr(uuid, "bytes") else bytes(uuid)
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
