"""One contract, checked against every search space (as Optuna's testing suites do for samplers)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import optuna
import pytest

from search_spaces import (
    SPACE_TYPES,
    LowerTypeSpace,
    OpTypeSpace,
    PlanFields,
    SearchSpace,
    SensitiveNodesSpace,
    Tf32Space,
)
from tests.search_spaces._facts import transformer_facts, transformer_ranking

FACTORIES: dict[str, Callable[[], SearchSpace]] = {
    "op_types": lambda: OpTypeSpace(always_lower=["Gather"]),
    "lower_type": lambda: LowerTypeSpace(["fp16", "bf16"]),
    "tf32": Tf32Space,
    "sensitive_nodes_top_k": lambda: SensitiveNodesSpace(transformer_ranking(), max_k=5),
    "sensitive_nodes_threshold": lambda: SensitiveNodesSpace(
        transformer_ranking(), mode="threshold", order="drift"
    ),
}


def test_only_the_threshold_mode_is_continuous() -> None:
    for name, factory in FACTORIES.items():
        space = factory()
        space.prepare(transformer_facts())
        assert (space.cardinality() is None) == name.endswith("threshold")


def test_every_registered_space_is_under_contract() -> None:
    covered = {factory().name for factory in FACTORIES.values()}
    assert covered == set(SPACE_TYPES)


@pytest.fixture(params=sorted(FACTORIES))
def space(request: pytest.FixtureRequest) -> SearchSpace:
    prepared = FACTORIES[request.param]()
    prepared.prepare(transformer_facts())
    return prepared


def _suggestions(space: SearchSpace, n_trials: int) -> list[tuple[dict, PlanFields]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    found = []
    for _ in range(n_trials):
        trial = study.ask()
        fields = space.suggest(trial)
        study.tell(trial, 0.0)
        found.append((dict(trial.params), fields))
    return found


def test_suggestions_stay_within_the_model(space: SearchSpace) -> None:
    facts = transformer_facts()
    for params, fields in _suggestions(space, 40):
        assert all(name.startswith(space.name + ".") for name in params)
        assert fields.keep_fp32_op_types <= facts.op_types_present
        assert fields.keep_fp32_nodes <= facts.eligible_nodes


def test_fixed_parameters_give_the_same_fields(space: SearchSpace) -> None:
    """The sampler's view (params) determines the plan: no hidden randomness in a space."""
    for params, fields in _suggestions(space, 20):
        assert space.suggest(optuna.trial.FixedTrial(params)) == fields


def test_params_for_reproduces_a_suggested_plan(space: SearchSpace) -> None:
    from search_spaces import PrecisionPlan

    for params, fields in _suggestions(space, 30):
        plan = PrecisionPlan(
            lower=fields.lower or "fp16",
            keep_fp32_op_types=fields.keep_fp32_op_types,
            keep_fp32_nodes=fields.keep_fp32_nodes,
            allow_tf32=bool(fields.allow_tf32),
        )
        again = space.suggest(optuna.trial.FixedTrial(space.params_for(plan)))
        assert again == fields


@pytest.mark.parametrize(
    "factory", [f for n, f in sorted(FACTORIES.items()) if not n.endswith("threshold")]
)
def test_cardinality_counts_the_distinct_suggestions(factory: Callable[[], SearchSpace]) -> None:
    space = factory()
    space.prepare(transformer_facts())
    size = space.cardinality()
    assert size is not None
    distinct = {
        (fields.lower, fields.keep_fp32_op_types, fields.keep_fp32_nodes, fields.allow_tf32)
        for _, fields in _suggestions(space, 25 * size)
    }
    assert len(distinct) == size


def test_suggest_before_prepare_is_an_error() -> None:
    from search_spaces import SearchSpaceError

    for factory in FACTORIES.values():
        fresh = factory()
        if isinstance(fresh, LowerTypeSpace):
            continue  # needs nothing from the model
        with pytest.raises(SearchSpaceError, match="prepare"):
            fresh.suggest(optuna.trial.FixedTrial({}))


def test_parameter_names_never_collide_across_spaces() -> None:
    names = []
    for factory in FACTORIES.values():
        space = factory()
        space.prepare(transformer_facts())
        names.append({n for params, _ in _suggestions(space, 5) for n in params})
    for first, second in itertools.combinations(names, 2):
        assert not first & second
