"""``amptune inspect`` end to end through the dispatcher: output, JSON, and user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.tuner.test_inspect import _packaged_model
from tuner import inspect_model, load_model
from tuner.cli import main


def _tiny_model(path: Path) -> Path:
    weight = np.array([[1.0, 9.0e4], [2.0, 1e-30]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="project")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_text_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _tiny_model(tmp_path / "tiny.onnx")
    code, out, err = _run(["inspect", str(path)], capsys)
    assert (code, err) == (0, "")
    assert "opsets: ai.onnx 17" in out
    assert "x  FLOAT  [batch, 2]" in out
    assert "MatMul  1" in out
    assert "Values beyond FP16 range (|v| > 65504): 1 tensors" in out
    assert "project (MatMul)" in out
    assert "Values FP16 flushes to zero (0 < |v| <= 2**-25): 1 in 1 tensors" in out


def test_json_summary_is_the_whole_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _tiny_model(tmp_path / "tiny.onnx")
    code, out, err = _run(["inspect", str(path), "--json"], capsys)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data == inspect_model(load_model(path)).to_dict()
    assert data["fp16_out_of_range"] == [
        {
            "tensor": "w",
            "graph": "",
            "count": 1,
            "max_abs": 90000.0,
            "readers": [{"name": "project", "op_type": "MatMul", "graph": ""}],
        }
    ]


def _expect_user_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = _run(argv, capsys)
    assert code == 1 and out == ""
    assert err.startswith("amptune inspect: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    return err


def test_missing_file_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _expect_user_error(["inspect", str(tmp_path / "nope.onnx")], capsys)
    assert f"model file {tmp_path / 'nope.onnx'} does not exist" in err


def test_file_that_is_not_a_model_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("these are my notes, not a network\n")
    err = _expect_user_error(["inspect", str(path), "--json"], capsys)
    assert f"{path} is not an ONNX model: found a text file starting with 'these are" in err


def test_directory_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _expect_user_error(["inspect", str(tmp_path)], capsys)
    assert "is a directory" in err


def test_external_data_outside_the_folder_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = onnx.load(str(_tiny_model(tmp_path / "tiny.onnx")))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "/etc/passwd"
    (tmp_path / "escaping.onnx").write_bytes(model.SerializeToString())
    err = _expect_user_error(["inspect", str(tmp_path / "escaping.onnx")], capsys)
    assert "'/etc/passwd'" in err and "refused" in err


def test_model_argument_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["inspect"])
    assert exited.value.code == 2
    assert "MODEL" in capsys.readouterr().err


def test_inspect_imports_no_runtime_plotting_or_nvml(tmp_path: Path) -> None:
    path = _tiny_model(tmp_path / "tiny.onnx")
    script = (
        "import sys; from tuner.cli import main; code = main(['inspect', sys.argv[1]]); "
        "heavy = [m for m in ('onnxruntime', 'plotly', 'pynvml') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout




@pytest.mark.slow
def test_ppocr_det_text(capsys: pytest.CaptureFixture[str]) -> None:
    path = _packaged_model(
        "rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
    )
    code, out, err = _run(["inspect", str(path)], capsys)
    assert (code, err) == (0, "")
    summary = inspect_model(load_model(path))
    assert out == summary.format_text() + "\n"
    for entry in summary.fp16_out_of_range:  # each named with the node that reads it
        assert entry.tensor in out
        assert all(f"{r.name} ({r.op_type})" in out for r in entry.readers)


@pytest.mark.slow
def test_silero_vad_json_lists_its_if_branches(capsys: pytest.CaptureFixture[str]) -> None:
    path = _packaged_model("silero-vad", "silero_vad/data/silero_vad.onnx")
    code, out, err = _run(["inspect", "--json", str(path)], capsys)
    assert (code, err) == (0, "")
    data = json.loads(out)
    top = {(s["node_name"], s["op_type"], s["attribute"]) for s in data["subgraphs"]}
    assert top == {("If_0", "If", "then_branch"), ("If_0", "If", "else_branch")}
    assert all(s["node_count"] > 0 and s["subgraphs"] for s in data["subgraphs"])
    assert data["total_node_count"] > data["node_count"]
