from .modules.module import Module  # noqa: F401
from . import modules  # noqa: F401


class Sequential(Module):
    def __init__(self, *layers):
        self.layers = layers

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x
