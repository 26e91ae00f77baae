"""GPU evidence for the tuner (issue 4): one study's baselines and its tuned result, in one process,
on the same inputs, against one FP32 reference (TF32 off).

Rows: FP32 (TF32 off), TF32, all-FP16, all-FP16 with prefer_nhwc=1, the recommended config of a
tune run, and every other plan of its Pareto front. Each row: latency median (CUDA events, the
profilers' protocol), drift (the study's metric), placement, the trials the tune used and the
wall time (the tune's for the recommended config; the measurement's for the others).

Checks (printed PASS/FAIL, and in the JSON):
  1. the recommended config is never slower than the faster of FP32 and TF32;
  2. it meets the tolerance; for a thresholded_iou study (PP-OCRv4 det) its latency is within 5%
     of the faster all-FP16 row;
  3. the Pareto front holds a plan at least as accurate as TF32 that is faster than TF32.

Usage (GPU host, bundle on PYTHONPATH; or here on the CPU EP as a smoke test, where the TF32 and
NHWC rows and the checks that need them say n/a):
  python3 scripts/gpu_tune_evidence.py --study studies/ppocr_det.toml --run-dir runs/ppocr_det \
      --tune [--n-trials 60] [--out evidence.json] [-- other `amptune tune` options]
Without --tune (and --study) it reads a finished run directory (`amptune tune --out DIR`).
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a plain checkout


@dataclass
class Row:
    name: str
    latency_ms: float | None
    ci_ms: tuple[float, float] | None
    drift: float | None
    placement_flagged: bool | None
    trials: str
    wall_s: float
    note: str = ""


def _tune(args: argparse.Namespace, extra: list[str]) -> float:
    from tuner.cli import main

    started = time.monotonic()
    argv = ["tune", "--study", args.study, "--out", args.run_dir, *extra]
    if args.n_trials:
        argv += ["--n-trials", str(args.n_trials)]
    code = main(argv)
    if code != 0:
        raise SystemExit(f"amptune tune exited {code}")
    return time.monotonic() - started


def _measure(name: str, evaluation: Any, plan: Any, session: Any, trials: str = "-",
             wall_s: float | None = None) -> Row:
    """Drift and latency of ``plan`` under ``session``, never gated: baselines are timed even
    where their drift is far past the tolerance."""
    from profilers import OnnxRuntimeProfiler

    started = time.monotonic()
    if plan.allow_tf32 and session.device == "cuda":  # the plan's own TF32 setting
        session = session.with_(use_tf32=True)
    profiler = OnnxRuntimeProfiler(session, evaluation.profiler.latency_config,
                                   relative_floor=1e-3, user_metrics=evaluation.metric.user_metrics)
    measuring = evaluation.with_profiler(profiler)
    candidate, _ = measuring.candidate(plan)
    measured, feeds = measuring.drift_measurement(candidate)
    timed = profiler.measure_latency(candidate, feeds[0], output_arrays=measured.candidate_outputs[0])
    stats = timed.latency.stats
    return Row(name, stats.median_ms, (stats.median_ci_low_ms, stats.median_ci_high_ms),
               measuring.metric.value(measured.drift), measured.placement.flagged, trials,
               wall_s if wall_s is not None else time.monotonic() - started,
               "; ".join(measured.placement.reasons))


def _check(label: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"check": label, "result": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
            "detail": detail}


def _checks(rows: dict[str, Row], front: list[Row], tolerance: float, metric: str,
            on_gpu: bool) -> list[dict[str, Any]]:
    recommended, fp32 = rows["recommended"], rows["FP32 (TF32 off)"]
    tf32 = rows.get("TF32")
    faster = min((r for r in (fp32, tf32) if r is not None and r.latency_ms),
                 key=lambda r: r.latency_ms)  # type: ignore[arg-type, return-value]
    # Not slower: its median at or below the baseline's median, or inside the confidence interval
    # of that median (the recommended plan may be the very FP32 config, measured twice).
    bound = max(faster.latency_ms, faster.ci_ms[1] if faster.ci_ms else 0.0)  # type: ignore[type-var]
    checks = [_check("recommended never slower than the faster of FP32 and TF32",
                     recommended.latency_ms <= bound,  # type: ignore[operator]
                     f"{recommended.latency_ms:.4g} ms vs {faster.name} {faster.latency_ms:.4g} ms "
                     f"(CI high {bound:.4g} ms)")]
    fp16 = [r for n, r in rows.items() if n.startswith("all-FP16") and r.latency_ms]
    fastest_fp16 = min(r.latency_ms for r in fp16)  # type: ignore[type-var]
    meets = recommended.drift is not None and recommended.drift <= tolerance
    checks.append(_check("recommended meets the tolerance", meets,
                         f"drift {recommended.drift:.4g} vs tolerance {tolerance:g}"))
    if metric == "thresholded_iou":
        ratio = recommended.latency_ms / fastest_fp16  # type: ignore[operator]
        checks.append(_check("recommended within 5% of the fastest all-FP16", ratio <= 1.05,
                             f"{ratio:.3f}x of {fastest_fp16:.4g} ms"))
    if not on_gpu or tf32 is None:
        checks.append(_check("Pareto front beats TF32 at TF32's accuracy", None, "no TF32 on the CPU"))
    else:
        winners = [r.name for r in front if r.drift is not None and tf32.drift is not None
                   and r.drift <= tf32.drift and r.latency_ms < tf32.latency_ms]  # type: ignore[operator]
        checks.append(_check("Pareto front beats TF32 at TF32's accuracy", bool(winners),
                             f"TF32 {tf32.latency_ms:.4g} ms, drift {tf32.drift:.4g}; faster and "
                             f"as accurate: {', '.join(winners) or 'none'}"))
    return checks


def _table(rows: list[Row], device: str) -> str:
    lines = [(f"{'config':<34} {'latency median':>16} {'drift':>11} {'placement':>9} "
             f"{'trials':>8} {'wall s':>7}")]
    for row in rows:
        latency = "n/a" if row.latency_ms is None else f"{row.latency_ms:.4g} ms"
        drift = "n/a" if row.drift is None else ("inf" if math.isinf(row.drift) else f"{row.drift:.4g}")
        placed = "-" if row.placement_flagged is None else ("FLAGGED" if row.placement_flagged else "ok")
        lines.append(f"{row.name:<34} {latency:>16} {drift:>11} {placed:>9} {row.trials:>8} "
                     f"{row.wall_s:>7.1f}")
    if device == "cpu":
        lines.append("(CPU measurement: onnxruntime CPU EP, perf_counter; not GPU evidence)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", help="the study file (for --tune; a run directory names its own)")
    parser.add_argument("--run-dir", required=True, help="the tune run's directory")
    parser.add_argument("--tune", action="store_true", help="run `amptune tune` into --run-dir first")
    parser.add_argument("--n-trials", type=int, help="with --tune: the budget")
    parser.add_argument("--out", help="write every row and check as JSON")
    parser.add_argument("--max-front", type=int, default=8, help="Pareto plans re-measured (8)")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.tune and not args.study:
        parser.error("--tune needs --study")
    if extra and not args.tune:
        parser.error(f"unknown arguments {extra} (only --tune passes options on to amptune tune)")

    import optuna

    from search_spaces import PrecisionPlan
    from tuner._exports import pareto_records
    from tuner._model_io import load_model
    from tuner._objective import StudyEvaluation
    from tuner._study_metric import StudyMetric
    from tuner._tune_setup import TuneSetup, feeds_sha256, read_manifest

    started = time.monotonic()
    tune_wall = _tune(args, extra) if args.tune else None
    run = Path(args.run_dir)
    manifest = read_manifest(run)
    setup = TuneSetup.from_manifest(manifest)
    tune_wall = tune_wall or sum(r.get("wall_s", 0.0) for r in manifest.get("runs", []))
    model = load_model(manifest["model_path"])
    feeds = setup.feeds(model)
    if feeds_sha256(feeds) != manifest["inputs_sha256"]:
        raise SystemExit("the inputs rebuilt from run.json differ from those tuned on")
    from profilers import OnnxRuntimeProfiler

    metric = StudyMetric.from_config(setup.config.metric, [o.name for o in model.graph.output])
    evaluation = StudyEvaluation(model, feeds, OnnxRuntimeProfiler(setup.session, setup.latency),
                                 metric)  # the FP32 reference, TF32 off, once for every row
    study = optuna.load_study(study_name=manifest["study_name"],
                              storage=setup.config.storage_url(run))
    finished = sum(1 for t in study.trials if t.state.is_finished())
    recommended = json.loads((run / "recommended.json").read_text())
    on_gpu = setup.device == "cuda"
    session = setup.session
    fp32 = session.with_(use_tf32=False)
    all_fp16 = PrecisionPlan(lower="fp16")

    rows: dict[str, Row] = {}
    rows["FP32 (TF32 off)"] = _measure("FP32 (TF32 off)", evaluation, PrecisionPlan.all_fp32(), fp32)
    if on_gpu:
        rows["TF32"] = _measure("TF32", evaluation, PrecisionPlan.all_fp32(),
                                session.with_(use_tf32=True))
    rows["all-FP16"] = _measure("all-FP16", evaluation, all_fp16, session.with_(prefer_nhwc=False))
    if on_gpu:
        rows["all-FP16 prefer_nhwc"] = _measure("all-FP16 prefer_nhwc", evaluation, all_fp16,
                                                session.with_(prefer_nhwc=True))
        # use_tf32=1 is the CUDA EP's default, and it changes more than FP32 math (the FP16
        # convolutions of PP-OCRv4 det ran faster with it): the fastest all-FP16 is timed both ways.
        rows["all-FP16 use_tf32=1"] = _measure("all-FP16 use_tf32=1", evaluation, all_fp16,
                                               session.with_(prefer_nhwc=False, use_tf32=True))
        rows["all-FP16 prefer_nhwc use_tf32=1"] = _measure(
            "all-FP16 prefer_nhwc use_tf32=1", evaluation, all_fp16,
            session.with_(prefer_nhwc=True, use_tf32=True))
    rows["recommended"] = _measure(
        f"recommended (trial #{recommended['trial']})", evaluation,
        PrecisionPlan.from_dict(recommended["plan"]), session,
        trials=f"{finished}", wall_s=tune_wall,
    )
    front = [rows["recommended"]]
    for record in pareto_records(study)[: args.max_front]:
        if record.number == recommended["trial"] or record.plan is None:
            continue
        front.append(_measure(f"Pareto trial #{record.number}", evaluation, record.plan, session,
                              trials=f"{finished}"))
    checks = _checks(rows, front, setup.config.metric.tolerance, setup.config.metric.name, on_gpu)
    table = [*rows.values(), *front[1:]]
    result = {
        "study": setup.config.name, "device": setup.device, "device_note": setup.device_note,
        "inputs_sha256": manifest["inputs_sha256"], "metric": metric.describe(),
        "rows": [asdict(r) for r in table], "checks": checks,
        "wall_s": time.monotonic() - started,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nstudy {setup.config.name} on {setup.device}: metric {metric.name}, tolerance "
          f"{setup.config.metric.tolerance:g}, {len(feeds)} samples, same inputs for every row")
    for check in checks:
        print(f"  {check['result']:<4}  {check['check']}: {check['detail']}")
    print(_table(table, setup.device))
    return 0 if all(c["result"] != "FAIL" for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
