"""TensorRT engines: load a serialised engine (.plan/.engine) or build one from ONNX, bind its
inputs and outputs by tensor name on the active GPU runtime (cuda-python or pycuda), and run
it with `execute_async_v3` on gpuwatch's stream, between the session's CUDA events.

Written against TensorRT 10's Python API (ICudaEngine tensor-name I/O, execute_async_v3,
memory pools, timing caches). TensorRT cannot be installed where gpuwatch is developed, so this
module was exercised through a stand-in of that API in tests/test_tensorrt.py, not against real
TensorRT (see the README). The `trt` argument exists for that injection.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from gpuwatch._version import install_hint
from gpuwatch.errors import DeviceUnavailable, UsageError

from .cuda import CudaError, Stream

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def _trt() -> Any:
    try:
        import tensorrt
    except ImportError as e:
        raise DeviceUnavailable(
            f"TensorRT is not installed: {install_hint('tensorrt')}; the tensorrt wheels "
            "are NVIDIA's") from e
    return tensorrt


def _logger(trt: Any) -> Any:
    """A TensorRT logger that keeps the messages, so a failure can say what TensorRT said."""

    class Log(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if int(severity) <= int(trt.ILogger.WARNING):  # errors and warnings
                self.messages.append(str(msg))

    return Log()


def _why(messages: list[str], path: Path) -> str:
    text = " ".join(messages)
    low = text.lower()
    if "version" in low:
        return f"{path} was built by another TensorRT version; rebuild it with this one ({text})"
    if "compute" in low or "device" in low or "platform" in low:
        return f"{path} was built for another GPU; rebuild it on this one ({text})"
    return f"{path} is not a TensorRT engine or is corrupt ({text or 'no details from TensorRT'})"


class TensorRTEngine:
    """One TensorRT engine, ready to run on `stream`. `infer()` enqueues one inference."""

    def __init__(self, path: str | Path, rt: Any, stream: Stream,
                 input_shapes: dict[str, tuple[int, ...]] | None = None, trt: Any = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"no TensorRT engine at {self.path}; check the path")
        trt = self.trt = trt or _trt()
        self.rt, self.stream = rt, stream
        self.name = f"tensorrt:{self.path.name}"
        self._log = _logger(trt)
        self._runtime = trt.Runtime(self._log)
        data = self.path.read_bytes()
        if not data:
            raise UsageError(f"{self.path} is empty: not a TensorRT engine")
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise UsageError(_why(self._log.messages, self.path))
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise CudaError(f"TensorRT could not create an execution context for {self.path} "
                            f"(out of GPU memory?): {' '.join(self._log.messages)}")
        self.inputs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.outputs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._dev: dict[str, int] = {}
        self._host: dict[str, np.ndarray] = {}
        shapes = dict(input_shapes or {})
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        unknown = set(shapes) - set(names)
        if unknown:
            raise UsageError(f"{self.path} has no tensor named {', '.join(sorted(unknown))}; "
                             f"its tensors: {', '.join(names)}")
        for name in names:  # inputs first: output shapes depend on them
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = self._input_shape(name, shapes.get(name))
                self.context.set_input_shape(name, shape)
                self.inputs[name] = (shape, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
        for name in names:
            if self.engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
                self.outputs[name] = (shape, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
        for name, (shape, dtype) in {**self.inputs, **self.outputs}.items():
            nbytes = max(1, math.prod(shape)) * dtype.itemsize
            self._dev[name] = ptr = rt.alloc(nbytes)
            self._host[name] = rt.alloc_host(nbytes).view(dtype)[: math.prod(shape)].reshape(shape)
            if not self.context.set_tensor_address(name, ptr):
                raise CudaError(f"TensorRT refused the buffer for tensor {name!r}")
        for name, arr in self._host.items():
            if name in self.inputs:
                arr[...] = np.zeros(arr.shape, arr.dtype)  # defined input until set_input()

    def _input_shape(self, name: str, wanted: tuple[int, ...] | None) -> tuple[int, ...]:
        shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
        if -1 not in shape:
            if wanted is not None and tuple(wanted) != shape:
                raise UsageError(f"input {name!r} of {self.path.name} has the fixed shape {shape}, "
                                 f"not {tuple(wanted)}")
            return shape
        lo, opt, hi = (tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(name, 0))
        if wanted is None:
            return opt
        wanted = tuple(int(d) for d in wanted)
        if len(wanted) != len(shape) or any(
                not (a <= w <= b) or (s != -1 and w != s)
                for w, a, b, s in zip(wanted, lo, hi, shape)):
            raise UsageError(f"input {name!r} of {self.path.name} takes shapes from {lo} to {hi} "
                             f"(dims fixed where the engine says {shape}), not {wanted}")
        return wanted

    def set_input(self, name: str, x: np.ndarray) -> None:
        """Stage a host array as input `name` (copied to the GPU by preprocess())."""
        if name not in self.inputs:
            raise UsageError(f"{self.path.name} has no input named {name!r}; its inputs: "
                             f"{', '.join(self.inputs)}")
        shape, dtype = self.inputs[name]
        x = np.asarray(x)
        if tuple(x.shape) != shape:
            raise UsageError(f"input {name!r} must have shape {shape}, got {tuple(x.shape)}")
        if x.dtype != dtype:
            raise UsageError(f"input {name!r} must be {dtype}, got {x.dtype}; convert it with "
                             f".astype(np.{dtype})")
        self._host[name][...] = x

    def preprocess(self) -> None:
        """Copy the staged inputs host -> device (the seed's pre-processing transfer)."""
        for name in self.inputs:
            self.rt.copy_htod(self._dev[name], self._host[name].view(np.uint8).reshape(-1),
                              self.stream)

    def infer(self, x: Any = None) -> Any:
        """Enqueue one inference. With `x` (an array, or a dict of arrays by input name), the
        inputs are validated, staged and copied first, inside the timed region."""
        if x is not None:
            items = x.items() if isinstance(x, dict) else [(next(iter(self.inputs)), x)]
            for name, arr in items:
                self.set_input(name, arr)
            self.preprocess()
        if not self.context.execute_async_v3(self.stream.ptr):
            raise CudaError(f"TensorRT could not enqueue {self.path.name}: "
                            f"{' '.join(self._log.messages[-3:])}")
        return None

    def synchronize(self) -> None:
        """Wait for this engine's stream (before reading postprocess()'s outputs)."""
        self.rt.stream_synchronize(self.stream)

    def postprocess(self) -> dict[str, np.ndarray]:
        """Copy the outputs device -> host (valid once the stream has finished)."""
        for name in self.outputs:
            self.rt.copy_dtoh(self._host[name].view(np.uint8).reshape(-1), self._dev[name],
                              self.stream)
        return {name: self._host[name] for name in self.outputs}


def build_engine(onnx: str | Path, precision: str = "fp16", workspace_mb: int = 1024,
                 out: str | Path | None = None, trt: Any = None) -> Path:
    """Build a serialised engine from an ONNX model, beside it as MODEL.PRECISION.plan, with a
    timing cache (MODEL.timing.cache) reused by later builds. An engine newer than the model is
    reused as it is."""
    onnx = Path(onnx)
    if not onnx.is_file():
        raise UsageError(f"no ONNX model at {onnx}; check the path")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if workspace_mb <= 0:
        raise UsageError(f"the workspace must be positive, got {workspace_mb} MB")
    out = Path(out) if out else onnx.with_name(f"{onnx.stem}.{precision}.plan")
    if out.is_file() and out.stat().st_mtime >= onnx.stat().st_mtime:
        return out
    trt = trt or _trt()
    log = _logger(trt)
    builder = trt.Builder(log)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, log)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UsageError(f"TensorRT could not parse {onnx}: {errors or 'no details'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    elif precision == "int8":
        # Without a calibrator, INT8 is only right for explicitly quantised models (Q/DQ nodes
        # in the ONNX graph); FP16 is allowed for the layers they leave in float.
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
    cache_path = onnx.with_name(f"{onnx.stem}.timing.cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise CudaError(f"TensorRT could not build {onnx} at {precision}: "
                        f"{' '.join(log.messages[-5:]) or 'no details'}")
    out.write_bytes(bytes(plan))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return out
