"""torch.nn's Module call laid out as torch lays it out (`__call__` is `_wrapped_call_impl`,
which `gpuwatch run` replaces), and the layers the programs use; a leaf layer is one launch."""
from .. import Tensor, _launch


class Module:
    def _call_impl(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _wrapped_call_impl(self, *args, **kwargs):
        return self._call_impl(*args, **kwargs)

    __call__ = _wrapped_call_impl

    def forward(self, x):
        _launch()
        return x if isinstance(x, Tensor) else Tensor()

    def _same(self, *a, **k):
        return self

    cuda = half = eval = train = to = float = _same


class Linear(Module):
    def __init__(self, cin, cout, bias=True, **kwargs):
        self.cout = cout

    def forward(self, x):
        _launch()
        return Tensor(x.shape[:-1] + (self.cout,), x.dtype, x.device)


class Conv2d(Module):
    def __init__(self, cin, cout, k=3, stride=1, padding=0, bias=True, **kwargs):
        self.cout, self.stride = cout, stride

    def forward(self, x):
        _launch()
        n, _, h, w = x.shape
        s = self.stride
        return Tensor((n, self.cout, -(-h // s), -(-w // s)), x.dtype, x.device)


class ReLU(Module):
    def __init__(self, inplace=False):
        pass


class BatchNorm2d(ReLU):
    def __init__(self, c, **kwargs):
        pass


class AdaptiveAvgPool2d(Module):
    def __init__(self, size):
        pass

    def forward(self, x):
        _launch()
        return Tensor(x.shape[:2] + (1, 1), x.dtype, x.device)


class Flatten(Module):
    def forward(self, x):
        return Tensor((x.shape[0], x.shape[1]), x.dtype, x.device)


class Sequential(Module):
    def __init__(self, *layers):
        self.layers = layers

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
