"""Which execution provider runs each node, and whether that disqualifies a candidate.

On the CUDA EP a candidate is flagged when a node that computes on floating-point tensors runs on
the CPU (the work fell back: typically an op with no FP16 kernel), or when the graph holds
host-device copies (``MemcpyToHost``/``MemcpyFromHost``). CPU nodes whose outputs are all integer
or boolean (shape arithmetic that onnxruntime keeps on the CPU on purpose) are listed, not flagged.
The placement is read from the session profile of a real run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from profilers._ort_profile import NodeRun
from profilers._sessions import CPU_PROVIDER, CUDA_PROVIDER

MEMCPY_OP_TYPES = frozenset({"MemcpyToHost", "MemcpyFromHost"})
_FLOAT_TYPES = frozenset({"float", "double", "float16", "bfloat16", "MLFloat16", "BFloat16"})


@dataclass(frozen=True)
class NodePlacement:
    name: str
    op_type: str
    provider: str


@dataclass(frozen=True)
class PlacementReport:
    """Where each node ran; ``flagged`` says whether the candidate should be rejected."""

    expected_provider: str
    nodes: tuple[NodePlacement, ...]
    cpu_compute_nodes: tuple[NodePlacement, ...] = field(default_factory=tuple)
    cpu_shape_nodes: tuple[NodePlacement, ...] = field(default_factory=tuple)
    memcpy_nodes: tuple[NodePlacement, ...] = field(default_factory=tuple)

    @property
    def flagged(self) -> bool:
        return bool(self.cpu_compute_nodes or self.memcpy_nodes)

    @property
    def reasons(self) -> list[str]:
        reasons = []
        if self.cpu_compute_nodes:
            ops = sorted({n.op_type for n in self.cpu_compute_nodes})
            reasons.append(
                f"{len(self.cpu_compute_nodes)} compute node(s) ran on the CPU instead of "
                f"{self.expected_provider} (op types: {', '.join(ops)})"
            )
        if self.memcpy_nodes:
            reasons.append(
                f"{len(self.memcpy_nodes)} host-device copy node(s) in the graph "
                f"({', '.join(sorted({n.op_type for n in self.memcpy_nodes}))})"
            )
        return reasons

    def providers_count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.provider] = counts.get(node.provider, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        def names(nodes: Sequence[NodePlacement]) -> list[dict[str, str]]:
            return [{"name": n.name, "op_type": n.op_type, "provider": n.provider} for n in nodes]

        return {
            "expected_provider": self.expected_provider,
            "flagged": self.flagged,
            "reasons": self.reasons,
            "providers": self.providers_count(),
            "cpu_compute_nodes": names(self.cpu_compute_nodes),
            "cpu_shape_nodes": names(self.cpu_shape_nodes),
            "memcpy_nodes": names(self.memcpy_nodes),
            "nodes": names(self.nodes),
        }


def placement_from_node_runs(runs: Sequence[NodeRun], device: str) -> PlacementReport:
    """Classifies each distinct node of a profiled run (first execution wins)."""
    expected = CUDA_PROVIDER if device == "cuda" else CPU_PROVIDER
    seen: dict[str, NodeRun] = {}
    for run in runs:
        seen.setdefault(run.name, run)
    nodes, compute, shape, memcpy = [], [], [], []
    for run in seen.values():
        placement = NodePlacement(run.name, run.op_type, run.provider)
        nodes.append(placement)
        if run.op_type in MEMCPY_OP_TYPES:
            memcpy.append(placement)
        elif run.provider != expected:
            if any(t in _FLOAT_TYPES for t in run.output_types):
                compute.append(placement)
            else:
                shape.append(placement)
    return PlacementReport(expected, tuple(nodes), tuple(compute), tuple(shape), tuple(memcpy))
