"""``amptune convert MODEL -o OUT``: apply a precision plan and write the mixed-precision model."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tuner._errors import AmptuneError


def _comma_list(text: str) -> frozenset[str]:
    return frozenset(item.strip() for item in text.split(",") if item.strip())


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an FP32 model to mixed FP16/BF16 following a precision plan",
        description=(
            "Convert an FP32 ONNX model so that the nodes a precision plan allows run in FP16 or "
            "BF16. Operators without a lower-precision CUDA kernel, nodes reading weights beyond "
            "the lower type's range, and what the plan names stay FP32; the report says why for "
            "every node. Options given on the command line override those of --plan."
        ),
    )
    parser.add_argument("model", metavar="MODEL",
                        help="path to the FP32 .onnx file, or zoo:NAME for a real model shipped "
                        "by a PyPI package (ppocr-det, ppocr-rec, ppocr-cls, silero-vad, minilm)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="where to write the converted .onnx file")
    parser.add_argument("--lower", choices=["fp16", "bf16"], help="lower float type (default fp16)")
    parser.add_argument("--keep-fp32-op-types", type=_comma_list, metavar="A,B",
                        help="op types kept in FP32, e.g. Softmax,LayerNormalization")
    parser.add_argument("--keep-fp32-nodes", type=_comma_list, metavar="N1,N2",
                        help="node names kept in FP32")
    parser.add_argument("--plan", metavar="PLAN.json",
                        help="a precision plan as JSON (fields: lower, keep_fp32_op_types, "
                        "keep_fp32_nodes, keep_io_types)")
    parser.add_argument("--keep-io-types", action=argparse.BooleanOptionalAction, default=None,
                        help="keep graph inputs and outputs in their original types (default: keep)")
    parser.add_argument("--clamp-out-of-range", action="store_true",
                        help="clamp weight values beyond the lower type's range instead of keeping "
                        "their readers in FP32 (each clamped value is reported)")
    parser.add_argument("--kernel-additions", metavar="KERNELS.json",
                        help="CUDA EP kernels to add to amptune's shipped list (same format as "
                        "tuner/data/cuda_ep_kernels.json); they add types, never remove any")
    parser.add_argument("--report", metavar="REPORT.json",
                        help="write the full conversion report (every node's decision) as JSON")
    parser.set_defaults(handler=run_convert)


def plan_from_arguments(args: argparse.Namespace):
    from search_spaces import PlanValidationError, PrecisionPlan

    try:
        base = PrecisionPlan.from_json_file(args.plan) if args.plan else PrecisionPlan()
        fields = base.to_dict()
        if args.lower:
            fields["lower"] = args.lower
        if args.keep_fp32_op_types:
            fields["keep_fp32_op_types"] = sorted(set(fields["keep_fp32_op_types"])
                                                  | args.keep_fp32_op_types)
        if args.keep_fp32_nodes:
            fields["keep_fp32_nodes"] = sorted(set(fields["keep_fp32_nodes"])
                                               | args.keep_fp32_nodes)
        if args.keep_io_types is not None:
            fields["keep_io_types"] = args.keep_io_types
        return PrecisionPlan.from_dict(fields)
    except PlanValidationError as error:
        raise AmptuneError(str(error)) from None


def run_convert(args: argparse.Namespace) -> int:
    from tuner._convert import ConversionOptions, convert_precision
    from tuner._model_io import load_model, save_model
    from tuner._model_reference import resolve_model_argument

    plan = plan_from_arguments(args)
    model_path = resolve_model_argument(args.model)
    output = Path(args.output)
    if output.resolve() == model_path.resolve():
        raise AmptuneError(f"--output {args.output!r} is the input model; choose another path")
    started = time.perf_counter()
    model = load_model(model_path)
    registry = None
    if args.kernel_additions:
        from tuner._kernel_registry import KernelRegistry

        registry = KernelRegistry.default().with_additions(Path(args.kernel_additions))
    result = convert_precision(model, plan, ConversionOptions(
        clamp_out_of_range=args.clamp_out_of_range, registry=registry))
    save_model(result.model, output)
    if any("checker skipped" in warning for warning in result.report.warnings):
        from tuner._errors import PassError
        from tuner._model_io import check_model_file

        try:
            check_model_file(output)
        except AmptuneError as error:
            raise PassError(f"the converted model fails onnx.checker: {error}") from error
    elapsed = time.perf_counter() - started
    print(f"wrote {output} ({plan.lower}, plan {plan.digest()}) in {elapsed:.2f} s")
    for line in result.report.summary_lines():
        print(f"  {line}")
    if args.report:
        report = {"model": str(model_path), "output": str(output), "plan": plan.to_dict(),
                  **result.report.to_dict()}
        Path(args.report).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        print(f"  report: {args.report}")
    sys.stdout.flush()
    return 0
