"""PyTorch engines: a torch.nn.Module (or any callable on CUDA tensors) on gpuwatch's stream.

The engine's stream (a cuda-python stream on the primary context, which PyTorch shares) is
wrapped as a torch.cuda.ExternalStream. `around()` makes it current and enters inference mode;
the session enters it *before* the start event, so only `enqueue()` (the model's call) runs
between the events. With `cuda_graph=True` the call is captured once into a
torch.cuda.CUDAGraph and each inference is one replay.

A user's own model needs none of this: `s.infer(model, x)` or `gpuwatch.timed(model)` time it
on torch's current stream (see gpuwatch/streams.py).
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Callable, Iterator

from gpuwatch._version import install_hint
from gpuwatch.errors import DeviceUnavailable, UsageError


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise DeviceUnavailable(f"PyTorch is not installed: {install_hint('torch')}") from e
    if not torch.cuda.is_available():
        raise DeviceUnavailable("PyTorch sees no CUDA GPU (CPU-only build, or no driver)")
    return torch


def load_factory(spec: str) -> tuple[Callable[..., Any], Any]:
    """`module:function[,key=value...]` -> function(**{key: "value"}) -> (model, example_input)."""
    target, *opts = spec.split(",")
    mod_name, sep, fn_name = target.partition(":")
    if not sep or not mod_name or not fn_name:
        raise UsageError(f"--torch takes module:factory (e.g. mypkg.models:build), not {spec!r}")
    kwargs = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq or not key.isidentifier():
            raise UsageError(f"bad factory option {opt!r} in {spec!r}: use key=value")
        kwargs[key] = value
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise UsageError(f"cannot import {mod_name!r} for --torch: {e}") from e
    factory = getattr(module, fn_name, None)
    if not callable(factory):
        raise UsageError(f"{mod_name!r} has no callable {fn_name!r} for --torch")
    try:
        made = factory(**kwargs)
    except TypeError as e:
        raise UsageError(f"{spec}: {e}") from e
    if not (isinstance(made, tuple) and len(made) == 2 and callable(made[0])):
        raise UsageError(f"{spec} must return (model, example_input), got {type(made).__name__}")
    return made


class TorchEngine:
    def __init__(self, fn: Callable[..., Any], example: Any, stream: Any, runtime: Any,
                 cuda_graph: bool = False, name: str = "torch"):
        torch = self._t = _torch()
        self.fn, self.example = fn, example
        self.stream, self._rt = stream, runtime  # gpuwatch's Stream (handle and ptr)
        self.name = name + ("+graph" if cuda_graph else "")
        self._stream = torch.cuda.ExternalStream(stream.ptr,
                                                 device=torch.device("cuda", runtime.ordinal))
        self._graph = None
        self._out: Any = None  # the last inference's output (what postprocess() reads)
        self._frame: Any = None  # pinned host frame for preprocess()
        self._result: Any = None  # pinned host buffer for postprocess()
        if cuda_graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):  # warm up outside capture (cuDNN picks algorithms)
                    fn(example)
            torch.cuda.current_stream().wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph), torch.inference_mode():
                self._static_out = fn(example)
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def around(self) -> Iterator[None]:
        """The engine's stream made current, inference mode on: entered outside the events."""
        t = self._t
        with t.cuda.stream(self._stream), t.inference_mode():
            yield

    def enqueue(self, x: Any = None) -> Any:
        """One inference's work and nothing else (call it inside `around()`)."""
        if self._graph is not None:
            if x is not None:
                self.example.copy_(x, non_blocking=True)
            self._graph.replay()
            self._out = self._static_out
        else:
            self._out = self.fn(self.example if x is None else x)
        return self._out

    def infer(self, x: Any = None) -> Any:
        with self.around():
            return self.enqueue(x)

    def synchronize(self) -> None:
        self._rt.stream_synchronize(self.stream)

    def preprocess(self) -> None:
        with self.around():
            self.enqueue_preprocess()

    def postprocess(self) -> Any:
        with self.around():
            return self.enqueue_postprocess()

    def enqueue_preprocess(self) -> None:
        """A video frame's way in: a pinned uint8 HxWx3 frame copied host->device, then made
        the model's input (to NCHW, the model's dtype, scaled), in place (inside around())."""
        t, ex = self._t, self.example
        if self._frame is None:
            h, w = ex.shape[-2], ex.shape[-1]
            self._frame = (t.arange(h * w * 3, dtype=t.int32) * 7 % 251).to(t.uint8) \
                .reshape(h, w, 3).pin_memory()
        dev = self._frame.to(ex.device, non_blocking=True)
        ex.copy_(dev.permute(2, 0, 1).unsqueeze(0).to(ex.dtype).mul_(1 / 255))

    def enqueue_postprocess(self) -> Any:
        """The result's way out: class probabilities copied device->host, pinned (inside
        around())."""
        t = self._t
        probs = t.softmax(self._out.float(), dim=1)
        if self._result is None:
            self._result = t.empty(probs.shape, dtype=probs.dtype, pin_memory=True)
        self._result.copy_(probs, non_blocking=True)
        return self._result


DTYPES = {"fp16": "half", "bf16": "bfloat16", "fp32": "float32"}


def convnet(size: str = "768x448", depth: str = "small", dtype: str = "fp16") -> tuple[Any, Any]:
    """A conv net on one frame: the PyTorch workload of gpuwatch's benchmarks.
    `--torch gpuwatch.bindings.torch:convnet[,size=WxH][,depth=small|large][,dtype=fp16|bf16|fp32]`.
    small: 8 conv blocks of up to 64 channels (the seed's small model at 768x448);
    large: 16 blocks of up to 128 channels."""
    torch = _torch()
    nn = torch.nn
    w, _, h = size.partition("x")
    if not (w.isdigit() and h.isdigit()) or not (32 <= int(w) <= 8192 and 32 <= int(h) <= 8192):
        raise UsageError(f"convnet size must be WxH (32..8192 each), got {size!r}")
    if depth not in ("small", "large") or dtype not in DTYPES:
        raise UsageError(f"convnet depth is small or large, dtype one of {', '.join(DTYPES)}; "
                         f"got depth={depth!r} dtype={dtype!r}")
    width, blocks = (64, 6) if depth == "small" else (128, 14)

    def block(cin: int, cout: int, stride: int) -> list[Any]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    layers = block(3, 32, 2) + block(32, width, 2)
    for _ in range(blocks):
        layers += block(width, width, 1)
    layers += block(width, 2 * width, 2) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                            nn.Linear(2 * width, 10)]
    dt = getattr(torch, DTYPES[dtype])
    model = nn.Sequential(*layers).cuda().to(dt).eval()
    x = torch.randn(1, 3, int(h), int(w), device="cuda", dtype=dt)
    return model, x


def gemm(n: str = "8192", count: str = "1", dtype: str = "fp16") -> tuple[Any, Any]:
    """`count` chained n x n matmuls per inference: a GPU-bound, power-hungry workload (8192^2
    fp16 reaches the H100's power cap within seconds back-to-back).
    `--torch gpuwatch.bindings.torch:gemm[,n=8192][,count=1][,dtype=fp16|bf16|fp32]`."""
    torch = _torch()
    if not (n.isdigit() and 16 <= int(n) <= 32768 and count.isdigit() and 1 <= int(count) <= 64
            and dtype in DTYPES):
        raise UsageError(f"gemm takes n=16..32768, count=1..64, dtype one of {', '.join(DTYPES)}; "
                         f"got n={n!r} count={count!r} dtype={dtype!r}")
    dt = getattr(torch, DTYPES[dtype])
    size, reps = int(n), int(count)
    w = torch.randn(size, size, device="cuda", dtype=dt) / size ** 0.5

    def model(x: Any) -> Any:
        for _ in range(reps):
            x = x @ w
        return x

    return model, torch.randn(size, size, device="cuda", dtype=dt)


# torch's current stream read through c10 directly, for the timed path (gpuwatch/regions/_native.c's
# FastRegion): one C call instead of a pybind11 one (~13 us after a 20 ms idle gap on the H100
# VM, benchmarks/results/h100_issue13/gap20_2026-11-26/cold_path).
C10_CURRENT = "_ZN3c104cuda20getCurrentCUDAStreamEa"  # c10::cuda::getCurrentCUDAStream(int8)
C10_HANDLE = "_ZNK3c104cuda10CUDAStream6streamEv"  # c10::cuda::CUDAStream::stream() const


def c10_stream_addresses() -> tuple[int, int] | None:
    """The addresses of c10's current-stream getter and of CUDAStream::stream() in the
    libc10_cuda.so that the imported torch loaded, or None (no torch, another layout, or
    GPUWATCH_TORCH_STREAM=python). The caller checks them against torch's own getter before
    use (`torch_stream_source`)."""
    import ctypes
    import os
    import sys

    where = getattr(sys.modules.get("torch"), "__file__", None)
    if not where or os.environ.get("GPUWATCH_TORCH_STREAM") == "python" \
            or not sys.platform.startswith("linux"):
        return None
    path = os.path.join(os.path.dirname(where), "lib", "libc10_cuda.so")
    try:  # RTLD_NOLOAD: only the library torch itself loaded
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        addrs = tuple(ctypes.cast(getattr(lib, n), ctypes.c_void_p).value
                      for n in (C10_CURRENT, C10_HANDLE))
    except (OSError, AttributeError):
        return None
    if not all(addrs):
        return None
    return addrs[0], addrs[1]  # type: ignore[return-value]


_C10_PROBED: dict[tuple[tuple[int, int], int], bool] = {}  # (addresses, device) -> child's answer


def torch_stream_source(fast: Any, getter: Callable[[int], int], device: int) -> str:
    """Point the C timed path `fast` (a FastRegion) at torch's current stream on CUDA device
    `device`: through c10 where its answers match `getter` (torch's own current-stream
    getter) on the current stream and inside `torch.cuda.stream(another)`, else through
    `getter`. Returns which ("c10" or "getter"). The first c10 call is made in a forked child
    (FastRegion.c10_probe), so that a calling convention guessed wrong cannot crash the
    program."""
    addrs = c10_stream_addresses()
    if addrs is not None:
        import torch

        fast.use_c10(addrs[0], addrs[1], device)
        try:
            # (first in a forked child: a torch whose CUDAStream is returned otherwise than
            # assumed would crash the call, and only the child ends so)
            key = (addrs, device)
            if key not in _C10_PROBED:  # (once per process: a fork costs ~ms per GB mapped)
                _C10_PROBED[key] = bool(fast.c10_probe(getter(device)))
            ok = _C10_PROBED[key] and fast.c10_stream() == getter(device)
            other = torch.cuda.Stream(device)
            with torch.cuda.stream(other):
                ok = ok and fast.c10_stream() == getter(device) == other.cuda_stream
            ok = ok and fast.c10_stream() == getter(device)
        except Exception:
            ok = False
        if ok:
            fast.getter = None
            return "c10"
        fast.use_c10(0, 0, 0)
    fast.getter, fast.device = getter, device
    return "getter"
