"""The region engine, in one place: what opens and closes a timed region, nests and labels it,
checks its thread and finds its stream.

- timer: RegionTimer, the timed region (two events per call, resolved lazily; stream checks;
  the in-band clock's stamps) and the Python reference of the C timed path;
- gaps: the Python reference of `gpuwatch run`'s GapRegions, RangeHook and NestedCall (its
  open region, nesting, thread and gap labels);
- _native.c, _autoregions.c, _native.h: the optional C extension `gpuwatch.regions._native`
  (the timed path's driver calls, FastRegion, the probe's launch; NestedCall, RangeHook,
  GapRegions), with its stub _native.pyi. Where it is not built, or GPUWATCH_NATIVE=0, the
  Python references run instead; every region test runs on both (tests/conftest.py: impl).

The session, the engines and `gpuwatch run`'s hooks (autoregions) only supply labels and
install hooks. Nothing is imported here: importing the extension must not import the timer,
which imports the bindings that load the extension.
"""
