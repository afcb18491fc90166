"""The sampler against telemetry that fails, on a virtual clock (no threads, no sleeps)."""

from gpuwatch.clock import VirtualClock
from gpuwatch.device import DeviceInfo
from gpuwatch.sampler import Sampler


class FlakyTelemetry:
    """Fails on the reads whose number is in `fail`; from `die_after` on, fails every read."""

    def __init__(self, fail=(), die_after=None, index=0):
        self.info = DeviceInfo(index=index, name="flaky", uuid="GPU-X", simulated=True)
        self.n, self.fail, self.die_after = 0, set(fail), die_after

    def unsupported(self):
        return {}

    def read(self, costly=True):
        self.n += 1
        if self.n in self.fail or (self.die_after is not None and self.n > self.die_after):
            raise TimeoutError("NVML timed out")
        values = {"sm_clock_mhz": 1000 + self.n // 10}  # changes every 10th read
        if costly:
            values["temperature_c"] = 40.0
        return values

    def read_buffered(self):
        return [(self.n * 1000, "power_w", 70.0)]

    def query_costs_us(self):
        return {}


def run(devices, ms=100, hz=1000.0, **kw):
    clock = VirtualClock(start_ns=0)
    out = {"samples": [], "events": [], "driver_samples": []}
    s = Sampler(devices, clock, lambda t, rows: out[t].extend(rows), hz=hz, **kw)
    s.start()
    clock.advance(ms * 1_000_000)
    stats = s.stop()
    return out, stats


def test_samples_on_a_grid_with_their_own_timestamps():
    out, stats = run([FlakyTelemetry()], ms=100)
    assert stats.polls == 101 and stats.samples == 101
    assert [r["t_ns"] for r in out["samples"][:3]] == [0, 1_000_000, 2_000_000]
    assert stats.achieved_hz() == 1000.0


def test_a_failed_read_is_recorded_and_sampling_goes_on():
    out, stats = run([FlakyTelemetry(fail={3, 4})], ms=10)
    assert stats.errors == 2 and stats.samples == 9
    assert [e["message"] for e in out["events"]] == ["TimeoutError: NVML timed out"] * 2


def test_a_failing_gpu_is_retried_rarely_and_the_others_still_sampled():
    bad, alive = FlakyTelemetry(fail=set(range(6, 18)), index=0), FlakyTelemetry(index=1)
    out, stats = run([bad, alive], ms=100, max_consecutive_errors=10, retry_s=0.01)
    by_gpu = [r["gpu"] for r in out["samples"]]
    assert by_gpu.count(1) == 101  # the healthy GPU never missed a poll
    msgs = [e["message"] for e in out["events"]]
    # 10 failures logged, then a retry every 10 polls (2 more failures), then back
    assert msgs == ["TimeoutError: NVML timed out"] * 10 + [
        "GPU 0 failed 10 reads in a row: retrying every 0.01 s",
        "GPU 0 reads again after 12 failed reads"]
    assert bad.n == 74 and by_gpu.count(0) == 62  # polls 0-4 and 44-100 read
    assert stats.errors == 12


class LostTelemetry(FlakyTelemetry):
    def read(self, costly=True):
        self.n += 1
        if self.n > 5:
            raise RuntimeError("GPU is lost")
        return {"sm_clock_mhz": 1000}


def test_a_lost_gpu_is_dropped_and_the_others_still_sampled():
    dead, alive = LostTelemetry(index=0), FlakyTelemetry(index=1)
    out, stats = run([dead, alive], ms=50, max_consecutive_errors=10)
    by_gpu = [r["gpu"] for r in out["samples"]]
    assert by_gpu.count(0) == 5 and by_gpu.count(1) == 51
    assert dead.n == 15  # stopped asking after 10 consecutive failures
    assert "stopped sampling GPU 0" in out["events"][-1]["message"]


def test_costly_fields_at_their_own_rate_and_driver_samples_twice_a_second():
    out, stats = run([FlakyTelemetry()], ms=1000, costly_hz=10.0)
    temps = [r for r in out["samples"] if "temperature_c" in r]
    assert len(out["samples"]) == 1001 and len(temps) == 11  # every 100th poll, at 10 Hz
    assert stats.driver_samples == 3  # polls 0, 500, 1000


def test_refresh_is_measured_from_value_changes():
    clock = VirtualClock(start_ns=0)
    s = Sampler([FlakyTelemetry()], clock, lambda t, rows: None, hz=1000.0)
    s.start()
    clock.advance(200_000_000)
    s.stop()
    ref = s.summary()["field_refresh"]
    assert ref["sm_clock_mhz"]["reads"] == 201
    assert ref["sm_clock_mhz"]["change_interval_ms_p50"] == 10.0  # polled at 1 kHz, changes at 100 Hz
    assert ref["temperature_c"]["changes"] == 0


def test_paused_sampler_reads_nothing():
    clock = VirtualClock(start_ns=0)
    dev = FlakyTelemetry()
    s = Sampler([dev], clock, lambda t, rows: None, hz=1000.0)
    s.start()
    s.pause()
    clock.advance(50_000_000)
    s.resume()
    clock.advance(10_000_000)
    stats = s.stop()
    assert dev.n == 11 and stats.paused_polls == 50
