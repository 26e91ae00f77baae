"""Decides, for every node of a model and its subgraphs, whether it runs in the lower float type.

Decisions come before any rewrite so that each rule sees the whole model: a weight is converted in
place only when every reader is lowered, an existing Cast to FP32 is retargeted only when every
reader is lowered, and a node that only reads float data (Shape, ArgMax, a Cast's input) follows its
producer so that it never needs a Cast of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx

from search_spaces import PrecisionPlan
from tuner._kernel_registry import KernelRegistry
from tuner._lower_types import FLOAT32, LowerFloatType
from tuner._schema_binding import NodeBinding, bind_node, normalize_domain
from tuner._tensor_types import iterate_graphs, opset_versions
from tuner._weights import Weight, WeightRange, collect_weights, measure_range

ML_DOMAIN = "ai.onnx.ml"


@dataclass(frozen=True)
class WeightPolicy:
    """What to do with weights that do not fit the lower type."""

    clamp_out_of_range: bool = False
    # Readers of a weight stay FP32 when the values that flush to zero carry more than this share
    # of the tensor's L2 norm. 1e-3: a relative change of the tensor below 0.1% is well under the
    # rounding error FP16 itself brings to activations; above it the loss is no longer noise.
    max_flushed_norm_share: float = 1e-3


@dataclass
class NodePlan:
    node: onnx.NodeProto
    graph_name: str
    lowered: bool
    reason: str
    detail: str = ""
    lowered_inputs: frozenset[int] = frozenset()
    lowered_outputs: frozenset[int] = frozenset()
    follows: bool = False  # decided by its inputs' precision, not by the plan
    retarget_cast: bool = False


@dataclass
class ModelDecisions:
    nodes: dict[str, NodePlan]  # by node name (names are made unique first)
    order: list[str]
    lowered_tensors: set[str]
    weights: dict[str, Weight]
    weight_ranges: dict[str, WeightRange]
    weights_in_place: set[str]
    lowered_graph_inputs: set[str]
    kept_type_outputs: set[str]
    lowered_branch_outputs: set[str]
    detached_initializers: tuple[onnx.TensorProto, ...] = ()
    consumers: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def _keep_reason(node: onnx.NodeProto, plan: PrecisionPlan) -> str | None:
    qualified = f"{node.domain}:{node.op_type}" if node.domain not in ("", "ai.onnx") else ""
    if node.op_type in plan.keep_fp32_op_types or qualified in plan.keep_fp32_op_types:
        return "plan_keep_op_type"
    if node.name in plan.keep_fp32_nodes:
        return "plan_keep_node"
    return None


def _compute_constraint(binding: NodeBinding, node: onnx.NodeProto, types: dict[str, int]):
    """The type parameter that carries the node's computed float data: that of its first FP32
    output, else that of its first FP32 input."""
    for index, name in enumerate(node.output):
        if name and types.get(name) == FLOAT32:
            constraint = binding.constraint_of_output(index)
            if constraint is not None:
                return constraint
    for index, name in enumerate(node.input):
        if name and types.get(name) == FLOAT32:
            constraint = binding.constraint_of_input(index)
            if constraint is not None:
                return constraint
    return None


class _Decider:
    def __init__(
        self,
        model: onnx.ModelProto,
        plan: PrecisionPlan,
        lower: LowerFloatType,
        registry: KernelRegistry,
        types: dict[str, int],
        policy: WeightPolicy,
        detached: Sequence[onnx.TensorProto] = (),
    ) -> None:
        self.model, self.plan, self.lower = model, plan, lower
        self.detached = detached
        self.registry, self.types, self.policy = registry, types, policy
        self.opsets = opset_versions(model)
        self.weights: dict[str, Weight] = {}
        self.weight_ranges: dict[str, WeightRange] = {}
        self.consumers: dict[str, list[tuple[str, int]]] = {}
        self.nodes: dict[str, NodePlan] = {}
        self.order: list[str] = []

    def weight_range(self, name: str) -> WeightRange:
        if name not in self.weight_ranges:
            self.weight_ranges[name] = measure_range(self.weights[name].values(), self.lower)
        return self.weight_ranges[name]

    def base_decision(self, node: onnx.NodeProto, graph_name: str) -> NodePlan:
        def keep(reason: str, detail: str = "") -> NodePlan:
            return NodePlan(node, graph_name, False, reason, detail)

        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            return keep("no_float_data", "weight holder: converted with its readers")
        if normalize_domain(node.domain) == ML_DOMAIN:
            return keep("no_cuda_kernel", "ai.onnx.ml operators run on the CPU only")
        opset = self.opsets.get(node.domain or "", 0)
        binding = bind_node(node, opset)
        if binding is None:
            return keep("no_schema", f"{node.domain or 'ai.onnx'}:{node.op_type} opset {opset}")
        if binding.graph_attributes:
            return keep("subgraph_holder")
        if node.op_type == "Cast" and binding.domain == "":
            return self.cast_decision(node, graph_name)
        if any(name and name not in self.types for name in node.input) and not any(
                self.types.get(name) == FLOAT32 for name in node.input):
            return keep("unknown_types")
        constraint = _compute_constraint(binding, node, self.types)
        if constraint is None:
            return keep("no_float_data")
        lowerable = self.registry.lowerable_constraints(
            node.domain, node.op_type, opset, self.lower.name
        )
        if lowerable is None:
            return keep("no_cuda_kernel", f"opset {opset}")
        if self.lower.type_str not in constraint.allowed_types:
            return keep("schema_disallows_lower",
                        f"{node.op_type}-{binding.since_version} constraint {constraint.name}")
        if constraint.name not in lowerable:
            return keep("no_lower_kernel", f"constraint {constraint.name}")
        if constraint.output_indices and not constraint.input_indices:
            return keep("output_type_from_attribute", f"constraint {constraint.name}")
        plan_reason = _keep_reason(node, self.plan)
        if plan_reason is not None:
            return keep(plan_reason)
        lowered_constraints = [constraint] + [
            other for other in binding.constraints
            if other.name != constraint.name and other.name in lowerable
            and self.lower.type_str in other.allowed_types and any(
                self.types.get(node.input[i]) == FLOAT32 for i in other.input_indices)
        ]
        inputs = frozenset(i for c in lowered_constraints for i in c.input_indices
                           if self.types.get(node.input[i]) == FLOAT32)
        outputs = frozenset(i for c in lowered_constraints for i in c.output_indices
                            if self.types.get(node.output[i]) == FLOAT32)
        for index in sorted(inputs):
            name = node.input[index]
            if name not in self.weights:
                continue
            weight_range = self.weight_range(name)
            if weight_range.out_of_range and not self.policy.clamp_out_of_range:
                return keep("out_of_range_weight",
                            f"{name}: {weight_range.out_of_range} values beyond "
                            f"{self.lower.max_finite:g} (max |v| {weight_range.max_abs:.6g})")
            if weight_range.flushed_norm_share > self.policy.max_flushed_norm_share:
                return keep("flushed_weight",
                            f"{name}: {weight_range.flushed_to_zero} values flush to zero, "
                            f"{weight_range.flushed_norm_share:.2%} of its norm")
        decision = NodePlan(node, graph_name, True, "lowered", "", inputs, outputs)
        decision.follows = not outputs
        return decision

    def cast_decision(self, node: onnx.NodeProto, graph_name: str) -> NodePlan:
        # A Cast reads any type (its input follows its producer); a Cast *to* FP32 may be
        # retargeted to the lower type once its readers are known (see retarget_casts).
        return NodePlan(node, graph_name, False, "input_kept", follows=True)

    def collect(self) -> None:
        for graph in iterate_graphs(self.model.graph):
            detached = self.detached if graph is self.model.graph else ()
            self.weights.update(collect_weights(graph, self.opsets.get("", 0), detached))
            for node in graph.node:
                self.order.append(node.name)
                for index, name in enumerate(node.input):
                    if name:
                        self.consumers.setdefault(name, []).append((node.name, index))


def _reads_lowered(decisions: dict[str, NodePlan], consumer: tuple[str, int]) -> bool | None:
    """True if the reader wants the lower type, False if FP32, None if it follows either."""
    plan = decisions[consumer[0]]
    if plan.follows and not plan.lowered_outputs:
        return None
    return plan.lowered and consumer[1] in plan.lowered_inputs


def decide_precisions(
    model: onnx.ModelProto,
    plan: PrecisionPlan,
    lower: LowerFloatType,
    registry: KernelRegistry,
    types: dict[str, int],
    policy: WeightPolicy,
    detached_initializers: Sequence[onnx.TensorProto] = (),
) -> ModelDecisions:
    """Decide every node's precision; ``model`` must have unique node names. Its main graph's
    initializers may be ``detached_initializers`` that the rewrite places (see Weight)."""
    decider = _Decider(model, plan, lower, registry, types, policy, detached_initializers)
    decider.collect()
    nodes = decider.nodes
    for graph in iterate_graphs(model.graph):
        for node in graph.node:
            nodes[node.name] = decider.base_decision(node, graph.name)

    # Only the main graph's outputs keep their names; a subgraph's outputs are renamed to the
    # version they need (see PrecisionRewrite), so only the main graph's may keep their type.
    kept_type_outputs = {v.name for v in model.graph.output} if plan.keep_io_types else set()
    def wants(name: str) -> list[bool]:
        verdicts = [_reads_lowered(nodes, c) for c in decider.consumers.get(name, [])]
        return [v for v in verdicts if v is not None]

    lowered_tensors: set[str] = set()
    for decision in nodes.values():
        if decision.lowered:
            lowered_tensors.update(decision.node.output[i] for i in decision.lowered_outputs)

    graph_input_names = {value.name for g in iterate_graphs(model.graph) for value in g.input}
    weights_in_place: set[str] = set()
    for name in decider.weights:
        verdicts = wants(name)
        if verdicts and all(verdicts) and name not in graph_input_names \
                and name not in kept_type_outputs:
            weights_in_place.add(name)
    lowered_tensors |= weights_in_place

    lowered_graph_inputs: set[str] = set()
    if not plan.keep_io_types:
        initializer_names = {i.name for i in model.graph.initializer}
        for value in model.graph.input:
            if value.name in initializer_names or types.get(value.name) != FLOAT32:
                continue
            verdicts = wants(value.name)
            if verdicts and all(verdicts):
                lowered_graph_inputs.add(value.name)
    lowered_tensors |= lowered_graph_inputs

    lowered_branch_outputs = _lower_if_outputs(nodes, decider.order, types, lowered_tensors, plan)

    # Retarget Casts to FP32 whose readers are all lowered; follow nodes in topological order.
    for name in decider.order:
        decision = nodes[name]
        node = decision.node
        if node.op_type == "Cast" and decision.follows:
            to = next((a.i for a in node.attribute if a.name == "to"), 0)
            verdicts = wants(node.output[0])
            if (to == FLOAT32 and verdicts and all(verdicts) and not plan.keep_all_fp32
                    and node.output[0] not in kept_type_outputs
                    and _keep_reason(node, plan) is None):
                decision.retarget_cast = True
                decision.lowered = True
                decision.reason = "cast_retargeted"
                lowered_tensors.add(node.output[0])
            continue
        if decision.follows and decision.lowered:
            reads = [node.input[i] for i in decision.lowered_inputs]
            if not all(r in lowered_tensors for r in reads):
                decision.lowered = False
                decision.reason = "input_kept"
                decision.lowered_inputs = frozenset()
            else:
                decision.reason = "follows_input"

    return ModelDecisions(
        nodes=nodes,
        order=decider.order,
        lowered_tensors=lowered_tensors,
        weights=decider.weights,
        weight_ranges=decider.weight_ranges,
        weights_in_place=weights_in_place,
        lowered_graph_inputs=lowered_graph_inputs,
        kept_type_outputs=kept_type_outputs,
        lowered_branch_outputs=lowered_branch_outputs,
        consumers=decider.consumers,
        detached_initializers=tuple(detached_initializers),
    )


def _lower_if_outputs(nodes: dict[str, NodePlan], order: list[str], types: dict[str, int],
                      lowered_tensors: set[str], plan: PrecisionPlan) -> set[str]:
    """An If output whose value is lowered in both branches becomes lowered itself, so the
    branches need no Cast back to FP32 and the readers after the If none to the lower type.
    Inner If nodes come later in ``order`` than the graphs holding them: reversed, they go first."""
    branch_outputs: set[str] = set()
    for name in reversed(order):
        decision = nodes[name]
        node = decision.node
        if node.op_type != "If" or node.domain not in ("", "ai.onnx") or \
                _keep_reason(node, plan) is not None:
            continue
        branches = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
        then_branch, else_branch = branches.get("then_branch"), branches.get("else_branch")
        if then_branch is None or else_branch is None:
            continue
        lowered = []
        for index, output in enumerate(node.output):
            if types.get(output) != FLOAT32 or index >= len(then_branch.output):
                continue
            pair = {then_branch.output[index].name, else_branch.output[index].name}
            if pair <= lowered_tensors:
                lowered.append(index)
                branch_outputs |= pair
                lowered_tensors.add(output)
        if lowered:
            decision.lowered = True
            decision.lowered_outputs = frozenset(lowered)
            decision.reason = "subgraph_outputs_lowered"
    return branch_outputs
