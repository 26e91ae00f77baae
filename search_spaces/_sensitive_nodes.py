"""Sensitive-nodes space: keep the most sensitive nodes in FP32, chosen by top-k or a threshold.

One parameter covers the whole ranking, so that a model of 1000 nodes adds one dimension to the
search, not 1000. The ranking comes from the sensitivity pass (:func:`rank_sensitivity`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from search_spaces._base import ParameterSuggester, PlanFields, SearchSpace
from search_spaces._errors import SearchSpaceError
from search_spaces._model_facts import ModelFacts
from search_spaces._plan import PrecisionPlan
from search_spaces._sensitivity import (
    RANKING_ORDERS,
    RankingOrder,
    SensitivityEntry,
    SensitivityRanking,
)

SelectionMode = Literal["top_k", "threshold"]
SELECTION_MODES: tuple[str, ...] = ("top_k", "threshold")

# The threshold is searched on a log10 scale over the positive finite scores, widened by half a
# decade on each side: below the lowest score every entry is kept, above the highest none is.
_LOG_MARGIN = 0.5


class SensitiveNodesSpace(SearchSpace):
    """Keep the first k entries of the ranking in FP32 (``top_k``), or those scoring at least a
    threshold (``threshold``).

    Entries whose lowering alone makes the outputs non-finite (infinite drift) are kept in FP32
    in every trial: no plan that lowers them can be right, so they are not searched.

    ``order``: ``drift_per_time`` (default) ranks by drift avoided per share of GPU time kept in
    FP32; ``drift`` by drift alone. ``max_k`` caps k (default: every entry).
    """

    name = "sensitive_nodes"

    def __init__(
        self,
        ranking: SensitivityRanking | None,
        *,
        mode: SelectionMode = "top_k",
        order: RankingOrder = "drift_per_time",
        max_k: int | None = None,
    ) -> None:
        if mode not in SELECTION_MODES:
            raise SearchSpaceError(f"sensitive_nodes.mode {mode!r} is not one of {SELECTION_MODES}")
        if order not in RANKING_ORDERS:
            raise SearchSpaceError(f"sensitive_nodes.order {order!r} is not one of {RANKING_ORDERS}")
        if max_k is not None and max_k < 1:
            raise SearchSpaceError(f"sensitive_nodes.max_k must be >= 1, got {max_k}")
        self.ranking, self.mode, self.order, self.max_k = ranking, mode, order, max_k
        self.entries: tuple[SensitivityEntry, ...] = ()
        self.always_fp32_nodes: frozenset[str] = frozenset()
        self._prepared = False

    def prepare(self, facts: ModelFacts) -> None:
        if self.ranking is None:
            raise SearchSpaceError(
                "the sensitive_nodes space needs a sensitivity ranking: run the sensitivity pass "
                "first, or leave 'sensitive_nodes' out of the search spaces"
            )
        self._facts = facts
        entries: list[SensitivityEntry] = []
        always: set[str] = set()
        for entry in self.ranking.ordered(self.order):
            nodes = tuple(n for n in entry.nodes if n in facts.eligible_nodes)
            if not nodes:  # nodes the model no longer lowers are already FP32
                continue
            if math.isinf(entry.drift):
                always.update(nodes)
            else:
                entries.append(SensitivityEntry(nodes, entry.drift, entry.time_share))
        self.always_fp32_nodes = frozenset(always)
        limit = len(entries) if self.max_k is None else min(self.max_k, len(entries))
        self.entries = tuple(entries[:limit])
        scores = [e.score(self.order) for e in self.entries]
        positive = [s for s in scores if 0 < s < math.inf]
        if positive:
            self._log_low = math.log10(min(positive)) - _LOG_MARGIN
            self._log_high = math.log10(max(positive)) + _LOG_MARGIN
        else:  # all scores zero or infinite: the threshold only separates those two
            self._log_low, self._log_high = -_LOG_MARGIN, _LOG_MARGIN
        self._prepared = True

    def kept_entries(self, count: int) -> tuple[SensitivityEntry, ...]:
        return self.entries[:count]

    def _count_at_threshold(self, log10_threshold: float) -> int:
        # Compared on the log scale the parameter lives on, so that params_for's value for an
        # entry's own score keeps that entry (10**log10(s) may round below s). Zero scores
        # (lowering alone changed nothing) are never kept by a threshold.
        return sum(
            1 for e in self.entries
            if e.score(self.order) > 0 and math.log10(e.score(self.order)) >= log10_threshold
        )

    def suggest(self, trial: ParameterSuggester) -> PlanFields:
        self._require_prepared(self._prepared)
        if not self.entries:
            return PlanFields(keep_fp32_nodes=self.always_fp32_nodes)
        if self.mode == "top_k":
            count = trial.suggest_int(self.parameter("top_k"), 0, len(self.entries))
        else:
            log10_threshold = trial.suggest_float(
                self.parameter("log10_threshold"), self._log_low, self._log_high
            )
            count = self._count_at_threshold(log10_threshold)
        nodes = frozenset(n for entry in self.kept_entries(count) for n in entry.nodes)
        return PlanFields(keep_fp32_nodes=nodes | self.always_fp32_nodes)

    def params_for(self, plan: PrecisionPlan) -> dict[str, Any]:
        """The longest prefix of the ranking that ``plan`` keeps entirely in FP32."""
        self._require_prepared(self._prepared)
        if not self.entries:
            return {}
        count = 0
        for entry in self.entries:
            if not all(self._kept_by(plan, node) for node in entry.nodes):
                break
            count += 1
        if self.mode == "top_k":
            return {self.parameter("top_k"): count}
        if count == 0:
            value = self._log_high
        else:
            score = self.entries[count - 1].score(self.order)
            value = self._log_low if score <= 0 else math.log10(score)
            value = min(max(value, self._log_low), self._log_high)
        return {self.parameter("log10_threshold"): value}

    def _kept_by(self, plan: PrecisionPlan, node: str) -> bool:
        return (
            plan.keep_all_fp32
            or node in plan.keep_fp32_nodes
            or self._facts.op_type_of(node) in plan.keep_fp32_op_types
        )

    def cardinality(self) -> int | None:
        return len(self.entries) + 1 if self.mode == "top_k" else None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "order": self.order,
            "entries": len(self.entries),
            "nodes": sum(len(e.nodes) for e in self.entries),
            "always_fp32_nodes": sorted(self.always_fp32_nodes),
        }
