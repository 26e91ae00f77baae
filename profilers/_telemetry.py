"""What the GPU did during a measurement, from NVML (nvidia-ml-py) sampled in a background thread.

Clocks, power, temperature, memory used and clock-event reasons are sampled every
``interval_s``. Reasons other than the power cap (thermal or hardware slowdown, power brake) make
the measurement suspect, with a plain warning; the power cap is what a busy GPU normally reads.
Energy comes from the total-energy counter read at the start and end of the measured windows: it
is coarse (see the GPU notes), so it is reported only over windows of two seconds or more. Without
NVML (no driver, no nvidia-ml-py) the report says ``unavailable`` and why, and nothing else breaks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_ENERGY_WINDOW_S = 2.0

# NVML clock-event reason bits (nvmlClocksEventReason*), named as in nvml.h.
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# Reasons that mean the device ran slower than it would under a normal sustained load.
SUSPECT_REASONS = 0x8 | 0x20 | 0x40 | 0x80


def decode_clock_event_reasons(mask: int) -> list[str]:
    """Names of the reason bits set in ``mask`` (unknown bits as hex)."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(hex(unknown))
    return names


@dataclass(frozen=True)
class TelemetrySample:
    time_s: float
    sm_clock_mhz: int
    memory_clock_mhz: int
    power_w: float
    temperature_c: int
    memory_used_mib: float
    clock_event_reasons: int


@dataclass(frozen=True)
class Range:
    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Range:
        ordered = sorted(values)
        return cls(float(ordered[0]), float(ordered[len(ordered) // 2]), float(ordered[-1]))


@dataclass(frozen=True)
class TelemetryReport:
    """NVML's view of one measurement; ``available`` False means only ``reason`` is set."""

    available: bool
    reason: str | None = None
    samples: int = 0
    sm_clock_mhz: Range | None = None
    memory_clock_mhz: Range | None = None
    power_w: Range | None = None
    temperature_c: Range | None = None
    peak_memory_used_mib: float | None = None
    session_peak_memory_mib: float | None = None
    clock_event_reasons: tuple[str, ...] = ()
    suspect: bool = False
    energy_mj_per_inference: float | None = None
    average_power_w: float | None = None
    energy_window_s: float | None = None
    energy_note: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def unavailable(cls, reason: str) -> TelemetryReport:
        return cls(available=False, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        if not self.available:
            return {"available": False, "reason": self.reason}
        data: dict[str, Any] = {"available": True}
        for name, value in self.__dict__.items():
            if name in ("available", "reason"):
                continue
            data[name] = value.__dict__ if isinstance(value, Range) else value
        data["clock_event_reasons"] = list(self.clock_event_reasons)
        data["warnings"] = list(self.warnings)
        return data


def summarise_samples(
    samples: Sequence[TelemetrySample],
    *,
    inferences: int,
    window_s: float,
    energy_mj: float | None,
    baseline_memory_used_mib: float | None = None,
) -> TelemetryReport:
    """Turns raw samples and an energy-counter difference into a report with its warnings."""
    if not samples:
        return TelemetryReport.unavailable("no NVML sample was taken during the measurement")
    warnings: list[str] = []
    reasons_seen = 0
    for sample in samples:
        reasons_seen |= sample.clock_event_reasons
    suspect = bool(reasons_seen & SUSPECT_REASONS)
    if suspect:
        warnings.append(
            "the GPU slowed its clocks for "
            + ", ".join(decode_clock_event_reasons(reasons_seen & SUSPECT_REASONS))
            + " during this measurement: latency is suspect and not comparable"
        )
    sm = Range.of([s.sm_clock_mhz for s in samples])
    if sm.max > 0 and sm.min < 0.85 * sm.max:
        warnings.append(
            f"SM clock fell from {sm.max:.0f} to {sm.min:.0f} MHz during this measurement"
        )
    peak_memory = max(s.memory_used_mib for s in samples)
    energy_per_inference = average_power = None
    if energy_mj is None:
        note = "the total-energy counter is not supported on this GPU"
    elif window_s < MIN_ENERGY_WINDOW_S:
        note = (
            f"not reported: the measured window was {window_s:.2f} s, under the "
            f"{MIN_ENERGY_WINDOW_S:.0f} s the coarse energy counter needs"
        )
    elif inferences < 1:
        note = "not reported: no inference ran in the window"
    else:
        energy_per_inference = energy_mj / inferences
        average_power = energy_mj / 1000.0 / window_s
        note = None
    return TelemetryReport(
        available=True,
        samples=len(samples),
        sm_clock_mhz=sm,
        memory_clock_mhz=Range.of([s.memory_clock_mhz for s in samples]),
        power_w=Range.of([s.power_w for s in samples]),
        temperature_c=Range.of([s.temperature_c for s in samples]),
        peak_memory_used_mib=peak_memory,
        session_peak_memory_mib=(
            peak_memory - baseline_memory_used_mib if baseline_memory_used_mib is not None else None
        ),
        clock_event_reasons=tuple(decode_clock_event_reasons(reasons_seen)),
        suspect=suspect,
        energy_mj_per_inference=energy_per_inference,
        average_power_w=average_power,
        energy_window_s=window_s,
        energy_note=note,
        warnings=tuple(warnings),
    )


def _import_nvml() -> tuple[Any | None, str | None]:
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        return None, f"NVML could not start: {error}"
    return pynvml, None


class NvmlTelemetry:
    """Samples one GPU in a background thread between :meth:`start` and :meth:`stop`.

    ``baseline()`` (memory used before the session existed) is read by the caller before it
    builds the session, so the report can give the session's own peak memory.
    """

    def __init__(self, device_index: int = 0, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.nvml: Any
        self.reason: str | None
        self.nvml, self.reason = _import_nvml()
        self.handle: Any = None
        if self.nvml is not None:
            try:
                self.handle = self.nvml.nvmlDeviceGetHandleByIndex(device_index)
            except Exception as error:  # noqa: BLE001 - any NVML error means no telemetry
                self.nvml, self.reason = None, f"NVML has no GPU {device_index}: {error}"
        self._samples: list[TelemetrySample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy_start: float | None = None
        self._time_start = 0.0
        self._baseline: float | None = None

    @property
    def available(self) -> bool:
        return self.nvml is not None

    def memory_used_mib(self) -> float | None:
        if not self.available:
            return None
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20

    def record_baseline(self) -> None:
        self._baseline = self.memory_used_mib()

    def _energy_mj(self) -> float | None:
        try:
            return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported on GPUs without the counter
            return None

    def _reasons(self) -> int:
        nvml = self.nvml
        if hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons"):
            return int(nvml.nvmlDeviceGetCurrentClocksEventReasons(self.handle))
        return int(nvml.nvmlDeviceGetCurrentClocksThrottleReasons(self.handle))

    def sample(self) -> TelemetrySample:
        nvml, handle = self.nvml, self.handle
        return TelemetrySample(
            time_s=time.perf_counter(),
            sm_clock_mhz=int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            memory_clock_mhz=int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
            power_w=nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            temperature_c=int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            memory_used_mib=nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20,
            clock_event_reasons=self._reasons(),
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._samples.append(self.sample())
            except Exception:  # noqa: BLE001, S112 - a failed read loses one sample, not the run
                continue

    def start(self) -> None:
        if not self.available:
            return
        self._samples = []
        self._stop.clear()
        self._energy_start = self._energy_mj()
        self._time_start = time.perf_counter()
        self._samples.append(self.sample())
        self._thread = threading.Thread(target=self._loop, name="amptune-nvml", daemon=True)
        self._thread.start()

    def stop(self, inferences: int) -> TelemetryReport:
        if not self.available:
            return TelemetryReport.unavailable(self.reason or "NVML is not available")
        if self._thread is None:
            return TelemetryReport.unavailable("telemetry was never started")
        self._stop.set()
        self._thread.join()
        self._thread = None
        window_s = time.perf_counter() - self._time_start
        energy_end = self._energy_mj()
        self._samples.append(self.sample())
        energy = (
            energy_end - self._energy_start
            if energy_end is not None and self._energy_start is not None
            else None
        )
        return summarise_samples(
            self._samples,
            inferences=inferences,
            window_s=window_s,
            energy_mj=energy,
            baseline_memory_used_mib=self._baseline,
        )
