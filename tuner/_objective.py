"""The study's ``evaluate(plan) -> TrialMeasurement``: build the candidate, check its accuracy on the
reference's inputs, then time it with the profilers' protocol.

Per study (once, in :class:`StudyEvaluation`'s constructor): the FP32 reference outputs, computed
by the profiler with TF32 off on the same feeds every candidate sees. Per plan:

1. convert the FP32 model with the plan (the all-FP32 plan is the model itself);
2. drift run: every feed through the candidate, compared with the reference (the study metric),
   and the node placement of that run;
3. accuracy gate: NaN/Inf or drift past ``reject_factor`` x tolerance -> rejected, not timed;
4. latency (CUDA events or the CPU clock), NVML telemetry and provenance on the first feed;
5. placement gate: compute nodes on the CPU or host-device copies beyond the FP32 model's own
   count as ``cpu_placed_nodes``,
   which the study makes a constraint (any -> infeasible).

A conversion error, a session that cannot be built, out of memory or a runtime error returns a
failed measurement whose reason names the stage; the study records it as a FAILED trial and goes on.
"""

from __future__ import annotations

import copy
import gc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from search_spaces import ModelFacts, PrecisionPlan
from tuner._study_metric import StudyMetric
from tuner._trial_measurement import AccuracyGate, LatencySummary, TrialMeasurement

_OUT_OF_MEMORY_MARKS = ("out of memory", "failed to allocate", "alloc_failed", "bfcarena",
                        "cudaerrormemoryallocation")


def failure_reason(stage: str, error: BaseException) -> str:
    """``stage: what happened``; out-of-memory errors are named as such, whatever raised them."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if any(mark in str(error).lower() for mark in _OUT_OF_MEMORY_MARKS):
        return f"out of memory ({stage}): {text}"
    return f"{stage} failed: {type(error).__name__}: {text}"


@dataclass
class StudyEvaluation:
    """Measures plans of one FP32 model on one device; see the module docstring."""

    model: Any  # onnx.ModelProto, FP32
    feeds: Sequence[dict[str, Any]]
    profiler: Any  # profilers.Profiler
    metric: StudyMetric
    conversion_options: Any = None
    reference: Any = field(init=False)
    gate: AccuracyGate = field(init=False)
    evaluated: list[str] = field(default_factory=list, init=False)  # digests, in order
    _tf32_profiler: Any = field(default=None, init=False, repr=False)
    _fp32_placement: tuple[frozenset[str], int] | None = field(default=None, init=False,
                                                               repr=False)

    def __post_init__(self) -> None:
        self.gate = AccuracyGate(self.metric.config.tolerance, self.metric.config.reject_factor)
        self.reference = self.profiler.reference_outputs(self.model, self.feeds)

    def fp32_placement(self) -> tuple[frozenset[str], int]:
        """(compute nodes on the CPU, host-device copies) of the FP32 model itself, measured once.

        Some models need them whatever the precision (silero-vad keeps one copy in FP32): the
        placement gate counts only what a candidate adds, or no plan could ever be feasible."""
        if self._fp32_placement is None:
            try:
                measured, _ = self.drift_measurement(self.model)
                placement = measured.placement
                self._fp32_placement = (frozenset(n.name for n in placement.cpu_compute_nodes),
                                        len(placement.memcpy_nodes))
            except Exception:  # noqa: BLE001 - no baseline: count every CPU node, as before
                gc.collect()
                self._fp32_placement = (frozenset(), 0)
        return self._fp32_placement

    def added_cpu_placement(self, placement: Any) -> int:
        """Compute nodes on the CPU and host-device copies beyond the FP32 model's own."""
        fp32_cpu_nodes, fp32_copies = self.fp32_placement()
        added_nodes = [n for n in placement.cpu_compute_nodes if n.name not in fp32_cpu_nodes]
        return len(added_nodes) + max(0, len(placement.memcpy_nodes) - fp32_copies)

    def with_profiler(self, profiler: Any) -> StudyEvaluation:
        """The same model, feeds, metric and FP32 reference, measured by another profiler (other
        session options, say): the reference is not computed again."""
        other = copy.copy(self)
        other.profiler = profiler
        other._tf32_profiler = None
        other.evaluated = []
        return other

    # -- building --------------------------------------------------------------------------------

    def candidate(self, plan: PrecisionPlan) -> tuple[Any, dict[str, Any]]:
        """(candidate model, conversion details) of ``plan``."""
        if plan.keep_all_fp32:
            return self.model, {"cast_count": 0, "converted": False}
        from tuner import convert_precision

        result = convert_precision(self.model, plan, self.conversion_options)
        return result.model, {"cast_count": result.report.cast_count, "converted": True,
                              "node_precisions": result.report.precision_counts()}

    def _candidate_feeds(self, candidate: Any) -> list[dict[str, Any]]:
        from profilers import feeds_for_inputs, graph_inputs

        return feeds_for_inputs(self.feeds, graph_inputs(candidate))

    def profiler_for(self, plan: PrecisionPlan) -> Any:
        """The study's profiler, or one with TF32 on for a plan that allows it (CUDA only: the
        CPU EP has no TF32, and such a plan measures like its IEEE twin there)."""
        if not plan.allow_tf32 or self.profiler.session_config.device != "cuda":
            return self.profiler
        if self._tf32_profiler is None:
            self._tf32_profiler = copy.copy(self.profiler)
            self._tf32_profiler.session_config = self.profiler.session_config.with_(use_tf32=True)
        return self._tf32_profiler

    def drift_measurement(self, candidate: Any, profiler: Any = None) -> Any:
        """The profiler's drift run of a built candidate (a ModelProto or a path)."""
        if hasattr(candidate, "graph"):
            feeds = self._candidate_feeds(candidate)
        else:
            from tuner import load_model

            feeds = self._candidate_feeds(load_model(candidate))
        profiler = profiler if profiler is not None else self.profiler
        return profiler.measure_drift(candidate, feeds, self.reference), feeds

    # -- the sensitivity pass ----------------------------------------------------------------------

    def drift_of(self, plan: PrecisionPlan) -> float:
        """Sensitivity of ``plan`` alone (no timing): the relative L2 error of the metric's
        outputs, worst over them. Continuous even where the study's metric is discrete: lowering
        one node group rarely flips an argmax or a thresholded pixel, so the study metric would
        rank most groups equal at zero. A plan that cannot be built or run, or that makes the
        outputs non-finite, counts as infinitely sensitive: its nodes stay FP32 in every trial."""
        try:
            candidate, _ = self.candidate(plan)
            measurement, _ = self.drift_measurement(candidate)
        except Exception:  # noqa: BLE001 - see the docstring: unbuildable means keep FP32
            gc.collect()
            return math.inf
        if self.metric.value(measurement.drift) == math.inf:
            return math.inf
        return max(measurement.drift.objective("rel_l2", output=name)
                   for name in self.metric.outputs)

    def time_share(self, facts: ModelFacts, lower: str) -> tuple[dict[str, float], str]:
        """Each eligible node's share of the all-lower candidate's time, and how it was found.

        Per-node time is measured with graph optimisations off, so that the executed nodes are
        the ONNX nodes the plans name (fusions rename them). If that fails or names too few of
        them, every eligible node gets the same share, and the note says so.
        """
        eligible = facts.eligible_nodes_in_order()
        uniform = {name: 1.0 / len(eligible) for name in eligible} if eligible else {}
        try:
            candidate, _ = self.candidate(PrecisionPlan(lower=lower))  # type: ignore[arg-type]
            feed = self._candidate_feeds(candidate)[0]
            from profilers import OnnxRuntimeProfiler

            profiler = OnnxRuntimeProfiler(
                self.profiler.session_config.with_(graph_optimization_level="disable"),
                telemetry=False,
            )
            report = profiler.measure_per_node(candidate, feed)
        except Exception as error:  # noqa: BLE001 - the ranking still works with uniform shares
            gc.collect()
            return uniform, f"uniform time shares: per-node timing failed ({failure_reason('per-node', error)})"
        total = sum(node.time_ms for node in report.nodes)
        names = set(eligible)
        shares = {n.name: n.time_ms / total for n in report.nodes if n.name in names and total > 0}
        covered = len(shares) / len(eligible) if eligible else 0.0
        if covered < 0.5:
            return uniform, (f"uniform time shares: per-node timing named only {covered:.0%} of the "
                             "eligible nodes")
        clock = "GPU time (CUPTI)" if report.clock.startswith("cupti") else "CPU time (ORT profiler)"
        return shares, (f"time shares from per-node {clock} of the all-{lower} candidate, graph "
                        f"optimisations off ({covered:.0%} of eligible nodes timed)")

    # -- one trial -------------------------------------------------------------------------------

    def __call__(self, plan: PrecisionPlan) -> TrialMeasurement:
        self.evaluated.append(plan.digest())
        try:
            candidate, details = self.candidate(plan)
        except Exception as error:  # noqa: BLE001 - a plan the converter refuses: FAILED trial
            return TrialMeasurement.failed(failure_reason("conversion", error))
        details["metric"] = self.metric.name
        profiler = self.profiler_for(plan)
        details["use_tf32"] = profiler.session_config.use_tf32
        try:
            measured, feeds = self.drift_measurement(candidate, profiler)
        except Exception as error:  # noqa: BLE001 - session build, OOM, runtime error
            gc.collect()
            return TrialMeasurement.failed(failure_reason("session build or drift run", error),
                                           details=details)
        drift = self.metric.value(measured.drift)
        placement = measured.placement
        placed = self.added_cpu_placement(placement)
        details["drift_report"] = _drift_summary(measured.drift)
        details["placement"] = {"providers": placement.providers_count(),
                                "flagged": placement.flagged, "reasons": placement.reasons,
                                "cpu_compute_nodes": [n.name for n in placement.cpu_compute_nodes][:50],
                                "memcpy_nodes": len(placement.memcpy_nodes)}
        rejection = self.gate.rejection(drift)
        if rejection is not None:
            return TrialMeasurement(drift=drift, rejected=rejection, cpu_placed_nodes=placed,
                                    warnings=tuple(placement.reasons), details=details)
        try:
            timed = profiler.measure_latency(
                candidate, feeds[0], output_arrays=measured.candidate_outputs[0]
            )
        except Exception as error:  # noqa: BLE001 - OOM or a runtime error while timing
            gc.collect()
            return TrialMeasurement.failed(failure_reason("latency run", error), drift=drift,
                                           details=details)
        latency = timed.latency
        telemetry = timed.telemetry
        details["provenance"] = timed.provenance
        details["latency_protocol"] = {
            "clock": latency.clock, "warmup_runs": latency.warmup_runs,
            "warmup_stable": latency.warmup_stable, "runs_per_window": latency.runs_per_window,
            "window_median_cv": latency.window_median_cv, "measure_s": latency.measure_s,
        }
        return TrialMeasurement(
            drift=drift,
            latency=LatencySummary.from_stats(latency.stats, device=latency.device,
                                              clock=latency.clock,
                                              first_run_ms=latency.first_run_ms),
            energy_mj=telemetry.energy_mj_per_inference,
            peak_memory_mb=telemetry.session_peak_memory_mib,
            cpu_placed_nodes=placed,
            telemetry=telemetry.to_dict(),
            warnings=(*placement.reasons, *timed.warnings),
            details=details,
        )


def _drift_summary(report: Any) -> dict[str, Any]:
    """Per-output pooled drift and the user metrics, as JSON-able numbers."""
    data = report.to_dict()
    return {
        "samples": data["samples"],
        "has_new_non_finite": data["has_new_non_finite"],
        "outputs": {
            name: {key: values[key] for key in ("max_abs", "mean_abs", "max_rel", "rel_l2",
                                                "cosine", "snr_db", "argmax_agreement",
                                                "nan_count", "inf_count")}
            for name, values in data["outputs"].items()
        },
        "user_metrics": {name: {"mean": m["mean"], "max": m["max"]}
                         for name, m in data["user_metrics"].items()},
    }
