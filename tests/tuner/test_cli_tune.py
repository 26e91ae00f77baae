"""``amptune tune`` and ``amptune export`` end to end on the CPU EP, through tuner.cli.main: a tiny
model without a study file, a tiny study file with the sensitivity pass, and the real PP-OCR
orientation classifier through its study file at a reduced batch."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import optuna
import pandas
import pytest

from tests.tuner._tune_runs import FAST_TIMING, save_tiny_model, tune_tiny
from tuner._trial_records import DIGEST, STATUS
from tuner.cli import main

pytest.importorskip("onnxruntime")
EXPORTS = ("pareto.csv", "recommended.json", "disabled_op_types.txt", "paddle_disabled_ops.txt",
           "paddle_inference_snippet.py", "node_block_list.json", "model_mixed.onnx",
           "onnxruntime_snippet.py", "report.html", "run.json", "study.db")
PROGRESS_LINE = re.compile(r"^\[\d+/\d+\] #\d+ ", re.MULTILINE)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One finished 8-trial run of the tiny model, and what it printed."""
    folder = tmp_path_factory.mktemp("tiny")
    model = save_tiny_model(folder)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # module scope: no capsys
        code = tune_tiny(model, folder / "run")
    return {"model": model, "run": folder / "run", "code": code, "stdout": out.getvalue(),
            "stderr": err.getvalue()}


def _study(run: Path) -> optuna.Study:
    manifest = json.loads((run / "run.json").read_text())
    return optuna.load_study(study_name=manifest["study_name"],
                             storage=f"sqlite:///{(run / 'study.db').resolve()}")


def test_tune_without_a_study_file_writes_every_export(tiny_run) -> None:
    run = tiny_run["run"]
    assert tiny_run["code"] == 0
    assert all((run / name).is_file() for name in EXPORTS)
    assert len(PROGRESS_LINE.findall(tiny_run["stderr"])) == 8  # one line per trial
    recommended = json.loads((run / "recommended.json").read_text())
    assert recommended["feasible"] and recommended["objectives"]["drift"] <= 1e-3
    assert f"recommended: trial #{recommended['trial']}" in tiny_run["stdout"]
    measured = [t for t in _study(run).trials if t.user_attrs.get(STATUS) != "reused"]
    digests = [t.user_attrs[DIGEST] for t in measured]
    assert len(digests) == len(set(digests))  # identical plans measured once


def test_a_cpu_run_says_so_in_every_output(tiny_run) -> None:
    run = tiny_run["run"]
    assert tiny_run["stderr"].splitlines()[0].startswith("amptune tune: CPU run")
    assert "CPU MEASUREMENT" in tiny_run["stdout"]
    assert json.loads((run / "run.json").read_text())["cpu_measurement"] is True
    assert json.loads((run / "recommended.json").read_text())["device"] == "cpu"
    assert json.loads((run / "node_block_list.json").read_text())["measured_on"] == "cpu"
    for name in ("disabled_op_types.txt", "paddle_disabled_ops.txt"):
        assert "CPU measurement" in (run / name).read_text().splitlines()[0]
    assert "Measured on the CPU EP" in (run / "onnxruntime_snippet.py").read_text()
    assert "CPU measurements" in (run / "report.html").read_text()
    assert set(pandas.read_csv(run / "pareto.csv")["device"]) == {"cpu"}


def test_rerunning_resumes_and_a_larger_budget_goes_on(tiny_run, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    before = [(t.number, t.values) for t in _study(run).trials]
    assert tune_tiny(tiny_run["model"], run) == 0
    assert "this run measured 0, reused 0, rejected 0, failed 0" in capsys.readouterr().out
    assert tune_tiny(tiny_run["model"], run, n_trials=10) == 0
    after = _study(run).trials
    assert len(after) == 10 and [(t.number, t.values) for t in after[:8]] == before
    assert len(json.loads((run / "run.json").read_text())["runs"]) == 3


def test_other_inputs_do_not_resume_the_study(tiny_run, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    assert tune_tiny(tiny_run["model"], run, "--samples", "3") == 1
    assert re.search(r"made for another model or settings \(differs in inputs_sha256\)",
                     capsys.readouterr().err)


def test_export_another_trial_and_refuse_a_missing_one(tiny_run, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    recommended = json.loads((run / "recommended.json").read_text())["trial"]
    other = next(t.number for t in _study(run).trials
                 if t.state.name == "COMPLETE" and t.number != recommended)
    assert main(["export", str(run), "--trial", str(other)]) == 0
    exported = json.loads((run / "recommended.json").read_text())
    assert exported["trial"] == other and exported["rule"] == f"trial {other} chosen by the user"
    assert f"exported trial #{other}" in capsys.readouterr().out
    assert main(["export", str(run), "--trial", "999"]) == 1
    assert "--trial 999: that trial does not exist" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 1
    assert "is not an amptune run directory (no run.json)" in capsys.readouterr().err


def _write_study(folder: Path, model: Path, extra: str = "") -> Path:
    path = folder / "tiny.toml"
    path.write_text(f"""
name = "tiny_sensitive"
[model]
path = "{model.name}"
[inputs.x]
shape = [8, 16]
[inputs.level]
shape = [8, 4]
range = [1000.4, 1001.4]
[data]
n_samples = 3
[metric]
name = "max_rel"
tolerance = 0.001
[search]
spaces = ["op_types", "sensitive_nodes"]
[search.sensitive_nodes]
max_groups = 3
[budget]
n_trials = 6
[runtime]
device = "cpu"
{extra}""")
    return path


def test_study_file_with_sensitivity_pass_cached_on_resume(tmp_path, capsys) -> None:
    model = save_tiny_model(tmp_path)
    study = _write_study(tmp_path, model)
    out = tmp_path / "run"
    assert main(["tune", "--study", str(study), "--out", str(out), *FAST_TIMING]) == 0
    first = capsys.readouterr()
    assert "the study asks for the CPU" in first.err
    assert "sensitivity 3/3" in first.err and "per-node CPU time" in first.err
    assert len(PROGRESS_LINE.findall(first.err)) == 6
    assert main(["tune", "--study", str(study), "--out", str(out), "--n-trials", "7",
                 *FAST_TIMING]) == 0
    second = capsys.readouterr()
    assert "sensitivity ranking: cached in the study (3 entries)" in second.err
    assert "sensitivity 1/3" not in second.err
    assert len(_study(out).trials) == 7


def test_option_errors_are_one_line(tmp_path, capsys) -> None:
    model = save_tiny_model(tmp_path)
    study = _write_study(tmp_path, model)
    cases = [
        (["tune"], "give a MODEL (.onnx file or zoo:NAME) or --study"),
        (["tune", str(model), "--study", str(study)], "give a MODEL or --study, not both"),
        (["tune", "--study", str(study), "--metric", "max_abs"],
         "--metric describe a study without a file"),
        (["tune", "--study", str(study), "--batch", "0"], "--batch must be >= 1, got 0"),
        (["tune", "--study", str(study), "--data-kwarg", "height=2"],
         "--data-kwarg applies to a callable data source"),
        (["tune", "--study", "studies/ppocr_cls.toml", "--data-kwarg", "height"],
         "--data-kwarg 'height' is not KEY=VALUE"),
        (["tune", str(model), "--metric", "nope"], "[metric] name = 'nope'"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_real_model_ppocr_cls_study_at_a_small_batch(tmp_path, capsys, real_model) -> None:
    real_model("ppocr-cls")  # skips, naming the package to install, where it is missing
    out = tmp_path / "cls"
    code = main(["tune", "--study", "studies/ppocr_cls.toml", "--out", str(out), "--device", "cpu",
                 "--batch", "2", "--max-samples", "2", "--n-trials", "4", *FAST_TIMING])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["study_data"]["data"]["kwargs"]["batch"] == 2 and manifest["max_samples"] == 2
    assert manifest["study_data"]["budget"]["n_trials"] == 4
    assert all((out / name).is_file() for name in EXPORTS)
    seeds = [t.user_attrs.get("amptune.seed") for t in _study(out).trials]
    assert seeds[:2] == ["all_fp32", "all_lower"]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "model_mixed.onnx"),
                                           providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["save_infer_model/scale_0.tmp_1"]


def test_without_a_gpu_auto_runs_on_the_cpu_and_says_why(tmp_path, capsys) -> None:
    from profilers import cuda_provider_available

    if cuda_provider_available():
        pytest.skip("this onnxruntime has the CUDA EP: auto would measure on the GPU")
    model = save_tiny_model(tmp_path)
    assert tune_tiny(model, tmp_path / "run", "--device", "auto", n_trials=2) == 0
    printed = capsys.readouterr()
    assert printed.err.splitlines()[0] == (
        "amptune tune: no GPU here (onnxruntime has no CUDAExecutionProvider): running on the CPU "
        "EP; every latency is a CPU measurement, not a GPU one")
    assert "CPU MEASUREMENT: no GPU here" in printed.out


def test_gpu_tune_evidence_script_runs_on_the_cpu(tiny_run, tmp_path) -> None:
    import subprocess
    import sys

    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    out = tmp_path / "evidence.json"
    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_tune_evidence.py"
    done = subprocess.run([sys.executable, str(script), "--run-dir", str(run), "--out", str(out)],
                          capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr  # 1: a check failed (CPU timings are noisy)
    evidence = json.loads(out.read_text())
    names = [row["name"] for row in evidence["rows"]]
    recommended = json.loads((run / "recommended.json").read_text())["trial"]
    assert names[:3] == ["FP32 (TF32 off)", "all-FP16", f"recommended (trial #{recommended})"]
    rows = {row["name"]: row for row in evidence["rows"]}
    assert rows["FP32 (TF32 off)"]["drift"] == 0.0
    assert rows["all-FP16"]["drift"] == float("inf")  # Sub lowered: NaN, yet timed (not gated)
    assert rows["all-FP16"]["latency_ms"] > 0
    assert rows[names[2]]["drift"] == recommended_drift(run)
    assert {c["check"]: c["result"] for c in evidence["checks"]}[
        "Pareto front beats TF32 at TF32's accuracy"] == "n/a"
    assert "(CPU measurement" in done.stdout.splitlines()[-1]


def recommended_drift(run: Path) -> float:
    return float(json.loads((run / "recommended.json").read_text())["objectives"]["drift"])


def test_zoo_model_without_a_study_file_keeps_its_value_range(tmp_path, real_model) -> None:
    real_model("ppocr-cls")
    out = tmp_path / "zoo"
    assert main(["tune", "zoo:ppocr-cls", "--input", "x=2x3x48x192", "--samples", "2",
                 "--n-trials", "2", "--device", "cpu", "--out", str(out), *FAST_TIMING]) == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["study_data"]["model"] == {"zoo": "ppocr-cls"}
    assert manifest["study_data"]["inputs"]["x"] == {
        "shape": [2, 3, 48, 192], "dtype": "float32", "distribution": "uniform",
        "range": [-1.0, 1.0]}  # the zoo's (x / 255 - 0.5) / 0.5 range, not uniform(0, 1)
    assert manifest["study_data"]["metric"] == {"name": "rel_l2", "tolerance": 0.01}
