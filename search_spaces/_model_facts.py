"""What a search space may know about a model: plain data, no ONNX and no runtime."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# How a conversion report spells "this node stays in FP32" (tuner._conversion_report.NodeDecision).
_FP32_SPELLINGS = frozenset({"fp32", "float32", "float"})
# Report reasons that mean "kept because a weight it reads would not survive the lower type".
_OUT_OF_RANGE_REASONS = frozenset({"out_of_range_weight", "flushed_weight"})


@dataclass(frozen=True)
class ModelFacts:
    """The nodes of a model and which of them a conversion may lower.

    ``nodes`` lists ``(node name, op type)`` in graph order (subgraph nodes included), which is
    the order sensitivity groups follow. ``eligible_nodes`` are the nodes the conversion lowers
    when the plan allows it (the all-lower plan's lowered nodes). ``out_of_range_nodes`` read
    values the lower type cannot hold.
    """

    nodes: tuple[tuple[str, str], ...]
    eligible_nodes: frozenset[str]
    out_of_range_nodes: frozenset[str] = frozenset()
    _op_type_of: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple((str(n), str(t)) for n, t in self.nodes))
        object.__setattr__(self, "eligible_nodes", frozenset(self.eligible_nodes))
        object.__setattr__(self, "out_of_range_nodes", frozenset(self.out_of_range_nodes))
        op_type_of = dict(self.nodes)
        if len(op_type_of) != len(self.nodes):
            duplicates = sorted(n for n, c in Counter(n for n, _ in self.nodes).items() if c > 1)
            raise ValueError(f"node names must be unique; repeated: {', '.join(duplicates[:5])}")
        unknown = sorted((self.eligible_nodes | self.out_of_range_nodes) - set(op_type_of))
        if unknown:
            raise ValueError(f"eligible/out-of-range nodes not among the nodes: {unknown[:5]}")
        object.__setattr__(self, "_op_type_of", op_type_of)

    @classmethod
    def from_node_decisions(cls, decisions: Iterable[Any]) -> ModelFacts:
        """Facts from the node decisions of converting with the all-lower plan.

        Each decision has ``name``, ``op_type``, ``precision`` and ``reason`` (attributes or
        mapping keys), as ``tuner.ConversionReport.nodes`` holds them: a node is eligible when
        that conversion lowered it; it reads out-of-range values when its reason says so.
        """
        nodes: list[tuple[str, str]] = []
        eligible: set[str] = set()
        out_of_range: set[str] = set()
        for decision in decisions:
            name, op_type = str(_field(decision, "name")), str(_field(decision, "op_type"))
            precision = str(_field(decision, "precision")).lower()
            reason = str(_field(decision, "reason"))
            nodes.append((name, op_type))
            if precision not in _FP32_SPELLINGS and precision != "unchanged":
                eligible.add(name)
            if reason in _OUT_OF_RANGE_REASONS:
                out_of_range.add(name)
        return cls(tuple(nodes), frozenset(eligible), frozenset(out_of_range))

    def op_type_of(self, node: str) -> str:
        return self._op_type_of[node]

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.nodes)

    @property
    def op_type_counts(self) -> dict[str, int]:
        return dict(Counter(op_type for _, op_type in self.nodes))

    @property
    def op_types_present(self) -> frozenset[str]:
        return frozenset(op_type for _, op_type in self.nodes)

    @property
    def eligible_op_types(self) -> frozenset[str]:
        """Op types with at least one node the conversion may lower."""
        return frozenset(self._op_type_of[name] for name in self.eligible_nodes)

    def eligible_nodes_in_order(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.nodes if name in self.eligible_nodes)

    def eligible_nodes_of_type(self, op_type: str) -> frozenset[str]:
        return frozenset(n for n in self.eligible_nodes if self._op_type_of[n] == op_type)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [list(pair) for pair in self.nodes],
            "eligible_nodes": sorted(self.eligible_nodes),
            "out_of_range_nodes": sorted(self.out_of_range_nodes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelFacts:
        return cls(
            tuple((str(n), str(t)) for n, t in data["nodes"]),
            frozenset(data["eligible_nodes"]),
            frozenset(data.get("out_of_range_nodes", ())),
        )


def _field(decision: Any, key: str) -> Any:
    return decision[key] if isinstance(decision, Mapping) else getattr(decision, key)
