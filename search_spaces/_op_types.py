"""Op-type space: keep in FP32 or lower, one choice per eligible op type present in the model."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from search_spaces._base import ParameterSuggester, PlanFields, SearchSpace
from search_spaces._errors import SearchSpaceError
from search_spaces._model_facts import ModelFacts
from search_spaces._plan import PrecisionPlan

LOWER = "lower"
KEEP_FP32 = "fp32"
CHOICES = (LOWER, KEEP_FP32)


class OpTypeSpace(SearchSpace):
    """One categorical parameter ``op_types.<OpType>`` in {"lower", "fp32"} per eligible op type.

    ``always_fp32``: op types kept in FP32 in every trial, not searched. ``always_lower``: op types
    lowered in every trial, not searched (e.g. data-movement ops whose precision only matters for
    where Casts go). Both must name op types present in the model: a typo fails at prepare().
    """

    name = "op_types"

    def __init__(
        self, always_fp32: Iterable[str] = (), always_lower: Iterable[str] = ()
    ) -> None:
        self.always_fp32 = frozenset(always_fp32)
        self.always_lower = frozenset(always_lower)
        both = sorted(self.always_fp32 & self.always_lower)
        if both:
            raise SearchSpaceError(
                f"op types {both} are in both always_fp32 and always_lower; choose one"
            )
        self.op_types: tuple[str, ...] = ()
        self._prepared = False

    def prepare(self, facts: ModelFacts) -> None:
        present = facts.op_types_present
        for field_name, names in (("always_fp32", self.always_fp32),
                                  ("always_lower", self.always_lower)):
            absent = sorted(names - present)
            if absent:
                raise SearchSpaceError(
                    f"op_types.{field_name}: {absent} do not occur in the model; op types "
                    f"present: {', '.join(sorted(present))}"
                )
        eligible = facts.eligible_op_types
        self._fixed_fp32 = self.always_fp32 & eligible
        self.op_types = tuple(sorted(eligible - self.always_fp32 - self.always_lower))
        self._prepared = True

    def suggest(self, trial: ParameterSuggester) -> PlanFields:
        self._require_prepared(self._prepared)
        kept = {
            op_type
            for op_type in self.op_types
            if trial.suggest_categorical(self.parameter(op_type), CHOICES) == KEEP_FP32
        }
        return PlanFields(keep_fp32_op_types=frozenset(kept) | self._fixed_fp32)

    def params_for(self, plan: PrecisionPlan) -> dict[str, Any]:
        self._require_prepared(self._prepared)
        return {
            self.parameter(op_type): (
                KEEP_FP32 if plan.keep_all_fp32 or op_type in plan.keep_fp32_op_types else LOWER
            )
            for op_type in self.op_types
        }

    def cardinality(self) -> int:
        return 2 ** len(self.op_types)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "searched_op_types": list(self.op_types),
            "always_fp32": sorted(self.always_fp32),
            "always_lower": sorted(self.always_lower),
        }
