"""Each conversion rule on a tiny model built in code."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from search_spaces import PrecisionPlan
from tests.tuner._tiny_models import (
    FLOAT,
    assert_valid,
    casts,
    elem_type_of,
    make_model,
    run,
    tensor_input,
    weight,
)
from tuner import ConversionOptions, PlanError, convert_precision
from tuner._kernel_registry import KernelRegistry

FP16 = TensorProto.FLOAT16
RNG = np.random.default_rng(0)


def _mlp(shared_weight_reader: str = "MatMul") -> onnx.ModelProto:
    w = weight("W", np.random.default_rng(1).standard_normal((4, 4)))
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node(shared_weight_reader, ["r", "W"], ["y"], name="mm2"),
    ]
    return make_model(nodes, [tensor_input("x", [2, 4])], [tensor_input("y", [2, 4])], [w])


def test_all_lower_plan_lowers_compute_and_keeps_io_types():
    result = convert_precision(_mlp(), PrecisionPlan())
    assert_valid(result.model)
    assert elem_type_of(result.model, "x") == FLOAT and elem_type_of(result.model, "y") == FLOAT
    assert elem_type_of(result.model, "h") == FP16
    assert [d.precision for d in result.report.nodes] == ["fp16", "fp16", "fp16"]
    # one Cast in (x), one Cast out (y); W converted in place
    assert result.report.cast_count == 2
    assert result.report.weights[0].action == "converted"
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    (expected,), (actual,) = run(_mlp(), {"x": x}), run(result.model, {"x": x})
    np.testing.assert_allclose(actual, expected, rtol=1e-2, atol=1e-2)


def test_input_model_is_not_modified():
    model = _mlp()
    before = model.SerializeToString()
    convert_precision(model, PrecisionPlan())
    assert model.SerializeToString() == before


def test_keep_all_fp32_is_bit_identical():
    model = _mlp()
    result = convert_precision(model, PrecisionPlan.all_fp32())
    assert result.model.SerializeToString() == model.SerializeToString()


def test_one_cast_per_tensor_shared_by_all_readers():
    nodes = [helper.make_node(op, ["x"], [f"y{i}"], name=f"n{i}")
             for i, op in enumerate(["Relu", "Sigmoid", "Tanh"])]
    model = make_model(nodes, [tensor_input("x", [3])],
                       [tensor_input(f"y{i}", [3]) for i in range(3)])
    result = convert_precision(model, PrecisionPlan())
    assert_valid(result.model)
    into_fp16 = [c for c in casts(result.model) if c.input[0] == "x"]
    assert len(into_fp16) == 1


def test_adjacent_fp32_nodes_exchange_fp32_directly():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="a"),
             helper.make_node("Sigmoid", ["a"], ["b"], name="b"),
             helper.make_node("Tanh", ["b"], ["y"], name="c")]
    model = make_model(nodes, [tensor_input("x", [3])], [tensor_input("y", [3])])
    result = convert_precision(model, PrecisionPlan(keep_fp32_nodes=frozenset({"a", "b"})))
    assert_valid(result.model)
    sigmoid = next(n for n in result.model.graph.node if n.name == "b")
    assert list(sigmoid.input) == ["a"]  # no Cast between the two FP32 nodes
    assert result.report.cast_count == 2  # b -> fp16 before Tanh, Tanh's output back to fp32


def test_no_cast_pair_undoes_itself_in_alternating_chain():
    ops = ["Relu", "Sigmoid", "Tanh", "Relu", "Sigmoid"]
    names = [f"n{i}" for i in range(len(ops))]
    tensors = ["x"] + [f"t{i}" for i in range(len(ops) - 1)] + ["y"]
    nodes = [helper.make_node(op, [tensors[i]], [tensors[i + 1]], name=names[i])
             for i, op in enumerate(ops)]
    model = make_model(nodes, [tensor_input("x", [3])], [tensor_input("y", [3])])
    result = convert_precision(model, PrecisionPlan(keep_fp32_nodes=frozenset({"n1", "n3"})))
    assert_valid(result.model)
    producers = {o: n for n in result.model.graph.node for o in n.output}
    for cast in casts(result.model):
        assert producers.get(cast.input[0]) is None or producers[cast.input[0]].op_type != "Cast"


def test_shared_weight_read_by_fp32_and_lower_nodes_is_duplicated_not_cast():
    model = _mlp()
    result = convert_precision(model, PrecisionPlan(keep_fp32_nodes=frozenset({"mm2"})))
    assert_valid(result.model)
    initializers = {i.name: i.data_type for i in result.model.graph.initializer}
    assert initializers["W"] == FLOAT
    assert FP16 in initializers.values() and len(initializers) == 2
    assert not [c for c in casts(result.model) if c.input[0] == "W"]
    note = next(n for n in result.report.weights if n.tensor == "W")
    assert note.action == "duplicated"
    assert result.report.initializers_duplicated == 1


def test_constant_node_weights_are_treated_like_initializers():
    values = RNG.standard_normal((4, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["W"], name="const",
                         value=onnx.numpy_helper.from_array(values)),
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("MatMul", ["h", "W"], ["y"], name="mm2"),
    ]
    model = make_model(nodes, [tensor_input("x", [2, 4])], [tensor_input("y", [2, 4])])
    lowered = convert_precision(model, PrecisionPlan())
    assert_valid(lowered.model)
    const = next(n for n in lowered.model.graph.node if n.op_type == "Constant")
    assert const.attribute[0].t.data_type == FP16
    mixed = convert_precision(model, PrecisionPlan(keep_fp32_nodes=frozenset({"mm2"})))
    assert_valid(mixed.model)
    assert [i.data_type for i in mixed.model.graph.initializer] == [FP16]
    assert not [c for c in casts(mixed.model) if c.input[0] == "W"]


def test_out_of_range_weight_keeps_reader_fp32_unless_clamping_is_asked():
    w = weight("W", [[1.0, 1e5], [2.0, -7e4]])
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
    model = make_model([node], [tensor_input("x", [1, 2])], [tensor_input("y", [1, 2])], [w])
    kept = convert_precision(model, PrecisionPlan())
    decision = kept.report.decision_for("mm")
    assert decision.precision == "fp32" and decision.reason == "out_of_range_weight"
    assert "2 values beyond 65504" in decision.detail
    assert kept.report.clamped_values == []
    clamped = convert_precision(model, PrecisionPlan(), ConversionOptions(clamp_out_of_range=True))
    assert_valid(clamped.model)
    assert clamped.report.decision_for("mm").precision == "fp16"
    changed = {(v.flat_index, v.original, v.clamped) for v in clamped.report.clamped_values}
    assert changed == {(1, 1e5, 65504.0), (3, -7e4, -65504.0)}


def test_flushed_weights_are_reported_and_keep_fp32_past_the_threshold():
    tiny = np.full((2, 2), 1e-9, dtype=np.float32)
    mostly_tiny = tiny.copy()
    mostly_tiny[0, 0] = 1e-3  # 1e-9 * sqrt(3) / 1e-3 ~ 1.7e-6 of the norm: harmless
    for values, expected in [(tiny, "fp32"), (mostly_tiny, "fp16")]:
        node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
        model = make_model([node], [tensor_input("x", [1, 2])], [tensor_input("y", [1, 2])],
                           [weight("W", values)])
        result = convert_precision(model, PrecisionPlan())
        assert result.report.decision_for("mm").precision == expected
        note = next(n for n in result.report.weights if n.tensor == "W")
        assert note.flushed_to_zero == (4 if expected == "fp32" else 3)


def test_resize_scales_and_roi_keep_their_types():
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize",
                              mode="nearest")]
    scales = weight("scales", [1.0, 1.0, 2.0, 2.0])
    model = make_model(nodes, [tensor_input("x", [1, 1, 2, 2])],
                       [tensor_input("y", [1, 1, 4, 4])], [scales])
    result = convert_precision(model, PrecisionPlan())
    assert_valid(result.model)
    assert {i.name: i.data_type for i in result.model.graph.initializer} == {"scales": FLOAT}
    assert result.report.decision_for("resize").precision == "fp16"


def test_topk_k_and_indices_keep_their_types():
    k = onnx.numpy_helper.from_array(np.array([2], dtype=np.int64), "k")
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], name="topk")
    model = make_model([node], [tensor_input("x", [1, 5])],
                       [tensor_input("values", [1, 2]),
                        tensor_input("indices", [1, 2], TensorProto.INT64)], [k])
    result = convert_precision(model, PrecisionPlan(keep_io_types=False))
    assert_valid(result.model)
    assert elem_type_of(result.model, "values") == FP16
    assert elem_type_of(result.model, "indices") == TensorProto.INT64
    x = np.array([[3.0, 1.0, 5.0, 2.0, 4.0]], dtype=np.float32)
    values, indices = run(result.model, {"x": x.astype(np.float16)})
    assert indices.tolist() == [[2, 4]] and values.dtype == np.float16


def test_range_follows_the_cuda_kernel_registry():
    registry = KernelRegistry.default()
    inputs = [tensor_input(n, []) for n in ("start", "limit", "delta")]
    node = helper.make_node("Range", ["start", "limit", "delta"], ["y"], name="range")
    model = make_model([node], inputs, [tensor_input("y", [None])])
    result = convert_precision(model, PrecisionPlan())
    assert_valid(result.model)
    lowerable = registry.lowerable_constraints("", "Range", 17, "fp16")
    expected = "fp16" if lowerable and "T" in lowerable else "fp32"
    assert result.report.decision_for("range").precision == expected


def test_existing_cast_to_fp32_is_retargeted_when_its_readers_are_lowered():
    nodes = [helper.make_node("Cast", ["ids"], ["f"], name="cast", to=FLOAT),
             helper.make_node("Mul", ["f", "x"], ["y"], name="mul")]
    model = make_model(nodes, [tensor_input("ids", [3], TensorProto.INT64),
                               tensor_input("x", [3])], [tensor_input("y", [3])])
    result = convert_precision(model, PrecisionPlan())
    assert_valid(result.model)
    cast = next(n for n in result.model.graph.node if n.name == "cast")
    assert cast.attribute[0].i == FP16
    assert result.report.decision_for("cast").reason == "cast_retargeted"
    assert not [c for c in casts(result.model) if c.input[0] == "f"]


def test_shape_reads_a_lowered_tensor_without_a_cast():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Shape", ["r"], ["s"], name="shape")]
    model = make_model(nodes, [tensor_input("x", [2, 3])],
                       [tensor_input("s", [2], TensorProto.INT64), tensor_input("r", [2, 3])])
    result = convert_precision(model, PrecisionPlan())
    assert_valid(result.model)
    assert result.report.decision_for("shape").reason == "follows_input"
    shape = next(n for n in result.model.graph.node if n.name == "shape")
    assert shape.input[0] != "r"  # reads the lowered tensor, not the FP32 output copy
    assert result.report.cast_count == 2  # x in, r out


def test_if_branches_with_outer_scope_values_are_converted():
    then_branch = helper.make_graph(
        [helper.make_node("Add", ["x", "c1"], ["t"], name="then_add")], "then", [],
        [tensor_input("t", [3])], [weight("c1", [1.0, 2.0, 3.0])])
    else_branch = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["e"], name="else_mul")], "else", [],
        [tensor_input("e", [3])])
    nodes = [helper.make_node("Relu", ["x_in"], ["x"], name="relu"),
             helper.make_node("If", ["cond"], ["z"], name="if", then_branch=then_branch,
                              else_branch=else_branch),
             helper.make_node("Sigmoid", ["z"], ["y"], name="sigmoid")]
    model = make_model(nodes, [tensor_input("x_in", [3]), tensor_input("cond", [], TensorProto.BOOL)],
                       [tensor_input("y", [3])])
    result = convert_precision(model, PrecisionPlan())
    assert_valid(result.model)
    assert result.report.decision_for("then_add").precision == "fp16"
    assert result.report.decision_for("if").reason == "subgraph_outputs_lowered"
    assert result.report.cast_count == 2  # x_in in, y out: nothing at the branch boundaries
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float32)
    for cond in (True, False):
        feeds = {"x_in": x, "cond": np.array(cond)}
        np.testing.assert_allclose(run(result.model, feeds)[0], run(model, feeds)[0], atol=2e-3)


def test_loop_body_is_converted_and_keeps_its_interface():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond"),
         helper.make_node("Mul", ["acc_in", "scale"], ["acc_out"], name="body_mul")],
        "body",
        [tensor_input("i", [], TensorProto.INT64), tensor_input("cond_in", [], TensorProto.BOOL),
         tensor_input("acc_in", [3])],
        [tensor_input("cond_out", [], TensorProto.BOOL), tensor_input("acc_out", [3])])
    trip = onnx.numpy_helper.from_array(np.array(3, dtype=np.int64), "trip")
    nodes = [helper.make_node("Relu", ["x"], ["scale"], name="relu"),
             helper.make_node("Loop", ["trip", "", "x"], ["y"], name="loop", body=body)]
    model = make_model(nodes, [tensor_input("x", [3])], [tensor_input("y", [3])], [trip])
    result = convert_precision(model, PrecisionPlan())
    assert_valid(result.model)
    assert result.report.decision_for("body_mul").precision == "fp16"
    assert result.report.decision_for("loop").reason == "subgraph_holder"
    x = np.array([1.0, 1.5, 2.0], dtype=np.float32)
    np.testing.assert_allclose(run(result.model, {"x": x})[0], run(model, {"x": x})[0], rtol=2e-3)


def test_without_keep_io_types_the_interface_is_lowered():
    result = convert_precision(_mlp(), PrecisionPlan(keep_io_types=False))
    assert_valid(result.model)
    assert elem_type_of(result.model, "x") == FP16 and elem_type_of(result.model, "y") == FP16
    assert result.report.cast_count == 0


def test_bf16_where_the_schema_allows_it():
    result = convert_precision(_mlp(), PrecisionPlan(lower="bf16"))
    onnx.checker.check_model(result.model, full_check=True)
    assert elem_type_of(result.model, "h") == TensorProto.BFLOAT16


def test_bf16_on_an_opset_that_forbids_it_keeps_fp32_with_the_reason():
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv")
    model = make_model([node], [tensor_input("x", [1, 1, 3, 3])],
                       [tensor_input("y", [1, 1, 3, 3])],
                       [weight("W", np.ones((1, 1, 1, 1)))], opset=17)
    result = convert_precision(model, PrecisionPlan(lower="bf16"))
    assert result.report.decision_for("conv").reason == "schema_disallows_lower"


def test_plan_errors_name_the_bad_value():
    with pytest.raises(PlanError, match="'mm3'.*did you mean 'mm'"):
        convert_precision(_mlp(), PrecisionPlan(keep_fp32_nodes=frozenset({"mm3"})))
    with pytest.raises(PlanError, match="'Softmaxx' is not an ONNX op type"):
        convert_precision(_mlp(), PrecisionPlan(keep_fp32_op_types=frozenset({"Softmaxx"})))
    result = convert_precision(_mlp(), PrecisionPlan(keep_fp32_op_types=frozenset({"Softmax"})))
    assert any("'Softmax' does not occur" in w for w in result.report.warnings)


def test_keep_op_type_keeps_every_node_of_that_type():
    result = convert_precision(_mlp(), PrecisionPlan(keep_fp32_op_types=frozenset({"MatMul"})))
    assert_valid(result.model)
    assert result.report.decision_for("mm").reason == "plan_keep_op_type"
    assert result.report.decision_for("mm2").reason == "plan_keep_op_type"
    assert result.report.decision_for("relu").precision == "fp16"


def test_unnamed_nodes_get_names():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    model = make_model(nodes, [tensor_input("x", [3])], [tensor_input("y", [3])])
    result = convert_precision(model, PrecisionPlan())
    names = [n.name for n in result.report.nodes]
    assert len(set(names)) == 2 and all(names)


def test_scan_body_is_converted_and_keeps_its_interface():
    body = helper.make_graph(
        [helper.make_node("Add", ["state_in", "row"], ["sum"], name="scan_add"),
         helper.make_node("Identity", ["sum"], ["state_out"], name="scan_state"),
         helper.make_node("Tanh", ["sum"], ["scan_out"], name="scan_tanh")],
        "scan_body",
        [tensor_input("state_in", [3]), tensor_input("row", [3])],
        [tensor_input("state_out", [3]), tensor_input("scan_out", [3])])
    nodes = [helper.make_node("Scan", ["init", "rows"], ["final", "outs"], name="scan",
                              body=body, num_scan_inputs=1)]
    model = make_model(nodes, [tensor_input("init", [3]), tensor_input("rows", [4, 3])],
                       [tensor_input("final", [3]), tensor_input("outs", [4, 3])])
    result = convert_precision(model, PrecisionPlan())
    assert_valid(result.model)
    assert result.report.decision_for("scan_add").precision == "fp16"
    assert result.report.decision_for("scan").reason == "subgraph_holder"
    feeds = {"init": np.zeros(3, np.float32),
             "rows": RNG.standard_normal((4, 3)).astype(np.float32)}
    for actual, expected in zip(run(result.model, feeds), run(model, feeds)):
        np.testing.assert_allclose(actual, expected, atol=5e-3)
