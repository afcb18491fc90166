"""Engines and user code timed by whichever session is active when they are called.

    engine = gpuwatch.TensorRTEngine("model.plan")   # or gpuwatch.engine("builtin:small")
    model = gpuwatch.timed(model)                    # a user's own engine object or callable
    with gpuwatch.session():
        engine.infer(x)                              # timed
        model(x)                                     # timed
    engine.infer(x)                                  # no session: runs untimed

gpuwatch's engines run on a stream of their own and time on it; a wrapped user object times on
the stream given to `timed(..., stream=)`, else on the stream its work goes on (streams.py).
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import TYPE_CHECKING, Any, Callable

from . import active, streams
from .backends import open_backend
from .errors import SessionError, UsageError
from .regions.timer import callable_name
from .streams import StreamRef

if TYPE_CHECKING:
    from .recorder import Session

__all__ = ["TimedEngine", "Timed", "engine", "timed", "TensorRTEngine"]


class TimedEngine:
    """A gpuwatch engine (built-in, PyTorch factory, TensorRT, simulated) whose `infer`,
    `preprocess` and `postprocess` are timed by the active session, on the engine's stream.
    Other attributes are the engine's own (`raw`)."""

    def __init__(self, raw: Any, backend: Any, spec: str | None = None,
                 options: dict[str, Any] | None = None, owns_backend: bool = False):
        self.raw, self._backend = raw, backend
        self.name = raw.name
        self._spec, self._options = spec, dict(options or {})
        self._owns = owns_backend
        self._per_session: dict[int, Any] = {}  # simulated engines rebuilt on a session's GPU
        self._refs: dict[int, StreamRef] = {}  # id(raw engine) -> where its events go

    def infer(self, x: Any = None) -> Any:
        """Enqueue one inference (asynchronous: call synchronize() before reading results)."""
        return self._call("inference", self.name, "enqueue", "infer", (x,))

    def preprocess(self) -> Any:
        """The engine's input step (host->device copy and a small kernel), timed as a span."""
        return self._call("span", "preprocess", "enqueue_preprocess", "preprocess", ())

    def postprocess(self) -> Any:
        """The engine's output step (a small kernel and device->host copy), timed as a span."""
        return self._call("span", "postprocess", "enqueue_postprocess", "postprocess", ())

    def synchronize(self) -> None:
        """Wait for the engine's stream, as a program does before it reads results; the
        active session learns that its regions on that stream are done (host_end_ns)."""
        s = active.session
        raw = self._raw(s)
        raw.synchronize()
        if s is not None:
            s._synced(_ptr(raw.stream))

    def close(self) -> None:
        """Release a GPU this engine opened for itself (engines made by gpuwatch.engine())."""
        if self._owns:
            self._owns = False
            self._backend.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def _call(self, kind: str, name: str, inner: str, outer: str, args: tuple[Any, ...]) -> Any:
        s = active.session
        raw = self._raw(s)
        if s is None:
            return getattr(raw, outer)(*args)
        fn = getattr(raw, inner, None)
        around = getattr(raw, "around", None) if fn is not None else None
        if fn is None:
            fn = getattr(raw, outer)
        ref = self._refs.get(id(raw))
        if ref is None:
            ref = self._refs[id(raw)] = StreamRef(_ptr(raw.stream), "engine")
        return s._timed(kind, name, fn, args, {}, ref, around)

    def _raw(self, s: "Session | None") -> Any:
        """The engine to run under session `s`: this one, or (simulated GPUs) one built on the
        session's own simulated GPU, which lives in that session."""
        if s is None or s._backend is self._backend or s._backend is None:
            return self.raw
        home, theirs = self._backend, s._backend
        if home.simulated and theirs.simulated:
            if self._spec is None:
                raise SessionError(f"{self.name} belongs to another simulated GPU's session")
            key = id(theirs)
            raw = self._per_session.get(key)
            if raw is None:
                made, runs = (getattr(getattr(b, "profile", None), "name", None)
                              for b in (home, theirs))
                if made != runs:  # (t4's clocks asked for, flat's given: say so)
                    warnings.warn(f"{self.name} was made on sim:{made} and runs on this "
                                  f"session's simulated GPU, sim:{runs} (a simulated engine "
                                  f"runs on its session's GPU); make the session on sim:{made} "
                                  f"to time it there", UserWarning, stacklevel=4)
                for old in self._per_session.values():  # one session at a time: drop the
                    self._refs.pop(id(old), None)  # last one's engine (its id may come again)
                self._per_session.clear()
                raw = self._per_session[key] = theirs.engine(
                    self._spec, theirs.runtime.stream(), **self._options)
            return raw
        same = getattr(home, "same_device", None)
        if not home.simulated and same is not None and same(theirs):
            return self.raw
        raise SessionError(f"{self.name} runs on {_where(home)}, but the session records "
                           f"{_where(theirs)}: make the engine on the session's device")


def engine(spec: str = "builtin:small", device: str | None = None, *, cuda_graph: bool = False,
           binding: str = "cuda", **options: Any) -> TimedEngine:
    """A gpuwatch engine made anywhere, timed by whichever session is active when it runs:
    "builtin:small", "builtin:large", "torch:module:factory", a TensorRT engine ("model.plan",
    "tensorrt:PATH") or "onnx:model.onnx" (see Session.engine). `device` as for session()
    (default $GPUWATCH_DEVICE or the first GPU). On a real GPU it runs on a stream of its own;
    on a simulated GPU, a session on sim runs it on the session's GPU."""
    spec_dev = device or os.environ.get("GPUWATCH_DEVICE") or "auto"
    backend = open_backend(spec_dev, binding=binding, telemetry=False)
    try:
        raw = backend.engine(spec, backend.runtime.stream(), cuda_graph=cuda_graph, **options)
    except BaseException:
        backend.close()
        raise
    return TimedEngine(raw, backend, spec=spec, options={"cuda_graph": cuda_graph, **options},
                       owns_backend=True)


def TensorRTEngine(path: str | os.PathLike[str],  # noqa: N802 - reads as the class it makes
                   input_shapes: dict[str, tuple[int, ...]] | None = None,
                   device: str | None = None, binding: str = "cuda") -> TimedEngine:
    """A TensorRT engine (.plan/.engine), made anywhere; its infer() is timed by whichever
    session is active (`with gpuwatch.session(): engine.infer(x)`)."""
    s = active.session
    if s is not None and device is None:  # inside a session: on its GPU, with its binding
        return s.engine(f"tensorrt:{os.fspath(path)}", input_shapes=input_shapes)
    return engine(f"tensorrt:{os.fspath(path)}", device, binding=binding,
                  input_shapes=input_shapes)


class Timed:
    """A user's engine object or callable, wrapped once by `timed()`: calling it (or its
    `method`) is timed by the active session; everything else is the object's own."""

    def __init__(self, target: Any, name: str | None = None, method: str | None = None,
                 stream: Any = None, kind: str = "inference"):
        if method is None:
            method = "infer" if callable(getattr(target, "infer", None)) else "__call__"
        if method == "__call__" and not callable(target):
            raise UsageError(f"gpuwatch.timed() needs a callable or an object with an infer() "
                             f"method; {type(target).__name__} is neither (name the method: "
                             f"timed(obj, method='execute_async_v3'))")
        fn = target if method == "__call__" else getattr(target, method, None)
        if not callable(fn):
            raise UsageError(f"{type(target).__name__} has no method {method!r} to time")
        if kind not in ("inference", "span"):
            raise UsageError(f"kind is 'inference' or 'span', not {kind!r}")
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_method", method)
        object.__setattr__(self, "_ref", streams.resolve(stream))
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "name", name or _name_of(target, method))
        object.__setattr__(self, "_timed_method", functools.partial(self._run, fn))

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        s = active.session
        if s is None:
            return fn(*args, **kwargs)
        if s._sim_user_note:  # (the user's own object, timed on a simulated GPU: say so once)
            s._note_user_code_on_sim(fn, stacklevel=4)
        return s._timed(self._kind, self.name, fn, args, kwargs, self._ref)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._method != "__call__":
            return self._target(*args, **kwargs)  # calling the object itself: not timed
        return self._timed_method(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr == self._method:
            return self._timed_method
        return getattr(self._target, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._target, attr, value)

    def __repr__(self) -> str:
        return f"gpuwatch.timed({self._target!r}, method={self._method!r})"


def timed(target: Any, name: str | None = None, *, method: str | None = None,
          stream: Any = None, kind: str = "inference") -> Timed:
    """Wrap a user's engine object or callable once; each call is then timed by whichever
    session is active (and runs untimed when none is). `method`: what to time (default
    `infer` if the object has one, else calling it: a function, a torch Module). `stream`:
    where the events go (default: the stream the work goes on, see streams.py)."""
    return Timed(target, name, method, stream, kind)


def _ptr(stream: Any) -> int:
    return streams.stream_handle(stream)


def _where(backend: Any) -> str:
    if backend.simulated:
        return "a simulated GPU"
    rt = backend.runtime
    return f"CUDA device {getattr(rt, 'ordinal', '?')} ({getattr(rt, 'uuid', None) or '?'})"


def _name_of(target: Any, method: str) -> str:
    base = callable_name(target)
    return base if method in ("__call__", "infer") else f"{base}.{method}"


def check_spec(spec: Any, device: str | None = None) -> None:
    """Check an engine spec as far as it can be without a GPU (its form, a built-in preset,
    the file or module it names, a simulated device's limits), so that a mistyped command
    fails before anything is recorded or written. Raises UsageError naming the problem."""
    import importlib.util
    from pathlib import Path

    if not isinstance(spec, str) or not spec:
        raise UsageError(f"engine takes a spec string (\"builtin:small\", \"model.plan\", "
                         f"\"torch:module:factory\"), got {type(spec).__name__} {spec!r}")
    if spec.endswith((".plan", ".engine")) and not spec.startswith("tensorrt:"):
        spec = f"tensorrt:{spec}"
    kind, _, rest = spec.partition(":")
    where = device or os.environ.get("GPUWATCH_DEVICE") or "auto"
    if where.split(",")[0] == "standin":
        raise UsageError("the stand-in device runs no engines: time your own code with "
                         "gpuwatch run, or record an engine on a GPU (--device auto) or a "
                         "simulated one (--device sim:t4)")
    if kind not in ("builtin", "torch", "tensorrt", "onnx"):
        raise UsageError(f"unknown engine {spec!r}; use builtin:small, builtin:large, "
                         "torch:module:factory, a .plan/.engine file, or onnx:model.onnx")
    if kind == "builtin":
        from .bindings.builtin import parse_spec

        parse_spec(spec)
        return
    if where.startswith("sim"):
        raise UsageError(f"engine {spec!r} cannot run on a simulated GPU (TensorRT, ONNX and "
                         f"PyTorch need a real one); use builtin:small or builtin:large")
    if kind in ("tensorrt", "onnx"):
        if not Path(rest).is_file():
            raise UsageError(f"{'--onnx model' if kind == 'onnx' else 'engine file'} {rest!r} "
                             f"does not exist; check the path")
        return
    mod_name, sep, fn_name = rest.split(",")[0].partition(":")
    if not sep or not mod_name or not fn_name:
        raise UsageError(f"--torch takes module:factory (e.g. mypkg.models:build), not {rest!r}")
    try:
        found = importlib.util.find_spec(mod_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise UsageError(f"cannot find module {mod_name!r} for --torch (run from the directory "
                         f"that holds it, or pip install it)")
