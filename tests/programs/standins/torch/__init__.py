"""A stand-in for the parts of PyTorch's API that `gpuwatch run` hooks: torch.nn.Module calls
(Module.__call__ laid out as torch lays it out, global forward hooks included), and
torch.cuda.nvtx.range_push/range_pop/range.
CUDA never starts (torch.cuda.is_initialized() is False), as on a machine without a GPU."""
from . import cuda, nn  # noqa: F401
