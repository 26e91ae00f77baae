"""Tiny ONNX models built in code for the profiler tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.tuner._tiny_models import make_model

FLOAT = TensorProto.FLOAT


def matmul_chain(layers: int = 3, size: int = 64, batch: str | int = "batch") -> onnx.ModelProto:
    """x[batch, size] -> (MatMul, Relu) x layers -> y, with a dynamic batch dimension."""
    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "x"
    for layer in range(layers):
        w = numpy_helper.from_array(
            (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32), f"w{layer}"
        )
        weights.append(w)
        nodes.append(helper.make_node("MatMul", [current, w.name], [f"m{layer}"], name=f"mm{layer}"))
        out = "y" if layer == layers - 1 else f"r{layer}"
        nodes.append(helper.make_node("Relu", [f"m{layer}"], [out], name=f"relu{layer}"))
        current = out
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [batch, size])],
        [helper.make_tensor_value_info("y", FLOAT, [batch, size])],
        weights,
    )


def fp16_matmul_with_casts(size: int = 256) -> onnx.ModelProto:
    """x (FP32) -> Cast FP16 -> MatMul (FP16 weight) -> Cast FP32 -> y: a lowered region."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(
        (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float16), "w"
    )
    nodes = [
        helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16, name="cast_in"),
        helper.make_node("MatMul", ["x16", "w"], ["m"], name="matmul"),
        helper.make_node("Cast", ["m"], ["y"], to=FLOAT, name="cast_out"),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", FLOAT, [size, size])],
        [w],
    )


def two_inputs_int_and_float() -> onnx.ModelProto:
    """ids int64[batch, seq] and scale float[1] -> y = Cast(ids) * scale (a token-id input)."""
    nodes = [
        helper.make_node("Cast", ["ids"], ["idsf"], to=FLOAT, name="cast"),
        helper.make_node("Mul", ["idsf", "scale"], ["y"], name="mul"),
    ]
    return make_model(
        nodes,
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("scale", FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y", FLOAT, ["batch", "seq"])],
    )


def det_on_cuda_falls_back() -> onnx.ModelProto:
    """Det has no CUDA kernel: on the CUDA EP it runs on the CPU behind host-device copies."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Det", ["r"], ["d"], name="det"),
        helper.make_node("Relu", ["d"], ["y"], name="relu_after"),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("x", FLOAT, [8, 4, 4])],
        [helper.make_tensor_value_info("y", FLOAT, [8])],
    )
