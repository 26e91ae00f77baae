"""``amptune verify RUN_DIR``: does the exported model do what its trial measured?

The exported ``model_mixed.onnx`` is loaded in a fresh process (``python -m tuner._verify``), so
nothing of the tuning process (sessions, caches, the converted ModelProto) is reused. That process
rebuilds the run's inputs from ``run.json`` (their digest must equal the one tuned on), computes the
FP32 reference as the run did, and measures the exported file with the run's session and latency
settings. The parent compares with the recommended trial (``recommended.json``):

- drift must equal the trial's exactly (``drift_tolerance``, default 0, allows a known difference,
  e.g. where cuDNN's algorithm search may pick other kernels in another process);
- the latency median must lie within ``latency_tolerance`` (3%) of the trial's.

The result is written beside the export as ``verify.json``; :func:`verify_run` returns it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tuner._errors import AmptuneError

VERIFY_FILE = "verify.json"
MIXED_MODEL = "model_mixed.onnx"
LATENCY_TOLERANCE = 0.03


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise AmptuneError(f"{path} does not exist: {what}")
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as error:
        raise AmptuneError(f"cannot read {path}: {error}") from None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)  # "inf"/"nan" strings read back as floats


def measure_export(run_dir: Path) -> dict[str, Any]:
    """In the fresh process: the exported model's drift and latency on the run's inputs."""
    from profilers import OnnxRuntimeProfiler
    from search_spaces import PrecisionPlan
    from tuner._model_io import load_model
    from tuner._objective import StudyEvaluation
    from tuner._study_metric import StudyMetric
    from tuner._trial_measurement import LatencySummary, json_float
    from tuner._tune_setup import TuneSetup, feeds_sha256, file_sha256, read_manifest

    manifest = read_manifest(run_dir)
    setup = TuneSetup.from_manifest(manifest)
    model_path = Path(manifest["model_path"])
    if not model_path.is_file() or file_sha256(model_path) != manifest["model_sha256"]:
        raise AmptuneError(f"the FP32 model {model_path} is missing or differs from the one tuned "
                           f"(sha256 {manifest['model_sha256'][:12]}...)")
    mixed = run_dir / MIXED_MODEL
    if not mixed.is_file():
        raise AmptuneError(f"{mixed} does not exist: run `amptune export {run_dir}` first")
    model = load_model(model_path)
    feeds = setup.feeds(model)
    inputs_digest = feeds_sha256(feeds)
    if inputs_digest != manifest["inputs_sha256"]:
        raise AmptuneError("the inputs rebuilt from run.json differ from those tuned on (sha256 "
                           f"{inputs_digest[:12]}... vs {manifest['inputs_sha256'][:12]}...)")
    metric = StudyMetric.from_config(setup.config.metric, [o.name for o in model.graph.output])
    profiler = OnnxRuntimeProfiler(setup.session, setup.latency, relative_floor=1e-3,
                                   user_metrics=metric.user_metrics)
    evaluation = StudyEvaluation(model, feeds, profiler, metric)
    recommended = json.loads((run_dir / "recommended.json").read_text())
    plan_profiler = evaluation.profiler_for(PrecisionPlan.from_dict(recommended["plan"]))
    measured, candidate_feeds = evaluation.drift_measurement(str(mixed), plan_profiler)
    drift = metric.value(measured.drift)
    timed = plan_profiler.measure_latency(str(mixed), candidate_feeds[0],
                                     output_arrays=measured.candidate_outputs[0])
    latency = LatencySummary.from_stats(timed.latency.stats, device=timed.latency.device,
                                        clock=timed.latency.clock,
                                        first_run_ms=timed.latency.first_run_ms)
    return {
        "pid": os.getpid(),
        "device": setup.device,
        "drift": json_float(drift),
        "latency": latency.to_dict(),
        "inputs_sha256": inputs_digest,
        "model_mixed_sha256": file_sha256(mixed),
        "placement_flagged": measured.placement.flagged,
        "warnings": list(timed.warnings),
    }


def verify_run(
    run_dir: str | Path,
    *,
    latency_tolerance: float = LATENCY_TOLERANCE,
    drift_tolerance: float = 0.0,
    python: str = sys.executable,
) -> dict[str, Any]:
    """Measure the export in a subprocess, compare with its trial, write ``verify.json``."""
    run = Path(run_dir)
    recommended = _read_json(run / "recommended.json",
                             f"run `amptune export {run}` (or `amptune tune`) first")
    measurement = recommended.get("measurement") or {}
    trial_latency = (measurement.get("latency") or {}).get("median_ms")
    trial_drift = _number(measurement.get("drift"))
    if trial_latency is None or trial_drift is None:
        raise AmptuneError(f"trial {recommended.get('trial')} in {run / 'recommended.json'} has no "
                           "measured latency and drift to verify against")
    with tempfile.TemporaryDirectory(prefix="amptune-verify-") as folder:
        result_path = Path(folder) / "measured.json"
        child = subprocess.run(
            [python, "-m", "tuner._verify", str(run), "--result", str(result_path)],
            capture_output=True, text=True, check=False,
        )
        if child.returncode != 0 or not result_path.is_file():
            tail = "\n".join((child.stderr or child.stdout).strip().splitlines()[-5:])
            raise AmptuneError(f"the verifying process failed (exit {child.returncode}): {tail}")
        fresh = json.loads(result_path.read_text())
    fresh_drift = float(fresh["drift"])
    fresh_latency = float(fresh["latency"]["median_ms"])
    # Equal infinities are equal; one infinite drift against a finite one differs by inf.
    drift_difference = 0.0 if fresh_drift == trial_drift else abs(fresh_drift - trial_drift)
    latency_change = fresh_latency / float(trial_latency) - 1.0
    drift_ok = drift_difference <= drift_tolerance
    latency_ok = abs(latency_change) <= latency_tolerance
    result = {
        "passed": drift_ok and latency_ok,
        "trial": recommended.get("trial"),
        "model": str(run / MIXED_MODEL),
        "device": fresh["device"],
        "cpu_measurement": fresh["device"] == "cpu",
        "drift": {"trial": trial_drift, "verify": fresh_drift, "difference": drift_difference,
                  "allowed_difference": drift_tolerance, "passed": drift_ok},
        "latency": {"trial_median_ms": float(trial_latency), "verify_median_ms": fresh_latency,
                    "change": latency_change, "allowed_change": latency_tolerance,
                    "passed": latency_ok, "verify": fresh["latency"]},
        "fresh_process": {"pid": fresh["pid"], "parent_pid": os.getpid()},
        "inputs_sha256": fresh["inputs_sha256"],
        "model_mixed_sha256": fresh["model_mixed_sha256"],
        "warnings": fresh["warnings"],
    }
    (run / VERIFY_FILE).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner._verify",
                                     description="measure a run's exported model (verify's child)")
    parser.add_argument("run_dir")
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    try:
        measured = measure_export(Path(args.run_dir))
    except AmptuneError as error:
        print(f"amptune verify: error: {error}", file=sys.stderr)
        return 1
    Path(args.result).write_text(json.dumps(measured, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
