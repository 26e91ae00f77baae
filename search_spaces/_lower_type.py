"""Lower-type space: which float type the lowered nodes use, FP16 or BF16."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from search_spaces._base import ParameterSuggester, PlanFields, SearchSpace
from search_spaces._errors import SearchSpaceError
from search_spaces._model_facts import ModelFacts
from search_spaces._plan import LOWER_TYPES, PrecisionPlan


class LowerTypeSpace(SearchSpace):
    """``lower_type.lower`` over ``choices``; with one choice it fixes the type and asks nothing."""

    name = "lower_type"

    def __init__(self, choices: Iterable[str] = ("fp16",)) -> None:
        self.choices = tuple(dict.fromkeys(choices))  # keeps order, drops repeats
        if not self.choices:
            raise SearchSpaceError("lower_type needs at least one lower type")
        unknown = [c for c in self.choices if c not in LOWER_TYPES]
        if unknown:
            raise SearchSpaceError(
                f"lower types {unknown} are not known; valid: {', '.join(LOWER_TYPES)}"
            )

    def prepare(self, facts: ModelFacts) -> None:
        """Nothing in the model changes which types may be tried."""

    def suggest(self, trial: ParameterSuggester) -> PlanFields:
        if len(self.choices) == 1:
            return PlanFields(lower=self.choices[0])
        return PlanFields(lower=trial.suggest_categorical(self.parameter("lower"), self.choices))

    def params_for(self, plan: PrecisionPlan) -> dict[str, Any]:
        if len(self.choices) == 1:
            return {}
        # An all-FP32 seed has no lower type of its own: give it the first choice.
        lower = plan.lower if plan.lower in self.choices else self.choices[0]
        return {self.parameter("lower"): lower}

    def cardinality(self) -> int:
        return len(self.choices)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "choices": list(self.choices)}
