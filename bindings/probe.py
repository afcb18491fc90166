"""The in-band SM clock probe on a real GPU: a stamp kernel before and after each region.

A stamp is `gpuwatch_clock_probe`, launched as one single-thread block per SM on the region's
stream, outside its events. The block that lands on SM 0 reads the GPU's nanosecond timer
(`%globaltimer`) and SM 0's cycle counter (`clock64()`) and writes them to a slot in mapped
pinned host memory; the mean SM clock over a region is Δcycles / Δns between its two stamps
(nvbench measures its clock-rate column so; SM 0's counter keeps counting while SM 0 idles,
measured on the H100). Only SM 0's counter is read because counters of different SMs need not
agree. If no block ran on SM 0 (other work filled it), the stamp says "no reading", never a
value from another SM.

The host reads a slot without synchronising anything: the kernel writes its values, fences,
then a marker, and the host polls the marker when it resolves the region (regions/timer.py).

The kernel is compiled once with NVRTC (cuda-python); memory, module and launch go through
the driver API by ctypes in the calling thread's current context (the primary context, which
cuda-python, pycuda and PyTorch share), and each launch is one call into gpuwatch/regions/_native.c
where it was built (~2 us of host time), else cuLaunchKernel by ctypes.
"""

from __future__ import annotations

import ctypes
import functools
import time
from typing import Any, Callable

import numpy as np

from gpuwatch.errors import GpuwatchError

PROBE_KERNEL = "gpuwatch_clock_probe"  # (the simulator's stamp kernel has the same name)
SOURCE = r"""
extern "C" __global__ void gpuwatch_clock_probe(unsigned long long *out, unsigned int *ctl)
{
    // out: [timer ns, SM 0 cycles, marker, unused] in mapped host memory
    // ctl: [claimed, arrived] in device memory, zero between uses
    unsigned int sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    if (sm == 0 && atomicCAS(&ctl[0], 0u, 1u) == 0u) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        long long c = clock64();
        out[0] = t;
        out[1] = (unsigned long long)c;
        __threadfence_system();
        ((volatile unsigned long long *)out)[2] = 1ull;  // a reading
    }
    __threadfence();
    if (atomicAdd(&ctl[1], 1u) == gridDim.x - 1) {  // the last block: all have run
        if (atomicAdd(&ctl[0], 0u) == 0u)
            ((volatile unsigned long long *)out)[2] = 2ull;  // no block ran on SM 0
        ctl[0] = 0u;
        ctl[1] = 0u;
        __threadfence();
    }
}
"""
SLOTS = 8192  # a ring of stamps; more than two per outstanding region (region.MAX_PENDING)
EMPTY, READING, NO_READING = 0, 1, 2
WAIT_S = 10.0  # read_probe(wait=True) gives up after this long: the stamp never ran


class ProbeError(GpuwatchError):
    """The clock probe could not be set up or launched."""


def _cuda(lib: Any, name: str, *args: Any) -> None:
    rc = getattr(lib, name)(*args)
    if rc:
        raise ProbeError(f"{name} failed with CUresult {rc} (setting up the clock probe)")


def compile_cubin(cc: tuple[int, int]) -> bytes:
    """The probe kernel as a cubin for compute capability `cc` (NVRTC via cuda-python)."""
    try:
        from cuda.bindings import nvrtc as nv
    except ImportError as e:
        raise ProbeError("the clock probe needs NVRTC from cuda-python: pip install "
                         "cuda-python, or record without it (--no-probe)") from e

    def ok(res: Any, what: str) -> Any:
        status, *rest = res
        if status != nv.nvrtcResult.NVRTC_SUCCESS:
            raise ProbeError(f"{what} failed: {status}")
        return rest[0] if rest else None

    prog = ok(nv.nvrtcCreateProgram(SOURCE.encode(), b"gpuwatch_probe.cu", 0, [], []),
              "nvrtcCreateProgram")
    try:
        arch = f"--gpu-architecture=sm_{cc[0]}{cc[1]}".encode()
        status = nv.nvrtcCompileProgram(prog, 1, [arch])[0]
        if status != nv.nvrtcResult.NVRTC_SUCCESS:
            size = ok(nv.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            log = b" " * size
            nv.nvrtcGetProgramLog(prog, log)
            raise ProbeError(f"NVRTC could not compile the clock probe: "
                             f"{log.decode(errors='replace').strip(chr(0) + ' ')}")
        size = ok(nv.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = b" " * size
        ok(nv.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin
    finally:
        nv.nvrtcDestroyProgram(prog)


class ClockProbe:
    """Stamps on any stream of the current context: `probe(stream) -> slot`, `read(slot)`.

    `lib`: libcuda (ctypes; PyDLL so that the launch holds the GIL, as the timed path's calls
    do). `launch`: a stand-in for cuLaunchKernel's address (tests); `cubin`: the compiled
    kernel image (default: the shipped PTX, bindings/ptx.py; compile_cubin(cc) makes a cubin
    with NVRTC instead)."""

    def __init__(self, lib: Any, cc: tuple[int, int], sm_count: int,
                 cubin: bytes | None = None, launch: int | None = None):
        c_vp, c_sz = ctypes.c_void_p, ctypes.c_size_t
        self._lib = lib
        self.grid = int(sm_count)
        nbytes = SLOTS * 32
        host = c_vp()
        _cuda(lib, "cuMemHostAlloc", ctypes.byref(host), c_sz(nbytes), ctypes.c_uint(0x2))
        self._host = host  # CU_MEMHOSTALLOC_DEVICEMAP: the kernel writes here over PCIe
        self._slots = np.ctypeslib.as_array(
            (ctypes.c_uint64 * (SLOTS * 4)).from_address(int(host.value or 0))).reshape(SLOTS, 4)
        self._slots[:] = 0
        dptr = ctypes.c_uint64()
        _cuda(lib, "cuMemHostGetDevicePointer_v2", ctypes.byref(dptr), host, ctypes.c_uint(0))
        self._out = int(dptr.value)
        ctl = ctypes.c_uint64()
        _cuda(lib, "cuMemAlloc_v2", ctypes.byref(ctl), c_sz(SLOTS * 8))
        self._ctl = int(ctl.value)
        _cuda(lib, "cuMemsetD8_v2", ctypes.c_uint64(self._ctl), ctypes.c_ubyte(0), c_sz(SLOTS * 8))
        module, fn = c_vp(), c_vp()
        if cubin is not None:
            image = cubin
        else:  # the shipped PTX (bindings/ptx.py): the driver JIT-compiles it, no NVRTC
            from .ptx import PtxError, load

            try:
                image = load("probe", SOURCE)
            except PtxError as e:
                raise ProbeError(str(e)) from e
        _cuda(lib, "cuModuleLoadData", ctypes.byref(module), ctypes.c_char_p(image))
        self._module = module
        _cuda(lib, "cuModuleGetFunction", ctypes.byref(fn), module, PROBE_KERNEL.encode())
        self._fn = int(fn.value or 0)
        self._next = 0
        self._stamp = self._launcher(lib, launch)

    def _launcher(self, lib: Any, launch: int | None) -> Callable[[int, int, int], int]:
        """(stream, out, ctl) -> CUresult: one launch of the probe kernel."""
        from .cuda import native_module

        if launch is None:
            launch = int(ctypes.cast(lib.cuLaunchKernel, ctypes.c_void_p).value or 0)
        _native = native_module()
        if _native is not None:
            return functools.partial(_native.stamp, launch, self._fn, self.grid)
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, *([ctypes.c_uint] * 7),
                                 ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                 ctypes.c_void_p)
        call = proto(launch)
        a, b = ctypes.c_void_p(), ctypes.c_void_p()
        params = (ctypes.c_void_p * 2)(ctypes.addressof(a), ctypes.addressof(b))
        fn, grid = self._fn, self.grid

        def stamp(stream: int, out: int, ctl: int) -> int:
            a.value, b.value = out, ctl
            return int(call(fn, grid, 1, 1, 1, 1, 1, 0, stream, params, None))

        return stamp

    def probe(self, stream: int) -> int:
        """Enqueue a stamp on `stream` (a raw CUstream handle; 0: the legacy default stream);
        returns its slot for read()."""
        i = self._next
        self._next = (i + 1) % SLOTS
        self._slots[i, 2] = EMPTY
        rc = self._stamp(stream, self._out + 32 * i, self._ctl + 8 * i)
        if rc:
            raise ProbeError(f"cuLaunchKernel failed with CUresult {rc} (the clock probe)")
        return i

    def read(self, slot: int, wait: bool = False) -> tuple[int, float] | None:
        """(GPU timer ns, SM 0 cycles) of stamp `slot`; (0, nan) if no block ran on SM 0;
        None while the stamp has not run (`wait`: poll until it has, up to WAIT_S)."""
        row = self._slots[slot]
        mark = int(row[2])
        if mark == EMPTY:
            if not wait:
                return None
            deadline = time.monotonic() + WAIT_S
            while mark == EMPTY:
                if time.monotonic() > deadline:
                    raise ProbeError(f"the clock probe's stamp did not run within {WAIT_S:g} s")
                time.sleep(0)
                mark = int(row[2])
        if mark != READING:
            return 0, float("nan")
        return int(row[0]), float(row[1])

    def close(self) -> None:
        lib = self._lib
        for name, arg in (("cuModuleUnload", self._module), ("cuMemFree_v2",
                          ctypes.c_uint64(self._ctl)), ("cuMemFreeHost", self._host)):
            try:
                getattr(lib, name)(arg)
            except Exception:
                pass
