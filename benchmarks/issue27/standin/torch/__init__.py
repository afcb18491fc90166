"""A dry-run stand-in for the few parts of PyTorch that benchmarks/issue27's programs use, for a
machine without torch (h100_issue27.sh DRY=1 puts benchmarks/issue27/standin on PYTHONPATH).
Every "kernel" (a leaf module's forward, a tensor op) costs a few microseconds of host time, as
a launch does; the "GPU" is infinitely fast, as gpuwatch's stand-in device is. CUDA never starts
here (torch.cuda.is_initialized() is False), so gpuwatch times on the legacy default stream.
Not torch: no maths is done, and shapes are carried only as far as the programs need them."""
import contextlib
import time


__version__ = "0.0+standin"
float16 = half = "float16"
float32 = float = "float32"  # noqa: A001
bfloat16 = "bfloat16"
uint8 = "uint8"
LAUNCH_US = 5.0  # host time of one "launch"


def _launch():
    end = time.perf_counter_ns() + int(LAUNCH_US * 1000)
    while time.perf_counter_ns() < end:
        pass


class Tensor:
    def __init__(self, shape=(1,), dtype=float32, device="cpu", value=0.0):
        self.shape, self.dtype, self.device, self._value = tuple(shape), dtype, device, value

    def _op(self, shape=None, device=None, dtype=None):
        if (device or self.device) != "cpu":
            _launch()
        return Tensor(self.shape if shape is None else shape, dtype or self.dtype,
                      device or self.device, self._value)

    def cuda(self, non_blocking=False):
        return self._op(device="cuda")

    def cpu(self):
        if self.device != "cpu":
            cuda.synchronize()
        return Tensor(self.shape, self.dtype, "cpu", self._value)

    def to(self, *args, **kwargs):
        dev = kwargs.get("device") or next((a for a in args if a in ("cuda", "cpu")), None)
        dt = kwargs.get("dtype") or next((a for a in args if a not in ("cuda", "cpu")), None)
        return self._op(device=dev, dtype=dt)

    def half(self):
        return self._op(dtype=half)

    def float(self):
        return self._op(dtype=float32)

    def item(self):
        if self.device != "cpu":
            cuda.synchronize()
        return self._value

    def tolist(self):
        return [self._value] * (self.shape[0] if self.shape else 1)

    def sum(self, *a, **k):
        return self._op(shape=())

    def mean(self, *a, **k):
        return self._op(shape=())

    def argmax(self, dim=None, **k):
        return self._op(shape=() if dim is None else self.shape[:dim] + self.shape[dim + 1:])

    def softmax(self, dim=-1):
        return self._op()

    def reshape(self, *shape):
        return Tensor(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape,
                      self.dtype, self.device, self._value)

    view = reshape

    def unsqueeze(self, dim):
        return Tensor((1,) + self.shape, self.dtype, self.device, self._value)

    def __mul__(self, other):
        return self._op()

    __add__ = __sub__ = __truediv__ = __rmul__ = __radd__ = __mul__


def randn(*shape, device="cpu", dtype=float32, **kwargs):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Tensor(shape, dtype, str(device).split(":")[0])


zeros = ones = empty = rand = randn


def tensor(data, device="cpu", dtype=float32, **kwargs):
    n = len(data) if hasattr(data, "__len__") else 1
    return Tensor((n,), dtype, str(device).split(":")[0])


def manual_seed(seed):
    return None


@contextlib.contextmanager
def inference_mode(mode=True):
    yield


no_grad = inference_mode


from . import cuda, nn  # noqa: E402,F401  (after Tensor: nn uses it)
