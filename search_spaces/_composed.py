"""The combinator: several search spaces together make one precision plan per trial."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from search_spaces._base import ParameterSuggester, PlanFields, SearchSpace
from search_spaces._errors import SearchSpaceError
from search_spaces._model_facts import ModelFacts
from search_spaces._plan import PrecisionPlan


class ComposedSearchSpace:
    """Spaces whose plan fields are merged into one normalised :class:`PrecisionPlan`.

    Normalisation maps plans that convert to the same model onto one plan, so that their digests
    agree and the tuner measures them once:

    - op types and nodes the conversion would keep in FP32 anyway (not eligible, absent) are
      dropped from the plan;
    - nodes kept by name whose whole op type is kept are dropped from the node list;
    - a plan that lowers no eligible node becomes :meth:`PrecisionPlan.all_fp32`.
    """

    def __init__(
        self,
        spaces: Sequence[SearchSpace],
        *,
        default_lower: str = "fp16",
        keep_io_types: bool = True,
    ) -> None:
        names = [space.name for space in spaces]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise SearchSpaceError(f"search space(s) {repeated} given more than once")
        self.spaces = tuple(spaces)
        self.default_lower = default_lower
        self.keep_io_types = keep_io_types
        self._facts: ModelFacts | None = None

    @property
    def facts(self) -> ModelFacts:
        if self._facts is None:
            raise SearchSpaceError("the composed search space was not prepared")
        return self._facts

    def prepare(self, facts: ModelFacts) -> None:
        """Once per study, before the first trial: every space fixes its dimensions."""
        self._facts = facts
        for space in self.spaces:
            space.prepare(facts)

    def suggest(self, trial: ParameterSuggester) -> PrecisionPlan:
        """Once per trial: every space suggests its part; the merged plan is normalised."""
        fields = PlanFields()
        for space in self.spaces:
            fields = fields.merged(space.suggest(trial))
        plan = PrecisionPlan(
            lower=fields.lower or self.default_lower,  # type: ignore[arg-type]
            keep_fp32_op_types=fields.keep_fp32_op_types,
            keep_fp32_nodes=fields.keep_fp32_nodes,
            keep_io_types=self.keep_io_types,
            allow_tf32=bool(fields.allow_tf32),
        )
        return self.normalise(plan)

    def normalise(self, plan: PrecisionPlan) -> PrecisionPlan:
        facts = self.facts
        if plan.keep_all_fp32:
            return PrecisionPlan.all_fp32(plan.allow_tf32)
        eligible_types = facts.eligible_op_types
        kept_types = plan.keep_fp32_op_types & eligible_types
        kept_nodes = frozenset(
            n for n in plan.keep_fp32_nodes & facts.eligible_nodes
            if facts.op_type_of(n) not in kept_types
        )
        lowered = [
            n for n in facts.eligible_nodes
            if n not in kept_nodes and facts.op_type_of(n) not in kept_types
        ]
        if not lowered and plan.keep_io_types:
            return PrecisionPlan.all_fp32(plan.allow_tf32)
        return PrecisionPlan(
            lower=plan.lower,
            keep_fp32_op_types=kept_types,
            keep_fp32_nodes=kept_nodes,
            keep_io_types=plan.keep_io_types,
            allow_tf32=plan.allow_tf32,
        )

    def params_for(self, plan: PrecisionPlan) -> dict[str, Any]:
        """The parameters that represent ``plan`` in every space (for enqueueing a seed).

        Each space sees the plan with its kept op types expanded into kept nodes, so that a space
        over nodes recognises nodes a plan keeps through their op type.
        """
        facts = self.facts
        expanded = plan
        if not plan.keep_all_fp32:
            by_type = {n for n in facts.eligible_nodes if facts.op_type_of(n) in plan.keep_fp32_op_types}
            expanded = PrecisionPlan(
                lower=plan.lower,
                keep_fp32_op_types=plan.keep_fp32_op_types,
                keep_fp32_nodes=plan.keep_fp32_nodes | by_type,
                keep_io_types=plan.keep_io_types,
                allow_tf32=plan.allow_tf32,
            )
        params: dict[str, Any] = {}
        for space in self.spaces:
            params.update(space.params_for(expanded))
        return params

    def cardinality(self) -> int | None:
        """How many parameter combinations exist (None if any space is continuous).

        Different combinations may normalise to one plan, so the number of distinct plans can
        be smaller; it is never larger.
        """
        sizes = [space.cardinality() for space in self.spaces]
        if any(size is None for size in sizes):
            return None
        return math.prod(sizes)  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        return {
            "spaces": [space.describe() for space in self.spaces],
            "cardinality": self.cardinality(),
            "default_lower": self.default_lower,
            "keep_io_types": self.keep_io_types,
        }
