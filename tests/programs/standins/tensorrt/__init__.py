"""A stand-in for TensorRT 10's execution API (IExecutionContext.execute_async_v3 on a CUDA
stream handle, execute_v2), the shape `gpuwatch run` hooks; the work is a short sleep."""
import time


class ICudaEngine:
    def __init__(self, name):
        self.name = name

    def create_execution_context(self):
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine):
        self.engine = engine

    def execute_async_v3(self, stream_handle):
        time.sleep(0.0003)
        return True

    def execute_v2(self, bindings):
        time.sleep(0.0003)
        return True
