"""amptune's all-FP16 conversion against onnxruntime's own float16 converter, on one real model.

For each candidate: latency (CUDA events, device-resident inputs), drift against FP32 (TF32 off),
and GPU time per op type (CUPTI), so that a difference in speed can be traced to the op types that
cause it. Runs on the CPU EP where there is no GPU (then per-op times are host times).

Usage: python benchmarks/compare_converters.py [zoo name, default ppocr-det] [--batch N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np
import onnx

from profilers import OnnxRuntimeProfiler, SessionConfig, cuda_provider_available
from profilers._profile_report import profile_candidate
from search_spaces import PrecisionPlan
from tuner import REAL_MODELS, convert_precision, real_model_path
from tuner._text_images import rendered_text_images


def onnxruntime_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True)


def candidates(model: onnx.ModelProto) -> dict[str, Callable[[], onnx.ModelProto]]:
    return {
        "amptune all-fp16": lambda: convert_precision(model, PrecisionPlan()).model,
        "onnxruntime float16 (default block list)": lambda: onnxruntime_float16(model),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="ppocr-det", choices=sorted(REAL_MODELS))
    parser.add_argument("--model-file", help="the model's .onnx file, where its package is not "
                        "installed (the GPU host)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    model = onnx.load(args.model_file or str(real_model_path(args.model)))
    if args.model == "ppocr-det":
        feeds = rendered_text_images(batch=args.batch, height=640, width=640, n_batches=2)
    else:
        feeds = [REAL_MODELS[args.model].sample_inputs(seed=0, batch=args.batch)]
    device = "cuda" if cuda_provider_available() else "cpu"
    profiler = OnnxRuntimeProfiler(SessionConfig(device=device, use_tf32=False))
    reference = profiler.reference_outputs(model, feeds)
    rows, op_times = [], {}
    for label, build in candidates(model).items():
        candidate = build()
        report = profile_candidate(profiler, model, candidate, feeds, per_node=True,
                                   reference=reference)
        name = next(iter(reference.outputs[0]))
        masks = [(np.asarray(r[name]) > 0.3, np.asarray(c[name]) > 0.3)
                 for r, c in zip(reference.outputs, report.drift.candidate_outputs)]
        union = sum(int((a | b).sum()) for a, b in masks)
        iou = sum(int((a & b).sum()) for a, b in masks) / union if union else 1.0
        max_abs = max(float(np.abs(np.asarray(r[name], np.float32)
                                   - np.asarray(c[name], np.float32)).max())
                      for r, c in zip(reference.outputs, report.drift.candidate_outputs))
        casts = sum(n.op_type == "Cast" for n in candidate.graph.node)
        stats = report.latency.latency.stats
        rows.append({"candidate": label, "median_ms": stats.median_ms, "cv": stats.cv,
                     "one_minus_iou_at_0.3": 1 - iou, "max_abs": max_abs, "casts": casts})
        op_times[label] = {t.op_type: t.time_ms for t in report.per_node.op_types} \
            if report.per_node else {}
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"device": device, "rows": rows, "op_type_ms": op_times}, handle, indent=1)
    print(f"device: {device}; model {args.model}, batch {args.batch}")
    for row in rows:
        print(f"{row['candidate']:<42} {row['median_ms']:8.3f} ms  cv {row['cv']:.3%}  "
              f"1-IoU {row['one_minus_iou_at_0.3']:.4f}  max|d| {row['max_abs']:.3f}  "
              f"casts {row['casts']}")
    labels = list(op_times)
    ops = sorted({op for times in op_times.values() for op in times},
                 key=lambda op: -max(times.get(op, 0.0) for times in op_times.values()))
    print(f"\n{'op type':<22}" + "".join(f"{label[:24]:>26}" for label in labels))
    for op in ops[:15]:
        print(f"{op:<22}" + "".join(f"{op_times[label].get(op, 0.0):>23.3f} ms" for label in labels))


if __name__ == "__main__":
    main()
