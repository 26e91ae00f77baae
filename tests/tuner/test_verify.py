"""``amptune verify RUN_DIR``: the exported model measured in a fresh process against its trial."""

from __future__ import annotations

import json
import os
import shutil

import onnx
import pytest

from tests.tuner._tune_runs import save_tiny_model, tune_tiny
from tuner.cli import main

pytest.importorskip("onnxruntime")
# CPU latency on a shared 2-core machine moves by more than 3% from one process to the next; the
# drift check is what these tests pin down, the latency check is exercised with a wide bound
# and (below) with one that cannot hold.
WIDE = ["--latency-tolerance", "100"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    model = save_tiny_model(folder)
    assert tune_tiny(model, folder / "run") == 0
    return folder / "run"


@pytest.fixture
def run(tuned, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tuned, copy)
    return copy


def test_verify_matches_the_trial_in_a_fresh_process(run, capsys) -> None:
    assert main(["verify", str(run), *WIDE]) == 0
    printed = capsys.readouterr().out
    assert "equal - ok" in printed and "verified" in printed and "(CPU measurement)" in printed
    result = json.loads((run / "verify.json").read_text())
    recommended = json.loads((run / "recommended.json").read_text())
    assert result["passed"] is True and result["trial"] == recommended["trial"]
    assert result["drift"]["difference"] == 0.0
    assert result["drift"]["verify"] == recommended["objectives"]["drift"]
    assert result["fresh_process"]["pid"] != os.getpid()
    assert result["cpu_measurement"] is True
    manifest = json.loads((run / "run.json").read_text())
    assert result["inputs_sha256"] == manifest["inputs_sha256"]


def test_verify_fails_when_latency_is_off(run, capsys) -> None:
    # A bound no two measurements meet: the latency check must say so and exit 1.
    assert main(["verify", str(run), "--latency-tolerance", "1e-9"]) == 1
    result = json.loads((run / "verify.json").read_text())
    assert result["passed"] is False and result["latency"]["passed"] is False
    assert result["drift"]["passed"] is True
    assert "NOT verified" in capsys.readouterr().out


def test_verify_fails_when_the_export_is_another_model(run, capsys) -> None:
    # Keep everything but swap the exported model for one that lowers the MatMuls too.
    trials = json.loads((run / "recommended.json").read_text())
    model = onnx.load(str(run / "model_mixed.onnx"))
    from search_spaces import PrecisionPlan
    from tuner import convert_precision

    fp32 = onnx.load(json.loads((run / "run.json").read_text())["model_path"])
    other = convert_precision(fp32, PrecisionPlan(lower="fp16",
                                                  keep_fp32_op_types=frozenset({"Sub", "Log"})))
    assert other.model.SerializeToString() != model.SerializeToString()
    onnx.save(other.model, str(run / "model_mixed.onnx"))
    assert main(["verify", str(run), *WIDE]) == 1
    result = json.loads((run / "verify.json").read_text())
    assert result["drift"]["passed"] is False and result["drift"]["difference"] > 0
    assert result["trial"] == trials["trial"]
    assert "FAILED" in capsys.readouterr().out


def test_verify_refuses_other_inputs_and_a_missing_export(run, capsys) -> None:
    manifest = json.loads((run / "run.json").read_text())
    manifest["study_data"]["data"]["seed"] = 99
    (run / "run.json").write_text(json.dumps(manifest))
    assert main(["verify", str(run)]) == 1
    assert "inputs rebuilt from run.json differ from those tuned on" in capsys.readouterr().err
    (run / "recommended.json").unlink()
    assert main(["verify", str(run)]) == 1
    assert "recommended.json does not exist" in capsys.readouterr().err


def test_export_removes_a_stale_verify_result(run) -> None:
    assert main(["verify", str(run), *WIDE]) == 0
    assert (run / "verify.json").is_file()
    assert main(["export", str(run)]) == 0
    assert not (run / "verify.json").exists()
