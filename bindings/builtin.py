"""The built-in engine: kernels (shipped as PTX) on one stream that behave like a conv-net engine.

Each "layer" kernel reads a float32 activation tensor, applies k fused multiply-adds per
element (compute, like a convolution's inner loop) and writes the next tensor (memory traffic,
like an activation round-trip). Layers alternate between two buffers. `preprocess` copies an
input frame host->device (pinned) and normalises it with a small kernel; `postprocess` reduces the
output with a small kernel and copies it device->host: the seed's pre/post steps.

How presets map to work (the same on every GPU, so latency differs by GPU as a real model's
does): `small` is 32 layers over a 768x448x16 tensor (5.5 M elements, 22 MB) with ~450 FMAs per
element on average; `large` is 48 layers over 1024x576x16 (9.4 M elements) with ~620. Sized so
an H100 at 1980 MHz runs them back-to-back in about 5 ms and 17 ms, near the seed's small and
large models on a T4; benchmarks/results/ has the measurements.

Results are checked: each element's value after the layers has a closed form (layers are affine
maps v -> a*v + b applied k times), computed on the host in float64.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpuwatch.errors import UsageError

from . import ptx
from .cuda import CudaError, Stream

SOURCE = r"""
extern "C" __global__ void layer(const float* __restrict__ x, float* __restrict__ y,
                                 unsigned int n, int k, float a, float b) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    #pragma unroll 8
    for (int j = 0; j < k; ++j) v = fmaf(v, a, b);
    y[i] = v;
}

extern "C" __global__ void normalise(const unsigned char* __restrict__ frame, float* __restrict__ y,
                                     unsigned int n, unsigned int frame_bytes) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    y[i] = frame[i % frame_bytes] * (1.0f / 255.0f);
}

extern "C" __global__ void reduce_rows(const float* __restrict__ x, float* __restrict__ out,
                                       unsigned int rows, unsigned int cols) {
    unsigned int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float s = 0.0f;
    for (unsigned int c = 0; c < cols; c += 64) s += x[(size_t)r * cols + c];
    out[r] = s;
}
"""

A, B = 0.99995, 0.00005  # v -> A*v + B: a contraction towards 1.0, stays finite for any k


@dataclass(frozen=True)
class Preset:
    name: str
    layers: int
    height: int
    width: int
    channels: int
    fma_per_element: int  # average k per layer

    @property
    def elements(self) -> int:
        return self.height * self.width * self.channels

    def ks(self) -> list[int]:
        """Per-layer k, uneven like a real network's layers (deterministic)."""
        return [max(1, int(self.fma_per_element * (1.0 + 0.6 * math.sin(i * 1.7))))
                for i in range(self.layers)]


PRESETS: dict[str, Preset] = {
    "small": Preset("small", layers=32, height=448, width=768, channels=16, fma_per_element=450),
    "large": Preset("large", layers=48, height=576, width=1024, channels=16, fma_per_element=620),
    # a small service (an MLP's worth of work): short kernels, launch-bound on most hosts
    "tiny": Preset("tiny", layers=8, height=112, width=192, channels=16, fma_per_element=100),
}

_BLOCK = 256


def parse_spec(spec: str) -> tuple[Preset, int]:
    """builtin:PRESET[@HOST_GAP_US][,size=WxH] -> (preset, microseconds the host spins between
    launches). A host gap makes the GPU wait for the host inside each inference (a starved
    workload); `size` runs the preset on another frame size (the work scales with it)."""
    kind, _, rest = spec.partition(":")
    if kind != "builtin":
        raise UsageError(f"not a built-in engine: {spec!r} (use builtin:small or builtin:large)")
    rest, *opts = rest.split(",")
    name, _, gap = (rest or "small").partition("@")
    try:
        host_gap_us = int(gap) if gap else 0
    except ValueError:
        raise UsageError(f"bad host gap in {spec!r}: use builtin:small@200 (microseconds)") from None
    if host_gap_us < 0:
        raise UsageError(f"the host gap in {spec!r} must be 0 or more microseconds")
    if name not in PRESETS:
        raise UsageError(f"unknown built-in engine preset {name!r}; choose one of "
                         + ", ".join(sorted(PRESETS)))
    preset = PRESETS[name]
    for opt in opts:
        key, _, value = opt.partition("=")
        w, _, h = value.partition("x")
        if key != "size" or not (w.isdigit() and h.isdigit()) or not (
                16 <= int(w) <= 8192 and 16 <= int(h) <= 8192):
            raise UsageError(f"bad option {opt!r} in {spec!r}: use size=WxH, e.g. "
                             "builtin:small,size=1280x720 (16..8192 each)")
        preset = dataclasses.replace(preset, width=int(w), height=int(h))
    return preset, host_gap_us


def engine_name(preset: Preset, host_gap_us: int = 0, cuda_graph: bool = False) -> str:
    """builtin:small, builtin:small/1280x720@200+graph: the preset, a size other than its own,
    the host gap, and CUDA graphs."""
    own = PRESETS.get(preset.name)
    size = "" if own is not None and (own.width, own.height) == (preset.width, preset.height) \
        else f"/{preset.width}x{preset.height}"
    return (f"builtin:{preset.name}{size}" + (f"@{host_gap_us}" if host_gap_us else "")
            + ("+graph" if cuda_graph else ""))


class BuiltinEngine:
    """One inference = `preset.layers` kernel launches on `stream` (or one CUDA-graph launch)."""

    def __init__(self, rt: Any, stream: Stream, preset: Preset, cuda_graph: bool = False,
                 host_gap_us: int = 0):
        """`rt`: a GPU runtime (bindings.cuda.CudaRuntime or bindings.pycuda.PycudaRuntime).
        `host_gap_us`: the host spins this long between kernel launches (a starved workload)."""
        if cuda_graph and host_gap_us:
            raise UsageError("a host gap between launches cannot be captured in a CUDA graph")
        self.rt, self.stream, self.preset = rt, stream, preset
        self.host_gap_ns = host_gap_us * 1000
        self.name = engine_name(preset, host_gap_us, cuda_graph)
        names = ["layer", "normalise", "reduce_rows"]
        # (the shipped PTX: no run-time compiler needed; bindings/ptx.py)
        fns = (rt.load_ptx(ptx.load("builtin", SOURCE), names) if hasattr(rt, "load_ptx")
               else rt.compile(SOURCE, "gpuwatch_builtin.cu", names))
        n = preset.elements
        self._bufs = [rt.alloc(n * 4), rt.alloc(n * 4)]
        grid = (n + _BLOCK - 1) // _BLOCK
        self._ks = preset.ks()
        self._launches = []
        for i, k in enumerate(self._ks):
            src, dst = self._bufs[i % 2], self._bufs[(i + 1) % 2]
            self._launches.append((rt.prepare(fns["layer"], (np.uint64, src), (np.uint64, dst),
                                              (np.uint32, n), (np.int32, k), (np.float32, A),
                                              (np.float32, B)), grid))
        self._out = self._bufs[preset.layers % 2]
        # pre/post: an HWC uint8 frame in, one float per row (height) out.
        self.frame = rt.alloc_host(preset.height * preset.width * 3)
        self.frame[:] = (np.arange(self.frame.size) * 7 % 251).astype(np.uint8)
        self._frame_dev = rt.alloc(self.frame.size)
        self._norm = (rt.prepare(fns["normalise"], (np.uint64, self._frame_dev),
                                 (np.uint64, self._bufs[0]), (np.uint32, n),
                                 (np.uint32, self.frame.size)), grid)
        rows, cols = preset.height, n // preset.height
        self._rows_dev = rt.alloc(rows * 4)
        self.result = rt.alloc_host(rows * 4).view(np.float32)
        self._reduce = (rt.prepare(fns["reduce_rows"], (np.uint64, self._out),
                                   (np.uint64, self._rows_dev), (np.uint32, rows),
                                   (np.uint32, cols)), (rows + _BLOCK - 1) // _BLOCK)
        self._graph_exec = rt.capture_graph(stream, self._enqueue_layers) if cuda_graph else None

    def _enqueue_layers(self) -> None:
        launch, stream, gap = self.rt.launch, self.stream, self.host_gap_ns
        if not gap:
            for prepared, grid in self._launches:
                launch(prepared, grid, _BLOCK, stream)
            return
        clock = time.perf_counter_ns
        for prepared, grid in self._launches:
            launch(prepared, grid, _BLOCK, stream)
            until = clock() + gap
            while clock() < until:  # host busy elsewhere: the GPU runs dry meanwhile
                pass

    def infer(self, x: Any = None) -> Any:
        """Enqueue one inference (asynchronous: the session's events bracket it)."""
        if self._graph_exec is not None:
            self.rt.launch_graph(self._graph_exec, self.stream)
        else:
            self._enqueue_layers()
        return x

    def synchronize(self) -> None:
        """Wait for this engine's stream (what a program does before reading results)."""
        self.rt.stream_synchronize(self.stream)

    def preprocess(self) -> None:
        self.rt.copy_htod(self._frame_dev, self.frame, self.stream)
        prepared, grid = self._norm
        self.rt.launch(prepared, grid, _BLOCK, self.stream)

    def postprocess(self) -> np.ndarray:
        prepared, grid = self._reduce
        self.rt.launch(prepared, grid, _BLOCK, self.stream)
        self.rt.copy_dtoh(self.result.view(np.uint8), self._rows_dev, self.stream)
        return self.result

    def expected_output(self, v0: np.ndarray) -> np.ndarray:
        """What the layers make of input values `v0`, in float64 (closed form)."""
        v = np.asarray(v0, dtype=np.float64)
        for k in self._ks:
            ak = A**k
            v = ak * v + B * (1 - ak) / (1 - A)
        return v

    def check(self) -> float:
        """Run pre -> infer on a known frame, read back the output tensor, compare with the
        closed form. Returns the worst relative error; raises CudaError past 1e-3."""
        n, rt = self.preset.elements, self.rt
        self.preprocess()
        self.infer()
        out = np.empty(n, dtype=np.float32)
        host = rt.alloc_host(n * 4)
        rt.copy_dtoh(host, self._out, self.stream)
        rt.stream_synchronize(self.stream)
        out[:] = host.view(np.float32)
        idx = np.arange(n)
        v0 = self.frame[idx % self.frame.size].astype(np.float64) / 255.0
        expected = self.expected_output(v0)
        err = float(np.max(np.abs(out - expected) / np.maximum(np.abs(expected), 1e-6)))
        if not err < 1e-3:
            raise CudaError(f"built-in engine produced wrong results (max relative error {err:.2e})")
        return err
