"""The study glue on a real CPU evaluation: tiny models converted with convert_precision and run in
onnxruntime's CPU EP (see _cpu_evaluation.py for the model and why its plans differ)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import optuna
import pytest

from search_spaces import SeedPlan, seed_plans
from tests.tuner._cpu_evaluation import CpuEvaluation, facts_of, tiny_feeds, tiny_two_branch_model
from tuner import AmptuneError
from tuner._study import TuningStudy, build_search_space, create_sampler
from tuner._study_config import SamplerConfig, SearchConfig
from tuner._study_progress import TextProgress
from tuner._trial_records import (
    DIGEST,
    DRIFT_CONSTRAINT,
    PLACEMENT_CONSTRAINT,
    PLAN,
    SEED,
    STATUS,
    study_records,
)

pytest.importorskip("onnxruntime")
TOLERANCE = 1e-3
OBJECTIVES = ("latency_ms", "drift")


@pytest.fixture(scope="module")
def model():
    return tiny_two_branch_model()


@pytest.fixture(scope="module")
def facts(model):
    return facts_of(model)


def _open(tmp_path: Path, name: str = "tiny", **kwargs: object) -> TuningStudy:
    return TuningStudy.open(
        name=name, storage=f"sqlite:///{tmp_path / 'study.db'}", objectives=OBJECTIVES,
        tolerance=TOLERANCE, sampler=create_sampler(SamplerConfig(n_startup_trials=6), seed=0),
        **kwargs,  # type: ignore[arg-type]
    )


def _space(facts, **search: object):
    space = build_search_space(SearchConfig(**search))  # type: ignore[arg-type]
    space.prepare(facts)
    return space


def test_search_finds_the_feasible_front_and_records_every_trial(tmp_path, model, facts) -> None:
    space = _space(facts, spaces=("op_types",))
    evaluation = CpuEvaluation(model, tiny_feeds(), TOLERANCE)
    study = _open(tmp_path)
    enqueued = study.enqueue_seeds(space, seed_plans(facts, "fp16"))
    # The block-list seeds keep op types absent from this model: they equal all_lower here.
    assert enqueued[:2] == ["all_fp32", "all_lower"] and "onnxruntime_block_list" not in enqueued
    lines = io.StringIO()
    outcome = study.run(space, evaluation, n_trials=30, progress=TextProgress(lines))

    assert outcome.finished == 30
    assert outcome.measured + outcome.rejected + outcome.failed == len(evaluation.calls)
    assert len(evaluation.calls) == len(set(evaluation.calls))  # no plan measured twice
    assert len(lines.getvalue().splitlines()) == 30
    trials = study.study.get_trials()
    assert [t.user_attrs.get(SEED) for t in trials[: len(enqueued)]] == enqueued
    for trial in trials:
        assert {PLAN, DIGEST, STATUS} <= set(trial.user_attrs)
    for record in study_records(study.study):
        if record.status == "rejected":  # Sub lowered: FP16 rounds 1000.3 to 1000.5, Log(<0)
            assert "NaN/Inf" in record.measurement.rejected
            assert record.values == {"latency_ms": math.inf, "drift": math.inf}
            assert "Sub" not in record.plan.keep_fp32_op_types
        if record.state == "COMPLETE":
            assert set(record.constraints) == {DRIFT_CONSTRAINT, PLACEMENT_CONSTRAINT}
    front = study.study.best_trials
    assert front
    for trial in front:
        plan = study_records(study.study)[trial.number].plan
        assert plan.keep_all_fp32 or {"Sub", "MatMul"} <= plan.keep_fp32_op_types
        assert trial.values[1] <= TOLERANCE and all(v <= 0 for v in trial.constraints.values())


def test_failures_are_failed_trials_with_reasons_and_are_not_rebuilt(tmp_path, model, facts) -> None:
    space = _space(facts, spaces=("op_types", "lower_type"), lower_types=("fp16", "bf16"))
    evaluation = CpuEvaluation(model, tiny_feeds(), TOLERANCE)
    study = _open(tmp_path)
    outcome = study.run(space, evaluation, n_trials=24)
    records = study_records(study.study)
    failed = [r for r in records if r.state == "FAIL"]
    assert failed and outcome.finished == 24  # the study went on past every failure
    for record in failed:
        assert record.plan.lower == "bf16"  # the CPU EP lacks BF16 kernels: a real build failure
        assert "NOT_IMPLEMENTED" in record.failure or record.status == "reused"
    assert len(evaluation.calls) == len(set(evaluation.calls))
    assert any(r.status == "measured" for r in records)


def test_rerun_resumes_the_study_without_remeasuring(tmp_path, model, facts) -> None:
    space = _space(facts, spaces=("op_types",))
    first = CpuEvaluation(model, tiny_feeds(), TOLERANCE)
    study = _open(tmp_path, fingerprint={"model": "tiny"})
    study.enqueue_seeds(space, seed_plans(facts, "fp16"))
    study.run(space, first, n_trials=10)

    again = _open(tmp_path, fingerprint={"model": "tiny"})
    assert again.enqueue_seeds(space, seed_plans(facts, "fp16")) == []  # seeds go in once
    second = CpuEvaluation(model, tiny_feeds(), TOLERANCE)
    outcome = again.run(space, second, n_trials=20)
    assert outcome.finished == 20 and len(again.study.trials) == 20
    assert not set(first.calls) & set(second.calls)
    with pytest.raises(AmptuneError, match="differs in model"):
        _open(tmp_path, fingerprint={"model": "another"})


def test_a_small_space_stops_when_every_combination_was_tried(tmp_path, model, facts) -> None:
    space = _space(facts, spaces=("op_types",), always_lower=("Add", "Relu", "Log", "Softmax"))
    assert space.cardinality() == 4  # MatMul and Sub: lower or FP32
    study = _open(tmp_path)
    outcome = study.run(space, CpuEvaluation(model, tiny_feeds(), TOLERANCE), n_trials=200)
    assert outcome.stopped_because == "all 4 combinations of the search space were tried"
    assert outcome.measured + outcome.rejected == 4


def test_trials_left_running_are_failed_as_interrupted(tmp_path, model, facts) -> None:
    space = _space(facts, spaces=("op_types",))
    study = _open(tmp_path)
    study.study.ask()  # as if a run was killed mid-trial
    study.run(space, CpuEvaluation(model, tiny_feeds(), TOLERANCE), n_trials=3)
    first = study.study.trials[0]
    assert first.state == optuna.trial.TrialState.FAIL
    assert first.user_attrs[STATUS] == "interrupted"
    assert len(study.study.trials) == 4  # the interrupted trial does not count toward the budget


def test_timeout_stops_the_study(tmp_path, model, facts) -> None:
    study = _open(tmp_path)
    outcome = study.run(
        _space(facts, spaces=("op_types",)), CpuEvaluation(model, tiny_feeds(), TOLERANCE),
        timeout_s=1e-9,
    )
    assert outcome.stopped_because.startswith("timeout") and outcome.finished == 0


def test_sensitivity_pass_ranks_nodes_and_is_cached_with_the_study(tmp_path, model, facts) -> None:
    evaluation = CpuEvaluation(model, tiny_feeds(), TOLERANCE)
    study = _open(tmp_path)
    ranking = study.sensitivity(facts, evaluation.drift_of, lower="fp16")
    by_node = {entry.nodes[0]: entry for entry in ranking.entries}
    assert math.isinf(by_node["excess"].drift)  # lowering the Sub alone gives NaN
    # fc2's weights rounded to FP16 cost most; Relu changes nothing (it only selects).
    assert by_node["fc2"].drift > TOLERANCE > by_node["fc1"].drift > by_node["softmax"].drift
    assert by_node["relu1"].drift == 0

    def must_not_run(plan):
        raise AssertionError("the cached ranking should have been used")

    reopened = _open(tmp_path)
    assert reopened.sensitivity(facts, must_not_run, lower="fp16") == ranking
    assert reopened.cached_sensitivity("bf16") is None

    space = build_search_space(SearchConfig(spaces=("sensitive_nodes",)), ranking)
    space.prepare(facts)
    reopened.run(space, evaluation, n_trials=8)
    front = reopened.study.best_trials
    assert front  # keeping the top of the ranking (fc1, fc2) in FP32 meets the tolerance
    for trial in study_records(reopened.study):
        if trial.plan is not None and not trial.plan.keep_all_fp32:
            assert "excess" in trial.plan.keep_fp32_nodes  # infinite drift: kept in every trial


def test_a_seed_outside_the_space_is_measured_as_given(tmp_path, model, facts) -> None:
    space = _space(facts, spaces=("op_types",))
    from search_spaces import PrecisionPlan

    seed = SeedPlan("by_node", PrecisionPlan(keep_fp32_nodes={"excess", "fc1", "fc2"}), "nodes")
    study = _open(tmp_path)
    assert study.enqueue_seeds(space, [seed]) == ["by_node"]
    evaluation = CpuEvaluation(model, tiny_feeds(), TOLERANCE)
    study.run(space, evaluation, n_trials=1)
    record = study_records(study.study)[0]
    assert record.plan.keep_fp32_nodes == {"excess", "fc1", "fc2"}
    assert record.feasible  # the node-level seed meets the tolerance
