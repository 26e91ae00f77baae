"""Models too big to pass to onnxruntime as bytes go through a file with external data."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

import profilers._sessions as sessions
from profilers import SessionConfig, build_session


def test_a_large_model_goes_through_external_data_and_stays_whole(monkeypatch) -> None:
    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64])],
                              [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    before = model.SerializeToString()
    monkeypatch.setattr(sessions, "_PROTOBUF_LIMIT", 2**26 + 1024)  # "large" at 16 KiB of weights
    session = build_session(model, SessionConfig(device="cpu"))
    x = np.ones((1, 64), np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ numpy_helper.to_array(weight))
    assert model.SerializeToString() == before  # the caller's weights are still there
