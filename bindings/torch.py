"""PyTorch: time a torch.nn.Module (or any callable on CUDA tensors) on gpuwatch's stream.

The session's stream (a cuda-python stream on the primary context, which PyTorch shares) is
wrapped as a torch.cuda.ExternalStream and made current around each call, so the session's
events bracket exactly the model's kernels. With `cuda_graph=True` the call is captured once
into a torch.cuda.CUDAGraph and each inference is one replay.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from gpuwatch.errors import DeviceUnavailable, UsageError


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise DeviceUnavailable("PyTorch is not installed: pip install 'gpuwatch[torch]'") from e
    if not torch.cuda.is_available():
        raise DeviceUnavailable("PyTorch sees no CUDA GPU (CPU-only build, or no driver)")
    return torch


def load_factory(spec: str) -> tuple[Callable[..., Any], Any]:
    """`module:function` -> function() -> (model, example_input)."""
    mod_name, sep, fn_name = spec.partition(":")
    if not sep or not mod_name or not fn_name:
        raise UsageError(f"--torch takes module:factory (e.g. mypkg.models:build), not {spec!r}")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise UsageError(f"cannot import {mod_name!r} for --torch: {e}") from e
    factory = getattr(module, fn_name, None)
    if not callable(factory):
        raise UsageError(f"{mod_name!r} has no callable {fn_name!r} for --torch")
    made = factory()
    if not (isinstance(made, tuple) and len(made) == 2 and callable(made[0])):
        raise UsageError(f"{spec} must return (model, example_input), got {type(made).__name__}")
    return made


class TorchEngine:
    def __init__(self, fn: Callable[..., Any], example: Any, stream_ptr: int, ordinal: int,
                 cuda_graph: bool = False, name: str = "torch"):
        torch = self._t = _torch()
        self.fn, self.example = fn, example
        self.name = name + ("+graph" if cuda_graph else "")
        self._stream = torch.cuda.ExternalStream(stream_ptr, device=torch.device("cuda", ordinal))
        self._graph = None
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

    def infer(self, x: Any = None) -> Any:
        t = self._t
        with t.cuda.stream(self._stream):
            if self._graph is not None:
                if x is not None:
                    self.example.copy_(x, non_blocking=True)
                self._graph.replay()
                return self._static_out
            with t.inference_mode():
                return self.fn(self.example if x is None else x)


def convnet() -> tuple[Any, Any]:
    """A small fp16 conv net on a 768x448 frame (the seed's small resolution): the PyTorch
    workload of gpuwatch's benchmarks. `--torch gpuwatch.bindings.torch:convnet`."""
    torch = _torch()
    nn = torch.nn

    def block(cin: int, cout: int, stride: int) -> list[Any]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    layers = block(3, 32, 2) + block(32, 64, 2)
    for _ in range(6):
        layers += block(64, 64, 1)
    layers += block(64, 128, 2) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)]
    model = nn.Sequential(*layers).cuda().half().eval()
    x = torch.randn(1, 3, 448, 768, device="cuda", dtype=torch.half)
    return model, x
