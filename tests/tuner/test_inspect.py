"""inspect_model on tiny models built in code and on the real models PyPI packages ship."""

from __future__ import annotations

import importlib.metadata
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import AttributeProto, GraphProto, TensorProto, helper, numpy_helper

from tuner import ModelSummary, inspect_model, load_model
from tuner._inspect import NodeReference

# A weight with every kind of value the summary must tell apart.
EDGE_VALUES = np.array(
    [
        70000.0,  # beyond FP16 range
        -1.0e6,  # beyond, and the largest magnitude
        65504.0,  # FP16's largest value: representable
        np.nextafter(np.float32(65504.0), np.float32(np.inf)),  # just past it
        1.0,
        0.0,
        2.0**-25,  # rounds to zero in FP16 (ties to even)
        -(2.0**-26),
        np.nextafter(np.float32(2.0**-25), np.float32(1)),  # rounds up to 2**-24
        2.0**-24,
        1e-40,  # float32 subnormal: the smallest non-zero magnitude
    ],
    dtype=np.float32,
)


def _graph(nodes, name, inputs=(), outputs=(), initializer=()) -> GraphProto:  # type: ignore[no-untyped-def]
    return helper.make_graph(list(nodes), name, list(inputs), list(outputs), list(initializer))


def _value(name: str, elem_type: int = TensorProto.FLOAT, shape=None):  # type: ignore[no-untyped-def]
    return helper.make_tensor_value_info(name, elem_type, shape)


def build_model() -> onnx.ModelProto:
    """big (an initializer) is read in the main graph and, as an outer-scope value, in a
    nested If; a Constant in the then-branch holds another out-of-range value; the
    else-branch shadows the name ``big`` with its own harmless initializer."""
    inner_then = _graph(
        [helper.make_node("Mul", ["x", "big"], ["inner_out"], name="inner_mul")],
        "inner_then",
        outputs=[_value("inner_out")],
    )
    inner_else = _graph(
        [helper.make_node("Identity", ["x"], ["inner_else_out"], name="inner_identity")],
        "inner_else",
        outputs=[_value("inner_else_out")],
    )
    then_branch = _graph(
        [
            helper.make_node(
                "Constant", [], ["huge"], name="huge_const",
                value=numpy_helper.from_array(np.array([1e5, 2.0, -3e5], np.float32)),
            ),
            helper.make_node("Add", ["x", "big"], ["then_sum"], name="then_add"),
            helper.make_node("Sub", ["then_sum", "huge"], ["then_diff"], name="then_sub"),
            helper.make_node(
                "If", ["flag"], ["nested_out"], name="nested_if",
                then_branch=inner_then, else_branch=inner_else,
            ),
            helper.make_node("Add", ["then_diff", "nested_out"], ["then_out"], name="then_out"),
        ],
        "then_branch",
        outputs=[_value("then_out")],
    )  # fmt: skip
    else_branch = _graph(
        [helper.make_node("Add", ["x", "big"], ["else_out"], name="else_add")],
        "else_branch",
        outputs=[_value("else_out")],
        initializer=[numpy_helper.from_array(np.ones(11, np.float32), "big")],
    )
    nodes = [
        helper.make_node("Mul", ["x", "big"], ["scaled"], name="scale"),
        helper.make_node("Mul", ["scaled", "big"], ["scaled_twice"], name=""),  # unnamed
        helper.make_node(
            "Constant", [], ["gain"], name="gain_const", value_floats=[0.5, 3e-9, 1e-30]
        ),
        helper.make_node("Mul", ["scaled_twice", "gain_const_out"], ["g"], name="gain"),
        helper.make_node("Identity", ["steps"], ["steps_out"], name="steps_id"),
        helper.make_node(
            "If", ["flag"], ["y"], name="branch", then_branch=then_branch, else_branch=else_branch
        ),
        helper.make_node("Relu", ["g"], ["custom_out"], name="custom", domain="com.example"),
    ]
    nodes[3].input[1] = "gain"
    graph = _graph(
        nodes,
        "inspected",
        inputs=[
            _value("x", TensorProto.FLOAT, ["batch", 11]),
            _value("flag", TensorProto.BOOL, []),
            _value("steps", TensorProto.INT64, None),
            _value("big"),  # an initializer also listed as input (IR 3 style): not an input
        ],
        outputs=[_value("y", TensorProto.FLOAT, ["batch", None]), _value("custom_out")],
        initializer=[
            numpy_helper.from_array(EDGE_VALUES, "big"),
            numpy_helper.from_array(np.arange(6, dtype=np.int64), "shape_like"),
            helper.make_tensor("bf", TensorProto.BFLOAT16, [2], [1.0, 2.0e5]),
            helper.make_tensor("half", TensorProto.FLOAT16, [3], [65504.0, -1.0, 0.0]),
            numpy_helper.from_array(np.array([np.inf, np.nan, 1e5, 2.0], np.float32), "odd"),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
        producer_name="amptune-tests",
        producer_version="0.1",
    )
    model.ir_version = 10
    return model


def _stats(summary: ModelSummary, name: str, graph: str = ""):  # type: ignore[no-untyped-def]
    (found,) = [t for t in summary.weights.float_tensors if t.name == name and t.graph == graph]
    return found


def test_header_inputs_outputs() -> None:
    summary = inspect_model(build_model())
    assert summary.ir_version == 10
    assert (summary.producer_name, summary.producer_version) == ("amptune-tests", "0.1")
    assert [(o.domain, o.version) for o in summary.opset_imports] == [("", 17), ("com.example", 1)]
    assert [(v.name, v.element_type, v.shape) for v in summary.inputs] == [
        ("x", "FLOAT", ("batch", 11)),
        ("flag", "BOOL", ()),
        ("steps", "INT64", None),
    ]
    assert [(v.name, v.shape) for v in summary.outputs] == [
        ("y", ("batch", None)),
        ("custom_out", None),
    ]


def test_op_histogram_counts_every_graph_with_domains() -> None:
    summary = inspect_model(build_model())
    histogram = {(o.domain, o.op_type): o.count for o in summary.op_types}
    assert histogram == {
        ("", "Mul"): 4,  # scale, unnamed, gain, inner_mul
        ("", "Constant"): 2,
        ("", "Identity"): 2,
        ("", "If"): 2,
        ("", "Add"): 3,
        ("", "Sub"): 1,
        ("com.example", "Relu"): 1,
    }
    assert summary.node_count == 7
    assert summary.total_node_count == sum(histogram.values()) == 15
    counts = [o.count for o in summary.op_types]
    assert counts == sorted(counts, reverse=True)


def test_subgraphs_are_listed_recursively() -> None:
    summary = inspect_model(build_model())
    # In the order the node holds its attributes (helper.make_node sorts them by name).
    assert [s.attribute for s in summary.subgraphs] == ["else_branch", "then_branch"]
    [else_branch, then_branch] = summary.subgraphs
    assert (then_branch.node_name, then_branch.op_type, then_branch.attribute) == (
        "branch", "If", "then_branch",
    )  # fmt: skip
    assert then_branch.node_count == 5 and else_branch.node_count == 1
    assert [(s.node_name, s.attribute, s.node_count) for s in then_branch.subgraphs] == [
        ("nested_if", "else_branch", 1),
        ("nested_if", "then_branch", 1),
    ]
    assert else_branch.subgraphs == ()


def test_value_ranges_of_a_float_initializer() -> None:
    stats = _stats(inspect_model(build_model()), "big")
    assert (stats.source, stats.element_type, stats.shape) == ("initializer", "FLOAT", (11,))
    assert stats.nbytes == EDGE_VALUES.nbytes
    assert stats.min == -1.0e6 and stats.max == 70000.0 and stats.max_abs == 1.0e6
    assert stats.min_nonzero_abs == pytest.approx(1e-40, rel=1e-3)
    assert stats.fp16_overflow_count == 3  # 70000, -1e6 and the float just above 65504
    assert stats.nonfinite_count == 0


def test_flush_count_matches_what_a_cast_to_fp16_does() -> None:
    stats = _stats(inspect_model(build_model()), "big")
    with np.errstate(over="ignore"):
        flushed = (EDGE_VALUES != 0) & (EDGE_VALUES.astype(np.float16) == 0)
    assert stats.fp16_flush_count == int(flushed.sum()) == 3  # 2**-25, -(2**-26), 1e-40
    share = np.linalg.norm(EDGE_VALUES[flushed].astype(np.float64)) / np.linalg.norm(
        EDGE_VALUES.astype(np.float64)
    )
    assert stats.fp16_flush_norm_fraction == pytest.approx(share, rel=1e-9)


def test_constant_values_count_as_weights() -> None:
    summary = inspect_model(build_model())
    gain = _stats(summary, "gain")  # value_floats, named by the Constant's output
    assert (gain.source, gain.shape, gain.fp16_flush_count) == ("Constant", (3,), 2)
    huge = _stats(summary, "huge", "branch.then_branch")
    assert (huge.source, huge.fp16_overflow_count, huge.max_abs) == ("Constant", 2, 3e5)


def test_out_of_range_readers_include_subgraphs_and_respect_shadowing() -> None:
    summary = inspect_model(build_model())
    by_name = {(o.graph, o.tensor): o for o in summary.fp16_out_of_range}
    big = by_name[("", "big")]
    assert (big.count, big.max_abs) == (3, 1.0e6)
    assert big.readers == (
        NodeReference("scale", "Mul", ""),
        NodeReference("<Mul #1>", "Mul", ""),
        NodeReference("then_add", "Add", "branch.then_branch"),
        NodeReference("inner_mul", "Mul", "branch.then_branch/nested_if.then_branch"),
    )  # else_add reads the else-branch's own "big", which is in range
    huge = by_name[("branch.then_branch", "huge")]
    assert huge.readers == (NodeReference("then_sub", "Sub", "branch.then_branch"),)
    assert ("branch.else_branch", "big") not in by_name


def test_other_float_types_and_non_finite_values() -> None:
    summary = inspect_model(build_model())
    bf16 = _stats(summary, "bf")
    assert bf16.element_type == "BFLOAT16" and bf16.fp16_overflow_count == 1
    half = _stats(summary, "half")
    assert half.fp16_overflow_count == 0 and half.max_abs == 65504.0
    odd = _stats(summary, "odd")
    assert (odd.nonfinite_count, odd.fp16_overflow_count, odd.max_abs) == (2, 1, 1e5)
    flagged = {o.tensor for o in summary.fp16_out_of_range}
    assert flagged == {"big", "huge", "bf", "odd"}


def test_weight_count_and_bytes_include_non_float_tensors() -> None:
    summary = inspect_model(build_model())
    # 5 main initializers, 1 else-branch initializer, 2 Constants
    assert summary.weights.count == 8
    assert summary.weights.total_bytes == 44 + 48 + 4 + 6 + 16 + 44 + 12 + 12
    assert len(summary.weights.float_tensors) == 7  # all but the int64 one
    assert summary.weights.min_nonzero_abs == pytest.approx(1e-40, rel=1e-3)


def test_inspect_leaves_the_model_unchanged() -> None:
    model = build_model()
    before = model.SerializeToString()
    inspect_model(model)
    assert model.SerializeToString() == before


def test_to_dict_is_plain_json() -> None:
    summary = inspect_model(build_model())
    data = summary.to_dict()
    text = json.dumps(data, allow_nan=False)
    again = json.loads(text)
    assert again == data
    assert again["inputs"][0] == {"name": "x", "element_type": "FLOAT", "shape": ["batch", 11]}
    assert again["fp16_out_of_range"][0]["readers"][2] == {
        "name": "then_add",
        "op_type": "Add",
        "graph": "branch.then_branch",
    }
    assert again["subgraphs"][1]["subgraphs"][0]["node_name"] == "nested_if"


def test_format_text_shows_ranges_and_readers() -> None:
    text = inspect_model(build_model()).format_text()
    assert "IR version 10; opsets: ai.onnx 17, com.example 1; producer: amptune-tests 0.1" in text
    assert "x      FLOAT  [batch, 11]" in text
    assert "steps  INT64  rank unknown" in text
    assert "com.example.Relu" in text
    assert "nested_if (If) then_branch: 1 nodes" in text
    assert "Values beyond FP16 range (|v| > 65504): 4 tensors" in text
    assert "branch.then_branch/nested_if.then_branch: inner_mul (Mul)" in text
    assert "2 NaN or infinite values" in text


# --- real models ----------------------------------------------------------------------------


def _packaged_model(distribution: str, relative: str) -> Path:
    try:
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"needs {distribution}: pip install {distribution}")
    if not path.is_file():
        pytest.skip(f"{distribution} does not ship {relative}")
    return path


def ppocr_det() -> Path:
    return _packaged_model(
        "rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
    )


def silero_vad() -> Path:
    return _packaged_model("silero-vad", "silero_vad/data/silero_vad.onnx")


def _all_graphs(graph: GraphProto, path: str = "") -> Iterator[tuple[str, GraphProto]]:
    yield path, graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                inner = (
                    f"{path}/{node.name}.{attribute.name}"
                    if path
                    else f"{node.name}.{attribute.name}"
                )
                yield from _all_graphs(attribute.g, inner)


def _constant_arrays(model: onnx.ModelProto) -> dict[tuple[str, str], np.ndarray]:
    return {
        (path, node.output[0]): numpy_helper.to_array(node.attribute[0].t)
        for path, graph in _all_graphs(model.graph)
        for node in graph.node
        if node.op_type == "Constant" and node.attribute[0].name == "value"
    }


@pytest.mark.slow
def test_ppocr_det_summary_agrees_with_numpy() -> None:
    model = load_model(ppocr_det())
    summary = inspect_model(model)

    assert [(o.domain, o.version) for o in summary.opset_imports] == [
        (o.domain, o.version) for o in model.opset_import
    ]
    (image,) = summary.inputs
    assert image.name == "x" and image.element_type == "FLOAT"
    assert image.shape is not None and image.shape[1] == 3 and isinstance(image.shape[0], str)
    assert {(o.domain, o.op_type): o.count for o in summary.op_types} == dict(
        Counter(("", n.op_type) for n in model.graph.node)
    )
    assert summary.subgraphs == ()

    arrays = _constant_arrays(model)  # PP-OCR keeps every weight in a Constant node
    assert summary.weights.count == len(arrays) == len(model.graph.initializer) + len(arrays)
    assert summary.weights.total_bytes == sum(a.nbytes for a in arrays.values())
    expected = {
        name: (int((np.abs(a) > 65504).sum()), float(np.abs(a).max()))
        for (_, name), a in arrays.items()
        if a.dtype == np.float32 and (np.abs(a) > 65504).any()
    }
    assert expected  # this real model does hold values FP16 cannot represent
    assert {o.tensor: (o.count, o.max_abs) for o in summary.fp16_out_of_range} == expected
    for entry in summary.fp16_out_of_range:
        readers = {(n.name, n.op_type) for n in model.graph.node if entry.tensor in n.input}
        assert {(r.name, r.op_type) for r in entry.readers} == readers
    with np.errstate(over="ignore"):
        flushes = {
            name: int(((a != 0) & (a.astype(np.float16) == 0)).sum())
            for (_, name), a in arrays.items()
            if a.dtype == np.float32
        }
    assert {t.name: t.fp16_flush_count for t in summary.weights.float_tensors} == flushes


@pytest.mark.slow
def test_silero_vad_subgraphs_and_their_weights() -> None:
    model = load_model(silero_vad())
    summary = inspect_model(model)

    graphs = list(_all_graphs(model.graph))
    assert summary.total_node_count == sum(len(g.node) for _, g in graphs)
    assert summary.node_count == len(model.graph.node)
    assert {(s.node_name, s.attribute) for s in summary.subgraphs} == {
        ("If_0", "then_branch"),
        ("If_0", "else_branch"),
    }
    then_branch = next(s for s in summary.subgraphs if s.attribute == "then_branch")
    then_graph = next(n for n in model.graph.node if n.op_type == "If").attribute
    assert then_branch.node_count == len(
        next(a.g for a in then_graph if a.name == "then_branch").node
    )

    def flatten(subgraphs):  # type: ignore[no-untyped-def]
        for subgraph in subgraphs:
            yield subgraph
            yield from flatten(subgraph.subgraphs)

    assert len(list(flatten(summary.subgraphs))) == len(graphs) - 1
    arrays = _constant_arrays(model)
    assert summary.weights.count == len(arrays)
    floats = {key for key, a in arrays.items() if a.dtype == np.float32}
    assert {(t.graph, t.name) for t in summary.weights.float_tensors} == floats
    assert summary.fp16_out_of_range == ()


@pytest.mark.slow
def test_silero_vad_out_of_range_weight_read_inside_a_branch() -> None:
    """Scale one Conv weight deep in an If branch past FP16 range: its reader is named."""
    model = load_model(silero_vad())
    conv = target = None
    for path, graph in _all_graphs(model.graph):
        constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
        conv = next(
            (n for n in graph.node if n.op_type == "Conv" and n.input[1] in constants), None
        )
        if conv is not None and path:
            target = (path, constants[conv.input[1]])
            break
    assert conv is not None and target is not None
    path, constant = target
    weight = numpy_helper.to_array(constant.attribute[0].t)
    constant.attribute[0].t.CopyFrom(numpy_helper.from_array(weight * 1e6 + np.float32(7e4)))

    summary = inspect_model(model)

    (entry,) = summary.fp16_out_of_range
    assert (entry.tensor, entry.graph) == (conv.input[1], path)
    assert entry.count == int((np.abs(weight * 1e6 + np.float32(7e4)) > 65504).sum())
    assert NodeReference(conv.name, "Conv", path) in entry.readers
