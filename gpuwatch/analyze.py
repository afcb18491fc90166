"""`python -m gpuwatch.analyze`: layers, attribution and a verdict for traces.

`import gpuwatch.analyze` makes the package attribute `gpuwatch.analyze` this module (Python
sets it after importing a submodule), which would hide the function of that name: so the
module is callable, and calling it calls `gpuwatch.analysis.analyze`."""

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *traces: Any, **options: Any) -> Any:
        from gpuwatch.analysis import analyze

        return analyze(*traces, **options)


if __name__ == "__main__":
    try:  # (a Ctrl-C while the command's libraries load: no traceback through them)
        from gpuwatch.cli import module_main
    except KeyboardInterrupt:
        print("python -m gpuwatch.analyze: interrupted before it began; nothing was done", file=sys.stderr)
        sys.exit(130)
    module_main("analyze")
else:
    sys.modules[__name__].__class__ = _CallableModule
