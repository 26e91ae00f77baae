"""``amptune tune``: run a study (a study file, or a model and a few options) and export its results.

The steps, each reused from the module that owns it: resolve the study and the device
(:mod:`tuner._tune_setup`); load the model and materialise the inputs once; derive the model facts
from the all-lower conversion; open (or resume) the Optuna study; compute the FP32 reference once
(:class:`tuner._objective.StudyEvaluation`); run the sensitivity pass when the study searches
sensitive nodes (cached in the study); build and prepare the search space; enqueue the seed plans;
run the search with one progress line per trial; export (:func:`tuner._exports.export_study`) and
write the HTML report.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from tuner._errors import AmptuneError, MissingDependencyError
from tuner._tune_setup import TuneOverrides, TuneSetup, parse_data_kwarg

REPORT_FILE = "report.html"


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="search which operators must stay FP32, measuring latency and drift of each plan",
        description=(
            "Tune a model's operator precision: an Optuna multi-objective search over precision "
            "plans, each measured for drift against the FP32 reference (TF32 off, same inputs) and "
            "for latency (CUDA events; the CPU clock where there is no GPU, said in every output). "
            "Give a study file (--study) or a model. Rerunning the same command resumes the study."
        ),
    )
    parser.add_argument("model", metavar="MODEL", nargs="?",
                        help="the FP32 .onnx file, or zoo:NAME (ppocr-det, ppocr-rec, ppocr-cls, "
                        "silero-vad, minilm); not with --study")
    parser.add_argument("--study", metavar="STUDY.toml", help="a study file (see studies/README.md)")
    parser.add_argument("--out", metavar="DIR",
                        help="run directory: study.db, exports, report (default runs/STUDY_NAME)")
    budget = parser.add_argument_group("budget (overrides the study file's [budget])")
    budget.add_argument("--n-trials", type=int, metavar="N",
                        help="stop when the study holds N finished trials (earlier runs count)")
    budget.add_argument("--timeout", type=float, metavar="S", help="stop this run after S seconds")
    model = parser.add_argument_group("without a study file")
    model.add_argument("--input", action="append", default=[], metavar="NAME=SHAPE[:DIST]",
                       help="an input's shape and values, e.g. x=8x3x224x224 or "
                       "input_ids=1x128:int(0,30522); repeat per input")
    model.add_argument("--metric", metavar="M",
                       help="drift metric: max_abs mean_abs max_rel rel_l2 cosine snr_db "
                       "argmax_agreement thresholded_iou mean_pooled_cosine, or module:function "
                       "(default rel_l2)")
    model.add_argument("--tolerance", type=float, metavar="T",
                       help="largest drift a feasible plan may have (default 0.01)")
    model.add_argument("--threshold", type=float, metavar="X", help="thresholded_iou's threshold")
    model.add_argument("--metric-output", action="append", default=[], metavar="NAME",
                       help="output the metric is computed on (default: all, the worst counts)")
    model.add_argument("--samples", type=int, metavar="N",
                       help="synthetic input samples (default 8)")
    model.add_argument("--seed", type=int, help="seed of the inputs and the sampler (default 0)")
    model.add_argument("--spaces", type=_comma_list, default=None, metavar="A,B",
                       help="search spaces: op_types, lower_type, sensitive_nodes "
                       "(default op_types,lower_type)")
    model.add_argument("--lower-types", type=_comma_list, default=None, metavar="fp16,bf16",
                       help="lower float types searched (default fp16)")
    size = parser.add_argument_group("smaller runs (override the study's inputs)")
    size.add_argument("--batch", type=int, metavar="B", help="batch size of every input")
    size.add_argument("--max-samples", type=int, metavar="N", help="use only the first N samples")
    size.add_argument("--data-kwarg", action="append", default=[], metavar="KEY=VALUE",
                      help="a keyword of the study's data function, e.g. height=320; repeatable")
    size.add_argument("--max-groups", type=int, metavar="G",
                      help="at most G node groups in the sensitivity pass")
    run = parser.add_argument_group("how candidates run")
    run.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                     help="auto (default): the study's device if this machine has it, else the CPU")
    run.add_argument("--min-measure-s", type=float, metavar="S",
                     help="measure each candidate for at least S seconds (default 2)")
    run.add_argument("--max-warmup-s", type=float, metavar="S",
                     help="give up waiting for stable timings after S seconds (default 15)")
    parser.set_defaults(handler=run_tune)


def _overrides(args: argparse.Namespace) -> TuneOverrides:
    for name in ("n_trials", "batch", "max_groups"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise AmptuneError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.timeout is not None and args.timeout <= 0:
        raise AmptuneError(f"--timeout must be > 0 seconds, got {args.timeout}")
    return TuneOverrides(
        n_trials=args.n_trials, timeout_s=args.timeout, batch=args.batch,
        max_samples=args.max_samples, data_kwargs=dict(map(parse_data_kwarg, args.data_kwarg)),
        max_groups=args.max_groups, device=args.device, min_measure_s=args.min_measure_s,
        max_warmup_s=args.max_warmup_s,
    )


_MODEL_ONLY = ("input", "metric", "tolerance", "threshold", "metric_output", "samples", "seed",
               "spaces", "lower_types")
DEFAULT_METRIC, DEFAULT_TOLERANCE, DEFAULT_SAMPLES = "rel_l2", 0.01, 8


def _study_data_from_model(args: argparse.Namespace) -> dict[str, Any]:
    """The tables a study file would hold, from a model and the options that stand in for one."""
    from profilers import input_specs_for_model, parse_input_argument
    from tuner._model_io import load_model
    from tuner._model_reference import ZOO_PREFIX, resolve_model_argument

    path = resolve_model_argument(args.model)
    model = load_model(path)
    texts = list(args.input)
    if args.model.startswith(ZOO_PREFIX):  # a zoo model has default shapes; --input overrides
        from tuner._model_zoo import REAL_MODELS

        entry = REAL_MODELS.get(args.model[len(ZOO_PREFIX):])
        if entry is not None:
            defaults = {t.partition("=")[0]: t for t in entry.input_arguments()}
            # A shape given without values keeps the zoo's value range for that input.
            texts = [t if ":" in t or t.partition("=")[0] not in defaults
                     else f"{t}:{defaults[t.partition('=')[0]].partition(':')[2]}" for t in texts]
            given = {text.partition("=")[0] for text in texts}
            texts += [t for name, t in defaults.items() if name not in given]
    inputs: dict[str, Any] = {}
    for spec in input_specs_for_model(model, [parse_input_argument(t) for t in texts]):
        table: dict[str, Any] = {"shape": list(spec.shape), "dtype": spec.dtype,
                                 "distribution": spec.distribution}
        if spec.distribution == "normal":
            table.update(mean=spec.low, std=spec.high)
        else:
            table["range"] = [spec.low, spec.high]
        inputs[spec.name] = table
    metric: dict[str, Any] = {
        "name": args.metric or DEFAULT_METRIC,
        "tolerance": DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
    }
    if args.threshold is not None:
        metric["threshold"] = args.threshold
    if args.metric_output:
        metric["outputs"] = list(args.metric_output)
    search: dict[str, Any] = {}
    if args.spaces:
        search["spaces"] = args.spaces
    if args.lower_types:
        search["lower_types"] = args.lower_types
    stem = args.model[len(ZOO_PREFIX):] if args.model.startswith(ZOO_PREFIX) else Path(path).stem
    source = ({"zoo": args.model[len(ZOO_PREFIX):]} if args.model.startswith(ZOO_PREFIX)
              else {"path": str(Path(path).resolve())})
    return {
        "name": re.sub(r"[^\w.-]", "_", stem), "seed": args.seed or 0, "model": source,
        "inputs": inputs,
        "data": {"source": "synthetic", "n_samples": args.samples or DEFAULT_SAMPLES},
        "metric": metric, "search": search, "runtime": {"device": "cuda"},
    }


def setup_from_arguments(args: argparse.Namespace) -> TuneSetup:
    overrides = _overrides(args)
    if args.study:
        if args.model:
            raise AmptuneError("give a MODEL or --study, not both (the study file names its model)")
        given = [f"--{n.replace('_', '-')}" for n in _MODEL_ONLY
                 if getattr(args, n) not in (None, [])]
        if given:
            raise AmptuneError(f"{', '.join(given)} describe a study without a file; with --study, "
                               "edit the study file instead")
        import tomllib

        from tuner._study_config import load_study_config

        load_study_config(args.study)  # every field checked, as the file stands
        data = tomllib.loads(Path(args.study).read_text())
        return TuneSetup.create(data, args.study, overrides)
    if not args.model:
        raise AmptuneError("give a MODEL (.onnx file or zoo:NAME) or --study STUDY.toml")
    return TuneSetup.create(_study_data_from_model(args), None, overrides)


@dataclass(frozen=True)
class TuneResult:
    run_dir: Path
    outcome: Any  # tuner._study.StudyOutcome
    exports: Any  # tuner._exports.ExportResult, or None when nothing was feasible
    export_error: str | None
    report: Path | None  # None: plotly is not installed here
    wall_s: float


def run_tuning(setup: TuneSetup, run_dir: Path, *, log: TextIO | None = None) -> TuneResult:
    """The whole tuning run (see the module docstring); progress lines go to ``log``."""
    from profilers import OnnxRuntimeProfiler
    from search_spaces import ModelFacts, PrecisionPlan, seed_plans, sensitivity_ladder, tf32_twins
    from tuner import convert_precision
    from tuner._exports import export_study
    from tuner._model_io import load_model
    from tuner._objective import StudyEvaluation
    from tuner._report_data import report_data_for_study
    from tuner._report_render import write_report
    from tuner._study import TuningStudy, build_search_space
    from tuner._study_metric import StudyMetric
    from tuner._study_progress import TextProgress
    from tuner._tune_setup import (
        MANIFEST,
        feeds_sha256,
        file_sha256,
        record_run,
        write_manifest,
    )

    log = log if log is not None else sys.stderr
    started = time.monotonic()
    config = setup.config

    def say(text: str) -> None:
        log.write(f"amptune tune: {text}\n")
        log.flush()

    run_dir.mkdir(parents=True, exist_ok=True)
    model_path = setup.model_path()
    model = load_model(model_path)
    feeds = setup.feeds(model)
    model_digest, inputs_digest = file_sha256(Path(model_path)), feeds_sha256(feeds)
    metric = StudyMetric.from_config(config.metric, [o.name for o in model.graph.output])
    lower = config.search.lower_types[0]
    facts = ModelFacts.from_node_decisions(
        convert_precision(model, PrecisionPlan(lower=lower)).report.nodes  # type: ignore[arg-type]
    )
    say(f"study {config.name}: {model_path.name}, {len(facts.nodes)} nodes, "
        f"{len(facts.eligible_nodes)} may be lowered; {len(feeds)} input samples; metric "
        f"{metric.name} <= {config.metric.tolerance:g}")

    manifest = setup.to_manifest(Path(model_path), model_digest, inputs_digest)
    previous = run_dir / MANIFEST
    if previous.is_file():
        import json

        manifest["runs"] = json.loads(previous.read_text()).get("runs", [])
    context = {
        "device": setup.device, "cpu_measurement": setup.device == "cpu",
        "device_note": setup.device_note, "provider_options": setup.provider_options(),
        "model": str(model_path), "metric": metric.describe(), "latency": asdict(setup.latency),
    }
    study = TuningStudy.from_config(
        config, str(run_dir), fingerprint=setup.fingerprint(model_digest, inputs_digest),
        context=context,
    )
    write_manifest(run_dir, manifest)

    profiler = OnnxRuntimeProfiler(setup.session, setup.latency, relative_floor=1e-3,
                                   user_metrics=metric.user_metrics)
    evaluation = StudyEvaluation(model, feeds, profiler, metric)
    reference = evaluation.reference.describe()
    say(f"FP32 reference on {reference['device']}"
        + (" with TF32 off" if reference["tf32_disabled"] else "") + f", {len(feeds)} samples")

    ranking = None
    if "sensitive_nodes" in config.search.spaces:
        ranking = study.cached_sensitivity(lower)
        if ranking is not None:
            say(f"sensitivity ranking: cached in the study ({len(ranking.entries)} entries)")
        else:
            shares, how = evaluation.time_share(facts, lower)
            say("sensitivity pass: relative L2 error of the metric's outputs when each node "
                f"group alone is lowered; {how}")

            def entry_line(index: int, total: int, entry: Any) -> None:
                say(f"  sensitivity {index + 1}/{total}: {entry.label}: rel-L2 {entry.drift:.4g}, "
                    f"time share {entry.time_share:.2%}")

            ranking = study.sensitivity(
                facts, evaluation.drift_of, time_share=shares, lower=lower,
                max_groups=config.search.sensitivity_max_groups, metric=metric.name,
                on_entry=entry_line,
            )
    search = config.search
    if setup.device != "cuda" and "tf32" in search.spaces:
        search = replace(search, spaces=tuple(s for s in search.spaces if s != "tf32"))
        say("the tf32 space is left out: TF32 exists on the GPU only")
    space = build_search_space(search, ranking)
    space.prepare(facts)
    plans = seed_plans(facts, lower, names=config.search.seeds,
                       keep_io_types=config.search.keep_io_types)
    ladder = sensitivity_ladder(space, lower, keep_io_types=config.search.keep_io_types)
    twins = []
    if "tf32" in search.spaces:  # the TF32 baseline, and the ladder with TF32 FP32 parts
        twins = tf32_twins([p for p in plans if p.name == "all_fp32"] + ladder)
    seeds = study.enqueue_seeds(space, [*plans, *ladder, *twins])
    if seeds:
        say(f"seed plans enqueued: {', '.join(seeds)}")
    budget = config.budget
    say(f"searching ({'; '.join(_budget_words(budget))}); one line per trial")
    outcome = study.run(space, evaluation, n_trials=budget.n_trials, timeout_s=budget.timeout_s,
                        progress=TextProgress(log))

    exports, export_error = None, None
    try:
        exports = export_study(study.study, run_dir, model=model)
    except AmptuneError as error:
        export_error = str(error)
    (run_dir / "verify.json").unlink(missing_ok=True)  # it described the previous export
    report: Path | None = None
    try:
        report = write_report(report_data_for_study(study.study), run_dir / REPORT_FILE)
    except MissingDependencyError as error:  # the exports stand without the HTML report
        say(f"report skipped: {error}")
    wall_s = time.monotonic() - started
    record_run(manifest, {"wall_s": round(wall_s, 2), "n_trials": budget.n_trials,
                          "timeout_s": budget.timeout_s, **asdict(outcome),
                          "recommended_trial": exports.recommended.number if exports else None})
    write_manifest(run_dir, manifest)
    return TuneResult(run_dir, outcome, exports, export_error, report, wall_s)


def _budget_words(budget: Any) -> list[str]:
    words = []
    if budget.n_trials is not None:
        words.append(f"until {budget.n_trials} trials")
    if budget.timeout_s is not None:
        words.append(f"at most {budget.timeout_s:g} s")
    return words


def print_summary(setup: TuneSetup, result: TuneResult, out: TextIO) -> None:
    outcome = result.outcome
    cpu = setup.device == "cpu"
    out.write(f"study {setup.config.name}: {outcome.finished} trials in the study; this run "
              f"measured {outcome.measured}, reused {outcome.reused}, rejected {outcome.rejected}, "
              f"failed {outcome.failed} in {result.wall_s:.0f} s ({outcome.stopped_because})\n")
    if cpu:
        out.write(f"CPU MEASUREMENT: {setup.device_note}\n")
    if result.exports is None:
        out.write(f"no recommendation: {result.export_error}\n")
    else:
        from tuner._study_progress import describe_plan

        chosen = result.exports.recommended
        out.write(f"recommended: trial #{chosen.number}, median latency {chosen.latency_ms:.4g} ms"
                  f"{' (CPU)' if cpu else ''}, drift {chosen.drift:.4g} "
                  f"(tolerance {setup.config.metric.tolerance:g}); "
                  f"{describe_plan(chosen.plan) if chosen.plan else 'all FP32'}\n")
    out.write(f"results in {result.run_dir}/: " + ", ".join(
        sorted(result.exports.files) if result.exports else [])
        + (f", {REPORT_FILE}" if result.report else " (no HTML report: plotly is missing)")
        + ", run.json, study.db\n")
    if result.exports is not None:
        out.write(f"check the export in a fresh process: amptune verify {result.run_dir}\n")
    out.flush()


def run_tune(args: argparse.Namespace) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress lines say what matters
    setup = setup_from_arguments(args)
    if setup.device_note:
        print(f"amptune tune: {setup.device_note}", file=sys.stderr, flush=True)
    run_dir = Path(args.out) if args.out else Path("runs") / setup.config.name
    result = run_tuning(setup, run_dir)
    print_summary(setup, result, sys.stdout)
    return 0 if result.exports is not None else 1
