"""Applies precision decisions to a model: types change, Casts appear only where they must.

Every tensor has versions by element type. A reader asks for the version it needs; a missing
version is made once per (tensor, type) and shared by all readers: a Cast from the tensor as it was
produced (never from another Cast, so no Cast pair that undoes itself can appear), or, for a weight,
a converted copy of its values (no Cast at run time). A subgraph asks its enclosing graph for
outer-scope values, so their Casts sit before the control-flow node, in the scope that owns them.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx
from onnx import helper

from tuner._conversion_report import ClampedValue, ConversionReport
from tuner._lower_types import FLOAT32, LowerFloatType
from tuner._precision_decisions import ModelDecisions
from tuner._weights import lower_values


class NameAllocator:
    """Unique tensor and node names for what the rewrite adds."""

    def __init__(self, model: onnx.ModelProto, graphs: Iterable[onnx.GraphProto]) -> None:
        self.used: set[str] = set()
        for graph in graphs:
            self.used.update(v.name for v in [*graph.input, *graph.output, *graph.value_info])
            self.used.update(i.name for i in graph.initializer)
            for node in graph.node:
                self.used.add(node.name)
                self.used.update(node.input)
                self.used.update(node.output)

    def fresh(self, stem: str) -> str:
        name, counter = stem, 1
        while name in self.used:
            counter += 1
            name = f"{stem}_{counter}"
        self.used.add(name)
        return name


_TYPE_SUFFIX: dict[int, str] = {FLOAT32: "fp32", onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "bf16"}


class _Scope:
    def __init__(self, rewrite: PrecisionRewrite, graph: onnx.GraphProto, parent: _Scope | None):
        self.rewrite, self.graph, self.parent = rewrite, graph, parent
        self.versions: dict[str, dict[int, str]] = {}
        self.local: set[str] = {v.name for v in graph.input} | {i.name for i in graph.initializer}
        for node in graph.node:
            self.local.update(name for name in node.output if name)
        self.new_nodes: list[onnx.NodeProto] = []
        self.new_initializers: list[onnx.TensorProto] = []

    def produced(self, name: str, elem_type: int, as_name: str | None = None) -> None:
        self.versions[name] = {elem_type: as_name or name}

    def current(self, name: str) -> tuple[int, str] | None:
        """The element type and name of the version of ``name`` as produced, if tracked."""
        if name in self.versions:
            elem_type, version = next(iter(self.versions[name].items()))
            return elem_type, version
        if name not in self.local and self.parent is not None:
            return self.parent.current(name)
        return None

    def version(self, name: str, elem_type: int) -> str:
        if name not in self.local and self.parent is not None:
            return self.parent.version(name, elem_type)
        versions = self.versions.setdefault(
            name, {self.rewrite.types.get(name, 0): name}
        )
        if elem_type in versions:
            return versions[elem_type]
        source_type, source = next(iter(versions.items()))
        suffix = _TYPE_SUFFIX.get(elem_type, str(elem_type))
        target = self.rewrite.names.fresh(f"{name}__{suffix}")
        weight = self.rewrite.decisions.weights.get(name)
        if weight is not None and source_type == FLOAT32 and elem_type == self.rewrite.lower.elem_type:
            values, clamped = lower_values(weight.values(), self.rewrite.lower,
                                           self.rewrite.clamp)
            self.rewrite.record_clamped(name, clamped)
            self.new_initializers.append(onnx.numpy_helper.from_array(values, target))
            self.rewrite.report.initializers_duplicated += 1
        else:
            self.new_nodes.append(helper.make_node(
                "Cast", [source], [target], name=self.rewrite.names.fresh(f"{target}_cast"),
                to=elem_type,
            ))
            self.rewrite.report.casts_added += 1
            self.rewrite.added_casts.append((source, target))
        versions[elem_type] = target
        return target


class PrecisionRewrite:
    """Rewrites ``model`` in place according to ``decisions``."""

    def __init__(self, model: onnx.ModelProto, decisions: ModelDecisions, types: dict[str, int],
                 lower: LowerFloatType, clamp: bool, report: ConversionReport,
                 graphs: Iterable[onnx.GraphProto]) -> None:
        self.model, self.decisions, self.types = model, decisions, types
        self.lower, self.clamp, self.report = lower, clamp, report
        self.names = NameAllocator(model, graphs)
        self.changed_types: dict[str, int] = {}
        self.added_casts: list[tuple[str, str]] = []  # (input, output) of each Cast added

    def record_clamped(self, tensor: str, clamped: list[tuple[int, float, float]]) -> None:
        self.report.clamped_values.extend(ClampedValue(tensor, i, o, c) for i, o, c in clamped)

    def run(self) -> None:
        self._convert_weights_in_place()
        self._place_detached_initializers()
        self._rewrite_graph(self.model.graph, parent=None)

    def _place_detached_initializers(self) -> None:
        """Copy the source initializers that were not converted in place, in their order."""
        placed = {name for name, weight in self.decisions.weights.items() if weight.placed}
        converted = {t.name: t for t in self.model.graph.initializer if t.name in placed}
        ordered: list[onnx.TensorProto] = []
        for source in self.decisions.detached_initializers:
            ordered.append(converted.get(source.name, source))
        extra = [t for t in self.model.graph.initializer if t.name not in placed]
        del self.model.graph.initializer[:]  # the lowered copies made so far, re-added in order
        self.model.graph.initializer.extend(ordered)
        self.model.graph.initializer.extend(extra)

    def _convert_weights_in_place(self) -> None:
        for name in sorted(self.decisions.weights_in_place):
            weight = self.decisions.weights[name]
            values, clamped = lower_values(weight.values(), self.lower, self.clamp)
            self.record_clamped(name, clamped)
            weight.replace_values(values)
            self.changed_types[name] = self.lower.elem_type

    def _needed_type(self, node_name: str, index: int, scope: _Scope, name: str) -> int | None:
        decision = self.decisions.nodes[node_name]
        if decision.lowered and index in decision.lowered_inputs:
            return self.lower.elem_type
        if decision.node.op_type == "Cast" and index == 0 and decision.follows:
            return None  # a Cast reads any type: take the tensor as produced
        return self.types.get(name)

    def _rewrite_graph(self, graph: onnx.GraphProto, parent: _Scope | None) -> None:
        scope = _Scope(self, graph, parent)
        is_main = parent is None
        for value in graph.input:
            elem_type = self.types.get(value.name, 0)
            if is_main and value.name in self.decisions.lowered_graph_inputs:
                elem_type = self.lower.elem_type
                value.type.tensor_type.elem_type = elem_type
                self.changed_types[value.name] = elem_type
            scope.produced(value.name, elem_type)
        for initializer in graph.initializer:
            scope.produced(initializer.name, initializer.data_type)

        for node in list(graph.node):
            decision = self.decisions.nodes[node.name]
            for index, name in enumerate(node.input):
                if not name:
                    continue
                needed = self._needed_type(node.name, index, scope, name)
                current = scope.current(name)
                if needed is None or not needed:
                    if current is not None:
                        node.input[index] = current[1]
                    continue
                node.input[index] = scope.version(name, needed)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    self._rewrite_graph(attribute.g, parent=scope)
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    for subgraph in attribute.graphs:
                        self._rewrite_graph(subgraph, parent=scope)
            if decision.retarget_cast:
                for attribute in node.attribute:
                    if attribute.name == "to":
                        attribute.i = self.lower.elem_type
            lowered_outputs = {0} if decision.retarget_cast else set(decision.lowered_outputs)
            casts_after: list[onnx.NodeProto] = []
            for index, name in enumerate(node.output):
                if not name:
                    continue
                if not (decision.lowered and index in lowered_outputs):
                    in_place = node.op_type == "Constant" and name in self.decisions.weights_in_place
                    scope.produced(name, self.lower.elem_type if in_place else self.types.get(name, 0))
                    continue
                if name not in self.decisions.kept_type_outputs:
                    scope.produced(name, self.lower.elem_type)
                    self.changed_types[name] = self.lower.elem_type
                    continue
                # A graph output that keeps its type: the node writes a renamed lower tensor and a
                # Cast right after it restores the output, which FP32 readers share.
                renamed = self.names.fresh(f"{name}__{self.lower.name}")
                node.output[index] = renamed
                self.types[renamed] = self.lower.elem_type
                scope.versions[name] = {self.lower.elem_type: renamed,
                                        self.types.get(name, FLOAT32): name}
                casts_after.append(helper.make_node(
                    "Cast", [renamed], [name], name=self.names.fresh(f"{name}_cast"),
                    to=self.types.get(name, FLOAT32)))
                self.report.casts_added += 1
                self.added_casts.append((renamed, name))
            scope.new_nodes.append(node)
            scope.new_nodes.extend(casts_after)

        if not is_main:
            # A subgraph's outputs are formal names: point each at the version its holder needs.
            for value in graph.output:
                if value.name in self.decisions.lowered_branch_outputs:
                    needed = self.lower.elem_type
                else:
                    needed = self.types.get(value.name, 0)
                if not needed:
                    continue
                value.name = scope.version(value.name, needed)
                if value.type.HasField("tensor_type"):
                    value.type.tensor_type.elem_type = needed
        else:
            for value in graph.output:
                current = scope.current(value.name)
                if current is None or value.name in self.decisions.kept_type_outputs:
                    continue
                elem_type = current[0]
                if elem_type and value.type.tensor_type.elem_type != elem_type:
                    value.type.tensor_type.elem_type = elem_type
                    self.changed_types[value.name] = elem_type

        del graph.node[:]
        graph.node.extend(scope.new_nodes)
        graph.initializer.extend(scope.new_initializers)
        for value in graph.value_info:
            if value.name in self.changed_types and value.type.HasField("tensor_type"):
                value.type.tensor_type.elem_type = self.changed_types[value.name]
