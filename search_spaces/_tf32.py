"""TF32 space: whether the nodes that stay FP32 may compute MatMul and convolutions in TF32.

TF32 is the CUDA EP's default and often the fastest FP32 (PP-OCR cls: 1.56 ms against 1.92 ms
FP32 on an H200), with drift of its own (up to 0.14 on PP-OCRv4 det's text map). A mixed plan may
be fastest with its FP32 part in TF32, or most accurate without: the search measures both.
"""

from __future__ import annotations

from typing import Any

from search_spaces._base import ParameterSuggester, PlanFields, SearchSpace
from search_spaces._model_facts import ModelFacts
from search_spaces._plan import PrecisionPlan


class Tf32Space(SearchSpace):
    """``tf32.allow``: True or False, for every plan (the all-FP32 plan included)."""

    name = "tf32"

    _prepared = False

    def prepare(self, facts: ModelFacts) -> None:
        """Any model with FP32 MatMul or Conv may use TF32; nothing to fix from the facts."""
        self._prepared = True

    def suggest(self, trial: ParameterSuggester) -> PlanFields:
        self._require_prepared(self._prepared)
        return PlanFields(allow_tf32=trial.suggest_categorical(self.parameter("allow"),
                                                               [False, True]))

    def params_for(self, plan: PrecisionPlan) -> dict[str, Any]:
        self._require_prepared(self._prepared)
        return {self.parameter("allow"): plan.allow_tf32}

    def cardinality(self) -> int:
        return 2

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "choices": [False, True]}
