"""The element type of every tensor in a model, its subgraphs included.

ONNX shape inference does most of the work. It runs on a skeleton of the model whose large
initializers are declared as typed inputs instead of carried, so a 2 GB model is not copied to
learn its types. Outputs that inference cannot type (operators it has no schema for) are typed from
the operator schema's constraints where an input bound to the same constraint is typed.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx
from onnx import helper, shape_inference

from tuner._schema_binding import bind_node

_SMALL_INITIALIZER_BYTES = 1024


def iterate_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph nested in its nodes' attributes, depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from iterate_graphs(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from iterate_graphs(subgraph)


def opset_versions(model: onnx.ModelProto) -> dict[str, int]:
    versions = {entry.domain or "": entry.version for entry in model.opset_import}
    if "ai.onnx" in versions and "" not in versions:
        versions[""] = versions["ai.onnx"]
    return versions


def _constant_type(node: onnx.NodeProto) -> int:
    for attribute in node.attribute:
        if attribute.name == "value":
            return attribute.t.data_type
        if attribute.name in ("value_float", "value_floats"):
            return onnx.TensorProto.FLOAT
        if attribute.name in ("value_int", "value_ints"):
            return onnx.TensorProto.INT64
        if attribute.name in ("value_string", "value_strings"):
            return onnx.TensorProto.STRING
    return 0


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    source, graph = model.graph, skeleton.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    declared = {value.name for value in source.input}
    for initializer in source.initializer:
        small = initializer.ByteSize() <= _SMALL_INITIALIZER_BYTES
        if small or initializer.data_type != onnx.TensorProto.FLOAT:
            graph.initializer.append(initializer)
        elif initializer.name not in declared:
            graph.input.append(
                helper.make_tensor_value_info(
                    initializer.name, initializer.data_type, list(initializer.dims)
                )
            )
    if model.functions:
        skeleton.functions.extend(model.functions)
    return skeleton


def _record(types: dict[str, int], value: onnx.ValueInfoProto) -> None:
    if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
        types.setdefault(value.name, value.type.tensor_type.elem_type)


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Map from tensor name to ONNX element type; tensors of unknown type are absent."""
    types: dict[str, int] = {}
    try:
        inferred: onnx.ModelProto | None = shape_inference.infer_shapes(
            _skeleton(model), check_type=False, strict_mode=False
        )
    except Exception:  # noqa: BLE001 - inference is a help; the schema fallback below still runs
        inferred = None
    for source in (model, inferred):
        if source is None:
            continue
        for graph in iterate_graphs(source.graph):
            for value in [*graph.input, *graph.output, *graph.value_info]:
                _record(types, value)
            for initializer in graph.initializer:
                types.setdefault(initializer.name, initializer.data_type)
            for node in graph.node:
                if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                    constant_type = _constant_type(node)
                    if constant_type:
                        types.setdefault(node.output[0], constant_type)
    _propagate_from_schemas(model, types)
    return types


def _propagate_from_schemas(model: onnx.ModelProto, types: dict[str, int]) -> None:
    opsets = opset_versions(model)
    for graph in iterate_graphs(model.graph):
        for node in graph.node:
            missing = [name for name in node.output if name and name not in types]
            if not missing:
                continue
            if node.op_type == "Cast" and node.domain in ("", "ai.onnx"):
                to = next((a.i for a in node.attribute if a.name == "to"), 0)
                if to:
                    types[node.output[0]] = to
                continue
            binding = bind_node(node, opsets.get(node.domain or "", 0))
            if binding is None:
                continue
            for constraint in binding.constraints:
                known = [types[node.input[i]] for i in constraint.input_indices
                         if node.input[i] in types]
                if not known:
                    continue
                for index in constraint.output_indices:
                    types.setdefault(node.output[index], known[0])
