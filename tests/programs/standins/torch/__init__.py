"""A stand-in for the parts of PyTorch's API that `gpuwatch run` hooks: torch.nn.Module calls
with the global forward hooks (torch.nn.modules.module.register_module_forward_pre_hook and
register_module_forward_hook(always_call=)), and torch.cuda.nvtx.range_push/range_pop/range.
CUDA never starts (torch.cuda.is_initialized() is False), as on a machine without a GPU."""
from . import cuda, nn  # noqa: F401
