"""Engines and user objects timed by whichever session is active: `gpuwatch.engine()`,
`gpuwatch.timed()`, and the README's first line, `with gpuwatch.session(): engine.infer(x)`."""

from __future__ import annotations

import pytest

import gpuwatch
from gpuwatch.engines import Timed


def test_the_readme_line_literally(tmp_path, monkeypatch):
    """An engine made before the session; the session picks its device from $GPUWATCH_DEVICE
    (here a simulated GPU) and times every infer() on the engine's own stream."""
    monkeypatch.setenv("GPUWATCH_DEVICE", "sim:t4")
    monkeypatch.chdir(tmp_path)
    engine = gpuwatch.engine("builtin:small")
    engine.infer()  # no session: runs, untimed
    with gpuwatch.session() as s:
        for _ in range(30):
            engine.infer()
            engine.synchronize()
    inf = s.trace.inferences
    assert s.out.resolve().parent == tmp_path.resolve()  # the default name, here
    assert s.trace.meta["options"]["device"] == "sim:t4"
    assert len(inf) == 30 and set(inf["name"]) == {"builtin:small"}
    assert set(inf["stream_source"]) == {"engine"} and inf["host_end_ns"].notna().all()
    assert inf["gpu_ms"].median() == pytest.approx(4.7, rel=0.1)  # the sim T4's small engine
    with gpuwatch.session(out=tmp_path / "again.parquet") as s2:  # and in the next session
        engine.preprocess()
        engine.infer()
    assert list(s2.trace.inferences["kind"]) == ["span", "inference"]
    engine.close()


def test_an_engine_of_one_session_is_not_timed_by_accident_elsewhere(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "a.parquet") as s:
        e = s.engine()
        e.infer()
    e.infer()  # after its session: untimed, no error
    with gpuwatch.session("sim:flat", tmp_path / "b.parquet"):
        with pytest.raises(gpuwatch.SessionError, match="another simulated GPU"):
            e.infer()


class MyEngine:
    """A user's engine object: infer() enqueues work, plus attributes of its own."""

    def __init__(self, s_engine):
        self.inner, self.calls, self.name = s_engine, 0, "mine"

    def infer(self, x):
        self.calls += 1
        self.inner.raw.infer()
        return x + 1

    def warm(self):
        return "warm"


def test_timed_wraps_a_users_engine_object_once(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        raw = s.engine()
        eng = gpuwatch.timed(MyEngine(raw), stream=raw.stream)
        assert eng.infer(1) == 2 and eng.warm() == "warm" and eng.calls == 1
        eng.calls = 10  # attributes are the object's own
        assert eng.infer(2) == 3 and eng.calls == 11
    inf = s.trace.inferences
    assert list(inf["name"]) == ["mine", "mine"] and set(inf["stream_source"]) == {"argument"}
    assert inf["gpu_ms"].median() == pytest.approx(4.7, rel=0.1)
    assert eng.infer(5) == 6  # no session: runs untimed


def test_timed_wraps_a_callable_and_names_it():
    calls = []

    def model(x, scale=1):
        calls.append(x)
        return x * scale

    m = gpuwatch.timed(model)
    assert isinstance(m, Timed) and m.name == "test_timed_wraps_a_callable_and_names_it." \
        "<locals>.model"
    assert m(3, scale=2) == 6 and calls == [3]
    assert gpuwatch.timed(model, "encoder").name == "encoder"
    ctx = gpuwatch.timed(MyEngine(None), method="warm")
    assert ctx.warm() == "warm" and ctx.name == "mine.warm"


@pytest.mark.parametrize("bad, match", [(42, "callable"), (MyEngine(None), "no method")])
def test_timed_refuses_what_it_cannot_time(bad, match):
    method = "nope" if isinstance(bad, MyEngine) else None
    with pytest.raises(gpuwatch.UsageError, match=match):
        gpuwatch.timed(bad, method=method)


def test_s_infer_passes_a_given_stream_on_to_a_function_that_takes_one(tmp_path):
    seen = []
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s:
        e = s.engine()

        def run(x, stream=None):
            seen.append(stream)
            e.raw.infer()
            return x

        def no_stream(x):
            e.raw.infer()
            return x

        s.infer(run, 1, stream=e.stream)
        s.infer(no_stream, 1, stream=e.stream)  # not passed on: it takes none
        s.infer(run, 1)
    assert seen == [e.stream, None]
    assert list(s.trace.inferences["stream_source"]) == ["argument", "argument", "default"]


def test_a_session_wide_stream(tmp_path):
    with gpuwatch.session("sim:flat", tmp_path / "t.parquet") as s0:
        pass
    assert s0.trace.meta["options"]["stream"] is None
    with gpuwatch.session("sim:flat", tmp_path / "t2.parquet", stream=3) as s:
        with pytest.raises(gpuwatch.UsageError, match="no stream 3"):
            s.infer(print)  # a simulated GPU knows its streams
    with pytest.raises(gpuwatch.UsageError, match="check_every"):
        gpuwatch.session("sim:flat", tmp_path / "t3.parquet", check_every=-1)


def test_a_simulated_engine_used_on_another_profile_says_so(tmp_path):
    # (gpuwatch.engine(device="sim:t4") in a sim:flat session ran as the flat GPU, unsaid:
    # "No condition is slower" where the T4's layering was asked for)
    import warnings

    eng = gpuwatch.engine("builtin:small", device="sim:t4")
    with pytest.warns(UserWarning, match="made on sim:t4 and runs on .* sim:flat"):
        with gpuwatch.session("sim:flat", tmp_path / "a.parquet"):
            eng.infer()
            eng.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (the same profile: nothing to say)
        with gpuwatch.session("sim:t4", tmp_path / "b.parquet"):
            eng.infer()
            eng.synchronize()


def test_your_own_code_timed_on_a_simulated_gpu_warns_once(tmp_path):
    # (a 2 ms sleep read as 4.5 us: the simulator's clock times the regions, unsaid)
    import time
    import warnings

    class Model:
        def __call__(self, x):
            time.sleep(0.0002)

    timed_model = gpuwatch.timed(Model())
    for how in ("infer", "span", "timed"):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with gpuwatch.session("sim:t4", tmp_path / f"{how}.parquet") as s:
                e = s.engine()
                for _ in range(3):
                    e.infer()  # (its own engine: the simulator runs it, nothing to say)
                    e.synchronize()
                assert not seen
                for _ in range(3):
                    if how == "infer":
                        s.infer(time.sleep, 0.0002)
                    elif how == "span":
                        with s.span("pre"):
                            time.sleep(0.0002)
                    else:
                        timed_model(1)
        said = [w for w in seen if "cannot time your own code" in str(w.message)]
        assert len(said) == 1 and said[0].filename == __file__, how
        assert gpuwatch.load(tmp_path / f"{how}.parquet").meta["warning"].startswith(
            "a simulated GPU cannot time your own code")
