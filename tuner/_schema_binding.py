"""Which inputs and outputs of a node share a type constraint, read from the ONNX operator schema.

This is how the converter decides what changes type when a node is lowered: the slots bound to the
constraint that carries the computed data change; index, shape, scale and attribute-typed slots keep
their types because they are bound to other constraints (or to fixed types) in the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import onnx
import onnx.defs

_VARIADIC = onnx.defs.OpSchema.FormalParameterOption.Variadic
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class ConstraintBinding:
    """The slots of one node bound to one type parameter (``T``, ``T1``, ...)."""

    name: str
    allowed_types: frozenset[str]
    input_indices: tuple[int, ...]
    output_indices: tuple[int, ...]


@dataclass(frozen=True)
class NodeBinding:
    """How a node's schema binds its slots: type parameters, and which parameter is the compute one."""

    op_type: str
    domain: str
    since_version: int
    constraints: tuple[ConstraintBinding, ...]
    graph_attributes: bool

    def constraint(self, name: str) -> ConstraintBinding | None:
        for constraint in self.constraints:
            if constraint.name == name:
                return constraint
        return None

    def constraint_of_output(self, index: int) -> ConstraintBinding | None:
        for constraint in self.constraints:
            if index in constraint.output_indices:
                return constraint
        return None

    def constraint_of_input(self, index: int) -> ConstraintBinding | None:
        for constraint in self.constraints:
            if index in constraint.input_indices:
                return constraint
        return None


def normalize_domain(domain: str) -> str:
    return "" if domain in DEFAULT_DOMAINS else domain


@lru_cache(maxsize=4096)
def _schema(op_type: str, domain: str, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, normalize_domain(domain))
    except onnx.defs.SchemaError:
        return None


def schema_exists(op_type: str, domain: str = "") -> bool:
    return onnx.defs.has(op_type, normalize_domain(domain))


def _slot_indices(formals: list[onnx.defs.OpSchema.FormalParameter], count: int) -> list[str]:
    """The type string of each actual slot, expanding a trailing variadic formal parameter."""
    type_strs: list[str] = []
    for index in range(count):
        if index < len(formals):
            type_strs.append(formals[index].type_str)
        elif formals and formals[-1].option == _VARIADIC:
            type_strs.append(formals[-1].type_str)
        else:
            type_strs.append("")
    return type_strs


def bind_node(node: onnx.NodeProto, opset: int) -> NodeBinding | None:
    """The binding of ``node`` at the model's ``opset`` for its domain, or None without a schema."""
    schema = _schema(node.op_type, node.domain, opset)
    if schema is None:
        return None
    input_types = _slot_indices(list(schema.inputs), len(node.input))
    output_types = _slot_indices(list(schema.outputs), len(node.output))
    constraints = []
    for param in schema.type_constraints:
        name = param.type_param_str
        inputs = tuple(i for i, t in enumerate(input_types) if t == name and node.input[i])
        outputs = tuple(i for i, t in enumerate(output_types) if t == name and node.output[i])
        constraints.append(
            ConstraintBinding(name, frozenset(param.allowed_type_strs), inputs, outputs)
        )
    has_graphs = any(
        attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for attribute in node.attribute
    )
    return NodeBinding(
        op_type=node.op_type,
        domain=normalize_domain(node.domain),
        since_version=schema.since_version,
        constraints=tuple(constraints),
        graph_attributes=has_graphs,
    )
