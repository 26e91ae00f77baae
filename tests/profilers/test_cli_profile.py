"""``amptune profile`` on a real model (PP-OCR's orientation classifier) on the CPU EP."""

import json

import numpy as np
import pytest

from tuner.cli import main

QUICK = ["--device", "cpu", "--min-measure-s", "0.2", "--max-warmup-s", "0.3", "--samples", "3"]


@pytest.fixture(scope="module")
def cls_model(real_model):
    return str(real_model("ppocr-cls"))


def test_profile_fp16_plan_prints_a_table_and_writes_json(cls_model, tmp_path, capsys):
    out = tmp_path / "profile.json"
    code = main(["profile", cls_model, "--lower", "fp16", "--input", "x=2x3x48x192:uniform(-1,1)",
                 "--per-node", "--top", "3", "--json", str(out), *QUICK])
    printed = capsys.readouterr().out
    assert code == 0
    for section in ("latency", "telemetry", "drift vs FP32", "time by op type", "top nodes"):
        assert f"\n{section}" in printed
    assert "(CPU measurement)" in printed
    data = json.loads(out.read_text())
    assert data["plan"]["lower"] == "fp16" and data["conversion"]["cast_count"] >= 1
    assert data["latency"]["is_cpu_measurement"] is True
    assert data["data"]["kind"] == "synthetic" and data["data"]["num_samples"] == 3
    assert data["data"]["inputs"][0]["shape"] == [2, 3, 48, 192]
    drift = data["drift"]["outputs"]["save_infer_model/scale_0.tmp_1"]
    assert 0 < drift["max_abs"] < 0.05  # FP16 is close to FP32 on this classifier
    assert drift["argmax_agreement"] is not None
    assert data["placement"]["flagged"] is False
    assert data["per_node"]["clock"] == "ort-profiler-cpu"
    assert data["per_node"]["op_types"][0]["time_ms"] > 0
    assert data["provenance"]["onnxruntime_version"]
    assert data["telemetry"]["available"] is False


def test_profile_fp32_with_npz_data_and_user_metric(cls_model, tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    for index in range(2):
        np.savez(tmp_path / f"s{index}.npz", x=rng.uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32))
    (tmp_path / "cls_metric.py").write_text(
        "import numpy as np\n"
        "def top1_changed(reference, candidate):\n"
        "    (r,), (c,) = reference.values(), candidate.values()\n"
        "    return float(np.mean(r.argmax(-1) != c.argmax(-1)))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "fp32.json"
    code = main(["profile", cls_model, "--data", str(tmp_path), "--metric", "cls_metric:top1_changed",
                 "--json", str(out), *QUICK])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["plan"] is None and data["data"]["kind"] == "npz"
    assert data["drift"]["samples"] == 2
    # The FP32 model against itself on the CPU: bit-identical.
    assert data["drift"]["outputs"]["save_infer_model/scale_0.tmp_1"]["max_abs"] == 0.0
    assert data["drift"]["user_metrics"]["top1_changed"]["mean"] == 0.0
    assert "user:top1_changed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--input", "x=2x3x48"], "rank 3"),
        ([], "dynamic dimension"),
        (["--input", "x=1x3x48x192", "--plan", "/no/such/plan.json"], "does not exist"),
        (["--input", "x=1x3x48x192", "--keep-fp32-nodes", "no_such_node"], "no_such_node"),
        (["--input", "x=1x3x48x192", "--cuda-graph"], "--device cuda only"),
    ],
)
def test_bad_input_is_one_line_without_traceback(cls_model, capsys, arguments, message):
    code = main(["profile", cls_model, *QUICK, *arguments])
    error = capsys.readouterr().err
    assert code == 1
    assert message in error
    assert "Traceback" not in error
