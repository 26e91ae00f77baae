"""The latency measurement procedure, independent of the clock that times each run.

1. The first run on a fresh session is timed alone (cuDNN searches its algorithms then).
2. A short calibration sizes a window to about ``window_s`` seconds of runs.
3. Warm-up: windows until two consecutive window medians agree within ``stability_tolerance`` and
   at least ``min_warmup_s`` has passed (or ``max_warmup_s``, with a warning).
4. Measurement: windows until at least ``min_windows`` and ``min_measure_s`` (NVML energy needs
   two seconds or more). Statistics are over all measured runs; the window medians show drift.

A :class:`RunTimer` supplies the clock: CUDA events on the device, or ``perf_counter`` on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from profilers._errors import ProfilingError
from profilers._statistics import LatencyStats, relative_spread


class RunTimer(Protocol):
    """Times consecutive runs of one bound model.

    ``clock`` names the clock (``"cuda-events"``, ``"cpu-perf-counter"``); ``device`` says where
    the model runs. ``time_runs(count)`` is called by :func:`measure_latency` for each window and
    returns ``count`` per-run times in milliseconds.
    """

    clock: str
    device: str

    def time_runs(self, count: int) -> list[float]: ...


@dataclass(frozen=True)
class LatencyConfig:
    """How long to warm up and measure. The defaults suit models from 0.1 ms to 100 ms."""

    window_s: float = 0.25
    min_runs_per_window: int = 5
    max_runs_per_window: int = 2000
    min_warmup_s: float = 1.0
    max_warmup_s: float = 15.0
    stability_tolerance: float = 0.02
    min_windows: int = 8
    min_measure_s: float = 2.0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("window_s", "min_measure_s", "stability_tolerance"):
            if getattr(self, name) <= 0:
                raise ProfilingError(f"latency config {name} must be > 0, got {getattr(self, name)}")
        if self.min_runs_per_window < 1 or self.max_runs_per_window < self.min_runs_per_window:
            raise ProfilingError(
                "latency config needs 1 <= min_runs_per_window <= max_runs_per_window, got "
                f"{self.min_runs_per_window} and {self.max_runs_per_window}"
            )
        if self.max_warmup_s < self.min_warmup_s:
            raise ProfilingError(
                f"latency config max_warmup_s ({self.max_warmup_s}) < min_warmup_s "
                f"({self.min_warmup_s})"
            )
        if self.min_windows < 1:
            raise ProfilingError(f"latency config min_windows must be >= 1, got {self.min_windows}")


@dataclass(frozen=True)
class LatencyResult:
    """One latency measurement of one model and input shape on one device."""

    clock: str
    device: str
    is_cpu_measurement: bool
    first_run_ms: float
    warmup_runs: int
    warmup_s: float
    warmup_stable: bool
    runs_per_window: int
    window_medians_ms: tuple[float, ...]
    window_median_cv: float
    measure_s: float
    stats: LatencyStats
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def median_ms(self) -> float:
        return self.stats.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "device": self.device,
            "is_cpu_measurement": self.is_cpu_measurement,
            "first_run_ms": self.first_run_ms,
            "warmup_runs": self.warmup_runs,
            "warmup_s": self.warmup_s,
            "warmup_stable": self.warmup_stable,
            "runs_per_window": self.runs_per_window,
            "window_medians_ms": list(self.window_medians_ms),
            "window_median_cv": self.window_median_cv,
            "measure_s": self.measure_s,
            "stats": self.stats.to_dict(),
            "warnings": list(self.warnings),
        }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def measure_latency(
    timer: RunTimer,
    config: LatencyConfig | None = None,
    *,
    on_measure_start: Callable[[], None] | None = None,
    on_measure_end: Callable[[int], None] | None = None,
) -> LatencyResult:
    """Runs the procedure above with ``timer``.

    ``on_measure_start`` / ``on_measure_end(runs)`` bracket the measured windows (not warm-up):
    the telemetry sampler and the energy counter hook in there.
    """
    config = config or LatencyConfig()
    warnings: list[str] = []
    is_cpu = timer.device == "cpu"
    if is_cpu:
        warnings.append("CPU measurement: onnxruntime's CPU execution provider, perf_counter clock")

    first_run_ms = timer.time_runs(1)[0]
    calibration = timer.time_runs(3)
    per_run_ms = max(_median(calibration), 1e-4)
    runs_per_window = int(
        min(
            max(math.ceil(config.window_s * 1000.0 / per_run_ms), config.min_runs_per_window),
            config.max_runs_per_window,
        )
    )

    warmup_start = time.perf_counter()
    warmup_runs = 4
    previous: float | None = None
    stable = False
    while True:
        window = timer.time_runs(runs_per_window)
        warmup_runs += len(window)
        current = _median(window)
        elapsed = time.perf_counter() - warmup_start
        if previous is not None and abs(current - previous) <= config.stability_tolerance * previous:
            stable = elapsed >= config.min_warmup_s
        else:
            stable = False
        if stable or elapsed >= config.max_warmup_s:
            break
        previous = current
    warmup_s = time.perf_counter() - warmup_start
    if not stable:
        warnings.append(
            f"warm-up did not stabilise within {config.max_warmup_s:g} s (consecutive window "
            f"medians differed by more than {config.stability_tolerance:.0%}): latency may drift"
        )

    samples: list[float] = []
    window_medians: list[float] = []
    if on_measure_start is not None:
        on_measure_start()
    measure_start = time.perf_counter()
    while True:
        window = timer.time_runs(runs_per_window)
        samples.extend(window)
        window_medians.append(_median(window))
        measure_s = time.perf_counter() - measure_start
        if len(window_medians) >= config.min_windows and measure_s >= config.min_measure_s:
            break
    if on_measure_end is not None:
        on_measure_end(len(samples))

    stats = LatencyStats.from_samples(samples, config.confidence)
    window_cv = relative_spread(window_medians)
    if window_cv > 0.02:
        warnings.append(
            f"window medians vary by {window_cv:.1%} (CV) during the measurement: the device's "
            "speed changed while it ran (clocks, other work)"
        )
    return LatencyResult(
        clock=timer.clock,
        device=timer.device,
        is_cpu_measurement=is_cpu,
        first_run_ms=first_run_ms,
        warmup_runs=warmup_runs,
        warmup_s=warmup_s,
        warmup_stable=stable,
        runs_per_window=runs_per_window,
        window_medians_ms=tuple(window_medians),
        window_median_cv=window_cv,
        measure_s=measure_s,
        stats=stats,
        warnings=tuple(warnings),
    )
