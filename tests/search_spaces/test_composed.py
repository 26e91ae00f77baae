from __future__ import annotations

import optuna
import pytest

from search_spaces import (
    ComposedSearchSpace,
    LowerTypeSpace,
    OpTypeSpace,
    PrecisionPlan,
    SearchSpaceError,
    SensitiveNodesSpace,
)
from tests.search_spaces._facts import transformer_facts, transformer_ranking


def _space(**options: object) -> ComposedSearchSpace:
    space = ComposedSearchSpace(
        [
            OpTypeSpace(always_lower=["Gather"]),
            LowerTypeSpace(["fp16", "bf16"]),
            SensitiveNodesSpace(transformer_ranking(), max_k=4),
        ],
        **options,  # type: ignore[arg-type]
    )
    space.prepare(transformer_facts())
    return space


def _params(space: ComposedSearchSpace, keep: set[str], lower: str = "fp16", k: int = 0) -> dict:
    op_types = space.spaces[0].op_types  # type: ignore[attr-defined]
    params = {f"op_types.{t}": ("fp32" if t in keep else "lower") for t in op_types}
    return params | {"lower_type.lower": lower, "sensitive_nodes.top_k": k}


def test_suggest_merges_every_space_into_one_plan() -> None:
    space = _space()
    plan = space.suggest(optuna.trial.FixedTrial(_params(space, {"Softmax"}, "bf16", k=2)))
    assert plan.lower == "bf16"
    assert plan.keep_fp32_op_types == {"Softmax"}
    # top-2 of the ranking is gelu_erf and softmax (+ ffn_down, always); softmax is kept by type.
    assert plan.keep_fp32_nodes == {"gelu_erf", "ffn_down"}


def test_plans_that_convert_alike_normalise_to_one_digest() -> None:
    space = _space()
    facts = transformer_facts()
    redundant = PrecisionPlan(
        keep_fp32_op_types={"Softmax", "TopK", "Conv"},  # TopK is never lowered, Conv is absent
        keep_fp32_nodes={"softmax", "shape_of", "ln1"},  # softmax is kept by type, shape_of FP32
    )
    lean = PrecisionPlan(keep_fp32_op_types={"Softmax"}, keep_fp32_nodes={"ln1"})
    assert space.normalise(redundant).digest() == space.normalise(lean).digest()
    everything = PrecisionPlan(lower="bf16", keep_fp32_op_types=facts.eligible_op_types)
    assert space.normalise(everything) == PrecisionPlan.all_fp32()
    assert space.normalise(PrecisionPlan(keep_all_fp32=True, lower="bf16")) == PrecisionPlan.all_fp32()


def test_params_for_then_suggest_returns_the_seed_plan() -> None:
    space = _space()
    seed = space.normalise(PrecisionPlan(keep_fp32_op_types={"Erf"}, keep_fp32_nodes={"ffn_down"}))
    again = space.suggest(optuna.trial.FixedTrial(space.params_for(seed)))
    assert again == seed


def test_keep_io_types_passes_through() -> None:
    space = _space(keep_io_types=False)
    plan = space.suggest(optuna.trial.FixedTrial(_params(space, set())))
    assert plan.keep_io_types is False


def test_cardinality_is_the_product_of_the_spaces() -> None:
    space = _space()
    assert space.cardinality() == 2**6 * 2 * 5
    threshold = ComposedSearchSpace([SensitiveNodesSpace(transformer_ranking(), mode="threshold")])
    threshold.prepare(transformer_facts())
    assert threshold.cardinality() is None


def test_a_space_given_twice_is_an_error() -> None:
    with pytest.raises(SearchSpaceError, match="op_types"):
        ComposedSearchSpace([OpTypeSpace(), OpTypeSpace()])
    with pytest.raises(SearchSpaceError, match="not prepared"):
        ComposedSearchSpace([OpTypeSpace()]).normalise(PrecisionPlan())
