"""The TensorRT runner's own logic, against a stand-in of TensorRT 10's Python API.

TensorRT cannot be installed in this environment (README). The stand-in implements the calls
the runner makes (Runtime, ICudaEngine's tensor-name I/O, IExecutionContext, Builder,
OnnxParser, timing cache) with their documented shapes; a fake GPU runtime records copies.
GPU tests that use real TensorRT live in tests/test_gpu.py and run wherever it imports."""

import enum
import subprocess
import sys
import types

import numpy as np
import pytest

import gpuwatch
from gpuwatch.bindings.cuda import CudaError, Stream
from gpuwatch.bindings.tensorrt import TensorRTEngine, build_engine

PLAN = b"FAKEPLAN1"


class Mode(enum.Enum):
    INPUT = 0
    OUTPUT = 1


class FakeTRT(types.SimpleNamespace):
    """`tensorrt`, as far as the runner uses it. An engine file is PLAN + a spec line."""

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO = 0, 1, 2, 3

        def __init__(self):
            pass

    TensorIOMode = Mode

    def __init__(self, tensors, fail_execute=False):
        super().__init__()
        self.tensors, self.fail_execute = tensors, fail_execute
        self.executed = []
        trt = self

        class Runtime:
            def __init__(self, log):
                self.log = log

            def deserialize_cuda_engine(self, data):
                if not data.startswith(b"FAKEPLAN"):
                    self.log.log(1, "Serialization assertion magicTagRead == kMAGIC_TAG failed")
                    return None
                if data[8:9] != b"1":
                    self.log.log(1, "The engine plan file is not compatible with this version of "
                                    "TensorRT, expecting library version 10.8 got 8.6")
                    return None
                return Engine()

        class Context:
            def __init__(self):
                self.shapes, self.addresses = {}, {}

            def set_input_shape(self, name, shape):
                self.shapes[name] = tuple(shape)
                return True

            def get_tensor_shape(self, name):
                spec = trt.tensors[name]
                if spec["mode"] == Mode.OUTPUT:  # output batch follows the first input's
                    first = next(n for n, t in trt.tensors.items() if t["mode"] == Mode.INPUT)
                    b = self.shapes[first][0]
                    return (b,) + tuple(spec["shape"][1:])
                return self.shapes[name]

            def set_tensor_address(self, name, ptr):
                self.addresses[name] = ptr
                return True

            def execute_async_v3(self, stream_handle):
                trt.executed.append((stream_handle, dict(self.addresses)))
                return not trt.fail_execute

        class Engine:
            num_io_tensors = len(tensors)

            def get_tensor_name(self, i):
                return list(trt.tensors)[i]

            def get_tensor_mode(self, name):
                return trt.tensors[name]["mode"]

            def get_tensor_dtype(self, name):
                return trt.tensors[name]["dtype"]

            def get_tensor_shape(self, name):
                return trt.tensors[name]["shape"]

            def get_tensor_profile_shape(self, name, profile):
                return trt.tensors[name]["profile"]

            def create_execution_context(self):
                return Context()

        self.Runtime = Runtime

    @staticmethod
    def nptype(dtype):
        return dtype


class FakeRuntime:
    """GPU memory as host arrays; copies recorded."""

    def __init__(self):
        self.mem, self.copies, self.next = {}, [], 0x1000

    def alloc(self, nbytes):
        ptr, self.next = self.next, self.next + nbytes + 256
        self.mem[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def alloc_host(self, nbytes):
        return np.zeros(nbytes, np.uint8)

    def copy_htod(self, dst, src, stream):
        self.mem[dst][: src.nbytes] = src
        self.copies.append(("htod", dst, src.nbytes))

    def copy_dtoh(self, dst, src, stream):
        dst[...] = self.mem[src][: dst.nbytes]
        self.copies.append(("dtoh", src, dst.nbytes))


def two_io(dynamic=False):
    inp = {"mode": Mode.INPUT, "dtype": np.float16,
           "shape": (-1, 3, 448, 768) if dynamic else (1, 3, 448, 768),
           "profile": ((1, 3, 448, 768), (4, 3, 448, 768), (8, 3, 448, 768))}
    out = {"mode": Mode.OUTPUT, "dtype": np.float32, "shape": (1, 10), "profile": None}
    return {"images": inp, "logits": out}


@pytest.fixture
def plan(tmp_path):
    p = tmp_path / "model.plan"
    p.write_bytes(PLAN)
    return p


STREAM = Stream(handle=None, ptr=0xABC)


def test_binds_tensors_by_name_and_runs_on_the_stream(plan):
    trt, rt = FakeTRT(two_io()), FakeRuntime()
    eng = TensorRTEngine(plan, rt, STREAM, trt=trt)
    assert eng.inputs == {"images": ((1, 3, 448, 768), np.dtype(np.float16))}
    assert eng.outputs == {"logits": ((1, 10), np.dtype(np.float32))}
    eng.infer()
    handle, addresses = trt.executed[0]
    assert handle == 0xABC and set(addresses) == {"images", "logits"}
    assert addresses["images"] != addresses["logits"]
    assert rt.mem[addresses["images"]].nbytes == 1 * 3 * 448 * 768 * 2


def test_inputs_are_validated_and_staged(plan):
    trt, rt = FakeTRT(two_io()), FakeRuntime()
    eng = TensorRTEngine(plan, rt, STREAM, trt=trt)
    x = np.ones((1, 3, 448, 768), np.float16)
    eng.infer(x)  # staged, copied host->device, then run
    assert rt.copies == [("htod", eng._dev["images"], x.nbytes)]
    with pytest.raises(gpuwatch.UsageError, match=r"must have shape \(1, 3, 448, 768\)"):
        eng.infer(np.ones((1, 3, 224, 224), np.float16))
    with pytest.raises(gpuwatch.UsageError, match=r"must be float16, got float32.*astype"):
        eng.infer(x.astype(np.float32))
    with pytest.raises(gpuwatch.UsageError, match="no input named 'image'.*images"):
        eng.set_input("image", x)
    out = eng.postprocess()
    assert set(out) == {"logits"} and out["logits"].shape == (1, 10)


def test_dynamic_shapes_use_the_profile(plan):
    trt = FakeTRT(two_io(dynamic=True))
    eng = TensorRTEngine(plan, FakeRuntime(), STREAM, trt=trt)
    assert eng.inputs["images"][0] == (4, 3, 448, 768)  # the profile's optimum
    assert eng.outputs["logits"][0] == (4, 10)
    eng = TensorRTEngine(plan, FakeRuntime(), STREAM, trt=trt,
                         input_shapes={"images": (2, 3, 448, 768)})
    assert eng.inputs["images"][0] == (2, 3, 448, 768)
    with pytest.raises(gpuwatch.UsageError, match=r"takes shapes from \(1, 3, 448, 768\) to \(8"):
        TensorRTEngine(plan, FakeRuntime(), STREAM, trt=trt,
                       input_shapes={"images": (16, 3, 448, 768)})
    with pytest.raises(gpuwatch.UsageError, match="no tensor named input0"):
        TensorRTEngine(plan, FakeRuntime(), STREAM, trt=trt, input_shapes={"input0": (1,)})


@pytest.mark.parametrize("content, words", [
    (b"", "is empty"),
    (b"garbage!", "not a TensorRT engine or is corrupt"),
    (b"FAKEPLAN8", "built by another TensorRT version"),
])
def test_bad_engine_files(tmp_path, content, words):
    p = tmp_path / "m.plan"
    p.write_bytes(content)
    with pytest.raises(gpuwatch.UsageError, match=words):
        TensorRTEngine(p, FakeRuntime(), STREAM, trt=FakeTRT(two_io()))


def test_missing_engine_and_failed_enqueue(tmp_path, plan):
    with pytest.raises(gpuwatch.UsageError, match="no TensorRT engine at"):
        TensorRTEngine(tmp_path / "none.plan", FakeRuntime(), STREAM, trt=FakeTRT(two_io()))
    eng = TensorRTEngine(plan, FakeRuntime(), STREAM, trt=FakeTRT(two_io(), fail_execute=True))
    with pytest.raises(CudaError, match="could not enqueue"):
        eng.infer()


class FakeBuilderTRT(FakeTRT):
    """Adds Builder, OnnxParser and the builder config, recording what was asked."""

    class BuilderFlag(enum.Enum):
        FP16 = 1
        BF16 = 2
        INT8 = 3

    class MemoryPoolType(enum.Enum):
        WORKSPACE = 0

    def __init__(self, parse_ok=True):
        super().__init__(two_io())
        trt = self
        self.flags, self.pool, self.cache_in = set(), None, None

        class Cache:
            def serialize(self):
                return b"CACHE"

        class Config:
            def set_memory_pool_limit(self, kind, n):
                trt.pool = (kind, n)

            def set_flag(self, f):
                trt.flags.add(f)

            def create_timing_cache(self, data):
                trt.cache_in = data
                return Cache()

            def set_timing_cache(self, cache, ignore_mismatch):
                pass

            def get_timing_cache(self):
                return Cache()

        class Builder:
            def __init__(self, log):
                pass

            def create_network(self, flags):
                return object()

            def create_builder_config(self):
                return Config()

            def build_serialized_network(self, network, config):
                return PLAN

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, log):
                pass

            def parse(self, data):
                return parse_ok

            def get_error(self, i):
                return "In node 3 (Conv): unsupported attribute"

        self.Builder, self.OnnxParser = Builder, Parser


def test_build_from_onnx_with_precision_workspace_and_timing_cache(tmp_path):
    onnx = tmp_path / "net.onnx"
    onnx.write_bytes(b"onnx")
    trt = FakeBuilderTRT()
    out = build_engine(onnx, "fp16", 512, trt=trt)
    assert out == tmp_path / "net.fp16.plan" and out.read_bytes() == PLAN
    assert trt.flags == {FakeBuilderTRT.BuilderFlag.FP16}
    assert trt.pool == (FakeBuilderTRT.MemoryPoolType.WORKSPACE, 512 << 20)
    assert (tmp_path / "net.timing.cache").read_bytes() == b"CACHE" and trt.cache_in == b""
    # int8 (explicit quantisation) with fp16 fallback; the cache is reused
    trt8 = FakeBuilderTRT()
    build_engine(onnx, "int8", trt=trt8)
    assert trt8.flags == {FakeBuilderTRT.BuilderFlag.INT8, FakeBuilderTRT.BuilderFlag.FP16}
    assert trt8.cache_in == b"CACHE"
    # an engine newer than its model is reused without building
    assert build_engine(onnx, "fp16", trt=None) == out


def test_build_errors(tmp_path):
    onnx = tmp_path / "net.onnx"
    onnx.write_bytes(b"onnx")
    with pytest.raises(gpuwatch.UsageError, match="could not parse.*unsupported attribute"):
        build_engine(onnx, trt=FakeBuilderTRT(parse_ok=False))
    with pytest.raises(gpuwatch.UsageError, match="unknown precision 'fp8'"):
        build_engine(onnx, "fp8", trt=FakeBuilderTRT())
    with pytest.raises(gpuwatch.UsageError, match="no ONNX model at"):
        build_engine(tmp_path / "none.onnx", trt=FakeBuilderTRT())


def test_without_tensorrt_installed_the_error_names_the_package(tmp_path):
    code = ("import sys; sys.modules['tensorrt'] = None\n"
            "from gpuwatch.bindings.tensorrt import _trt\n"
            "try:\n    _trt()\nexcept Exception as e:\n    print(type(e).__name__, e)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "DeviceUnavailable" in r.stdout and "pip install 'tensorrt>=10'" in r.stdout
    assert "pip install -e '.[tensorrt]'" in r.stdout  # the extra, from a clone (not PyPI's gpuwatch)


def test_cli_tensorrt_flags_on_sim_are_clear_errors(tmp_path, plan):
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--device", "sim:t4",
                        "--engine", str(plan), "--iters", "3"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 2 and "cannot run on a simulated GPU" in r.stderr
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--device", "sim:t4", "--onnx",
                        "m.onnx", "--precision", "fp8"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice: 'fp8'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "gpuwatch.record", "--device", "sim:t4",
                        "--binding", "opencl"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice: 'opencl'" in r.stderr


def test_top_level_factory_needs_a_real_gpu(tmp_path, plan):
    # made outside a session, it opens the GPU itself: here there is none, and it says so
    with pytest.raises(gpuwatch.UsageError, match="cannot run on a simulated GPU"):
        gpuwatch.TensorRTEngine(plan, device="sim:t4")
    with gpuwatch.session("sim:t4", tmp_path / "t.parquet"):
        with pytest.raises(gpuwatch.UsageError, match="cannot run on a simulated GPU"):
            gpuwatch.TensorRTEngine(plan)
