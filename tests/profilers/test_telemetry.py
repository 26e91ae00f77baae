import sys

import pytest

from profilers import NvmlTelemetry, TelemetryReport, decode_clock_event_reasons, summarise_samples
from profilers._telemetry import TelemetrySample


def _sample(t, sm=1980, reasons=0x4, power=600.0, memory=1000.0):
    return TelemetrySample(t, sm, 2619, power, 55, memory, reasons)


def _nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return True
    except Exception:  # noqa: BLE001 - any failure means no NVML
        return False


@pytest.mark.skipif(_nvml_works(), reason="this machine has NVML: the no-NVML path is not reached")
def test_without_nvml_telemetry_says_unavailable_and_nothing_breaks():
    telemetry = NvmlTelemetry()
    assert not telemetry.available
    assert telemetry.memory_used_mib() is None
    telemetry.record_baseline()
    telemetry.start()  # a no-op, not an error
    report = telemetry.stop(inferences=100)
    assert not report.available
    assert "NVML" in report.reason or "nvidia-ml-py" in report.reason
    assert report.to_dict() == {"available": False, "reason": report.reason}


def test_without_nvidia_ml_py_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    telemetry = NvmlTelemetry()
    assert not telemetry.available
    report = telemetry.stop(inferences=10)
    assert report.to_dict() == {"available": False, "reason": "nvidia-ml-py (pynvml) is not installed"}


def test_decode_clock_event_reasons():
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(0x4) == ["sw_power_cap"]
    assert decode_clock_event_reasons(0x1 | 0x40) == ["gpu_idle", "hw_thermal_slowdown"]
    assert decode_clock_event_reasons(0x4 | 0x10000) == ["sw_power_cap", "0x10000"]


def test_power_cap_is_expected_not_suspect():
    samples = [_sample(i * 0.05, sm=1500 + i % 3, reasons=0x4) for i in range(50)]
    report = summarise_samples(samples, inferences=500, window_s=2.5, energy_mj=1_500_000.0,
                               baseline_memory_used_mib=600.0)
    assert report.available and not report.suspect
    assert report.clock_event_reasons == ("sw_power_cap",)
    assert report.warnings == ()
    assert report.energy_mj_per_inference == pytest.approx(3000.0)
    assert report.average_power_w == pytest.approx(600.0)
    assert report.session_peak_memory_mib == pytest.approx(400.0)
    assert report.sm_clock_mhz.min == 1500 and report.sm_clock_mhz.max == 1502


def test_thermal_slowdown_marks_the_measurement_suspect_with_a_plain_warning():
    samples = [_sample(0.0), _sample(0.05, sm=1410, reasons=0x4 | 0x20), _sample(0.1, sm=1980)]
    report = summarise_samples(samples, inferences=10, window_s=2.0, energy_mj=100.0)
    assert report.suspect
    assert "sw_thermal_slowdown" in report.clock_event_reasons
    assert any("sw_thermal_slowdown" in w and "suspect" in w for w in report.warnings)
    assert any("SM clock fell from 1980 to 1410 MHz" in w for w in report.warnings)


def test_energy_needs_a_window_of_two_seconds():
    report = summarise_samples([_sample(0.0)], inferences=100, window_s=1.2, energy_mj=240.0)
    assert report.energy_mj_per_inference is None and report.average_power_w is None
    assert "1.20 s" in report.energy_note and "2 s" in report.energy_note
    unsupported = summarise_samples([_sample(0.0)], inferences=100, window_s=3.0, energy_mj=None)
    assert unsupported.energy_mj_per_inference is None
    assert "not supported" in unsupported.energy_note


def test_report_to_dict_is_plain_data():
    import json

    report = summarise_samples([_sample(0.0), _sample(0.05)], inferences=5, window_s=2.0,
                               energy_mj=50.0)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["available"] is True and data["sm_clock_mhz"]["max"] == 1980
    assert data["energy_mj_per_inference"] == 10.0
    assert TelemetryReport.unavailable("x").to_dict() == {"available": False, "reason": "x"}
