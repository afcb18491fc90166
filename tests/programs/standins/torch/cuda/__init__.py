from . import nvtx  # noqa: F401


_initialized = False  # (as torch.cuda has it: CUDA never starts in the stand-in)


def is_initialized():
    return _initialized
