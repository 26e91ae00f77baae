"""Writes the CUDA execution provider's kernel registry as JSON (run where onnxruntime-gpu works).

Usage: python scripts/dump_cuda_kernel_registry.py OUT.json [--provider CUDAExecutionProvider]

The file lists, per (domain, op type), each kernel's opset range and the types each of its type
constraints accepts, read from `onnxruntime.capi._pybind_state.get_all_opkernel_def()`. amptune
ships such a file in tuner/data/ so that a CPU-only install still knows which operators the CUDA
EP can run in FP16 or BF16. This is the generator for a full onnxruntime-gpu install; where that
call crashes (a GPU bundle without the TensorRT provider library), build the file from
onnxruntime's docs/OperatorKernels.md with scripts/build_kernel_registry_from_docs.py.

The registry is read in a child interpreter, so a crash is reported instead of killing this one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from tuner._errors import MissingDependencyError
from tuner._kernel_registry import live_registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--provider", default="CUDAExecutionProvider")
    args = parser.parse_args(argv)
    try:
        registry = live_registry(args.provider)
    except MissingDependencyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    data = registry.to_dict()
    data["generated_by"] = "scripts/dump_cuda_kernel_registry.py"
    data["kernels"] = data.pop("kernels")  # keep the kernels last, as the other generator does
    with args.output.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")
    print(f"{len(registry.kernels)} op types for {registry.provider} ({registry.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
