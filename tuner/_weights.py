"""Weights held in initializers and in Constant nodes, treated alike: their values, range and cost
of conversion to a lower float type."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from tuner._lower_types import LowerFloatType


@dataclass
class Weight:
    """A float tensor with a constant value: an initializer or the output of a Constant node.

    A *detached* initializer lives in the source model, not yet in ``graph``: the converter reads
    it there and writes only what it needs (the converted tensor, or an FP32 copy), so the FP32
    weights are never held twice.
    """

    name: str
    graph: onnx.GraphProto
    initializer: onnx.TensorProto | None = None
    constant_node: onnx.NodeProto | None = None
    detached: bool = False
    placed: bool = False

    def values(self) -> np.ndarray:
        if self.initializer is not None:
            return numpy_helper.to_array(self.initializer)
        assert self.constant_node is not None
        for attribute in self.constant_node.attribute:
            if attribute.name == "value":
                return numpy_helper.to_array(attribute.t)
            if attribute.name == "value_float":
                return np.array(attribute.f, dtype=np.float32)
            if attribute.name == "value_floats":
                return np.array(list(attribute.floats), dtype=np.float32)
        raise ValueError(f"Constant node {self.constant_node.name!r} holds no float value")

    constant_opset: int = 0

    def constant_may_hold(self, data_type: int) -> bool:
        schema = onnx.defs.get_schema("Constant", self.constant_opset or onnx.defs.onnx_opset_version())
        type_str = f"tensor({onnx.helper.tensor_dtype_to_string(data_type).split('.')[-1].lower()})"
        allowed = {t for c in schema.type_constraints for t in c.allowed_type_strs}
        return type_str in allowed

    def replace_values(self, values: np.ndarray) -> None:
        """Store ``values`` (any dtype) as this weight, in place, under the same name."""
        tensor = numpy_helper.from_array(values, self.name)
        if self.initializer is not None and self.detached:
            self.graph.initializer.append(tensor)
            self.placed = True
            return
        if self.initializer is not None:
            self.initializer.CopyFrom(tensor)
            return
        assert self.constant_node is not None
        if not self.constant_may_hold(tensor.data_type):
            # This opset's Constant cannot hold the type (bfloat16 before opset 13): the value
            # becomes an initializer of the same graph and the Constant node goes.
            nodes = [n for n in self.graph.node if n is not self.constant_node
                     and not (n.op_type == "Constant" and list(n.output) == [self.name])]
            del self.graph.node[:]
            self.graph.node.extend(nodes)
            self.graph.initializer.append(tensor)
            self.initializer, self.constant_node = self.graph.initializer[-1], None
            return
        kept = [a for a in self.constant_node.attribute
                if a.name not in ("value", "value_float", "value_floats")]
        del self.constant_node.attribute[:]
        self.constant_node.attribute.extend(kept)
        self.constant_node.attribute.append(onnx.helper.make_attribute("value", tensor))


@dataclass(frozen=True)
class WeightRange:
    """How a weight's values fit a lower float type."""

    size: int
    max_abs: float
    out_of_range: int  # finite values beyond the type's largest finite value
    flushed_to_zero: int  # non-zero values that become zero
    flushed_norm_share: float  # L2 norm of the flushed values / L2 norm of the tensor


_CHUNK = 1 << 20  # elements per step: temporaries stay a few MiB even for a 100M-value tensor


def measure_range(values: np.ndarray, lower: LowerFloatType) -> WeightRange:
    flat = values.astype(np.float32, copy=False).ravel()
    max_abs, out_of_range, flushed_count = 0.0, 0, 0
    total_square, flushed_square = 0.0, 0.0
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start:start + _CHUNK]
        finite = np.isfinite(chunk)
        magnitude = np.abs(np.where(finite, chunk, 0.0))
        max_abs = max(max_abs, float(magnitude.max()))
        out_of_range += int(np.count_nonzero(magnitude > lower.max_finite))
        total_square += float(np.dot(magnitude.astype(np.float64), magnitude))
        flushed = lower.flushes_to_zero(chunk)
        if flushed.any():
            flushed_count += int(np.count_nonzero(flushed))
            small = magnitude[flushed].astype(np.float64)
            flushed_square += float(np.dot(small, small))
    share = float(np.sqrt(flushed_square / total_square)) if total_square else 0.0
    return WeightRange(int(flat.size), max_abs, out_of_range, flushed_count, share)


def lower_values(
    values: np.ndarray, lower: LowerFloatType, clamp: bool
) -> tuple[np.ndarray, list[tuple[int, float, float]]]:
    """``values`` in the lower type, and (flat index, original, clamped) for each clamped value."""
    clamped: list[tuple[int, float, float]] = []
    if clamp:
        flat = values.ravel()
        beyond = np.flatnonzero(np.isfinite(flat) & (np.abs(flat) > lower.max_finite))
        if beyond.size:
            values = values.copy()
            limited = np.clip(flat[beyond], -lower.max_finite, lower.max_finite)
            values.ravel()[beyond] = limited
            clamped = [(int(i), float(flat[i]), float(v)) for i, v in zip(beyond, limited)]
    return values.astype(lower.numpy_dtype), clamped


def collect_weights(graph: onnx.GraphProto, opset: int,
                    detached: Sequence[onnx.TensorProto] = ()) -> dict[str, Weight]:
    """The FP32 weights defined in ``graph`` itself (not in its subgraphs), and the ``detached``
    initializers of the source model that ``graph`` will hold."""
    weights: dict[str, Weight] = {}
    for initializer in detached:
        if initializer.data_type == onnx.TensorProto.FLOAT:
            weights[initializer.name] = Weight(initializer.name, graph, initializer=initializer,
                                               detached=True)
    for initializer in graph.initializer:
        if initializer.data_type == onnx.TensorProto.FLOAT:
            weights[initializer.name] = Weight(initializer.name, graph, initializer=initializer)
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        names = {attribute.name for attribute in node.attribute}
        value = next((a for a in node.attribute if a.name == "value"), None)
        is_float = (value is not None and value.t.data_type == onnx.TensorProto.FLOAT) or bool(
            names & {"value_float", "value_floats"}
        )
        if is_float:
            weights[node.output[0]] = Weight(node.output[0], graph, constant_node=node,
                                             constant_opset=opset)
    return weights
