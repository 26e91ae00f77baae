"""What one trial's evaluation returns: latency statistics, drift, telemetry, warnings, or why not.

The tuner's study glue takes an ``evaluate(plan) -> TrialMeasurement`` callable: building the
candidate, checking accuracy first and timing it is the caller's business (the profilers'), so
that the glue runs without a GPU. A measurement is plain JSON-able data: it is stored on the
Optuna trial and read back by the exports and the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner._errors import PassError

# Objective names, in the order the Optuna study's values hold them.
LATENCY = "latency_ms"
DRIFT = "drift"
ENERGY = "energy_mj"
MEMORY = "peak_memory_mb"
OBJECTIVES: tuple[str, ...] = (LATENCY, DRIFT, ENERGY, MEMORY)


def json_float(value: float | None) -> float | str | None:
    """JSON has no NaN or infinity: they are written as the strings "nan", "inf", "-inf"."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def read_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class LatencySummary:
    """The statistics of one latency measurement that the tuner keeps and compares.

    ``device`` says where it ran ("cuda" or "cpu": a CPU measurement says so); ``clock`` what
    timed it. ``ci_low_ms``/``ci_high_ms`` bound the median (95% by default).
    """

    median_ms: float
    n_runs: int
    device: str
    clock: str = ""
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    mean_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    cv: float | None = None
    min_ms: float | None = None
    first_run_ms: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median_ms) and self.median_ms >= 0):
            raise PassError(f"latency median must be finite and >= 0, got {self.median_ms}")
        if self.n_runs < 1:
            raise PassError(f"latency needs at least one run, got n_runs={self.n_runs}")

    @classmethod
    def from_stats(
        cls, stats: Any, *, device: str, clock: str = "", first_run_ms: float | None = None
    ) -> LatencySummary:
        """From an object with the field names of ``profilers``' LatencyStats (``n``,
        ``median_ms``, ``median_ci_low_ms``, ...)."""
        return cls(
            median_ms=float(stats.median_ms),
            n_runs=int(stats.n),
            device=device,
            clock=clock,
            ci_low_ms=float(stats.median_ci_low_ms),
            ci_high_ms=float(stats.median_ci_high_ms),
            mean_ms=float(stats.mean_ms),
            p90_ms=float(stats.p90_ms),
            p99_ms=float(stats.p99_ms),
            cv=float(stats.cv),
            min_ms=float(stats.min_ms),
            first_run_ms=first_run_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencySummary:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        return cls(**known)


@dataclass(frozen=True)
class TrialMeasurement:
    """The outcome of evaluating one plan.

    Exactly one of three shapes:

    - measured: ``latency`` and ``drift`` set (``drift`` may exceed the tolerance: the trial is
      then infeasible, but its values still guide the search);
    - rejected: the accuracy gate stopped it before timing (NaN/Inf, or drift far past the
      tolerance): ``rejected`` says why, ``drift`` holds what was measured, no ``latency``;
    - failed: it could not be built or run: ``failure`` says why; the trial becomes FAILED.

    ``cpu_placed_nodes`` counts compute nodes the runtime placed on the CPU (the placement gate);
    any makes the trial infeasible. ``details`` holds anything else worth keeping (Cast count,
    per-output drift, provenance); it must be JSON-able.
    """

    drift: float | None = None
    latency: LatencySummary | None = None
    energy_mj: float | None = None
    peak_memory_mb: float | None = None
    cpu_placed_nodes: int = 0
    telemetry: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    rejected: str | None = None
    failure: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "warnings", tuple(self.warnings))
        if self.drift is not None and math.isnan(self.drift):
            object.__setattr__(self, "drift", math.inf)  # NaN drift means NaN outputs: infinite
        if self.failure is not None:
            return
        if self.drift is None:
            raise PassError("a measurement that did not fail needs a drift")
        if self.rejected is None and self.latency is None:
            raise PassError("a measurement that was neither rejected nor failed needs a latency")

    @classmethod
    def failed(cls, reason: str, **extra: Any) -> TrialMeasurement:
        return cls(failure=reason, **extra)

    @property
    def status(self) -> str:
        if self.failure is not None:
            return "failed"
        return "rejected" if self.rejected is not None else "measured"

    def objective_value(self, name: str) -> float:
        """The value Optuna minimises for one objective; +inf where it was not measured."""
        value: float | None
        if name == LATENCY:
            value = self.latency.median_ms if self.latency is not None else None
        elif name == DRIFT:
            value = self.drift
        elif name == ENERGY:
            value = self.energy_mj
        elif name == MEMORY:
            value = self.peak_memory_mb
        else:
            raise PassError(f"unknown objective {name!r}; known: {OBJECTIVES}")
        return math.inf if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "drift": json_float(self.drift),
            "latency": self.latency.to_dict() if self.latency is not None else None,
            "energy_mj": json_float(self.energy_mj),
            "peak_memory_mb": json_float(self.peak_memory_mb),
            "cpu_placed_nodes": self.cpu_placed_nodes,
            "telemetry": dict(self.telemetry),
            "warnings": list(self.warnings),
            "rejected": self.rejected,
            "failure": self.failure,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialMeasurement:
        latency = data.get("latency")
        return cls(
            drift=read_float(data.get("drift")),
            latency=LatencySummary.from_dict(latency) if latency else None,
            energy_mj=read_float(data.get("energy_mj")),
            peak_memory_mb=read_float(data.get("peak_memory_mb")),
            cpu_placed_nodes=int(data.get("cpu_placed_nodes", 0)),
            telemetry=dict(data.get("telemetry") or {}),
            warnings=tuple(data.get("warnings") or ()),
            rejected=data.get("rejected"),
            failure=data.get("failure"),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True)
class AccuracyGate:
    """Decides, before timing, whether a candidate's accuracy already rules it out.

    A candidate is rejected when its outputs hold NaN/Inf the reference does not (drift is
    infinite) or its drift exceeds ``reject_factor`` times the tolerance. Candidates between the
    tolerance and that bound are still timed: they are infeasible, but their latency tells the
    sampler which way the front lies.
    """

    tolerance: float
    reject_factor: float = 10.0

    def __post_init__(self) -> None:
        if not self.tolerance >= 0:
            raise PassError(f"tolerance must be >= 0, got {self.tolerance}")
        if not self.reject_factor >= 1:
            raise PassError(f"reject_factor must be >= 1, got {self.reject_factor}")

    def rejection(self, drift: float) -> str | None:
        """Why a candidate with this drift is not timed, or None to go on and time it."""
        if not math.isfinite(drift):
            return "outputs hold NaN/Inf that the FP32 reference does not"
        bound = self.reject_factor * self.tolerance
        if drift > bound:
            return (
                f"drift {drift:.4g} is more than {self.reject_factor:g}x the tolerance "
                f"{self.tolerance:g}"
            )
        return None
