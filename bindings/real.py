"""A real NVIDIA GPU: NVML telemetry (bindings.nvml) + CUDA timing (bindings.cuda)."""

from __future__ import annotations

from typing import Any, Sequence

from gpuwatch.clock import HostClock
from gpuwatch.errors import UsageError

from . import nvml
from .cuda import CudaRuntime, Stream


class RealBackend:
    simulated = False
    # the in-band clock probe is on by default (sampled: region.PROBE_EVERY_NS); where it
    # cannot start (no NVRTC), the session records without it and says why
    probe_default = True

    def __init__(self, ordinal: int, sample_gpus: str | Sequence[int] | None = None,
                 blocking_sync: bool = False, binding: str = "cuda", kernels: bool = False,
                 telemetry: bool = True):
        """`telemetry=False`: CUDA only, no NVML (an engine made outside a session)."""
        self.clock = HostClock()
        self._tracer: Any = None
        if kernels:  # CUPTI first: CUDA-event records only come if it precedes the context
            from .cupti import CuptiTracer

            self._tracer = CuptiTracer(self.clock)
            self._tracer.enable()
        if binding == "cuda":
            self.runtime: Any = CudaRuntime(ordinal, blocking_sync=blocking_sync)
        elif binding == "pycuda":
            from .pycuda import PycudaRuntime

            self.runtime = PycudaRuntime(ordinal, blocking_sync=blocking_sync)
        else:
            raise UsageError(f"unknown binding {binding!r}; use cuda (cuda-python) or pycuda")
        self.ordinal = ordinal
        if not telemetry:
            self.telemetry, self.telemetry_factory = [], None
            return
        # CUDA and NVML number GPUs differently (CUDA_VISIBLE_DEVICES, PCI order): match by
        # UUID, or by PCI bus id where the binding cannot tell the UUID (pycuda).
        own = (nvml.index_of_uuid(self.runtime.uuid) if self.runtime.uuid
               else nvml.index_of_pci_bus_id(self.runtime.pci_bus_id))
        if sample_gpus in (None, "", "self"):
            indices = [own]
        elif sample_gpus == "all":
            indices = [own] + [i for i in range(nvml.device_count()) if i != own]
        else:
            listed = [int(i) for i in sample_gpus]
            indices = [own] + [i for i in listed if i != own]
        self.telemetry = nvml.open_telemetry(indices)  # the inference GPU first
        self.telemetry_factory = ("gpuwatch.bindings.nvml:open_telemetry", (indices,))

    def engine(self, spec: str, stream: Stream, cuda_graph: bool = False,
               **options: Any) -> Any:
        """builtin:PRESET, torch:MODULE:FACTORY, tensorrt:ENGINE (or a .plan/.engine path), or
        onnx:MODEL (built to an engine first: options precision, workspace_mb)."""
        if spec.endswith((".plan", ".engine")) and not spec.startswith("tensorrt:"):
            spec = f"tensorrt:{spec}"
        kind = spec.partition(":")[0]
        if kind in ("tensorrt", "onnx"):
            from .tensorrt import TensorRTEngine, build_engine

            if cuda_graph:
                raise UsageError("--cuda-graph is for builtin and torch engines; TensorRT "
                                 "engines run with execute_async_v3")
            path = spec.partition(":")[2]
            if kind == "onnx":
                path = str(build_engine(path, options.get("precision", "fp16"),
                                        options.get("workspace_mb", 1024)))
            return TensorRTEngine(path, self.runtime, stream,
                                  input_shapes=options.get("input_shapes"))
        if kind == "builtin":
            from .builtin import BuiltinEngine, parse_spec

            preset, host_gap_us = parse_spec(spec)
            return BuiltinEngine(self.runtime, stream, preset, cuda_graph=cuda_graph,
                                 host_gap_us=host_gap_us)
        if kind == "torch":
            from .torch import TorchEngine, load_factory

            target = spec.partition(":")[2]
            model, example = load_factory(target)
            self.runtime.keep_stream(stream)  # torch may use it after this session ends
            return TorchEngine(model, example, stream, self.runtime,
                               cuda_graph=cuda_graph, name=f"torch:{target}")
        raise UsageError(f"unknown engine {spec!r}; use builtin:small, builtin:large, "
                         "torch:module:factory, a .plan/.engine file, or onnx:model.onnx")

    def kernel_tracer(self) -> Any:
        if self._tracer is None:
            from .cupti import CuptiTracer

            self._tracer = CuptiTracer(self.clock)
        return self._tracer

    def versions(self) -> dict[str, str]:
        out = self.runtime.versions()
        try:
            import pynvml

            out["nvidia-ml-py"] = getattr(pynvml, "__version__", "") or _dist_version("nvidia-ml-py")
        except ImportError:
            pass
        return out

    def same_device(self, other: Any) -> bool:
        """Does `other` (a backend) drive the same GPU, so events and streams mix?"""
        rt = getattr(other, "runtime", None)
        return (not getattr(other, "simulated", True) and rt is not None
                and (getattr(rt, "uuid", None) or getattr(rt, "pci_bus_id", None))
                == (self.runtime.uuid or getattr(self.runtime, "pci_bus_id", None)))

    def close(self) -> None:
        self.runtime.close()


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""
