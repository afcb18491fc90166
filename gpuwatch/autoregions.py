"""Inferences found in a program that does not mark them for gpuwatch (`gpuwatch run`).

Sources, in the order `auto` prefers them (a region opened inside another is not timed on its
own: the outermost wins, so an NVTX range around a model call is one region):
- "nvtx": ranges the program marks: torch.cuda.nvtx.range_push/pop (and its `range` context)
  and the `nvtx` package's push_range/pop_range and annotate;
- "call": the outermost torch.nn.Module call (the top-level model's forward, not each
  submodule), through `torch.nn.Module.__call__`; and TensorRT execution contexts'
  execute_async_v3 (events on the stream it is given) and execute_v2. A call region is timed
  the way `s.infer` times one (RegionTimer.call: its C fast path where there is one). Inside
  it, a submodule call goes through gpuwatch/regions/_autoregions.c's NestedCall straight to torch's
  own __call__ (~10 ns more; a Python wrapper where the C module was not built: ~0.2 us). (torch's
  global module hooks are not used: with one registered, every submodule call leaves torch's
  fast path.)
- "kernels" (gpuwatch.kernelregions): bursts of kernels separated by idle GPU time, made
  after the run from the kernel trace.
Each region's name says its source ("nvtx:NAME", "call:ClassName"). Hooks are installed when
the program imports the library, never before: nothing is imported on the program's behalf.

Conditions are derived, not labelled: the idle time since the previous region ended (host
time) is the region's `gap_ms`, and its condition is the gap's bucket (GAP_EDGES_MS); the
analysis regroups them by the gaps it finds (analysis.gaps). The first region has no gap: it
is warm-up.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
from typing import Any, Callable, Sequence

from . import streams
from .bindings.cuda import native_module
from .regions.gaps import _Gaps, _nested_call, _range_hook
from .labels import GAP_EDGES_MS, GAP_LABELS, gap_condition

__all__ = ["AutoRegions", "GAP_EDGES_MS", "gap_condition", "active"]

_active: "AutoRegions | None" = None  # the installed instance (gpuwatch run's)


def active() -> "AutoRegions | None":
    """The AutoRegions `gpuwatch run` installed, if any (its `enabled` switch is for the
    overhead benchmark, benchmarks/run_overhead.py)."""
    return _active


class AutoRegions:
    """Opens and closes timed regions for the sources in `sources` ("nvtx", "call").

    The regions' state (which is open, how deep, the gap since the last one and the iteration
    counts) is a GapRegions (regions/_autoregions.c, `_Gaps` in Python where it was not built),
    and so are the hooks on the hot path (NestedCall in torch.nn.Module.__call__, RangeHook in
    the NVTX push/pop functions): after an idle gap every Python frame costs the program
    several microseconds of a cold host. Python runs only for what C hands back: a class seen
    the first time, a stream given (TensorRT), housekeeping due."""

    def __init__(self, session: Any, sources: Sequence[str]):
        self._s = session
        self.sources = tuple(sources)
        self.counts = {s: 0 for s in self.sources}
        self._names: dict[type, str] = {}  # a module class -> its region name
        native = _native()
        make: Any = native.GapRegions if native is not None else _Gaps
        self._g = make(GAP_EDGES_MS, GAP_LABELS, self.counts, self._names, "inference")
        self._native = native
        self._armed = False
        self._hook: Any = None  # the NestedCall in Module.__call__
        self._enabled = True
        # (owner, attribute, original, replacement): what install() patched
        self._patches: list[tuple[Any, str, Any, Any]] = []
        self.installed: list[str] = []
        self._finders: list[_AfterImport] = []

    @property
    def concurrent(self) -> int:
        """Ranges and calls another thread made while a region was open: not timed (one
        region at a time)."""
        return int(self._g.concurrent)

    @property
    def enabled(self) -> bool:
        """False: nothing is timed and the patched library functions are the originals again
        (the bare arm of benchmarks/run_overhead.py)."""
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self._enabled = bool(on)
        self._g.live = int(self._enabled and self._armed)
        for owner, attr, orig, new in self._patches:
            setattr(owner, attr, new if on else orig)

    def _arm(self) -> None:
        """Point the regions at the session's timer, once it runs: timed from now on. (Until
        uninstall(): gpuwatch run uninstalls before it closes the session.)"""
        timer = self._s._timer
        if self._armed or timer is None:
            return
        self._g.arm(timer.fast, timer.c_region, self._open_slow, timer.end)
        self._armed = True
        self._g.live = int(self._enabled)

    def _open_slow(self, kind: str, name: str, labels: tuple[Any, ...]) -> Any:
        """A range's region where the C path declined (housekeeping due, no C path)."""
        s = self._s
        if s._timer is None or s._closed:
            return None
        return s._timer.open_slow(kind, name, labels)

    # -- regions ------------------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             name: str | None = None, source: str = "call", stream: Any = None) -> Any:
        """fn(*args, **kwargs) as one region (unless one is open: then only run), timed as
        `s.infer` times one: the events on `stream`, a stream object or handle (None: where the
        program's work goes).
        `name` None: "call:" and the class of args[0] (a torch module)."""
        g = self._g
        if not g.live or g.mine():
            return fn(*args, **kwargs)  # (nested in this thread's region)
        if name is None:
            cls = type(args[0])
            name = self._names.get(cls)
            if name is None:  # (a class made inside a function: "Net", not "f.<locals>.Net")
                name = self._names[cls] = \
                    "call:" + cls.__qualname__.rsplit("<locals>.", 1)[-1]
        if stream is None or g.busy():  # (busy: g.call runs it untimed, counted)
            return g.call(name, source, fn, args, kwargs)
        # (a stream object or handle, TensorRT's: never "device", which the C path cannot time)
        return g.call(name, source, fn, args, kwargs, streams.stream_handle(stream), "argument")

    def begin(self, name: str, source: str) -> bool:
        """Open a region unless one is open (then it is nested: not timed on its own, only
        counted, so that every begin() is matched by an end()). For sources that mark a start
        and an end separately (NVTX push/pop). Returns whether this call opened one."""
        return bool(self._g.begin(f"{source}:{name}", source))

    def end(self, error: BaseException | None = None) -> None:
        """Close what begin() opened (error: the program's exception inside it)."""
        self._g.end(error)

    def close_open(self, error: BaseException | None = None) -> None:
        """End the region left open, however deeply nested (the program ended, raised or was
        stopped inside it), with `error` on its row."""
        self._g.close_open(error)

    # -- sources --------------------------------------------------------------------------------
    def install(self) -> None:
        """Hook each source's library now if the program has imported it, else when it does."""
        global _active
        _active = self
        self._arm()
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
        """Stop finding regions: the finders go and the libraries get their functions back."""
        global _active
        if _active is self:
            _active = None
        for f in self._finders:
            if f in sys.meta_path:
                sys.meta_path.remove(f)
        self._finders.clear()
        for owner, attr, orig, new in reversed(self._patches):
            if getattr(owner, attr, None) is new:  # (unless the program replaced it since)
                setattr(owner, attr, orig)
        self._patches.clear()
        self._hook = None
        self._g.live = 0  # (a program that kept a hooked function: it runs untimed now)

    def _patch(self, owner: Any, attr: str, new: Any) -> None:
        self._arm()  # (a hooked library's calls are timed from now)
        orig = owner.__dict__[attr] if isinstance(owner, type) and attr in owner.__dict__ \
            else getattr(owner, attr)
        setattr(owner, attr, new)
        self._patches.append((owner, attr, orig, new))

    def _hook_torch_modules(self, torch: Any) -> None:
        module_cls = getattr(getattr(torch, "nn", None), "Module", None)
        if not isinstance(module_cls, type) or "__call__" not in module_cls.__dict__:
            return
        orig = module_cls.__dict__["__call__"]
        hook: Any = _nested_call(orig, self.call, self._g)  # (no C module)
        if self._native is not None:  # the class's first call: call(orig, (module, *args),
            hook = self._hook = self._native.NestedCall(orig, self.call, self._g)  # kwargs);
            # then in C
        self._patch(module_cls, "__call__", hook)
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
                if regions._g.mine():
                    return _orig(context, *args, **kwargs)
                # execute_async_v3(stream_handle): the work goes on that stream; execute_v2
                # is synchronous (the current, legacy default, stream brackets it)
                stream = (args[0] if args else kwargs.get("stream_handle")) \
                    if _method == "execute_async_v3" else None
                engine = getattr(context, "engine", None)
                name = str(getattr(engine, "name", "") or "tensorrt")
                return regions.call(_orig, (context, *args), kwargs, f"call:{name}", "call",
                                    stream)

            self._patch(ctx, method, timed)
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
        if isinstance(annotate, type):  # (a context manager and decorator)
            self._hook_annotate(annotate)
        self.installed.append("nvtx")

    def _hook_annotate(self, annotate: Any) -> None:
        """nvtx.annotate: `with annotate(msg)` is a range, and so is each call of a function
        it decorates. The message is taken at __init__: the real class keeps none where NVTX
        is off (a contextlib.nullcontext whose decorator returns the function as it is) and,
        where on, its decorator pushes through the C library, not __enter__."""
        init, enter, leave = annotate.__init__, annotate.__enter__, annotate.__exit__
        decorate = annotate.__dict__.get("__call__")
        begin, end = self.begin, self.end

        def name_of(a: Any) -> str:
            msg = getattr(a, "_gpuwatch_message", None) or getattr(a, "message", None)
            return "range" if msg is None else str(msg)

        def __init__(a: Any, *args: Any, **kwargs: Any) -> None:
            init(a, *args, **kwargs)
            msg = args[0] if args else kwargs.get("message")
            try:
                a._gpuwatch_message = msg
            except AttributeError:  # (__slots__)
                pass

        def __enter__(a: Any) -> Any:
            out = enter(a)
            begin(name_of(a), "nvtx")
            return out

        def __exit__(a: Any, *exc: Any) -> Any:
            end(exc[1] if len(exc) > 1 else None)
            return leave(a, *exc)

        def __call__(a: Any, func: Any) -> Any:
            inner = decorate(a, func) if decorate is not None else func
            msg = getattr(a, "_gpuwatch_message", None)
            name = str(msg) if msg is not None else getattr(func, "__name__", "range")

            @functools.wraps(func)
            def timed(*args: Any, **kwargs: Any) -> Any:
                begin(name, "nvtx")
                try:
                    out = inner(*args, **kwargs)
                except BaseException as e:
                    end(e)
                    raise
                end(None)
                return out
            return timed

        self._patch(annotate, "__init__", __init__)
        self._patch(annotate, "__enter__", __enter__)
        self._patch(annotate, "__exit__", __exit__)
        if decorate is not None:
            self._patch(annotate, "__call__", __call__)

    def _wrap_push_pop(self, mod: Any, push_name: str, pop_name: str) -> None:
        push, pop = getattr(mod, push_name), getattr(mod, pop_name)
        hook: Any = self._native.RangeHook if self._native is not None else _range_hook
        self._patch(mod, push_name, hook(self._g, push, "nvtx:", "nvtx"))
        self._patch(mod, pop_name, hook(self._g, pop, None, None))


def _native() -> Any:
    """gpuwatch.regions._native (its GapRegions, RangeHook and NestedCall), or None where
    the C module was not built or is turned off (GPUWATCH_NATIVE=0)."""
    return native_module()


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
