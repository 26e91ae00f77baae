from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import numpy as np
import pandas
import pytest

from tests.tuner._cpu_evaluation import finished_tiny_study, relative_max_error, tiny_feeds
from tuner import AmptuneError
from tuner._exports import RECOMMENDATION_RULE, export_study, pareto_records, recommend
from tuner._paddle_ops import ONNX_TO_PADDLE, paddle_ops_for
from tuner._trial_records import study_records

onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("study")
    study, model = finished_tiny_study(folder)
    result = export_study(study.study, folder / "export", model=model)
    return study, model, result


def test_every_export_is_written(finished) -> None:
    _, _, result = finished
    assert set(result.files) == {
        "pareto.csv", "recommended.json", "disabled_op_types.txt", "paddle_disabled_ops.txt",
        "paddle_inference_snippet.py", "node_block_list.json", "model_mixed.onnx",
        "onnxruntime_snippet.py",
    }
    for path in result.files.values():
        assert path.is_file() and path.stat().st_size > 0


def test_pareto_csv_holds_the_feasible_front_once_per_plan(finished) -> None:
    study, _, result = finished
    frame = pandas.read_csv(result.files["pareto.csv"])
    front = {t.number for t in study.study.best_trials}
    assert set(frame["trial"]) <= front and len(frame) >= 1
    assert frame["digest"].is_unique
    assert (frame["drift"] <= 1e-3).all()
    assert list(frame["latency_ms"]) == sorted(frame["latency_ms"])
    assert set(frame["device"]) == {"cpu"}


def test_recommended_follows_the_documented_rule(finished) -> None:
    study, _, result = finished
    data = json.loads(result.files["recommended.json"].read_text())
    records = study_records(study.study)
    feasible = [r for r in records if r.feasible and r.timed]
    fastest = min(feasible, key=lambda r: r.latency_ms)
    chosen = records[data["trial"]]
    assert data["rule"] == RECOMMENDATION_RULE and data["feasible"] is True
    assert chosen.latency_ms <= fastest.measurement.latency.ci_high_ms
    assert all(chosen.drift <= r.drift for r in feasible
               if r.latency_ms <= fastest.measurement.latency.ci_high_ms)
    assert data["plan"] == chosen.plan.to_dict()
    assert data["provider_options"] == {"prefer_nhwc": "1"}
    assert data["conversion"]["cast_count"] >= 0


@pytest.mark.parametrize("which", ["recommended", "mixed"])
def test_model_mixed_reproduces_the_trials_drift(finished, mixed_export, which) -> None:
    _, model, result = finished
    result = result if which == "recommended" else mixed_export
    data = json.loads(result.files["recommended.json"].read_text())
    options = onnxruntime.SessionOptions()
    reference = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])
    mixed = onnxruntime.InferenceSession(str(result.files["model_mixed.onnx"]), options,
                                         providers=["CPUExecutionProvider"])
    drift = max(
        relative_max_error(ref, out)
        for feed in tiny_feeds()
        for ref, out in zip(reference.run(None, feed), mixed.run(None, feed))
    )
    assert drift == pytest.approx(data["objectives"]["drift"], rel=1e-9, abs=0)


@pytest.fixture(scope="module")
def mixed_export(finished, tmp_path_factory: pytest.TempPathFactory):
    """The exports of the fastest feasible plan that lowers something (on the CPU, all-FP32 is
    often the recommendation: FP16 there only adds Casts)."""
    study, model, _ = finished
    mixed = [r for r in study_records(study.study) if r.feasible and not r.plan.keep_all_fp32]
    chosen = min(mixed, key=lambda r: r.latency_ms)
    return export_study(study.study, tmp_path_factory.mktemp("mixed"), model=model,
                        trial_number=chosen.number)


def test_block_lists_and_op_type_files_match_the_plan(mixed_export) -> None:
    result = mixed_export
    plan = json.loads(result.files["recommended.json"].read_text())["plan"]
    kept = [line for line in result.files["disabled_op_types.txt"].read_text().splitlines()
            if line and not line.startswith("#")]
    blocks = json.loads(result.files["node_block_list.json"].read_text())
    assert not plan["keep_all_fp32"]
    assert kept == plan["keep_fp32_op_types"] == blocks["op_block_list"]
    assert set(plan["keep_fp32_nodes"]) <= set(blocks["node_block_list"])
    paddle = result.files["paddle_disabled_ops.txt"].read_text()
    for op_type in kept:
        for paddle_op in ONNX_TO_PADDLE.get(op_type, ()):
            assert f"{paddle_op}  # from" in paddle
    snippet = result.files["paddle_inference_snippet.py"].read_text()
    assert "exp_enable_use_gpu_fp16(gpu_fp16_disabled_op_types)" in snippet
    compile(snippet, "paddle_inference_snippet.py", "exec")


def test_block_lists_drive_onnxruntimes_own_converter(finished, mixed_export) -> None:
    """node_block_list.json is in the form onnxruntime's float16 converter takes."""
    float16 = pytest.importorskip("onnxruntime.transformers.float16")
    _, model, _ = finished
    result = mixed_export
    blocks = json.loads(result.files["node_block_list.json"].read_text())
    converted = float16.convert_float_to_float16(
        model, keep_io_types=blocks["keep_io_types"], op_block_list=blocks["op_block_list"],
        node_block_list=blocks["node_block_list"],
    )
    session = onnxruntime.InferenceSession(converted.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    outputs = session.run(None, tiny_feeds()[0])
    assert all(np.all(np.isfinite(o)) for o in outputs)  # Sub kept: no Log of a negative number
    assert any(n.op_type == "Cast" for n in converted.graph.node)  # and something was lowered


def test_onnxruntime_snippet_opens_the_model(finished) -> None:
    _, _, result = finished
    snippet = result.files["onnxruntime_snippet.py"].read_text()
    assert "CPUExecutionProvider" in snippet and "model_mixed.onnx" in snippet
    folder = result.files["model_mixed.onnx"].parent
    # The snippet names the model relative to the run folder: run it from there.
    namespace = _run_in(folder, result.files["onnxruntime_snippet.py"])
    assert namespace["session"].get_inputs()[0].name == "x"


def _run_in(folder: Path, script: Path) -> dict:
    import os

    previous = Path.cwd()
    os.chdir(folder)
    try:
        return runpy.run_path(str(script), run_name="snippet")
    finally:
        os.chdir(previous)


def test_a_chosen_trial_is_exported_or_refused_by_number(finished, tmp_path: Path) -> None:
    study, model, _ = finished
    records = study_records(study.study)
    rejected = next(r for r in records if r.status == "rejected")
    other = export_study(study.study, tmp_path, model=model, trial_number=rejected.number)
    data = json.loads(other.files["recommended.json"].read_text())
    assert data["trial"] == rejected.number and data["feasible"] is False
    with pytest.raises(AmptuneError, match="--trial 9999: that trial does not exist"):
        export_study(study.study, tmp_path, trial_number=9999)


def test_no_feasible_trial_is_a_clear_error(finished) -> None:
    study, _, _ = finished
    infeasible = [r for r in study_records(study.study) if not r.feasible]
    with pytest.raises(AmptuneError, match="no feasible trial"):
        recommend(infeasible)
    assert all(math.isfinite(r.latency_ms) for r in pareto_records(study.study))


def test_paddle_mapping_reports_what_it_cannot_map() -> None:
    mapping = paddle_ops_for(["Softmax", "Resize", "com.microsoft:FusedConv", "NonZero"])
    assert "softmax" in mapping.paddle_ops and "bilinear_interp_v2" in mapping.paddle_ops
    assert mapping.sources["softmax"] == ("Softmax",)
    assert mapping.unmapped == ("NonZero", "com.microsoft:FusedConv")


def test_paddle_table_agrees_with_the_paddle_seed_mapping() -> None:
    from search_spaces import PADDLE_GPU_FP16_BLACK_LIST

    for entry in PADDLE_GPU_FP16_BLACK_LIST:
        for onnx_op in entry.onnx_op_types:
            assert entry.paddle_op in ONNX_TO_PADDLE[onnx_op], (entry.paddle_op, onnx_op)


def test_keep_all_fp32_lists_the_op_types_inside_subgraphs_too() -> None:
    from onnx import TensorProto, helper

    from search_spaces import PrecisionPlan
    from tests.tuner._tiny_models import make_model, tensor_input
    from tuner._exports import _kept_fp32

    then_branch = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["t"])], "then", [],
                                    [tensor_input("t", [3])])
    else_branch = helper.make_graph([helper.make_node("Tanh", ["x"], ["e"])], "else", [],
                                    [tensor_input("e", [3])])
    model = make_model([helper.make_node("If", ["c"], ["y"], then_branch=then_branch,
                                         else_branch=else_branch)],
                       [tensor_input("x", [3]), tensor_input("c", [], TensorProto.BOOL)],
                       [tensor_input("y", [3])])
    types, nodes, engine = _kept_fp32(PrecisionPlan.all_fp32(), model, None)
    assert types == ["If", "Sigmoid", "Tanh"] and nodes == [] and engine == []
