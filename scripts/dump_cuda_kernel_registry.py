"""Writes the CUDA execution provider's kernel registry as JSON (run where onnxruntime-gpu works).

Usage: python scripts/dump_cuda_kernel_registry.py OUT.json

The file lists, per (domain, op type), each kernel's opset range and the types each of its type
constraints accepts. amptune ships the result in tuner/data/ so that a CPU-only install still
knows which operators the CUDA EP can run in FP16 or BF16.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def dump(provider: str = "CUDAExecutionProvider") -> dict:
    import onnxruntime
    from onnxruntime.capi import _pybind_state

    if hasattr(onnxruntime, "preload_dlls"):
        onnxruntime.preload_dlls()
    kernels: dict[str, list[dict]] = defaultdict(list)
    for kernel in _pybind_state.get_all_opkernel_def():
        if kernel.provider != provider:
            continue
        domain = kernel.domain or "ai.onnx"
        start, end = kernel.version_range
        constraints = {name: sorted(types) for name, types in kernel.type_constraints.items()}
        kernels[f"{domain}:{kernel.op_name}"].append(
            {"since": int(start), "until": int(end), "type_constraints": constraints}
        )
    for entries in kernels.values():
        entries.sort(key=lambda entry: (entry["since"], entry["until"]))
    return {
        "provider": provider,
        "onnxruntime_version": onnxruntime.__version__,
        "generated_by": "scripts/dump_cuda_kernel_registry.py",
        "kernels": dict(sorted(kernels.items())),
    }


if __name__ == "__main__":
    registry = dump()
    with open(sys.argv[1], "w") as handle:
        json.dump(registry, handle, indent=1, sort_keys=False)
    print(f"{len(registry['kernels'])} op types for {registry['provider']}")
