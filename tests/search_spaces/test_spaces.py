from __future__ import annotations

import math

import optuna
import pytest

from search_spaces import (
    LowerTypeSpace,
    OpTypeSpace,
    PrecisionPlan,
    SearchSpaceError,
    SensitiveNodesSpace,
    SensitivityEntry,
    SensitivityRanking,
)
from tests.search_spaces._facts import transformer_facts, transformer_ranking


def test_op_type_space_has_one_choice_per_eligible_op_type() -> None:
    space = OpTypeSpace(always_fp32=["Softmax"], always_lower=["Gather"])
    space.prepare(transformer_facts())
    assert space.op_types == ("Add", "Div", "Erf", "LayerNormalization", "MatMul")
    assert space.cardinality() == 32
    params = {f"op_types.{t}": "lower" for t in space.op_types} | {"op_types.Erf": "fp32"}
    fields = space.suggest(optuna.trial.FixedTrial(params))
    assert fields.keep_fp32_op_types == {"Erf", "Softmax"}  # always_fp32 joins every trial


def test_op_type_space_names_op_types_the_model_lacks() -> None:
    space = OpTypeSpace(always_fp32=["Softmaxx"])
    with pytest.raises(SearchSpaceError, match=r"always_fp32: \['Softmaxx'\].*present: Add"):
        space.prepare(transformer_facts())
    with pytest.raises(SearchSpaceError, match="both"):
        OpTypeSpace(always_fp32=["Add"], always_lower=["Add"])


def test_lower_type_space_asks_only_when_there_is_a_choice() -> None:
    single = LowerTypeSpace(["bf16"])
    assert single.suggest(optuna.trial.FixedTrial({})).lower == "bf16"
    assert single.params_for(PrecisionPlan()) == {}
    both = LowerTypeSpace(["fp16", "bf16"])
    assert both.suggest(optuna.trial.FixedTrial({"lower_type.lower": "bf16"})).lower == "bf16"
    assert both.params_for(PrecisionPlan.all_fp32()) == {"lower_type.lower": "fp16"}
    with pytest.raises(SearchSpaceError, match="fp8"):
        LowerTypeSpace(["fp8"])


def test_ranking_orders_by_drift_per_time_or_by_drift() -> None:
    ranking = transformer_ranking()
    per_time = [e.nodes[0] for e in ranking.ordered("drift_per_time")]
    by_drift = [e.nodes[0] for e in ranking.ordered("drift")]
    assert per_time[0] == "ffn_down" and by_drift[0] == "ffn_down"  # inf first either way
    # gelu_erf: 0.05 drift for 1% of the time beats softmax: 0.08 for 2%? No: 5.0 vs 4.0.
    assert per_time[1:3] == ["gelu_erf", "softmax"]
    assert by_drift[1:3] == ["softmax", "gelu_erf"]
    # ffn_up: small drift and a large share of the time ranks last by drift per time.
    assert per_time[-1] == "ffn_up"


def test_top_k_keeps_a_prefix_of_the_ranking() -> None:
    space = SensitiveNodesSpace(transformer_ranking(), max_k=3)
    space.prepare(transformer_facts())
    assert space.cardinality() == 4
    kept = space.suggest(optuna.trial.FixedTrial({"sensitive_nodes.top_k": 2})).keep_fp32_nodes
    # ffn_down alone makes the outputs non-finite: kept in every trial, not searched.
    assert space.always_fp32_nodes == {"ffn_down"}
    assert kept == {"ffn_down", "gelu_erf", "softmax"}
    none = space.suggest(optuna.trial.FixedTrial({"sensitive_nodes.top_k": 0}))
    assert none.keep_fp32_nodes == {"ffn_down"}


def test_threshold_spans_keep_none_to_keep_all() -> None:
    space = SensitiveNodesSpace(transformer_ranking(), mode="threshold", order="drift")
    space.prepare(transformer_facts())
    low, high = space._log_low, space._log_high
    none = space.suggest(optuna.trial.FixedTrial({"sensitive_nodes.log10_threshold": high}))
    every = space.suggest(optuna.trial.FixedTrial({"sensitive_nodes.log10_threshold": low}))
    assert none.keep_fp32_nodes == {"ffn_down"}
    assert every.keep_fp32_nodes == {n for e in transformer_ranking().entries for n in e.nodes}
    middle = space.suggest(
        optuna.trial.FixedTrial({"sensitive_nodes.log10_threshold": math.log10(0.019)})
    )
    assert middle.keep_fp32_nodes == {"ffn_down", "softmax", "gelu_erf", "ln1", "ln2"}


def test_params_for_counts_nodes_kept_through_their_op_type() -> None:
    space = SensitiveNodesSpace(transformer_ranking())
    facts = transformer_facts()
    space.prepare(facts)
    plan = PrecisionPlan(keep_fp32_nodes={"ffn_down", "gelu_erf"})
    assert space.params_for(plan) == {"sensitive_nodes.top_k": 1}
    plan = PrecisionPlan(keep_fp32_op_types={"Softmax"}, keep_fp32_nodes={"gelu_erf"})
    assert space.params_for(plan) == {"sensitive_nodes.top_k": 2}
    assert space.params_for(PrecisionPlan.all_fp32()) == {"sensitive_nodes.top_k": 7}
    assert space.params_for(PrecisionPlan()) == {"sensitive_nodes.top_k": 0}


def test_sensitive_nodes_needs_a_ranking_and_skips_nodes_no_longer_eligible() -> None:
    with pytest.raises(SearchSpaceError, match="sensitivity pass"):
        SensitiveNodesSpace(None).prepare(transformer_facts())
    ranking = SensitivityRanking((
        SensitivityEntry(("topk",), 1.0, 0.1),  # not eligible: already FP32
        SensitivityEntry(("softmax",), 0.5, 0.1),
    ))
    space = SensitiveNodesSpace(ranking)
    space.prepare(transformer_facts())
    assert [e.nodes for e in space.entries] == [("softmax",)]


def test_sensitivity_entries_are_validated() -> None:
    with pytest.raises(SearchSpaceError, match="time_share"):
        SensitivityEntry(("a",), 0.1, 1.5)
    with pytest.raises(SearchSpaceError, match="drift"):
        SensitivityEntry(("a",), float("nan"), 0.1)
    with pytest.raises(SearchSpaceError, match="two sensitivity entries"):
        SensitivityRanking((SensitivityEntry(("a",), 0.1), SensitivityEntry(("a", "b"), 0.2)))
    ranking = transformer_ranking()
    assert SensitivityRanking.from_dict(ranking.to_dict()) == ranking
