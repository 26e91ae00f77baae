"""A real evaluation on the CPU for the tuner's tests: tiny models built in code, converted with
``tuner.convert_precision``, run in onnxruntime's CPU EP; real drift and a perf_counter latency.

The tiny model has two branches whose precision matters differently:

- ``y = Softmax(MatMul(Relu(MatMul(x, w1) + b1), w2))``: lowering the MatMuls costs about 3e-3
  of drift (their weights are rounded to FP16), keeping them FP32 about 2e-5;
- ``l = Log(level - 1000.3)``: in FP16 the constant rounds to 1000.5, so lowering the Sub makes
  ``Log`` of a negative number: NaN. Keeping ``excess`` (Sub) in FP32 avoids it.

On the CPU EP, BF16 has no Relu kernel: every BF16 plan fails to build, a real failure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from search_spaces import ModelFacts, PrecisionPlan
from tuner import convert_precision
from tuner._trial_measurement import AccuracyGate, LatencySummary, TrialMeasurement


def tiny_two_branch_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def weight(values: object, name: str) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(values, np.float32), name)

    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"),
        helper.make_node("Add", ["h1", "b1"], ["a1"], name="bias1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["logits"], name="fc2"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1),
        helper.make_node("Sub", ["level", "floor"], ["excess"], name="excess"),
        helper.make_node("Log", ["excess"], ["l"], name="log_excess"),
    ]
    weights = [
        weight(rng.standard_normal((16, 32)) * 0.5, "w1"),
        weight(rng.standard_normal(32) * 0.1, "b1"),
        weight(rng.standard_normal((32, 10)), "w2"),
        weight(1000.3, "floor"),
    ]
    graph = helper.make_graph(
        nodes, "two_branches",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16]),
         helper.make_tensor_value_info("level", TensorProto.FLOAT, [8, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 10]),
         helper.make_tensor_value_info("l", TensorProto.FLOAT, [8, 4])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def tiny_feeds(samples: int = 3, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {"x": rng.standard_normal((8, 16)).astype(np.float32),
         "level": rng.uniform(1000.4, 1001.4, (8, 4)).astype(np.float32)}
        for _ in range(samples)
    ]


def facts_of(model: onnx.ModelProto, lower: str = "fp16") -> ModelFacts:
    """The facts the tuner derives: the node decisions of the all-lower conversion."""
    report = convert_precision(model, PrecisionPlan(lower=lower)).report  # type: ignore[arg-type]
    return ModelFacts.from_node_decisions(report.nodes)


def _session(model: onnx.ModelProto):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def relative_max_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest absolute error relative to the reference's largest magnitude; inf on NaN/Inf."""
    candidate = candidate.astype(np.float64)
    if not np.all(np.isfinite(candidate)):
        return math.inf
    scale = max(float(np.abs(reference).max()), 1e-12)
    return float(np.abs(candidate - reference).max()) / scale


def _median_ci(samples: np.ndarray) -> tuple[float, float]:
    ordered = np.sort(samples)
    n = ordered.size
    half = 0.98 * math.sqrt(n)  # normal approximation of the binomial ranks, 95%
    low = max(0, math.floor(n / 2 - half) - 1)
    high = min(n - 1, math.ceil(n / 2 + half))
    return float(ordered[low]), float(ordered[high])


@dataclass
class CpuEvaluation:
    """``evaluate(plan)`` for the study glue: convert, gate on accuracy, then time on the CPU."""

    model: onnx.ModelProto
    feeds: Sequence[dict[str, np.ndarray]]
    tolerance: float
    reject_factor: float = 10.0
    runs: int = 15
    calls: list[str] = field(default_factory=list)  # digests evaluated, in order

    def __post_init__(self) -> None:
        session = _session(self.model)
        self.references = [session.run(None, feed) for feed in self.feeds]
        self.gate = AccuracyGate(self.tolerance, self.reject_factor)

    def outputs(self, plan: PrecisionPlan) -> tuple[object, list[list[np.ndarray]]]:
        converted = convert_precision(self.model, plan)
        session = _session(converted.model)
        return (session, converted.report), [session.run(None, feed) for feed in self.feeds]

    def drift_of(self, plan: PrecisionPlan) -> float:
        _, outputs = self.outputs(plan)
        return max(
            relative_max_error(ref, out)
            for refs, outs in zip(self.references, outputs) for ref, out in zip(refs, outs)
        )

    def __call__(self, plan: PrecisionPlan) -> TrialMeasurement:
        self.calls.append(plan.digest())
        (session, report), outputs = self.outputs(plan)  # build failures propagate: FAILED trial
        drift = max(
            relative_max_error(ref, out)
            for refs, outs in zip(self.references, outputs) for ref, out in zip(refs, outs)
        )
        details = {"cast_count": report.cast_count}
        rejection = self.gate.rejection(drift)
        if rejection is not None:
            return TrialMeasurement(drift=drift, rejected=rejection, details=details)
        times = []
        for _ in range(self.runs):
            start = time.perf_counter()
            session.run(None, self.feeds[0])
            times.append((time.perf_counter() - start) * 1e3)
        samples = np.asarray(times)
        low, high = _median_ci(samples)
        latency = LatencySummary(
            median_ms=float(np.median(samples)), n_runs=samples.size, device="cpu",
            clock="cpu-perf-counter", ci_low_ms=low, ci_high_ms=high,
            mean_ms=float(samples.mean()), p90_ms=float(np.percentile(samples, 90)),
            cv=float(samples.std(ddof=1) / samples.mean()), min_ms=float(samples.min()),
        )
        return TrialMeasurement(drift=drift, latency=latency, details=details,
                                warnings=("CPU measurement: onnxruntime CPU EP, perf_counter",))


def finished_tiny_study(folder, n_trials: int = 24, device: str = "cpu"):
    """A study of the tiny model run to the end on the CPU, as exports and reports find it."""
    from search_spaces import seed_plans
    from tuner._study import TuningStudy, build_search_space, create_sampler
    from tuner._study_config import SamplerConfig, SearchConfig

    model = tiny_two_branch_model()
    facts = facts_of(model)
    space = build_search_space(SearchConfig(spaces=("op_types",)))
    space.prepare(facts)
    study = TuningStudy.open(
        name="tiny", storage=f"sqlite:///{folder}/study.db", objectives=("latency_ms", "drift"),
        tolerance=1e-3, sampler=create_sampler(SamplerConfig(n_startup_trials=6), seed=0),
        context={"device": device, "provider_options": {"prefer_nhwc": "1"}},
    )
    study.enqueue_seeds(space, seed_plans(facts, "fp16"))
    study.run(space, CpuEvaluation(model, tiny_feeds(), 1e-3), n_trials=n_trials)
    return study, model
