import math
import sys
import textwrap

import numpy as np
import pytest

from profilers import (
    DRIFT_METRICS,
    ProfilingError,
    ThresholdedIoUDrift,
    UserMetric,
    compare_outputs,
)

REF = np.array([[1.0, 2.0, 3.0], [4.0, -5.0, 6.0]], dtype=np.float32)
# Differences: +0.1 at [0, 0], -0.5 at [1, 1], 0 elsewhere.
CAND = np.array([[1.1, 2.0, 3.0], [4.0, -5.5, 6.0]], dtype=np.float32)


def _report(references, candidates, **kwargs):
    return compare_outputs(
        [{"y": r} for r in references], [{"y": c} for c in candidates], **kwargs
    )


def test_every_metric_on_known_arrays():
    out = _report([REF], [CAND]).outputs["y"]
    ref, cand = REF.astype(np.float64), CAND.astype(np.float64)
    diff = cand - ref
    assert out.elements == 6
    assert out.max_abs == pytest.approx(0.5, rel=1e-6)
    assert out.mean_abs == pytest.approx(0.6 / 6, rel=1e-6)
    assert out.max_rel == pytest.approx(0.1, rel=1e-5)  # 0.1 / 1.0 beats 0.5 / 5.0
    assert out.rel_l2 == pytest.approx(math.sqrt(0.26 / 91.0), rel=1e-5)
    cosine = ref.ravel() @ cand.ravel() / (np.linalg.norm(ref) * np.linalg.norm(cand))
    assert out.cosine == pytest.approx(cosine, rel=1e-12)
    assert out.min_sample_cosine == pytest.approx(cosine, rel=1e-12)
    assert out.snr_db == pytest.approx(10 * math.log10(91.0 / (diff**2).sum()), rel=1e-5)
    assert out.argmax_agreement == 1.0  # the argmax of each row is unchanged
    assert (out.nan_count, out.inf_count) == (0, 0)


def test_identical_outputs_have_no_drift():
    out = _report([REF], [REF.copy()]).outputs["y"]
    assert out.max_abs == out.mean_abs == out.max_rel == out.rel_l2 == 0.0
    assert out.cosine == 1.0 and out.snr_db == math.inf and out.argmax_agreement == 1.0


def test_relative_floor_keeps_near_zero_references_meaningful():
    ref = np.array([1e-9, 1.0], dtype=np.float32)
    cand = np.array([1e-4, 1.0], dtype=np.float32)
    assert _report([ref], [cand]).outputs["y"].max_rel == pytest.approx(0.1, rel=1e-3)
    assert _report([ref], [cand], relative_floor=1e-2).outputs["y"].max_rel == pytest.approx(
        1e-2, rel=1e-3
    )


def test_argmax_agreement_counts_rows():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    cand = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert _report([ref], [cand]).outputs["y"].argmax_agreement == 0.75
    scalar_rows = _report([np.ones((4, 1))], [np.ones((4, 1))]).outputs["y"]
    assert scalar_rows.argmax_agreement is None  # no argmax over a single class


def test_pooling_over_samples():
    second_ref = np.zeros((2, 3), dtype=np.float32)
    second_cand = np.full((2, 3), 0.25, dtype=np.float32)
    report = _report([REF, second_ref], [CAND, second_cand])
    out = report.outputs["y"]
    assert report.samples == 2
    assert out.elements == 12
    assert out.max_abs == pytest.approx(0.5, rel=1e-6)
    assert out.mean_abs == pytest.approx((0.6 + 1.5) / 12, rel=1e-6)
    assert out.max_rel == pytest.approx(0.25 / 1e-3, rel=1e-5)  # zero reference: the floor
    assert out.rel_l2 == pytest.approx(math.sqrt((0.26 + 6 * 0.0625) / 91.0), rel=1e-5)
    assert out.min_sample_cosine == 0.0  # the second sample's reference is all zeros


def test_nan_and_inf_are_counted_and_make_the_objective_infinite():
    cand = CAND.copy()
    cand[0, 1] = np.nan
    cand[1, 2] = np.inf
    report = _report([REF], [cand])
    out = report.outputs["y"]
    assert (out.nan_count, out.inf_count) == (1, 1)
    assert out.new_non_finite == 2
    assert out.max_abs == pytest.approx(0.5, rel=1e-6)  # over the finite positions
    assert report.has_new_non_finite
    for metric in DRIFT_METRICS:
        assert report.objective(metric) == math.inf
    assert report.to_dict()["has_new_non_finite"] is True


def test_non_finite_values_shared_with_the_reference_are_not_new():
    ref = np.array([1.0, np.inf, 3.0])
    cand = np.array([1.0, np.inf, 3.0])
    report = _report([ref], [cand])
    assert report.outputs["y"].reference_inf_count == 1
    assert not report.has_new_non_finite
    assert report.objective("max_abs") == 0.0


def test_objective_directions_and_outputs():
    refs = [{"a": REF, "b": np.array([1.0, 0.0])}]
    cands = [{"a": CAND, "b": np.array([0.0, 1.0])}]
    report = compare_outputs(refs, cands)
    a, b = report.outputs["a"], report.outputs["b"]
    assert report.objective("cosine", output="a") == pytest.approx(1 - a.cosine)
    assert report.objective("cosine") == pytest.approx(1.0)  # b is orthogonal: worst output
    assert report.objective("snr_db", output="a") == pytest.approx(-a.snr_db)
    assert report.objective("argmax_agreement", output="b") == 1.0
    assert report.objective("max_abs") == max(a.max_abs, b.max_abs)
    with pytest.raises(ProfilingError, match="not known"):
        report.objective("psnr")
    with pytest.raises(ProfilingError, match="not an output"):
        report.objective("max_abs", output="c")


def test_shape_mismatch_is_refused():
    with pytest.raises(ProfilingError, match="candidate shape"):
        _report([REF], [CAND[:, :2]])
    with pytest.raises(ProfilingError, match="reference samples"):
        _report([REF, REF], [CAND])


def test_thresholded_iou_drift():
    ref = np.array([[0.1, 0.5, 0.9, 0.2]])
    cand = np.array([[0.4, 0.5, 0.1, 0.2]])  # masks {1, 2} vs {0, 1}: IoU 1/3
    metric = ThresholdedIoUDrift(0.3)
    assert metric({"m": ref}, {"m": cand}) == pytest.approx(2 / 3)
    assert metric({"m": ref}, {"m": ref}) == 0.0
    assert metric({"m": np.zeros(4)}, {"m": np.zeros(4)}) == 0.0  # both empty: identical


def test_user_metrics_are_aggregated_and_drive_the_objective():
    ref = np.array([[0.1, 0.5, 0.9, 0.2]])
    cands = [np.array([[0.4, 0.5, 0.1, 0.2]]), ref.copy()]
    report = compare_outputs(
        [{"m": ref}, {"m": ref}],
        [{"m": c} for c in cands],
        user_metrics=[UserMetric("iou", ThresholdedIoUDrift(0.3))],
    )
    result = report.user_metrics["iou"]
    assert result.per_sample == pytest.approx((2 / 3, 0.0))
    assert result.mean == pytest.approx(1 / 3) and result.max == pytest.approx(2 / 3)
    assert report.objective("user:iou") == pytest.approx(1 / 3)
    assert report.objective("user:iou", reduce="max") == pytest.approx(2 / 3)
    with pytest.raises(ProfilingError, match="no user metric named 'f1'"):
        report.objective("user:f1")


def test_user_metric_from_module_and_its_failures(tmp_path, monkeypatch):
    (tmp_path / "amptune_test_metrics.py").write_text(textwrap.dedent("""
        import numpy as np

        def worst_gap(reference, candidate):
            return float(np.max(np.abs(reference["y"] - candidate["y"])))

        def broken(reference, candidate):
            raise KeyError("logits")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        metric = UserMetric.from_target("amptune_test_metrics:worst_gap")
        assert metric.name == "worst_gap"
        report = _report([REF], [CAND], user_metrics=[metric])
        assert report.user_metrics["worst_gap"].mean == pytest.approx(0.5, rel=1e-6)
        with pytest.raises(ProfilingError, match="'broken' failed on sample 0: KeyError"):
            _report([REF], [CAND], user_metrics=[UserMetric.from_target(
                "amptune_test_metrics:broken")])
    finally:
        sys.modules.pop("amptune_test_metrics", None)


def test_report_is_json_ready():
    import json

    text = json.dumps(_report([REF], [REF]).to_dict(), allow_nan=False)
    assert '"snr_db": "inf"' in text
