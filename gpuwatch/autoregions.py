"""Inferences found in a program that does not mark them for gpuwatch (`gpuwatch run`).

Sources, in the order `auto` prefers them (a region opened inside another is not timed on its
own: the outermost wins, so an NVTX range around a model call is one region):
- "nvtx": ranges the program marks: torch.cuda.nvtx.range_push/pop (and its `range` context)
  and the `nvtx` package's push_range/pop_range and annotate;
- "call": the outermost torch.nn.Module call (the top-level model's forward, not each
  submodule), through torch's global module hooks; and TensorRT execution contexts'
  execute_async_v3 (events on the stream it is given) and execute_v2.
Each region's name says its source ("nvtx:NAME", "call:ClassName"). Hooks are installed when
the program imports the library, never before: nothing is imported on the program's behalf.

Conditions are derived, not labelled: the idle time since the previous region ended (host
time) is the region's `gap_ms`, and its condition is the gap's bucket (GAP_EDGES_MS), so the
analysis compares inferences after short gaps with those after long ones. The first region has
no gap: it is warm-up.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import time
from typing import Any, Callable, Sequence

from . import streams

__all__ = ["AutoRegions", "GAP_EDGES_MS", "gap_condition", "active"]

_active: "AutoRegions | None" = None  # the installed instance (gpuwatch run's)


def active() -> "AutoRegions | None":
    """The AutoRegions `gpuwatch run` installed, if any (its `enabled` switch is for the
    overhead benchmark, benchmarks/run_overhead.py)."""
    return _active

GAP_EDGES_MS = (0.0, 1.0, 5.0, 50.0, 500.0, 5000.0)  # bucket lower edges


def gap_condition(gap_ms: float | None) -> str:
    """The condition of a region after an idle gap of `gap_ms` (None: the first region)."""
    if gap_ms is None:
        return "first"
    lo = max(e for e in GAP_EDGES_MS if gap_ms >= e) if gap_ms >= 0 else 0.0
    i = GAP_EDGES_MS.index(lo)
    hi = GAP_EDGES_MS[i + 1] if i + 1 < len(GAP_EDGES_MS) else None
    return f"gap {lo:g}-{hi:g} ms" if hi is not None else f"gap >= {lo:g} ms"


class AutoRegions:
    """Opens and closes timed regions for the sources in `sources` ("nvtx", "call")."""

    def __init__(self, session: Any, sources: Sequence[str]):
        self._s = session
        self.sources = tuple(sources)
        self._depth = 0
        self._open: Any = None  # the outermost region's pending record
        self._last_end_ns: int | None = None  # perf_counter_ns: host time, real even on sim
        self._iterations: dict[str, int] = {}
        self.counts = {s: 0 for s in self.sources}
        self.enabled = True  # False: hooks run, nothing is timed (a bare arm, for benchmarks)
        self.installed: list[str] = []
        self._finders: list[_AfterImport] = []

    # -- regions ------------------------------------------------------------------------------
    def begin(self, name: str, source: str, stream: Any = None) -> bool:
        """Open a region unless one is open (then it is nested: not timed on its own, only
        counted, so that every begin() is matched by an end()). Returns whether this call
        opened one."""
        if self._depth:
            self._depth += 1
            return False
        if not self.enabled:
            return False
        s = self._s
        timer = s._timer
        if timer is None or s._closed:
            return False
        now = time.perf_counter_ns()
        gap = None if self._last_end_ns is None else (now - self._last_end_ns) / 1e6
        cond = gap_condition(gap)
        it = self._iterations.get(cond, 0)
        self._iterations[cond] = it + 1
        ref = (streams.resolve(stream) if stream is not None else None) or s._stream_ref \
            or streams.current(s._ordinal)
        # (the first region is warm-up: it pays for the program's first launches, CUDA's
        # lazy start included, and has no gap to be compared by)
        self._open = timer.begin("inference", f"{source}:{name}", ref,
                                 (cond, gap, it, gap is None, None))
        self._depth = 1
        self.counts[source] += 1
        return True

    def end(self, error: BaseException | None = None) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth:
            return
        p, self._open = self._open, None
        timer = self._s._timer
        if p is not None and timer is not None:
            timer.end(p, error)
        self._last_end_ns = time.perf_counter_ns()

    # -- sources --------------------------------------------------------------------------------
    def install(self) -> None:
        """Hook each source's library now if the program has imported it, else when it does."""
        global _active
        _active = self
        wanted = []
        if "nvtx" in self.sources:
            wanted += [("torch", self._hook_torch_nvtx), ("nvtx", self._hook_nvtx)]
        if "call" in self.sources:
            wanted += [("torch", self._hook_torch_modules), ("tensorrt", self._hook_tensorrt)]
        later: dict[str, list[Callable[[Any], None]]] = {}
        for module, hook in wanted:
            if module in sys.modules:
                hook(sys.modules[module])
            else:
                later.setdefault(module, []).append(hook)
        for module, hooks in later.items():  # (one finder per module, running all its hooks)
            finder = _AfterImport(module, hooks)
            self._finders.append(finder)
            sys.meta_path.insert(0, finder)

    def uninstall(self) -> None:
        global _active
        if _active is self:
            _active = None
        for f in self._finders:
            if f in sys.meta_path:
                sys.meta_path.remove(f)
        self._finders.clear()

    def _hook_torch_modules(self, torch: Any) -> None:
        hooks = getattr(getattr(getattr(torch, "nn", None), "modules", None), "module", None)
        pre = getattr(hooks, "register_module_forward_pre_hook", None)
        post = getattr(hooks, "register_module_forward_hook", None)
        if pre is None or post is None:
            return

        def before(module: Any, args: Any) -> None:
            self.begin(type(module).__qualname__, "call")

        def after(module: Any, args: Any, output: Any) -> None:
            self.end()

        pre(before)
        try:
            post(after, always_call=True)  # (closes the region when forward raises, too)
        except TypeError:  # an older torch
            post(after)
        self.installed.append("torch modules")

    def _hook_tensorrt(self, trt: Any) -> None:
        ctx = getattr(trt, "IExecutionContext", None)
        if ctx is None:
            return
        regions = self
        for method in ("execute_async_v3", "execute_v2"):
            orig = getattr(ctx, method, None)
            if orig is None:
                continue

            def timed(context: Any, *args: Any, _orig: Any = orig, _method: str = method,
                      **kwargs: Any) -> Any:
                # execute_async_v3(stream_handle): the work goes on that stream; execute_v2
                # is synchronous (the current, legacy default, stream brackets it)
                stream = (args[0] if args else kwargs.get("stream_handle")) \
                    if _method == "execute_async_v3" else None
                engine = getattr(context, "engine", None)
                name = str(getattr(engine, "name", "") or "tensorrt")
                regions.begin(name, "call", stream)
                try:
                    out = _orig(context, *args, **kwargs)
                except BaseException as e:
                    regions.end(e)
                    raise
                regions.end()
                return out

            setattr(ctx, method, timed)
        self.installed.append("tensorrt")

    def _hook_torch_nvtx(self, torch: Any) -> None:
        nvtx = getattr(getattr(torch, "cuda", None), "nvtx", None)
        if nvtx is None or not hasattr(nvtx, "range_push"):
            return
        self._wrap_push_pop(nvtx, "range_push", "range_pop")
        self.installed.append("torch.cuda.nvtx")

    def _hook_nvtx(self, nvtx: Any) -> None:
        if hasattr(nvtx, "push_range"):
            self._wrap_push_pop(nvtx, "push_range", "pop_range")
        annotate: Any = getattr(nvtx, "annotate", None)
        if isinstance(annotate, type):  # (a context manager and decorator: both enter it)
            enter, leave = getattr(annotate, "__enter__"), getattr(annotate, "__exit__")
            regions = self

            def __enter__(a: Any) -> Any:
                regions.begin(str(getattr(a, "message", None) or "range"), "nvtx")
                return enter(a)

            def __exit__(a: Any, *exc: Any) -> Any:
                out = leave(a, *exc)
                regions.end(exc[1] if len(exc) > 1 else None)
                return out

            setattr(annotate, "__enter__", __enter__)
            setattr(annotate, "__exit__", __exit__)
        self.installed.append("nvtx")

    def _wrap_push_pop(self, mod: Any, push_name: str, pop_name: str) -> None:
        push, pop = getattr(mod, push_name), getattr(mod, pop_name)
        regions = self

        def pushed(*args: Any, **kwargs: Any) -> Any:
            msg = args[0] if args else kwargs.get("message", kwargs.get("msg", "range"))
            regions.begin(str(msg), "nvtx")
            return push(*args, **kwargs)

        def popped(*args: Any, **kwargs: Any) -> Any:
            out = pop(*args, **kwargs)
            regions.end()
            return out

        setattr(mod, push_name, pushed)
        setattr(mod, pop_name, popped)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs each of `hooks` on module `name` once the program has imported it (a meta-path
    finder that lets the other finders find it and wraps the loader's exec_module)."""

    def __init__(self, name: str, hooks: list[Callable[[Any], None]]):
        self.name, self.hooks = name, hooks

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _AfterImport):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec
        hooks, me = self.hooks, self

        def exec_and_hook(module: Any) -> None:
            exec_module(module)
            if me in sys.meta_path:
                sys.meta_path.remove(me)
            for hook in hooks:
                hook(module)

        try:
            setattr(loader, "exec_module", exec_and_hook)
        except AttributeError:
            return spec
        return spec
