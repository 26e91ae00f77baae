"""The profiler protocol the tuner measures candidates with, and its onnxruntime implementation.

The tuner calls, for one model and one device:

1. :meth:`Profiler.reference_outputs` once, on the FP32 model: the outputs every candidate is
   compared with (on CUDA with TF32 off, read back from the live session).
2. For each distinct candidate, :meth:`Profiler.measure_drift` first (NaN/Inf or drift far past
   the tolerance rejects it before any timing), which also reports node placement;
3. then :meth:`Profiler.measure_latency` (latency statistics, NVML telemetry, provenance);
4. :meth:`Profiler.measure_per_node` only when per-node time is wanted (sensitivity ranking,
   ``amptune profile --per-node``).

Every method takes a ModelProto, serialized bytes or a path, and the feeds the caller materialised
once from its data source, so that reference and candidates see exactly the same inputs.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from profilers._data_sources import Feed
from profilers._drift import DEFAULT_RELATIVE_FLOOR, DriftReport, UserMetric, compare_outputs
from profilers._errors import ProfilingError
from profilers._latency import LatencyConfig, LatencyResult
from profilers._latency import measure_latency as run_latency_procedure
from profilers._node_times import PerNodeReport
from profilers._ort_profile import end_and_read_profile, node_runs
from profilers._placement import PlacementReport, placement_from_node_runs
from profilers._provenance import collect_provenance
from profilers._sessions import (
    CUDA_PROVIDER,
    SessionConfig,
    build_session,
    cuda_provider_available,
)
from profilers._statistics import LatencyStats
from profilers._telemetry import NvmlTelemetry, TelemetryReport


@dataclass(frozen=True)
class ReferenceOutputs:
    """FP32 outputs per sample, and how they were computed."""

    outputs: tuple[dict[str, np.ndarray], ...]
    device: str
    provider_options: dict[str, str]

    @property
    def tf32_disabled(self) -> bool | None:
        """As the live CUDA session reports it; ``None`` on the CPU, which has no TF32."""
        if self.device != "cuda":
            return None
        return self.provider_options.get("use_tf32") == "0"

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "samples": len(self.outputs),
            "tf32_disabled": self.tf32_disabled,
            "provider_options": self.provider_options,
        }


@dataclass(frozen=True)
class DriftMeasurement:
    drift: DriftReport
    placement: PlacementReport
    candidate_outputs: tuple[dict[str, np.ndarray], ...] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"drift": self.drift.to_dict(), "placement": self.placement.to_dict()}


@dataclass(frozen=True)
class LatencyMeasurement:
    latency: LatencyResult
    telemetry: TelemetryReport
    provenance: dict[str, Any]
    wall_clock: LatencyStats | None = None
    cuda_graph: bool = False

    @property
    def warnings(self) -> list[str]:
        return [*self.latency.warnings, *self.telemetry.warnings]

    @property
    def suspect(self) -> bool:
        return self.telemetry.suspect

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency": self.latency.to_dict(),
            "wall_clock_synchronised": self.wall_clock.to_dict() if self.wall_clock else None,
            "cuda_graph": self.cuda_graph,
            "telemetry": self.telemetry.to_dict(),
            "suspect": self.suspect,
            "warnings": self.warnings,
            "provenance": self.provenance,
        }


@runtime_checkable
class Profiler(Protocol):
    """Measures candidates of one model on one device; see the module docstring for the order."""

    @property
    def device(self) -> str:
        """``cuda`` or ``cpu``: where every measurement of this profiler runs."""
        ...

    def reference_outputs(self, model: Any, feeds: Sequence[Feed]) -> ReferenceOutputs: ...

    def measure_drift(
        self, model: Any, feeds: Sequence[Feed], reference: ReferenceOutputs
    ) -> DriftMeasurement: ...

    def measure_latency(
        self, model: Any, feed: Feed, *, output_arrays: Mapping[str, np.ndarray] | None = None
    ) -> LatencyMeasurement: ...

    def measure_per_node(self, model: Any, feed: Feed) -> PerNodeReport: ...


def _run_all(session: Any, feeds: Sequence[Feed]) -> tuple[dict[str, np.ndarray], ...]:
    names = [o.name for o in session.get_outputs()]
    results = []
    for index, feed in enumerate(feeds):
        try:
            values = session.run(names, dict(feed))
        except Exception as error:  # onnxruntime's own exception types
            raise ProfilingError(f"the model failed on sample {index}: {error}") from error
        results.append(dict(zip(names, values)))
    return tuple(results)


class OnnxRuntimeProfiler:
    """The reference :class:`Profiler`: onnxruntime on the CUDA EP (CUDA events, NVML, CUPTI), or
    on the CPU EP with perf_counter where there is no GPU, every result then saying so."""

    def __init__(
        self,
        session_config: SessionConfig | None = None,
        latency_config: LatencyConfig | None = None,
        *,
        telemetry: bool = True,
        relative_floor: float = DEFAULT_RELATIVE_FLOOR,
        user_metrics: Sequence[UserMetric] = (),
        wall_clock_runs: int = 0,
        per_node_runs: int = 20,
    ) -> None:
        self.session_config = session_config or SessionConfig(
            device="cuda" if cuda_provider_available() else "cpu"
        )
        self.latency_config = latency_config or LatencyConfig()
        self.telemetry = telemetry and self.session_config.device == "cuda"
        self.relative_floor = relative_floor
        self.user_metrics = tuple(user_metrics)
        self.wall_clock_runs = wall_clock_runs
        self.per_node_runs = per_node_runs

    @property
    def device(self) -> str:
        return self.session_config.device

    def reference_outputs(self, model: Any, feeds: Sequence[Feed]) -> ReferenceOutputs:
        config = self.session_config.with_(use_tf32=False, enable_cuda_graph=False)
        session = build_session(model, config)
        options = session.get_provider_options().get(CUDA_PROVIDER, {}) if self.device == "cuda" else {}
        if self.device == "cuda" and options.get("use_tf32") != "0":
            raise ProfilingError(
                f"the FP32 reference session reports use_tf32={options.get('use_tf32')!r}; it must "
                "run with TF32 off"
            )
        outputs = _run_all(session, feeds)
        return ReferenceOutputs(outputs, self.device, dict(options))

    def measure_drift(
        self, model: Any, feeds: Sequence[Feed], reference: ReferenceOutputs
    ) -> DriftMeasurement:
        if len(feeds) != len(reference.outputs):
            raise ProfilingError(
                f"{len(feeds)} feeds given for a reference of {len(reference.outputs)} samples: "
                "candidate and reference must see the same inputs"
            )
        config = self.session_config.with_(enable_cuda_graph=False)
        with tempfile.TemporaryDirectory(prefix="amptune-placement-") as folder:
            session = build_session(model, config, profile_prefix=f"{folder}/ort")
            outputs = _run_all(session, feeds)
            events, start_ns = end_and_read_profile(session)
        placement = placement_from_node_runs(node_runs(events, start_ns), self.device)
        drift = compare_outputs(
            reference.outputs,
            outputs,
            relative_floor=self.relative_floor,
            user_metrics=self.user_metrics,
        )
        return DriftMeasurement(drift, placement, outputs)

    def measure_latency(
        self, model: Any, feed: Feed, *, output_arrays: Mapping[str, np.ndarray] | None = None
    ) -> LatencyMeasurement:
        """Latency on ``feed``; ``output_arrays`` (e.g. a drift run's outputs for this feed) is
        needed only for CUDA-graph mode."""
        config = self.session_config
        if config.device == "cpu":
            from profilers._cpu_timer import CpuPerfCounterTimer

            with CpuPerfCounterTimer.for_model(model, feed, config) as cpu_timer:
                latency = run_latency_procedure(cpu_timer, self.latency_config)
            return LatencyMeasurement(
                latency,
                TelemetryReport.unavailable("CPU measurement: no GPU telemetry"),
                collect_provenance("cpu", session_config=config.to_dict()),
            )

        from profilers._cuda_timer import CudaEventTimer

        sampler = NvmlTelemetry(config.device_id) if self.telemetry else None
        if sampler is not None:
            sampler.record_baseline()
        reports: list[TelemetryReport] = []
        timer = CudaEventTimer.for_model(model, feed, config, output_arrays=output_arrays)
        try:
            provenance = collect_provenance(
                "cuda",
                device_index=config.device_id,
                provider_options=dict(timer.provider_options),
                session_config=config.to_dict(),
            )
            latency = run_latency_procedure(
                timer,
                self.latency_config,
                on_measure_start=sampler.start if sampler else None,
                on_measure_end=(lambda runs: reports.append(sampler.stop(runs))) if sampler else None,
            )
            wall = None
            if self.wall_clock_runs:
                wall = LatencyStats.from_samples(timer.time_runs_wall_clock(self.wall_clock_runs))
        finally:
            timer.close()
            gc.collect()
        telemetry = reports[0] if reports else TelemetryReport.unavailable("telemetry turned off")
        return LatencyMeasurement(latency, telemetry, provenance, wall, config.enable_cuda_graph)

    def measure_per_node(self, model: Any, feed: Feed) -> PerNodeReport:
        from profilers._per_node import measure_per_node

        return measure_per_node(
            model, feed, self.session_config, profiled_runs=self.per_node_runs
        )
