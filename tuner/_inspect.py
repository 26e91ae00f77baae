"""What an ONNX model holds, as plain data: the facts that decide how it can be lowered.

``inspect_model`` computes a ``ModelSummary``; ``format_summary_text`` renders it for a
terminal and ``ModelSummary.to_dict`` for JSON. Weights are initializers and the values of
``Constant`` nodes alike, in the main graph and in If/Loop/Scan bodies.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, numpy_helper

from tuner._lower_types import FP16
from tuner._model_io import tensor_nbytes

FP16_MAX = FP16.max_finite  # 65504
# Magnitudes at or below half the smallest FP16 subnormal (2**-24) round to zero.
FP16_FLUSH_LIMIT = FP16.smallest_subnormal / 2
_FLOAT_TYPES = frozenset(
    {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
)


@dataclass(frozen=True)
class OpsetImport:
    domain: str  # "" is the default ONNX domain
    version: int


@dataclass(frozen=True)
class ValueSummary:
    """A graph input or output; a dimension is an int, a symbolic name, or None (unknown)."""

    name: str
    element_type: str
    shape: tuple[int | str | None, ...] | None  # None: rank unknown


@dataclass(frozen=True)
class OpTypeCount:
    domain: str
    op_type: str
    count: int


@dataclass(frozen=True)
class SubgraphSummary:
    """A graph held in a node attribute (If branches, Loop and Scan bodies)."""

    node_name: str
    op_type: str
    attribute: str
    node_count: int  # nodes directly in this body; nested bodies are in ``subgraphs``
    subgraphs: tuple[SubgraphSummary, ...]


@dataclass(frozen=True)
class NodeReference:
    name: str
    op_type: str
    graph: str  # "" for the main graph, else the path such as "If_0.then_branch"


@dataclass(frozen=True)
class FloatTensorStats:
    """Value ranges of one float weight; magnitudes are over its finite values."""

    name: str
    source: str  # "initializer" or "Constant"
    graph: str
    element_type: str
    shape: tuple[int, ...]
    nbytes: int
    min: float | None  # None: no finite value, or data not loaded
    max: float | None
    max_abs: float | None
    min_nonzero_abs: float | None
    nonfinite_count: int
    fp16_overflow_count: int  # finite values with |v| > 65504
    fp16_flush_count: int  # values 0 < |v| <= 2**-25, which FP16 rounds to zero
    fp16_flush_norm_fraction: float  # share of the tensor's L2 norm those values carry


@dataclass(frozen=True)
class Fp16OutOfRange:
    """A weight holding values FP16 cannot represent, and every node that reads it."""

    tensor: str
    graph: str
    count: int
    max_abs: float
    readers: tuple[NodeReference, ...]


@dataclass(frozen=True)
class WeightsSummary:
    count: int  # every initializer and Constant value, float or not
    total_bytes: int
    float_tensors: tuple[FloatTensorStats, ...]
    min_nonzero_abs: float | None  # smallest non-zero magnitude over all float weights


@dataclass(frozen=True)
class ModelSummary:
    ir_version: int
    producer_name: str
    producer_version: str
    opset_imports: tuple[OpsetImport, ...]
    inputs: tuple[ValueSummary, ...]  # graph inputs that are not initializers
    outputs: tuple[ValueSummary, ...]
    node_count: int  # main graph only
    total_node_count: int  # subgraphs included
    op_types: tuple[OpTypeCount, ...]  # over all graphs, most frequent first
    subgraphs: tuple[SubgraphSummary, ...]
    weights: WeightsSummary
    fp16_out_of_range: tuple[Fp16OutOfRange, ...]

    @property
    def fp16_flush_tensors(self) -> tuple[FloatTensorStats, ...]:
        return tuple(t for t in self.weights.float_tensors if t.fp16_flush_count)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists, nothing but str, int, float, bool, None inside."""
        return _plain(dataclasses.asdict(self))

    def format_text(self) -> str:
        from tuner._inspect_text import format_summary_text

        return format_summary_text(self)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# --- computing the summary ------------------------------------------------------------------


def _type_name(data_type: int) -> str:
    return TensorProto.DataType.Name(data_type)


def _describe_type(type_proto: Any) -> tuple[str, tuple[int | str | None, ...] | None]:
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type" or kind == "sparse_tensor_type":
        tensor_type = getattr(type_proto, kind)
        shape = None
        if tensor_type.HasField("shape"):
            shape = tuple(
                dim.dim_value
                if dim.HasField("dim_value")
                else (dim.dim_param if dim.HasField("dim_param") else None)
                for dim in tensor_type.shape.dim
            )
        name = _type_name(tensor_type.elem_type)
        return (name if kind == "tensor_type" else f"sparse({name})"), shape
    if kind in ("sequence_type", "optional_type"):
        inner, shape = _describe_type(getattr(type_proto, kind).elem_type)
        return f"{kind.removesuffix('_type')}({inner})", shape
    if kind == "map_type":
        value, _ = _describe_type(type_proto.map_type.value_type)
        return f"map({_type_name(type_proto.map_type.key_type)}, {value})", None
    return "unknown", None


def _value_summaries(values: Any, skip: set[str]) -> tuple[ValueSummary, ...]:
    summaries = []
    for value in values:
        if value.name in skip:
            continue
        element_type, shape = _describe_type(value.type)
        summaries.append(ValueSummary(value.name, element_type, shape))
    return tuple(summaries)


def _node_label(node: NodeProto, index: int) -> str:
    return node.name or f"<{node.op_type} #{index}>"


def _subgraph_attributes(node: NodeProto) -> Iterator[tuple[str, GraphProto]]:
    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH:
            yield attribute.name, attribute.g
        elif attribute.type == AttributeProto.GRAPHS:
            for position, graph in enumerate(attribute.graphs):
                yield f"{attribute.name}[{position}]", graph


def _subgraph_summaries(graph: GraphProto) -> tuple[SubgraphSummary, ...]:
    return tuple(
        SubgraphSummary(
            node_name=_node_label(node, index),
            op_type=node.op_type,
            attribute=attribute,
            node_count=len(body.node),
            subgraphs=_subgraph_summaries(body),
        )
        for index, node in enumerate(graph.node)
        for attribute, body in _subgraph_attributes(node)
    )


@dataclass
class _Weight:
    """A weight found while walking: its values and the nodes that read it."""

    name: str
    source: str
    graph: str
    tensor: TensorProto | None  # None for Constant value_float(s)/value_int(s)/value_string(s)
    array: np.ndarray | None
    readers: list[NodeReference] = dataclasses.field(default_factory=list)


def _constant_weight(node: NodeProto, graph: str) -> _Weight | None:
    if not node.output or not node.attribute:
        return None
    attribute = node.attribute[0]  # Constant has exactly one value attribute
    name = node.output[0]
    if attribute.HasField("t"):
        return _Weight(name, "Constant", graph, attribute.t, None)
    if attribute.HasField("sparse_tensor"):
        return _Weight(name, "Constant", graph, attribute.sparse_tensor.values, None)
    values: Any = {
        "value_float": lambda: np.array(attribute.f, dtype=np.float32),
        "value_floats": lambda: np.array(attribute.floats, dtype=np.float32),
        "value_int": lambda: np.array(attribute.i, dtype=np.int64),
        "value_ints": lambda: np.array(attribute.ints, dtype=np.int64),
        "value_string": lambda: np.array([attribute.s], dtype=object),
        "value_strings": lambda: np.array(list(attribute.strings), dtype=object),
    }.get(attribute.name)
    return _Weight(name, "Constant", graph, None, values()) if values else None


def _collect_weights(
    graph: GraphProto,
    path: str,
    visible: dict[str, _Weight | None],
    weights: list[_Weight],
    op_types: Counter[tuple[str, str]],
) -> None:
    """Record the graph's weights and, resolving names by scope, every node that reads one.

    ``visible`` maps names from enclosing graphs; a name defined here hides an outer one.
    """
    scope = dict(visible)
    for value in graph.input:
        scope[value.name] = None
    local: list[_Weight] = [
        _Weight(t.name, "initializer", path, t, None) for t in graph.initializer
    ]
    local += [
        _Weight(s.values.name, "initializer", path, s.values, None)
        for s in graph.sparse_initializer
    ]
    for node in graph.node:
        constant = _constant_weight(node, path) if node.op_type == "Constant" else None
        if constant is not None:
            local.append(constant)
        for output in node.output:
            scope[output] = None
    for weight in local:
        scope[weight.name] = weight
    weights += local
    for index, node in enumerate(graph.node):
        op_types[(node.domain, node.op_type)] += 1
        label = _node_label(node, index)
        for name in dict.fromkeys(node.input):  # a node reading a tensor twice reads it once
            read = scope.get(name) if name else None
            if read is not None:
                read.readers.append(NodeReference(label, node.op_type, path))
        for attribute, body in _subgraph_attributes(node):
            inner = f"{path}/{label}.{attribute}" if path else f"{label}.{attribute}"
            _collect_weights(body, inner, scope, weights, op_types)


def _value_ranges(array: np.ndarray) -> dict[str, Any]:
    """The FloatTensorStats fields computed from values, over the finite ones."""
    values = array.astype(np.float64 if array.dtype == np.float64 else np.float32, copy=False)
    values = values.reshape(-1)
    finite = np.isfinite(values)
    nonfinite = int(values.size - np.count_nonzero(finite))
    if nonfinite:
        values = values[finite]
    ranges: dict[str, Any] = {
        "min": None,
        "max": None,
        "max_abs": None,
        "min_nonzero_abs": None,
        "nonfinite_count": nonfinite,
        "fp16_overflow_count": 0,
        "fp16_flush_count": 0,
        "fp16_flush_norm_fraction": 0.0,
    }
    if values.size == 0:
        return ranges
    magnitudes = np.abs(values)
    nonzero = magnitudes[magnitudes > 0]
    flushed = nonzero[nonzero <= FP16_FLUSH_LIMIT]
    if flushed.size:  # in float64: squares of tiny values underflow float32
        total = float(np.square(magnitudes, dtype=np.float64).sum())
        flushed_share = float(np.square(flushed, dtype=np.float64).sum()) / total
        ranges["fp16_flush_norm_fraction"] = math.sqrt(flushed_share)
    ranges.update(
        min=float(values.min()),
        max=float(values.max()),
        max_abs=float(magnitudes.max()),
        min_nonzero_abs=float(nonzero.min()) if nonzero.size else None,
        fp16_overflow_count=int(np.count_nonzero(magnitudes > FP16_MAX)),
        fp16_flush_count=int(flushed.size),
    )
    return ranges


def _float_stats(weight: _Weight, array: np.ndarray | None, nbytes: int) -> FloatTensorStats:
    tensor = weight.tensor
    values = array if array is not None else np.empty(0, np.float32)
    return FloatTensorStats(
        name=weight.name,
        source=weight.source,
        graph=weight.graph,
        element_type=_type_name(tensor.data_type) if tensor is not None else "FLOAT",
        shape=tuple(tensor.dims) if tensor is not None else tuple(values.shape),
        nbytes=nbytes,
        **_value_ranges(values),
    )


def _weight_array(weight: _Weight) -> np.ndarray | None:
    """The values, or None where the data lives in an external file that was not loaded."""
    if weight.array is not None:
        return weight.array
    assert weight.tensor is not None
    if weight.tensor.data_location == TensorProto.EXTERNAL:
        return None
    return numpy_helper.to_array(weight.tensor)


def inspect_model(model: ModelProto) -> ModelSummary:
    """Summarize ``model``: reads it, never changes it."""
    weights: list[_Weight] = []
    op_types: Counter[tuple[str, str]] = Counter()
    _collect_weights(model.graph, "", {}, weights, op_types)

    float_stats: list[FloatTensorStats] = []
    out_of_range: list[Fp16OutOfRange] = []
    total_bytes = 0
    for weight in weights:
        array = _weight_array(weight)
        if array is None:
            nbytes = tensor_nbytes(weight.tensor)  # type: ignore[arg-type]
        elif array.dtype == object:
            nbytes = sum(len(item) for item in array.reshape(-1))
        else:
            nbytes = int(array.nbytes)
        total_bytes += nbytes
        data_type = weight.tensor.data_type if weight.tensor is not None else None
        is_float = data_type in _FLOAT_TYPES or (
            data_type is None and array is not None and array.dtype == np.float32
        )
        if not is_float:
            continue
        stats = _float_stats(weight, array, nbytes)
        float_stats.append(stats)
        if stats.fp16_overflow_count:
            out_of_range.append(
                Fp16OutOfRange(
                    tensor=weight.name,
                    graph=weight.graph,
                    count=stats.fp16_overflow_count,
                    max_abs=stats.max_abs or 0.0,
                    readers=tuple(weight.readers),
                )
            )
    nonzero_minima = [s.min_nonzero_abs for s in float_stats if s.min_nonzero_abs is not None]
    counted = sorted(op_types.items(), key=lambda item: (-item[1], item[0]))
    initializer_names = {t.name for t in model.graph.initializer}
    return ModelSummary(
        ir_version=model.ir_version,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        opset_imports=tuple(OpsetImport(o.domain, o.version) for o in model.opset_import),
        inputs=_value_summaries(model.graph.input, skip=initializer_names),
        outputs=_value_summaries(model.graph.output, skip=set()),
        node_count=len(model.graph.node),
        total_node_count=sum(op_types.values()),
        op_types=tuple(OpTypeCount(domain, op, count) for (domain, op), count in counted),
        subgraphs=_subgraph_summaries(model.graph),
        weights=WeightsSummary(
            count=len(weights),
            total_bytes=total_bytes,
            float_tensors=tuple(float_stats),
            min_nonzero_abs=min(nonzero_minima) if nonzero_minima else None,
        ),
        fp16_out_of_range=tuple(out_of_range),
    )
