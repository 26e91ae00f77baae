"""The contract every :class:`profilers.Profiler` keeps, as a reusable test suite.

Subclass :class:`ProfilerContract` in a ``Test*`` class and give it a ``profiler`` fixture; the
suite runs a tiny MatMul model built in code, FP32 and converted to FP16.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from profilers import (
    LatencyConfig,
    PerNodeReport,
    Profiler,
    ProfilingError,
    profile_candidate,
)
from tests.profilers._models import matmul_chain

FAST_LATENCY = LatencyConfig(window_s=0.02, min_warmup_s=0.05, max_warmup_s=2.0, min_windows=4,
                             min_measure_s=0.1)


class ProfilerContract:
    @pytest.fixture
    def profiler(self) -> Profiler:
        raise NotImplementedError

    @pytest.fixture
    def model(self):
        return matmul_chain(layers=4, size=256, batch="batch")

    @pytest.fixture
    def feeds(self):
        rng = np.random.default_rng(5)
        return [{"x": rng.standard_normal((32, 256)).astype(np.float32)} for _ in range(3)]

    @pytest.fixture
    def fp16_model(self, model):
        from search_spaces import PrecisionPlan
        from tuner import convert_precision

        return convert_precision(model, PrecisionPlan(lower="fp16")).model

    def test_is_a_profiler(self, profiler):
        assert isinstance(profiler, Profiler)
        assert profiler.device in ("cuda", "cpu")

    def test_reference_outputs(self, profiler, model, feeds):
        reference = profiler.reference_outputs(model, feeds)
        assert len(reference.outputs) == len(feeds)
        assert reference.outputs[0]["y"].shape == (32, 256)
        assert reference.outputs[0]["y"].dtype == np.float32
        assert not np.array_equal(reference.outputs[0]["y"], reference.outputs[1]["y"])
        if profiler.device == "cuda":
            assert reference.tf32_disabled is True  # read back from the live session
        else:
            assert reference.tf32_disabled is None
        assert reference.describe()["samples"] == 3

    def test_same_model_has_no_drift_and_clean_placement(self, profiler, model, feeds):
        reference = profiler.reference_outputs(model, feeds)
        measured = profiler.measure_drift(model, feeds, reference)
        assert measured.drift.samples == 3
        assert measured.drift.objective("max_abs") <= 1e-5
        assert measured.drift.outputs["y"].cosine == pytest.approx(1.0, abs=1e-9)
        assert not measured.placement.flagged
        assert {n.op_type for n in measured.placement.nodes} >= {"MatMul"}
        json.dumps(measured.to_dict(), allow_nan=False)

    def test_fp16_candidate_drifts_a_little(self, profiler, model, fp16_model, feeds):
        reference = profiler.reference_outputs(model, feeds)
        measured = profiler.measure_drift(fp16_model, feeds, reference)
        y = measured.drift.outputs["y"]
        assert 0 < y.max_abs < 0.1
        assert y.cosine > 0.9999
        assert not measured.drift.has_new_non_finite

    def test_feeds_must_match_the_reference(self, profiler, model, feeds):
        reference = profiler.reference_outputs(model, feeds)
        with pytest.raises(ProfilingError, match="same inputs"):
            profiler.measure_drift(model, feeds[:2], reference)

    def test_latency(self, profiler, model, feeds):
        measured = profiler.measure_latency(model, feeds[0])
        latency = measured.latency
        assert latency.device == profiler.device
        assert latency.is_cpu_measurement == (profiler.device == "cpu")
        assert latency.stats.n >= 4 and latency.median_ms > 0
        assert latency.first_run_ms > 0
        assert measured.provenance["device"] == profiler.device
        assert measured.provenance["amptune_version"]
        if profiler.device == "cpu":
            assert not measured.telemetry.available
            assert any("CPU measurement" in w for w in measured.warnings)
        data = measured.to_dict()
        json.dumps(data, default=str)
        assert data["latency"]["stats"]["median_ms"] == latency.median_ms

    def test_per_node(self, profiler, model, feeds):
        report = profiler.measure_per_node(model, feeds[0])
        assert isinstance(report, PerNodeReport)
        assert "MatMul" in {o.op_type for o in report.op_types}
        assert report.attributed_ms > 0 and report.inferences > 0

    def test_profile_candidate_runs_everything(self, profiler, model, fp16_model, feeds):
        report = profile_candidate(profiler, model, fp16_model, feeds, per_node=True,
                                   context={"name": "contract"})
        data = report.to_dict()
        json.dumps(data, default=str)
        assert data["name"] == "contract"
        assert {"reference", "drift", "placement", "latency", "telemetry", "provenance",
                "per_node", "warnings"} <= set(data)
        titles = [title for title, _ in report.summary()]
        assert titles[:2] == ["latency", "telemetry"] and "top nodes" in titles
