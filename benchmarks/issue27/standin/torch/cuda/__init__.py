from . import nvtx  # noqa: F401

_initialized = False  # (CUDA never starts in the stand-in: gpuwatch uses the default stream)


def is_available():
    return True


def is_initialized():
    return _initialized


def synchronize(device=None):
    return None


def get_device_name(device=None):
    return "torch stand-in (no GPU)"
