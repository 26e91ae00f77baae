"""Per-node sensitivity: the drift when one node (or one group) alone is lowered, and its time.

The sensitivity pass runs once per study (the tuner caches its result in the study's storage):
for each eligible node, or for each group of consecutive eligible nodes on large models, it
measures the drift of the plan that lowers that node or group and nothing else, and pairs it with
the node's share of the all-lower candidate's GPU time. The sensitive-nodes space then searches
over a prefix (top-k) or a threshold of the resulting ranking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from search_spaces._errors import SearchSpaceError
from search_spaces._model_facts import ModelFacts
from search_spaces._plan import PrecisionPlan

RankingOrder = Literal["drift", "drift_per_time"]
RANKING_ORDERS: tuple[str, ...] = ("drift", "drift_per_time")

# Keeping a node that takes no measurable time in FP32 still costs Casts: its share is floored at
# 0.1% of the model's time, so that such nodes do not all rank first with an infinite ratio.
TIME_SHARE_FLOOR = 1e-3


@dataclass(frozen=True)
class SensitivityEntry:
    """One node, or one group of consecutive nodes, and what lowering it alone does.

    ``drift``: drift of the model when only these nodes are lowered (``inf`` when that makes
    NaN/Inf). ``time_share``: share (0..1) of the all-lower candidate's GPU time these nodes take.
    """

    nodes: tuple[str, ...]
    drift: float
    time_share: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        if not self.nodes:
            raise SearchSpaceError("a sensitivity entry needs at least one node")
        if math.isnan(self.drift) or self.drift < 0:
            raise SearchSpaceError(f"sensitivity of {self.label}: drift must be >= 0 or inf")
        if not 0.0 <= self.time_share <= 1.0:
            raise SearchSpaceError(
                f"sensitivity of {self.label}: time_share must be in [0, 1], got {self.time_share}"
            )

    @property
    def label(self) -> str:
        if len(self.nodes) == 1:
            return self.nodes[0]
        return f"{self.nodes[0]} .. {self.nodes[-1]} ({len(self.nodes)} nodes)"

    def score(self, order: RankingOrder) -> float:
        """Higher ranks first: drift alone, or drift avoided per share of time kept in FP32."""
        if order == "drift":
            return self.drift
        return self.drift / max(self.time_share, TIME_SHARE_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": list(self.nodes),
            "drift": self.drift if math.isfinite(self.drift) else "inf",
            "time_share": self.time_share,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityEntry:
        return cls(tuple(data["nodes"]), float(data["drift"]), float(data.get("time_share", 0.0)))


@dataclass(frozen=True)
class SensitivityRanking:
    """The result of one sensitivity pass, in measurement order (rank with :meth:`ordered`)."""

    entries: tuple[SensitivityEntry, ...]
    lower: str = "fp16"
    metric: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        seen: set[str] = set()
        for entry in self.entries:
            repeated = seen.intersection(entry.nodes)
            if repeated:
                raise SearchSpaceError(f"node(s) {sorted(repeated)[:3]} in two sensitivity entries")
            seen.update(entry.nodes)

    def ordered(self, order: RankingOrder = "drift_per_time") -> tuple[SensitivityEntry, ...]:
        """Most sensitive first; ties keep measurement (graph) order."""
        if order not in RANKING_ORDERS:
            raise SearchSpaceError(f"ranking order {order!r} is not one of {RANKING_ORDERS}")
        return tuple(sorted(self.entries, key=lambda e: -e.score(order)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "lower": self.lower,
            "metric": self.metric,
            "entries": [entry.to_dict() for entry in self.entries],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensitivityRanking:
        return cls(
            tuple(SensitivityEntry.from_dict(e) for e in data["entries"]),
            str(data.get("lower", "fp16")),
            str(data.get("metric", "")),
        )


def group_nodes(nodes: Sequence[str], max_groups: int) -> list[tuple[str, ...]]:
    """Split ``nodes`` (graph order) into at most ``max_groups`` runs of consecutive nodes.

    Groups differ in size by at most one, so that each sensitivity measurement covers a similar
    part of the model.
    """
    if max_groups < 1:
        raise SearchSpaceError(f"max_groups must be >= 1, got {max_groups}")
    count = min(max_groups, len(nodes))
    if count == 0:
        return []
    size, extra = divmod(len(nodes), count)
    groups, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        groups.append(tuple(nodes[start:end]))
        start = end
    return groups


def plan_lowering_only(
    nodes: Iterable[str], facts: ModelFacts, lower: str = "fp16"
) -> PrecisionPlan:
    """The plan that lowers exactly ``nodes`` (eligible ones) and keeps every other node in FP32.

    Op types without a target node are kept whole; within the targets' op types, the other
    nodes are kept by name. That keeps the plan short on models with many nodes of one type.
    """
    targets = frozenset(nodes)
    unknown = sorted(targets - facts.eligible_nodes)
    if unknown:
        raise SearchSpaceError(f"cannot lower nodes that are not eligible: {unknown[:5]}")
    target_types = {facts.op_type_of(n) for n in targets}
    keep_types = facts.eligible_op_types - target_types
    keep_nodes = frozenset(
        n for n in facts.eligible_nodes if facts.op_type_of(n) in target_types and n not in targets
    )
    return PrecisionPlan(
        lower=lower,  # type: ignore[arg-type]  # PrecisionPlan validates it
        keep_fp32_op_types=keep_types,
        keep_fp32_nodes=keep_nodes,
    )


def rank_sensitivity(
    facts: ModelFacts,
    drift_of: Callable[[PrecisionPlan], float],
    *,
    time_share: Mapping[str, float] | None = None,
    lower: str = "fp16",
    max_groups: int = 256,
    metric: str = "",
    on_entry: Callable[[int, int, SensitivityEntry], None] | None = None,
) -> SensitivityRanking:
    """Run the sensitivity pass: one ``drift_of(plan)`` call per node or group.

    ``drift_of`` returns the drift of a plan (NaN is recorded as ``inf``); ``time_share`` maps
    node names to their share of the all-lower candidate's time (absent nodes count as 0; the
    shares of a group add up). ``on_entry(index, total, entry)`` reports progress.
    """
    shares = dict(time_share or {})
    groups = group_nodes(facts.eligible_nodes_in_order(), max_groups)
    entries = []
    for index, group in enumerate(groups):
        drift = float(drift_of(plan_lowering_only(group, facts, lower)))
        if math.isnan(drift):
            drift = math.inf
        share = min(1.0, sum(max(0.0, float(shares.get(n, 0.0))) for n in group))
        entry = SensitivityEntry(group, drift, share)
        entries.append(entry)
        if on_entry is not None:
            on_entry(index, len(groups), entry)
    return SensitivityRanking(tuple(entries), lower=lower, metric=metric)
