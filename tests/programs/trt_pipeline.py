# A TensorRT video loop: enqueue on the program's own stream, 20 ms between frames.
import time

import tensorrt as trt

context = trt.ICudaEngine("detector.plan").create_execution_context()
for i in range(25):
    assert context.execute_async_v3(0x7000)
    time.sleep(0.02 if i % 5 else 0.001)
context.execute_v2([])
print("trt done")
