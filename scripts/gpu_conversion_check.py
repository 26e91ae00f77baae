"""On the GPU host: each real model, all-FP16 / mixed / all-BF16, run on the CUDA EP.

Prints, per model and plan: lowered nodes, Casts, nodes per provider, compute nodes on the CPU,
Memcpy nodes, and the max abs difference of the first output against FP32 (TF32 off), all on the
same inputs. Writes the table as JSON to the path given (default: gpu_conversion_check.json).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import onnx

from search_spaces import PrecisionPlan
from tests.tuner.test_convert_gpu import MODELS, mixed_plan
from tuner import convert_precision
from tuner._model_zoo import REAL_MODELS, real_model_path
from tuner._placement_check import cuda_placement


def main(out_path: str) -> None:
    rows = []
    for name in MODELS:
        model = onnx.load(str(real_model_path(name)))
        feeds = REAL_MODELS[name].sample_inputs(seed=0, batch=2)
        _, (reference, *_) = cuda_placement(model, feeds)
        plans = {"all-fp16": PrecisionPlan(), "mixed-fp16": mixed_plan(model),
                 "all-bf16": PrecisionPlan(lower="bf16")}
        for label, plan in plans.items():
            started = time.perf_counter()
            result = convert_precision(model, plan)
            convert_s = time.perf_counter() - started
            placement, (output, *_) = cuda_placement(result.model, feeds)
            counts = result.report.precision_counts()
            rows.append({
                "model": name, "plan": label, "convert_s": round(convert_s, 3),
                "lowered": counts.get(plan.lower, 0), "fp32": counts.get("fp32", 0),
                "casts": result.report.cast_count, "providers": placement.providers_count(),
                "cpu_compute_nodes": [n.name for n in placement.cpu_compute_nodes],
                "memcpy_nodes": len(placement.memcpy_nodes),
                "max_abs_diff_vs_fp32": float(np.abs(np.asarray(output, np.float32)
                                                     - np.asarray(reference, np.float32)).max()),
            })
    with open(out_path, "w") as handle:
        json.dump(rows, handle, indent=1)
    print(f"{'model':<11} {'plan':<10} {'lowered':>7} {'fp32':>5} {'casts':>5} "
          f"{'cpu-compute':>11} {'memcpy':>6} {'maxabs':>9}  providers")
    for row in rows:
        print(f"{row['model']:<11} {row['plan']:<10} {row['lowered']:>7} {row['fp32']:>5} "
              f"{row['casts']:>5} {len(row['cpu_compute_nodes']):>11} {row['memcpy_nodes']:>6} "
              f"{row['max_abs_diff_vs_fp32']:>9.4f}  {row['providers']}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gpu_conversion_check.json")
