from gpuwatch.fields import FIELD_NAMES, FIELDS, ClockEventReason


def test_reason_bits_match_nvml_header():
    # nvml.h: nvmlClocksEventReasonGpuIdle 0x1 ... DisplayClockSetting 0x100
    assert ClockEventReason.GPU_IDLE == 0x1
    assert ClockEventReason.SW_POWER_CAP == 0x4
    assert ClockEventReason.HW_THERMAL_SLOWDOWN == 0x40
    assert ClockEventReason.DISPLAY_CLOCK_SETTING == 0x100


def test_reason_names_decode_a_mask():
    assert ClockEventReason.names(0x5) == ["gpu_idle", "sw_power_cap"]
    assert ClockEventReason.names(0) == []


def test_every_field_name_carries_its_unit():
    suffixes = ("_mhz", "_w", "_mj", "_pct", "_c", "_mib", "_ns", "_us", "_tasks", "pstate",
                "reasons", "_gen", "_width", "_switches", "flt")  # (flt: page faults)
    for f in FIELDS:
        assert f.name.endswith(suffixes), f.name
    assert len(set(FIELD_NAMES)) == len(FIELD_NAMES)
