"""``amptune convert`` end to end, through tuner.cli.main."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.tuner._tiny_models import make_model, tensor_input, weight
from tuner.cli import main


@pytest.fixture
def mlp_path(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Softmax", ["h"], ["y"], name="softmax")]
    model = make_model(nodes, [tensor_input("x", [2, 4])], [tensor_input("y", [2, 4])],
                       [weight("W", np.eye(4))])
    path = tmp_path / "mlp.onnx"
    onnx.save(model, str(path))
    return path


def test_convert_writes_model_and_report(mlp_path, tmp_path, capsys):
    out, report = tmp_path / "out.onnx", tmp_path / "report.json"
    code = main(["convert", str(mlp_path), "-o", str(out), "--keep-fp32-op-types", "Softmax",
                 "--report", str(report)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "fp16=1" in printed and "Cast nodes: 2" in printed
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    data = json.loads(report.read_text())
    assert data["plan"]["keep_fp32_op_types"] == ["Softmax"]
    assert {n["name"]: n["reason"] for n in data["nodes"]} == {
        "mm": "lowered", "softmax": "plan_keep_op_type"}


def test_plan_file_and_options_combine(mlp_path, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"lower": "fp16", "keep_fp32_nodes": ["mm"]}))
    out, report = tmp_path / "out.onnx", tmp_path / "report.json"
    assert main(["convert", str(mlp_path), "-o", str(out), "--plan", str(plan),
                 "--no-keep-io-types", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["plan"]["keep_io_types"] is False
    assert {n["name"]: n["precision"] for n in data["nodes"]} == {"mm": "fp32", "softmax": "fp16"}


@pytest.mark.parametrize("arguments, message", [
    (["--keep-fp32-nodes", "mmm"], "'mmm' (did you mean 'mm'?)"),
    (["--keep-fp32-op-types", "Sofmax"], "'Sofmax' is not an ONNX op type"),
    (["--lower", "fp8"], None),  # argparse: exit 2
])
def test_bad_arguments_fail_with_a_message(mlp_path, tmp_path, capsys, arguments, message):
    out = tmp_path / "out.onnx"
    if message is None:
        with pytest.raises(SystemExit) as exit_info:
            main(["convert", str(mlp_path), "-o", str(out), *arguments])
        assert exit_info.value.code == 2
        return
    assert main(["convert", str(mlp_path), "-o", str(out), *arguments]) == 1
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not out.exists()


def test_bad_plan_file_names_the_field(mlp_path, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"lower": "fp16", "keep_fp32_opTypes": ["Softmax"]}))
    assert main(["convert", str(mlp_path), "-o", str(tmp_path / "o.onnx"),
                 "--plan", str(plan)]) == 1
    assert "unknown field(s) 'keep_fp32_opTypes'" in capsys.readouterr().err


def test_not_a_model_is_a_clear_error(tmp_path, capsys):
    bogus = tmp_path / "notes.onnx"
    bogus.write_text("hello")
    assert main(["convert", str(bogus), "-o", str(tmp_path / "o.onnx")]) == 1
    error = capsys.readouterr().err
    assert "notes.onnx" in error and "Traceback" not in error


def test_kernel_additions_extend_what_may_be_lowered(tmp_path, capsys):
    # Clip-11 has a float-only CUDA kernel in the shipped data (the PP-OCR cls slowdown).
    node = helper.make_node("Clip", ["x"], ["y"], name="clip")
    model = make_model([node], [tensor_input("x", [3])], [tensor_input("y", [3])], opset=11)
    path, out = tmp_path / "clip.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(path))
    report = tmp_path / "r.json"
    assert main(["convert", str(path), "-o", str(out), "--report", str(report)]) == 0
    assert json.loads(report.read_text())["nodes"][0]["precision"] == "fp32"
    additions = tmp_path / "kernels.json"
    additions.write_text(json.dumps({"provider": "CUDAExecutionProvider", "kernels": {
        "ai.onnx:Clip": [{"since": 11, "until": 11,
                           "type_constraints": {"T": ["tensor(float)", "tensor(float16)"]}}]}}))
    assert main(["convert", str(path), "-o", str(out), "--report", str(report),
                 "--kernel-additions", str(additions)]) == 0
    assert json.loads(report.read_text())["nodes"][0]["precision"] == "fp16"


def test_models_too_big_for_the_in_memory_checker_are_checked_as_files(
        mlp_path, tmp_path, capsys, monkeypatch):
    import tuner._convert

    monkeypatch.setattr(tuner._convert, "_IN_MEMORY_CHECK_LIMIT", 16)
    out = tmp_path / "out.onnx"
    assert main(["convert", str(mlp_path), "-o", str(out)]) == 0
    assert "checker skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_convert_a_real_model_from_the_zoo(tmp_path, capsys):
    out = tmp_path / "det.onnx"
    assert main(["convert", "zoo:ppocr-det", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "out_of_range_weight (1)" in printed  # batch_norm_0.w_2 holds values up to 9.8e7
    onnx.checker.check_model(str(out))
