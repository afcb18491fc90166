"""The GPU-runtime protocol over pycuda, for teams whose CUDA code is written with it
(`binding="pycuda"`, `--binding pycuda`). Same methods as bindings.cuda.CudaRuntime.

Kernels are compiled with pycuda's SourceModule (nvcc) instead of NVRTC. pycuda (2026.1) has
no stream-capture API, so CUDA graphs need the cuda-python binding.
"""

from __future__ import annotations

import contextlib

from typing import Any, Callable, Iterator

import numpy as np

from gpuwatch._version import install_hint
from gpuwatch.errors import DeviceUnavailable, UsageError

from .cuda import Stream

_SIG = {np.uint64: "P", np.uint32: "I", np.int32: "i", np.float32: "f", np.int64: "q",
        np.float64: "d"}


def _drv() -> Any:
    try:
        import pycuda.driver as drv
    except ImportError as e:
        raise DeviceUnavailable(
            f"pycuda is not installed: {install_hint('pycuda')}; it builds from source and "
            "needs nvcc. Or use --binding cuda") from e
    return drv


_KEPT: list[Any] = []  # streams another library wrapped: alive until the process ends


class PycudaRuntime:
    name = "pycuda"

    def __init__(self, ordinal: int = 0, blocking_sync: bool = False):
        drv = self.drv = _drv()
        try:
            drv.init()
            count = drv.Device.count()
        except drv.Error as e:
            raise DeviceUnavailable(f"pycuda could not start CUDA ({e})") from e
        if not 0 <= ordinal < count:
            raise DeviceUnavailable(f"there is no CUDA device {ordinal}: pycuda sees {count}")
        self.ordinal = ordinal
        self.device = drv.Device(ordinal)
        # The primary context: the one the CUDA runtime, PyTorch and cuda-python use.
        self.context = self.device.retain_primary_context()
        self.context.push()
        self.cc = self.device.compute_capability()
        self.sm_count = self.device.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)
        self.pci_bus_id = self.device.pci_bus_id()
        self.uuid: str | None = None  # pycuda does not expose it; NVML is matched by PCI bus id
        self._event_flags = drv.event_flags.BLOCKING_SYNC if blocking_sync else 0
        self._keep: list[Any] = []  # allocations live as long as the runtime
        self._touch_buf: int | None = None  # for touch() (keep-alives)
        self._mine: dict[int, Any] = {}  # streams made here, by handle

    def versions(self) -> dict[str, str]:
        import pycuda

        v = self.drv.get_driver_version()
        return {"pycuda": pycuda.VERSION_TEXT, "cuda_driver_api": f"{v // 1000}.{v % 1000 // 10}"}

    # -- the Runtime protocol ------------------------------------------------------------------
    def stream(self) -> Stream:
        s = self.drv.Stream(flags=1)  # CU_STREAM_NON_BLOCKING, as CudaRuntime's streams
        self._keep.append(s)
        self._mine[int(s.handle)] = s
        return Stream(s, int(s.handle))

    def native_stream(self, handle: int) -> Any:
        """pycuda records events only on its own streams, or the legacy default one (0)."""
        if handle == 0:
            return None
        s = self._mine.get(handle)
        if s is None:
            raise UsageError(f"pycuda cannot time work on a stream it did not create "
                             f"(handle {handle:#x}); use binding='cuda' (cuda-python)")
        return s

    def keep_stream(self, stream: Stream) -> None:
        """Never destroy `stream` (see CudaRuntime.keep_stream)."""
        _KEPT.append(stream.handle)

    def event(self) -> Any:
        return self.drv.Event(self._event_flags)

    def release_event(self, event: Any) -> None:
        pass  # pycuda frees an event when its object goes

    def record(self, event: Any, stream: Any) -> None:
        """Record `event` on a pycuda Stream (Stream.handle, native_stream()); None: default."""
        event.record(stream)

    def query(self, event: Any) -> bool:
        return bool(event.query())

    def synchronize(self, event: Any) -> None:
        event.synchronize()

    @contextlib.contextmanager
    def thread_context(self) -> Iterator[None]:
        """This runtime's context current in the calling thread for a while (the writer
        thread's background polls). Pushed and popped each time: pycuda's context stack is
        per thread, and a thread that ends with a context still pushed aborts the process
        ("The context stack was not empty upon module cleanup", seen on the H100)."""
        self.context.push()
        try:
            yield
        finally:
            self.drv.Context.pop()

    def synchronize_device(self) -> None:
        self.drv.Context.synchronize()

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(end.time_since(start))

    # -- the in-band clock probe (bindings/probe.py: driver calls in the primary context) ------
    def start_probe(self) -> None:
        if getattr(self, "_clock_probe", None) is None:
            from .cuda import libcuda
            from .probe import ClockProbe, ProbeError

            lib = libcuda()
            if lib is None:
                raise ProbeError("libcuda.so.1 cannot be loaded by ctypes")
            self._clock_probe = ClockProbe(lib, self.cc, self.sm_count)

    def probe(self, stream: Any) -> int:
        """A clock stamp on a pycuda Stream (None: the legacy default stream); its slot."""
        return self._clock_probe.probe(0 if stream is None else int(stream.handle))

    def read_probe(self, slot: int, wait: bool = False) -> tuple[int, float] | None:
        return self._clock_probe.read(slot, wait)

    # -- memory and kernels -----------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        a = self.drv.mem_alloc(nbytes)
        self._keep.append(a)
        return int(a)

    def alloc_host(self, nbytes: int) -> np.ndarray:
        return self.drv.pagelocked_empty(nbytes, np.uint8)

    def copy_htod(self, dst: int, src: np.ndarray, stream: Stream) -> None:
        self.drv.memcpy_htod_async(dst, src, stream.handle)

    def copy_dtoh(self, dst: np.ndarray, src: int, stream: Stream) -> None:
        self.drv.memcpy_dtoh_async(dst, src, stream.handle)

    def stream_synchronize(self, stream: Stream) -> None:
        stream.handle.synchronize()

    def touch(self, stream: Stream) -> None:
        """Enqueue a trivial piece of GPU work (a 4-byte memset): a keep-alive."""
        if self._touch_buf is None:
            self._touch_buf = self.alloc(4)
        self.drv.memset_d8_async(self._touch_buf, 0, 4, stream.handle)

    def load_ptx(self, image: bytes, kernels: list[str]) -> dict[str, Any]:
        """Load PTX (the driver JIT-compiles it: bindings/ptx.py); {kernel name: function}."""
        mod = self.drv.module_from_buffer(image)
        self._keep.append(mod)
        return {k: mod.get_function(k) for k in kernels}

    def compile(self, source: str, name: str, kernels: list[str]) -> dict[str, Any]:
        from pycuda.compiler import SourceModule

        mod = SourceModule(source, no_extern_c=True, arch=f"sm_{self.cc[0]}{self.cc[1]}")
        self._keep.append(mod)
        return {k: mod.get_function(k) for k in kernels}

    def prepare(self, fn: Any, *args: tuple[Any, Any]) -> tuple[Any, tuple[Any, ...]]:
        fn.prepare("".join(_SIG[t] for t, _ in args))
        return fn, tuple(t(v) for t, v in args)

    def launch(self, prepared: tuple[Any, tuple[Any, ...]], grid: int, block: int,
               stream: Stream) -> None:
        fn, values = prepared
        fn.prepared_async_call((grid, 1), (block, 1, 1), stream.handle, *values)

    def capture_graph(self, stream: Stream, enqueue: Callable[[], None]) -> Any:
        raise UsageError("pycuda cannot capture CUDA graphs; use --binding cuda with --cuda-graph")

    def launch_graph(self, graph_exec: Any, stream: Stream) -> None:
        raise UsageError("pycuda cannot launch CUDA graphs; use --binding cuda")

    def close(self) -> None:
        probe = getattr(self, "_clock_probe", None)
        if probe is not None:
            probe.close()
            del self._clock_probe
        self._keep.clear()
        try:
            self.context.pop()
            self.context.detach()
        except Exception:
            pass
