"""What a conversion did and why: one decision per node, one note per weight, every changed value."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

# Why a node ended up in its precision. Documented in the README's "Conversion report" section.
REASONS = {
    "lowered": "lowered as the plan asks",
    "follows_input": "reads a lowered tensor directly (no computed float output of its own)",
    "cast_retargeted": "existing Cast retargeted to the lower type: all its readers are lowered",
    "plan_keep_all": "the plan keeps every node in FP32",
    "plan_keep_op_type": "the plan keeps this op type in FP32",
    "plan_keep_node": "the plan keeps this node in FP32",
    "no_cuda_kernel": "the CUDA EP has no kernel for this op at this opset",
    "no_lower_kernel": "the CUDA EP's kernel for this op does not accept the lower type",
    "schema_disallows_lower": "the ONNX schema at the model's opset does not allow the lower type",
    "no_schema": "no ONNX schema is known for this op, so its type constraints are unknown",
    "no_float_data": "the node computes no FP32 data",
    "unknown_types": "the element types of its inputs are not known",
    "output_type_from_attribute": "its output type is set by an attribute, not by its inputs",
    "subgraph_outputs_lowered": "If node: outputs lowered in both branches stay lowered",
    "subgraph_holder": "control-flow node: its bodies are converted, its interface keeps its types",
    "out_of_range_weight": "reads a weight with values beyond the lower type's range",
    "flushed_weight": "reads a weight whose values flushing to zero carry too much of its norm",
    "input_kept": "reads only tensors that stay FP32 (follows its inputs)",
}


@dataclass(frozen=True)
class NodeDecision:
    graph: str
    name: str
    op_type: str
    domain: str
    precision: str  # "fp32" (kept), "fp16"/"bf16" (lowered), "unchanged" (no float data)
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class WeightNote:
    tensor: str
    action: str  # "converted" in place, "duplicated" (fp32 + lower copy), "kept_fp32"
    size: int
    max_abs: float
    out_of_range: int
    flushed_to_zero: int
    flushed_norm_share: float
    readers: tuple[str, ...]


@dataclass(frozen=True)
class ClampedValue:
    tensor: str
    flat_index: int
    original: float
    clamped: float


@dataclass
class ConversionReport:
    lower: str
    plan_digest: str
    nodes: list[NodeDecision] = field(default_factory=list)
    weights: list[WeightNote] = field(default_factory=list)
    clamped_values: list[ClampedValue] = field(default_factory=list)
    casts_added: int = 0
    cast_count: int = 0
    initializers_duplicated: int = 0
    warnings: list[str] = field(default_factory=list)

    def precision_counts(self) -> dict[str, int]:
        return dict(Counter(decision.precision for decision in self.nodes))

    def reason_counts(self) -> dict[str, int]:
        return dict(Counter(decision.reason for decision in self.nodes))

    def decision_for(self, node_name: str) -> NodeDecision:
        for decision in self.nodes:
            if decision.name == node_name:
                return decision
        raise KeyError(node_name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lower": self.lower,
            "plan_digest": self.plan_digest,
            "cast_count": self.cast_count,
            "casts_added": self.casts_added,
            "initializers_duplicated": self.initializers_duplicated,
            "precision_counts": self.precision_counts(),
            "reason_counts": self.reason_counts(),
            "reasons": REASONS,
            "warnings": list(self.warnings),
            "nodes": [asdict(decision) for decision in self.nodes],
            "weights": [asdict(note) for note in self.weights],
            "clamped_values": [asdict(value) for value in self.clamped_values],
        }

    def summary_lines(self) -> list[str]:
        counts = self.precision_counts()
        lines = [
            (f"nodes: {len(self.nodes)} "
             + " ".join(f"{key}={value}" for key, value in sorted(counts.items()))),
            f"Cast nodes: {self.cast_count} in the result ({self.casts_added} added)",
            (f"weights: {sum(n.action == 'converted' for n in self.weights)} converted, "
             f"{self.initializers_duplicated} duplicated (FP32 original + lower copy), "
             f"{sum(n.action == 'kept_fp32' for n in self.weights)} kept FP32"),
        ]
        kept = Counter(d.reason for d in self.nodes if d.precision == "fp32")
        if kept:
            lines.append(
                "kept FP32 because: "
                + ", ".join(f"{reason} ({count})" for reason, count in kept.most_common())
            )
        if self.clamped_values:
            lines.append(f"clamped values: {len(self.clamped_values)}")
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        return lines
