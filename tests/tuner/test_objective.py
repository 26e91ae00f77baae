"""The study's evaluate function on the CPU EP with the real profilers, and the study metric.

The tiny two-branch model (see _cpu_evaluation.py): lowering ``excess`` (Sub) makes Log of a
negative number (NaN); lowering the MatMuls costs about 3e-3 of relative drift; BF16 has no Relu
kernel on the CPU EP, so BF16 plans fail to build.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from profilers import LatencyConfig, OnnxRuntimeProfiler, SessionConfig, compare_outputs
from profilers._placement import NodePlacement, PlacementReport
from search_spaces import PrecisionPlan
from tests.tuner._cpu_evaluation import facts_of, tiny_feeds, tiny_two_branch_model
from tuner._config_fields import StudyConfigError
from tuner._objective import StudyEvaluation, failure_reason
from tuner._study_config import MetricConfig
from tuner._study_metric import StudyMetric

pytest.importorskip("onnxruntime")
FAST = LatencyConfig(window_s=0.005, min_warmup_s=0.01, max_warmup_s=0.05, min_measure_s=0.02,
                     min_windows=2)
TOLERANCE = 1e-3


class CountingProfiler(OnnxRuntimeProfiler):
    """The real CPU profiler, counting what the evaluation asks of it."""

    def __init__(self, flag_placement: bool = False, fp32_copy: bool = False) -> None:
        super().__init__(SessionConfig(device="cpu"), FAST)
        self.calls: dict[str, int] = {"reference": 0, "drift": 0, "latency": 0}
        self.flag_placement = flag_placement
        self.fp32_copy = fp32_copy  # the FP32 model itself needs one host-device copy

    def reference_outputs(self, model, feeds):  # type: ignore[no-untyped-def]
        self.calls["reference"] += 1
        return super().reference_outputs(model, feeds)

    def measure_drift(self, model, feeds, reference):  # type: ignore[no-untyped-def]
        self.calls["drift"] += 1
        measured = super().measure_drift(model, feeds, reference)
        converted = any(n.op_type == "Cast" for n in model.graph.node)  # the FP32 model has none
        copy = NodePlacement("Memcpy", "MemcpyToHost", "CUDAExecutionProvider")
        if self.fp32_copy:  # every model, the FP32 one included, holds the same copy
            placement = PlacementReport("CUDAExecutionProvider", measured.placement.nodes,
                                        memcpy_nodes=(copy,))
            return replace(measured, placement=placement)
        if not self.flag_placement or not converted:
            return measured
        # As the CUDA EP reports a node that fell back to the CPU, and a host-device copy.
        fell_back = NodePlacement("fc1", "MatMul", "CPUExecutionProvider")
        placement = PlacementReport("CUDAExecutionProvider", measured.placement.nodes,
                                    cpu_compute_nodes=(fell_back,), memcpy_nodes=(copy,))
        return replace(measured, placement=placement)

    def measure_latency(self, model, feed, *, output_arrays=None):  # type: ignore[no-untyped-def]
        self.calls["latency"] += 1
        return super().measure_latency(model, feed, output_arrays=output_arrays)


def _evaluation(metric: str = "max_rel", **profiler_kwargs: bool) -> StudyEvaluation:
    model = tiny_two_branch_model()
    study_metric = StudyMetric.from_config(MetricConfig(metric, TOLERANCE),
                                           [o.name for o in model.graph.output])
    return StudyEvaluation(model, tiny_feeds(), CountingProfiler(**profiler_kwargs), study_metric)


SAFE = PrecisionPlan(lower="fp16", keep_fp32_op_types=frozenset({"Sub", "Log"}))


def test_reference_once_and_all_fp32_is_exact() -> None:
    evaluation = _evaluation()
    measurement = evaluation(PrecisionPlan.all_fp32())
    evaluation(SAFE)
    assert evaluation.profiler.calls["reference"] == 1  # once per study, not per trial
    assert measurement.status == "measured" and measurement.drift == 0.0
    assert measurement.latency is not None and measurement.latency.device == "cpu"
    assert measurement.latency.clock == "cpu-perf-counter" and measurement.latency.n_runs > 0
    assert measurement.cpu_placed_nodes == 0
    assert measurement.telemetry == {"available": False,
                                     "reason": "CPU measurement: no GPU telemetry"}
    assert any("CPU measurement" in w for w in measurement.warnings)


def test_nan_is_rejected_before_timing() -> None:
    evaluation = _evaluation()
    measurement = evaluation(PrecisionPlan(lower="fp16"))  # Sub lowered: Log of a negative
    assert measurement.status == "rejected" and measurement.drift == math.inf
    assert "NaN/Inf" in (measurement.rejected or "") and measurement.latency is None
    assert evaluation.profiler.calls["latency"] == 0
    assert measurement.details["drift_report"]["has_new_non_finite"] is True


def test_drift_is_the_metric_on_the_reference_inputs() -> None:
    evaluation = _evaluation()
    measurement = evaluation(SAFE)
    candidate, _ = evaluation.candidate(SAFE)
    import onnxruntime

    session = onnxruntime.InferenceSession(candidate.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    outputs = [dict(zip(["y", "l"], session.run(["y", "l"], feed))) for feed in tiny_feeds()]
    expected = compare_outputs(evaluation.reference.outputs, outputs).objective("max_rel")
    assert measurement.drift == expected and 0 < expected < 10 * TOLERANCE
    assert measurement.details["cast_count"] > 0 and measurement.details["converted"] is True


def test_drift_far_past_tolerance_is_not_timed_and_near_it_is() -> None:
    evaluation = _evaluation()
    measurement, _ = evaluation.drift_measurement(evaluation.candidate(SAFE)[0])
    drift = evaluation.metric.value(measurement.drift)
    # Tighten the study's tolerance so that this drift is far past it, then just past it.
    far = replace(evaluation.metric, config=MetricConfig("max_rel", drift / 20))
    near = replace(evaluation.metric, config=MetricConfig("max_rel", drift / 2))
    evaluation.metric, evaluation.gate = far, replace(evaluation.gate, tolerance=drift / 20)
    assert evaluation(SAFE).status == "rejected"
    evaluation.metric, evaluation.gate = near, replace(evaluation.gate, tolerance=drift / 2)
    timed = evaluation(SAFE)
    assert timed.status == "measured" and timed.latency is not None and timed.drift == drift


def test_failures_name_their_stage() -> None:
    evaluation = _evaluation()
    unknown_node = evaluation(PrecisionPlan(lower="fp16", keep_fp32_nodes=frozenset({"nope"})))
    assert unknown_node.status == "failed"
    assert (unknown_node.failure or "").startswith("conversion failed: ")
    bf16 = evaluation(PrecisionPlan(lower="bf16", keep_fp32_op_types=frozenset({"Sub", "Log"})))
    assert bf16.status == "failed" and "session build or drift run failed" in (bf16.failure or "")
    assert evaluation.drift_of(PrecisionPlan(lower="bf16")) == math.inf  # sensitivity: keep FP32


def test_sensitivity_is_the_continuous_rel_l2_of_the_metric_outputs() -> None:
    evaluation = _evaluation()
    measurement, _ = evaluation.drift_measurement(evaluation.candidate(SAFE)[0])
    expected = max(measurement.drift.outputs[name].rel_l2 for name in evaluation.metric.outputs)
    assert evaluation.drift_of(SAFE) == expected > 0


def test_failure_reason_names_out_of_memory() -> None:
    error = RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : BFCArena::AllocateRawInternal "
                         "Failed to allocate memory for requested buffer of size 123")
    assert failure_reason("latency run", error).startswith("out of memory (latency run): ")
    assert failure_reason("conversion", ValueError("bad")) == "conversion failed: ValueError: bad"


def test_placement_gate_counts_cpu_nodes_and_copies() -> None:
    evaluation = _evaluation(flag_placement=True)
    measurement = evaluation(SAFE)
    assert measurement.cpu_placed_nodes == 2
    assert measurement.details["placement"]["flagged"] is True
    assert any("ran on the CPU" in w for w in measurement.warnings)


def test_placement_gate_ignores_what_the_fp32_model_itself_needs() -> None:
    evaluation = _evaluation(fp32_copy=True)
    measurement = evaluation(SAFE)
    assert measurement.details["placement"]["memcpy_nodes"] == 1
    assert measurement.cpu_placed_nodes == 0


def test_time_share_maps_per_node_time_to_eligible_nodes() -> None:
    evaluation = _evaluation()
    facts = facts_of(evaluation.model)
    shares, how = evaluation.time_share(facts, "fp16")
    # onnxruntime runs an FP16 Softmax as its function body (Exp_13, ...): that time is not
    # Softmax's by name, so Softmax gets no share; the graph's own nodes do.
    assert set(shares) <= facts.eligible_nodes and {"fc1", "fc2", "excess"} <= set(shares)
    assert "softmax" not in shares
    assert all(share >= 0 for share in shares.values()) and sum(shares.values()) <= 1 + 1e-9
    assert "per-node CPU time" in how


# -- the study metric --------------------------------------------------------------------------


def _report(reference: dict, candidate: dict, metric: StudyMetric):  # type: ignore[no-untyped-def]
    return compare_outputs([reference], [candidate], user_metrics=metric.user_metrics)


def test_pooled_metric_is_the_worst_named_output() -> None:
    metric = StudyMetric.from_config(MetricConfig("max_abs", 0.1, outputs=("a",)), ["a", "b"])
    reference = {"a": np.zeros(4, np.float32), "b": np.zeros(4, np.float32)}
    candidate = {"a": np.array([0, 0.25, 0, 0], np.float32), "b": np.full(4, 9, np.float32)}
    assert metric.value(_report(reference, candidate, metric)) == 0.25  # b is not named
    every = StudyMetric.from_config(MetricConfig("max_abs", 0.1), ["a", "b"])
    assert every.value(_report(reference, candidate, every)) == 9.0


def test_thresholded_iou_and_mean_pooled_cosine() -> None:
    iou = StudyMetric.from_config(MetricConfig("thresholded_iou", 0.01, threshold=0.3), ["map"])
    reference = {"map": np.array([0.9, 0.9, 0.1, 0.1], np.float32)}
    candidate = {"map": np.array([0.9, 0.2, 0.8, 0.1], np.float32)}  # IoU 1/3
    assert iou.value(_report(reference, candidate, iou)) == pytest.approx(2 / 3)
    cosine = StudyMetric.from_config(MetricConfig("mean_pooled_cosine", 1e-3), ["h"])
    hidden = np.array([[[1, 0], [1, 0]], [[0, 1], [0, 1]]], np.float32)
    turned = np.array([[[1, 0], [1, 0]], [[1, 1], [1, 1]]], np.float32)
    assert cosine.value(_report({"h": hidden}, {"h": turned}, cosine)) == pytest.approx(
        1 - 1 / math.sqrt(2))


def test_user_function_metric_and_non_finite() -> None:
    metric = StudyMetric.from_config(MetricConfig("numpy:linalg.det", 0.1), ["m"])  # any callable
    assert metric.user_metrics[0].name == "numpy:linalg.det"
    pooled = StudyMetric.from_config(MetricConfig("rel_l2", 0.1), ["y"])
    nan = {"y": np.array([np.nan, 1], np.float32)}
    assert pooled.value(_report({"y": np.ones(2, np.float32)}, nan, pooled)) == math.inf


def test_metric_errors_name_the_field() -> None:
    with pytest.raises(StudyConfigError, match=r"\[metric\] outputs.*'nope'.*its outputs: y, l"):
        StudyMetric.from_config(MetricConfig("max_abs", 0.1, outputs=("nope",)), ["y", "l"])
    with pytest.raises(StudyConfigError, match=r"\[metric\] name = 'nomodule_xyz:f'"):
        StudyMetric.from_config(MetricConfig("nomodule_xyz:f", 0.1), ["y"])


def test_a_plan_allowing_tf32_is_measured_with_tf32_on_cuda_only() -> None:
    from profilers import OnnxRuntimeProfiler, SessionConfig

    evaluation = _evaluation()
    tf32 = replace(SAFE, allow_tf32=True)
    assert evaluation.profiler_for(tf32) is evaluation.profiler  # the CPU EP has no TF32
    evaluation.profiler = OnnxRuntimeProfiler(SessionConfig(device="cuda"))  # built lazily
    chosen = evaluation.profiler_for(tf32)
    assert chosen.session_config.use_tf32 is True
    assert evaluation.profiler.session_config.use_tf32 is False  # the reference's stays off
    assert evaluation.profiler_for(SAFE) is evaluation.profiler
    assert evaluation.profiler_for(tf32) is chosen
