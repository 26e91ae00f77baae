"""``amptune profile MODEL``: latency, telemetry, drift against FP32 and per-node time of one
candidate (the model itself, or the model converted by a precision plan), as a table and as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

from tuner._errors import AmptuneError


def _comma_list(text: str) -> frozenset[str]:
    return frozenset(item.strip() for item in text.split(",") if item.strip())


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="measure latency, GPU telemetry, drift against FP32 and per-node time of a model",
        description=(
            "Measure one candidate: the model as it is, or converted by a precision plan "
            "(--plan, --lower, --keep-fp32-*). Latency is timed with CUDA events on "
            "device-resident inputs (perf_counter on the CPU EP where there is no GPU); drift is "
            "measured against the FP32 model run with TF32 off, on the same inputs."
        ),
    )
    parser.add_argument("model", metavar="MODEL",
                        help="path to the FP32 .onnx file, or zoo:NAME for a real model shipped "
                        "by a PyPI package (ppocr-det, ppocr-rec, ppocr-cls, silero-vad, minilm)")
    plan = parser.add_argument_group("candidate (default: the model itself, in FP32)")
    plan.add_argument("--plan", metavar="PLAN.json", help="a precision plan as JSON")
    plan.add_argument("--lower", choices=["fp16", "bf16"], help="lower float type")
    plan.add_argument("--keep-fp32-op-types", type=_comma_list, metavar="A,B",
                      help="op types kept in FP32")
    plan.add_argument("--keep-fp32-nodes", type=_comma_list, metavar="N1,N2",
                      help="node names kept in FP32")
    plan.add_argument("--keep-io-types", action=argparse.BooleanOptionalAction, default=None,
                      help="keep graph inputs and outputs in their original types (default: keep)")
    run = parser.add_argument_group("how to run it")
    run.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                     help="where to measure (default: cuda when onnxruntime has the CUDA EP)")
    run.add_argument("--tf32", action="store_true",
                     help="let the candidate's FP32 nodes use TF32 (the reference never does)")
    run.add_argument("--cuda-graph", action="store_true",
                     help="time the candidate captured in a CUDA graph (enable_cuda_graph)")
    run.add_argument("--prefer-nhwc", action="store_true", help="CUDA EP option prefer_nhwc=1")
    run.add_argument("--min-measure-s", type=float, default=2.0, metavar="S",
                     help="measure for at least S seconds after warm-up (default 2; energy is "
                     "reported only over 2 s or more)")
    run.add_argument("--max-warmup-s", type=float, default=15.0, metavar="S",
                     help="give up waiting for stable timings after S seconds of warm-up "
                     "(default 15; the result then says it did not stabilise)")
    data = parser.add_argument_group("inputs")
    data.add_argument("--input", action="append", default=[], metavar="NAME=SHAPE[:DIST]",
                      help="fix an input's shape (and values: uniform(LOW,HIGH), normal(MEAN,STD), "
                      "int(LOW,HIGH)), e.g. x=8x3x640x640 or input_ids=1x128:int(0,30522); "
                      "repeat per input")
    data.add_argument("--data", metavar="PATH",
                      help="inputs from a .npz file, a folder of them, or module:function")
    data.add_argument("--samples", type=int, default=8, metavar="N",
                      help="synthetic samples for drift (default 8)")
    data.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    report = parser.add_argument_group("report")
    report.add_argument("--metric", action="append", default=[], metavar="module:function",
                        help="a user drift metric f(reference_outputs, candidate_outputs) -> "
                        "float (0 = identical); repeatable")
    report.add_argument("--relative-floor", type=float, default=None, metavar="F",
                        help="floor of |reference| in the max relative error (default 1e-3)")
    report.add_argument("--per-node", action="store_true",
                        help="also measure time per node and op type (CUPTI on the GPU)")
    report.add_argument("--top", type=int, default=10, metavar="N",
                        help="rows of the op-type and node tables (default 10)")
    report.add_argument("--json", metavar="OUT", help="write every measurement as JSON")
    parser.set_defaults(handler=run_profile)


def _plan_given(args: argparse.Namespace) -> bool:
    return bool(args.plan or args.lower or args.keep_fp32_op_types or args.keep_fp32_nodes
                or args.keep_io_types is not None)


def _device(args: argparse.Namespace) -> Literal["cuda", "cpu"]:
    from profilers import cuda_provider_available

    if args.device in ("cuda", "cpu"):
        return args.device  # type: ignore[no-any-return]
    if cuda_provider_available():
        return "cuda"
    print("amptune profile: no CUDA execution provider here: measuring on the CPU "
          "(every number below is a CPU measurement)", file=sys.stderr)
    return "cpu"


def _data_source(args: argparse.Namespace, model: Any) -> Any:
    from profilers import (
        SyntheticDataSource,
        data_source_from_argument,
        input_specs_for_model,
        parse_input_argument,
    )

    if args.data:
        if args.input:
            raise AmptuneError("--data and --input both give inputs; use one of them")
        return data_source_from_argument(args.data)
    texts = list(args.input)
    if args.model.startswith("zoo:"):
        # A zoo model has default shapes and value ranges; --input overrides them per input.
        from tuner._model_zoo import REAL_MODELS

        given = {text.partition("=")[0] for text in texts}
        entry = REAL_MODELS.get(args.model[len("zoo:"):])
        if entry is not None:
            texts += [t for t in entry.input_arguments() if t.partition("=")[0] not in given]
    specs = input_specs_for_model(model, [parse_input_argument(t) for t in texts])
    if args.samples < 1:
        raise AmptuneError(f"--samples must be >= 1, got {args.samples}")
    return SyntheticDataSource(specs, num_samples=args.samples, seed=args.seed)


def run_profile(args: argparse.Namespace) -> int:
    from profilers import (
        DEFAULT_RELATIVE_FLOOR,
        LatencyConfig,
        OnnxRuntimeProfiler,
        SessionConfig,
        UserMetric,
        graph_inputs,
        materialise_feeds,
        profile_candidate,
    )
    from tuner._cli_convert import plan_from_arguments
    from tuner._model_io import load_model
    from tuner._model_reference import resolve_model_argument

    if args.min_measure_s <= 0 or args.max_warmup_s <= 0:
        raise AmptuneError("--min-measure-s and --max-warmup-s must be > 0, got "
                           f"{args.min_measure_s} and {args.max_warmup_s}")
    device = _device(args)
    if device == "cpu" and (args.cuda_graph or args.tf32 or args.prefer_nhwc):
        raise AmptuneError("--cuda-graph, --tf32 and --prefer-nhwc apply to --device cuda only")
    model_path = resolve_model_argument(args.model)
    model = load_model(model_path)
    source = _data_source(args, model)
    feeds = materialise_feeds(source, graph_inputs(model))

    context: dict[str, Any] = {"model": str(model_path), "data": source.describe()}
    candidate = model
    if _plan_given(args):
        from tuner._convert import convert_precision

        plan = plan_from_arguments(args)
        conversion = convert_precision(model, plan)
        candidate = conversion.model
        context["plan"] = plan.to_dict()
        context["plan_digest"] = plan.digest()
        context["conversion"] = {"cast_count": conversion.report.cast_count,
                                 "summary": conversion.report.summary_lines()}
    else:
        context["plan"] = None

    profiler = OnnxRuntimeProfiler(
        SessionConfig(device=device, use_tf32=args.tf32, enable_cuda_graph=args.cuda_graph,
                      prefer_nhwc=args.prefer_nhwc),
        LatencyConfig(min_measure_s=args.min_measure_s, max_warmup_s=args.max_warmup_s,
                      min_warmup_s=min(1.0, args.max_warmup_s)),
        relative_floor=args.relative_floor or DEFAULT_RELATIVE_FLOOR,
        user_metrics=[UserMetric.from_target(target) for target in args.metric],
    )
    report = profile_candidate(profiler, model, candidate, feeds, per_node=args.per_node,
                               context=context)

    title = f"{model_path.name}: " + (
        f"plan {context['plan_digest']} ({context['plan']['lower']})" if context["plan"]
        else "FP32 as given")
    print(title)
    for section, rows in report.summary(top_nodes=args.top):
        print(f"\n{section}")
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            print(f"  {label.ljust(width)}  {value}")
    if report.warnings:
        print("\nwarnings")
        for warning in report.warnings:
            print(f"  - {warning}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 0
