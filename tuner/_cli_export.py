"""``amptune export RUN_DIR [--trial N]`` and ``amptune verify RUN_DIR``: write a finished run's
exports again (for the recommended trial or another one), and check the exported model in a
fresh process against the trial it came from."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tuner._errors import AmptuneError


def register(subparsers: Any) -> None:
    export = subparsers.add_parser(
        "export",
        help="write a run's exports again, for the recommended trial or --trial N",
        description=(
            "Re-export a tuning run: pareto.csv, recommended.json, disabled_op_types.txt, "
            "paddle_disabled_ops.txt, node_block_list.json, model_mixed.onnx with its onnxruntime "
            "snippet, and report.html. --trial exports that trial's plan instead of the "
            "recommended one (recommended.json then says it was chosen by the user)."
        ),
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `amptune tune`")
    export.add_argument("--trial", type=int, metavar="N", help="export trial N instead")
    export.set_defaults(handler=run_export)

    verify = subparsers.add_parser(
        "verify",
        help="re-measure the exported model in a fresh process against its trial",
        description=(
            "Load RUN_DIR/model_mixed.onnx in a fresh process and measure it on the run's inputs "
            "with the run's settings: its drift must equal the exported trial's and its latency "
            "median lie within 3%. Writes RUN_DIR/verify.json; exits 1 when either does not hold."
        ),
    )
    verify.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `amptune tune`")
    verify.add_argument("--latency-tolerance", type=float, default=0.03, metavar="F",
                        help="largest relative change of the latency median (default 0.03)")
    verify.add_argument("--drift-tolerance", type=float, default=0.0, metavar="D",
                        help="largest difference of drift allowed (default 0: exactly equal)")
    verify.set_defaults(handler=run_verify)


def export_run(run_dir: Path, trial: int | None = None) -> Any:
    """Open a run's study and write every export and the report; returns the ExportResult."""
    import optuna

    from tuner._exports import export_study
    from tuner._model_io import load_model
    from tuner._report_data import report_data_for_study
    from tuner._report_render import write_report
    from tuner._tune_setup import TuneSetup, file_sha256, read_manifest

    manifest = read_manifest(run_dir)
    setup = TuneSetup.from_manifest(manifest)
    storage = setup.config.storage_url(run_dir)
    try:
        study = optuna.load_study(study_name=manifest["study_name"], storage=storage)
    except KeyError:
        raise AmptuneError(f"no study {manifest['study_name']!r} in {storage}") from None
    model_path = Path(manifest["model_path"])
    if not model_path.is_file() or file_sha256(model_path) != manifest["model_sha256"]:
        raise AmptuneError(f"the FP32 model {model_path} is missing or differs from the one tuned")
    result = export_study(study, run_dir, model=load_model(model_path), trial_number=trial)
    (run_dir / "verify.json").unlink(missing_ok=True)  # it described the previous export
    result.files["report.html"] = write_report(report_data_for_study(study),
                                               run_dir / "report.html")
    return result


def run_export(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    result = export_run(run_dir, args.trial)
    chosen = result.recommended
    from tuner._tune_setup import read_manifest

    manifest = read_manifest(run_dir)
    if manifest.get("cpu_measurement"):
        print(f"amptune export: CPU MEASUREMENT: {manifest.get('device_note')}", file=sys.stderr)
    print(f"exported trial #{chosen.number} (median latency {chosen.latency_ms:.4g} ms, drift "
          f"{chosen.drift:.4g}) to {run_dir}/: {', '.join(sorted(result.files))}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from tuner._verify import verify_run

    if args.latency_tolerance <= 0 or args.drift_tolerance < 0:
        raise AmptuneError(f"--latency-tolerance must be > 0 and --drift-tolerance >= 0, got "
                           f"{args.latency_tolerance} and {args.drift_tolerance}")
    result = verify_run(args.run_dir, latency_tolerance=args.latency_tolerance,
                        drift_tolerance=args.drift_tolerance)
    drift, latency = result["drift"], result["latency"]
    device = " (CPU measurement)" if result["cpu_measurement"] else ""
    print(f"trial #{result['trial']}, {result['model']} in a fresh process (pid "
          f"{result['fresh_process']['pid']}){device}")
    print(f"  drift    trial {drift['trial']:.6g}, verify {drift['verify']:.6g}: "
          + ("equal" if drift["difference"] == 0 else f"differs by {drift['difference']:.3g}")
          + (" - ok" if drift["passed"] else " - FAILED"))
    print(f"  latency  trial {latency['trial_median_ms']:.4g} ms, verify "
          f"{latency['verify_median_ms']:.4g} ms: {latency['change']:+.1%} (allowed "
          f"{latency['allowed_change']:.0%})" + (" - ok" if latency["passed"] else " - FAILED"))
    print(f"wrote {Path(args.run_dir) / 'verify.json'}: "
          + ("verified" if result["passed"] else "NOT verified"))
    return 0 if result["passed"] else 1
