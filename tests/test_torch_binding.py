"""The PyTorch adapter's factory spec (no GPU needed: the factory here is plain Python)."""

from __future__ import annotations

import pytest

from gpuwatch.bindings.torch import load_factory
from gpuwatch.errors import UsageError


def made(size: str = "768x448", depth: str = "small"):
    return (lambda x: x), {"size": size, "depth": depth}


def test_factory_options_are_passed_as_keywords():
    fn, ex = load_factory("test_torch_binding:made,size=1280x720,depth=large")
    assert ex == {"size": "1280x720", "depth": "large"} and fn(3) == 3
    assert load_factory("test_torch_binding:made")[1] == {"size": "768x448", "depth": "small"}


@pytest.mark.parametrize("spec, words", [
    ("nomodule", "module:factory"),
    ("test_torch_binding:made,size", "use key=value"),
    ("test_torch_binding:made,colour=red", "unexpected keyword argument 'colour'"),
    ("test_torch_binding:absent", "no callable 'absent'"),
    ("no_such_module_xyz:f", "cannot import"),
])
def test_bad_factory_specs(spec, words):
    with pytest.raises(UsageError, match=words):
        load_factory(spec)
