"""Tiny ONNX models built in code, one per conversion rule, and helpers to run them."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT
OPSET = 17


def make_model(nodes, inputs, outputs, initializers=(), opset: int = OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "tiny", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10  # onnx 1.23 writes 14, which onnxruntime refuses
    return model


def tensor_input(name: str, shape, elem_type: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


def weight(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def casts(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    from tuner._tensor_types import iterate_graphs

    return [n for g in iterate_graphs(model.graph) for n in g.node if n.op_type == "Cast"]


def elem_type_of(model: onnx.ModelProto, name: str) -> int:
    from tuner._tensor_types import tensor_types

    return tensor_types(model)[name]


def assert_valid(model: onnx.ModelProto) -> None:
    """Full checker (with strict type inference) and an ONNX Runtime session that loads."""
    import onnxruntime

    onnx.checker.check_model(model, full_check=True)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    onnxruntime.InferenceSession(model.SerializeToString(), options,
                                 providers=["CPUExecutionProvider"])
