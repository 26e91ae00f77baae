"""Checks tuner/data/cuda_ep_kernels.json against onnxruntime-gpu on a real GPU.

For each (op type, opset) that the suite's real models use (PP-OCRv4 det/rec/cls from
rapidocr-onnxruntime, silero-vad, and the ops of all-MiniLM-L6-v2 at opset 18), it builds a
one-node model in code whose floating-point inputs are FP32, FP16 or BF16 (graph inputs stay FP32
and are cast inside, so no ml_dtypes is needed), runs it on CUDAExecutionProvider + CPU with
graph optimizations off, and reads where the node ran from ORT's profile (`args.provider` of its
Node event). It also creates the session once more with `session.disable_cpu_ep_fallback=1`,
which fails if any node lands on the CPU. Then it prints, per op: does the data say FP16 / BF16
is lowerable, where did it run, and where the two disagree.

It also calls `get_all_opkernel_def()` in a subprocess and says whether it crashed; where it
works, the live registry and its differences from the data are written under --out.

Usage (GPU host): python scripts/check_kernel_registry_live.py [--out DIR] [--model M.onnx ...]
    [--cases results.json]   (the op list of an earlier run, where the model packages are absent)
Exit status: 0 agreement, 1 disagreements, 2 CUDA unavailable (only the data columns printed).
`--builders-on-cpu` runs every one-node model on the CPU EP instead, to check the builders on a
machine without a GPU (its placements say nothing about the CUDA data).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, defs, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from tuner._errors import MissingDependencyError
from tuner._kernel_registry import KernelRegistry, live_registry, registry_differences
from tuner._tensor_types import iterate_graphs

SUITE_MODELS = (
    ("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
    ("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
    ("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    ("silero-vad", "silero_vad/data/silero_vad.onnx"),
)
# all-MiniLM-L6-v2 exported by torch at opset 18 (eager attention); not shipped as ONNX.
MINILM = ("all-MiniLM-L6-v2", 18, (
    "MatMul", "LayerNormalization", "Softmax", "Erf", "Gather", "Add", "Mul", "Div", "Sub", "Pow",
    "Sqrt", "ReduceMean", "Tanh", "Where", "Expand", "Cast", "Reshape", "Transpose", "Unsqueeze",
    "Concat", "Slice", "Shape"))
LOWER = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
SKIPPED = {"Constant": "no kernel: ORT turns Constant nodes into initializers"}
CUDA = "CUDAExecutionProvider"
_OUR_CASTS = re.compile(r"^(in|outer|out)\d+_cast_")  # profile names of the casts around "target"


@dataclass(frozen=True)
class Data:
    """A floating-point input: FP32, or the lower type where the ONNX schema allows it."""

    shape: tuple[int, ...]


@dataclass(frozen=True)
class Fixed:
    """An initializer with its own type (indices, shapes, axes, scales, conditions)."""

    value: np.ndarray


@dataclass
class OneNode:
    inputs: list[Data | Fixed | None]  # None: an omitted optional input
    attributes: dict = field(default_factory=dict)
    outputs: int = 1
    # Attributes that depend on the chosen type: (decide(type_str) -> elem type, outer names).
    typed_attributes: Callable[[Callable[[str], int], list[str]], dict] | None = None
    outer: list[tuple[Data, str]] = field(default_factory=list)  # values subgraphs read


def i64(*values: int) -> Fixed:
    return Fixed(np.array(values, dtype=np.int64))


def _unary(opset: int) -> OneNode:
    return OneNode([Data((2, 4, 8, 8))])


def _binary(opset: int) -> OneNode:
    return OneNode([Data((2, 4, 8, 8)), Data((2, 4, 8, 8))])


def _axes(op_input_since: int, opset: int, data: Data, axes: tuple[int, ...], **attrs) -> OneNode:
    if opset >= op_input_since:
        return OneNode([data, i64(*axes)], attrs)
    return OneNode([data], {"axes": list(axes), **attrs})


def _if(opset: int) -> OneNode:
    def branches(decide: Callable[[str], int], outer: list[str]) -> dict:
        def branch(tag: str) -> onnx.GraphProto:
            out = helper.make_tensor_value_info(f"{tag}_out", decide("V"), None)
            node = helper.make_node("Identity", [outer[0]], [f"{tag}_out"], name=f"{tag}_id")
            return helper.make_graph([node], tag, [], [out])
        return {"then_branch": branch("then"), "else_branch": branch("else")}
    return OneNode([Fixed(np.array(True))], typed_attributes=branches, outer=[(Data((3, 4)), "V")])


def _constant_of_shape(opset: int) -> OneNode:
    def value(decide: Callable[[str], int], outer: list[str]) -> dict:
        return {"value": helper.make_tensor("value", decide("T2"), [1], [1.0])}
    return OneNode([i64(3, 4)], typed_attributes=value)


BUILDERS: dict[str, Callable[[int], OneNode]] = {
    **{op: _unary for op in ("Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "HardSigmoid", "Identity",
                              "Abs", "Exp", "Log", "Neg", "Reciprocal", "Floor", "Ceil")},
    **{op: _binary for op in ("Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater")},
    "Softmax": lambda o: OneNode([Data((2, 4, 8))], {"axis": -1}),
    "MatMul": lambda o: OneNode([Data((2, 8, 16)), Data((16, 8))]),
    "Gemm": lambda o: OneNode([Data((4, 8)), Data((8, 16)), Data((16,))]),
    "Conv": lambda o: OneNode([Data((1, 4, 8, 8)), Data((8, 4, 3, 3)), Data((8,))],
                              {"pads": [1, 1, 1, 1]}),
    "ConvTranspose": lambda o: OneNode([Data((1, 4, 8, 8)), Data((4, 8, 2, 2)), Data((8,))],
                                       {"strides": [2, 2]}),
    "BatchNormalization": lambda o: OneNode([Data((1, 4, 8, 8))] + [Data((4,))] * 4),
    "GlobalAveragePool": lambda o: OneNode([Data((1, 4, 8, 8))]),
    "MaxPool": lambda o: OneNode([Data((1, 4, 8, 8))], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "AveragePool": lambda o: OneNode([Data((1, 4, 8, 8))],
                                     {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "Clip": lambda o: (OneNode([Data((2, 4, 8, 8)), Data(()), Data(())]) if o >= 11
                       else OneNode([Data((2, 4, 8, 8))], {"min": 0.0, "max": 6.0})),
    "LayerNormalization": lambda o: OneNode([Data((2, 3, 8)), Data((8,)), Data((8,))],
                                            {"axis": -1}),
    "Concat": lambda o: OneNode([Data((2, 3)), Data((2, 3))], {"axis": 0}),
    "Reshape": lambda o: OneNode([Data((2, 12)), i64(4, 6)]),
    "Transpose": lambda o: OneNode([Data((2, 3, 4))], {"perm": [2, 0, 1]}),
    "Shape": lambda o: OneNode([Data((2, 3))]),
    "Size": lambda o: OneNode([Data((2, 3))]),
    "Slice": lambda o: (OneNode([Data((4, 6)), i64(0), i64(2), i64(0)]) if o >= 10
                        else OneNode([Data((4, 6))], {"starts": [0], "ends": [2], "axes": [0]})),
    "Squeeze": lambda o: _axes(13, o, Data((1, 3, 1, 4)), (0,)),
    "Unsqueeze": lambda o: _axes(13, o, Data((3, 4)), (0,)),
    "ReduceMean": lambda o: _axes(18, o, Data((2, 3, 4)), (1,), keepdims=1),
    "Gather": lambda o: OneNode([Data((5, 4)), i64(0, 2, 4)], {"axis": 0}),
    "Expand": lambda o: OneNode([Data((1, 4)), i64(3, 4)]),
    "Where": lambda o: OneNode([Fixed(np.eye(3, 4, dtype=bool)), Data((3, 4)), Data((3, 4))]),
    "Cast": lambda o: OneNode([Data((3, 4))], {"to": TensorProto.FLOAT}),
    "Pad": lambda o: (OneNode([Data((2, 3)), i64(0, 1, 0, 1)]) if o >= 11
                      else OneNode([Data((2, 3))], {"pads": [0, 1, 0, 1]})),
    "Resize": lambda o: OneNode(
        [Data((1, 2, 4, 4)), Fixed(np.array([], np.float32)) if o < 13 else None,
         Fixed(np.array([1, 1, 2, 2], np.float32))], {"mode": "nearest"}),
    "Split": lambda o: (OneNode([Data((4, 6)), i64(2, 2)], {"axis": 0}, outputs=2) if o >= 13
                        else OneNode([Data((4, 6))], {"axis": 0, "split": [2, 2]}, outputs=2)),
    "LSTM": lambda o: OneNode([Data((3, 2, 4)), Data((1, 20, 4)), Data((1, 20, 5)),
                               Data((1, 40))], {"hidden_size": 5}),
    "If": _if,
    "ConstantOfShape": _constant_of_shape,
    "Not": lambda o: OneNode([Fixed(np.eye(3, 4, dtype=bool))]),
}


def suite_cases(extra_models: list[Path]) -> tuple[dict[tuple[str, str, int], set[str]], list[str]]:
    """(domain, op type, opset) -> the models that use it; and the models that were not found."""
    cases: dict[tuple[str, str, int], set[str]] = {}
    missing: list[str] = []
    paths: list[tuple[str, Path]] = []
    for dist, relative in SUITE_MODELS:
        try:
            paths.append((Path(relative).stem, Path(
                importlib.metadata.distribution(dist).locate_file(relative))))
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{relative} ({dist} not installed)")
    paths += [(path.stem, path) for path in extra_models]
    for label, path in paths:
        if not path.is_file():
            missing.append(str(path))
            continue
        model = onnx.load(str(path), load_external_data=False)
        opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
        for node in (node for graph in iterate_graphs(model.graph) for node in graph.node):
            domain = node.domain or "ai.onnx"
            cases.setdefault((domain, node.op_type, opsets.get(domain, 1)), set()).add(label)
    label, opset, op_types = MINILM
    for op_type in op_types:
        cases.setdefault(("ai.onnx", op_type, opset), set()).add(label)
    return cases, missing


def build_one_node_model(domain: str, op_type: str, opset: int, case: OneNode, lower: int,
                         rng: np.random.Generator) -> tuple[onnx.ModelProto, dict, bool]:
    """The model, its FP32 feeds, and whether any input or output of the node is `lower`."""
    schema = defs.get_schema(op_type, opset, "" if domain == "ai.onnx" else domain)
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    lower_name = helper.tensor_dtype_to_string(lower).removeprefix("TensorProto.").lower()
    lower_str = {"float16": "tensor(float16)", "bfloat16": "tensor(bfloat16)"}.get(
        lower_name, "tensor(float)")

    def decide(type_str: str) -> int:
        return lower if lower_str in allowed.get(type_str, {type_str}) else TensorProto.FLOAT

    nodes, graph_inputs, initializers, feeds = [], [], [], {}

    def data_input(name: str, data: Data, type_str: str) -> str:
        graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, data.shape))
        feeds[name] = rng.uniform(0.5, 1.5, data.shape).astype(np.float32)
        elem = decide(type_str)
        if elem == TensorProto.FLOAT:
            return name
        nodes.append(helper.make_node("Cast", [name], [f"{name}_in"], to=elem, name=f"{name}_cast"))
        return f"{name}_in"

    node_inputs = []
    for index, spec in enumerate(case.inputs):
        formal = schema.inputs[min(index, len(schema.inputs) - 1)]
        if spec is None:
            node_inputs.append("")
        elif isinstance(spec, Fixed):
            initializers.append(numpy_helper.from_array(spec.value, f"in{index}"))
            node_inputs.append(f"in{index}")
        else:
            node_inputs.append(data_input(f"in{index}", spec, formal.type_str))
    outer = [data_input(f"outer{i}", data, type_str) for i, (data, type_str) in
             enumerate(case.outer)]
    attributes = dict(case.attributes)
    if case.typed_attributes:
        attributes.update(case.typed_attributes(decide, outer))
    outputs = [f"out{j}" for j in range(case.outputs)]
    nodes.append(helper.make_node(op_type, node_inputs, outputs, name="target",
                                  domain="" if domain == "ai.onnx" else domain, **attributes))
    opset_imports = [helper.make_opsetid("", opset if domain == "ai.onnx" else 17)]
    if domain != "ai.onnx":
        opset_imports.append(helper.make_opsetid(domain, opset))
    probe = helper.make_model(helper.make_graph(
        nodes, "probe", graph_inputs, [helper.make_empty_tensor_value_info(o) for o in outputs],
        initializers), opset_imports=opset_imports)
    probe.ir_version = 10
    inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=True)
    infos = {v.name: v.type.tensor_type
             for v in [*inferred.graph.value_info, *inferred.graph.output, *graph_inputs]}
    lowered = any(name in infos and infos[name].elem_type == lower
                  for name in [*node_inputs, *outer, *outputs])
    graph_outputs = []
    for name in outputs:
        elem = infos[name].elem_type
        shape = [d.dim_param or d.dim_value for d in infos[name].shape.dim]
        if elem in (TensorProto.FLOAT16, TensorProto.BFLOAT16):
            nodes.append(helper.make_node("Cast", [name], [f"{name}_f32"], to=TensorProto.FLOAT,
                                          name=f"{name}_cast"))
            name, elem = f"{name}_f32", TensorProto.FLOAT
        graph_outputs.append(helper.make_tensor_value_info(name, elem, shape))
    model = helper.make_model(helper.make_graph(nodes, f"{op_type}_{opset}", graph_inputs,
                                                graph_outputs, initializers),
                              opset_imports=opset_imports)
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model, feeds, lowered


def run_placement(ort, model: onnx.ModelProto, feeds: dict, op_type: str, workdir: str,
                  provider: str = CUDA) -> dict:
    """Where the node named "target" ran, from ORT's profile, and whether strict mode accepts it."""
    data = model.SerializeToString()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(workdir, f"{op_type}_profile")
    result: dict = {}
    providers = list(dict.fromkeys([provider, "CPUExecutionProvider"]))
    try:
        session = ort.InferenceSession(data, options, providers=providers)
        session.run(None, feeds)
        profile = Path(session.end_profiling())
        events = json.loads(profile.read_text())
        profile.unlink()
        placed = [(event["name"], event["args"]["provider"]) for event in events
                  if event.get("cat") == "Node" and "provider" in event.get("args", {})]
        target = sorted({where for name, where in placed if name.startswith("target_")})
        # No "target" event: ORT had no kernel and inlined the op's ONNX function body.
        inlined = sorted({where for name, where in placed
                          if not name.startswith("target_") and not _OUR_CASTS.match(name)})
        result["provider"] = (",".join(target) if target
                              else "inlined on " + ",".join(inlined or ["?"]))
    except Exception as error:  # noqa: BLE001 - an unsupported type is an answer here, not a crash
        result["provider"] = None
        result["error"] = str(error).strip().splitlines()[0][:200]
    if provider == "CPUExecutionProvider":
        return result
    # ORT refuses this option when the CPU EP is listed explicitly: name only the provider.
    strict = ort.SessionOptions()
    strict.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    strict.log_severity_level = 4
    strict.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        ort.InferenceSession(data, strict, providers=[provider])
        result["strict_ok"] = True
    except Exception:  # noqa: BLE001 - any refusal means "not without the CPU EP"
        result["strict_ok"] = False
    return result


def data_says(registry: KernelRegistry, key: tuple[str, str, int], lower: str) -> str:
    constraints = registry.lowerable_constraints(*key, lower)
    if constraints is None:
        return "no kernel"
    return f"yes ({','.join(sorted(constraints))})" if constraints else "no"


def check_get_all_opkernel_def(registry: KernelRegistry, out: Path | None) -> str:
    try:
        live = live_registry(registry.provider)
    except MissingDependencyError as error:
        return f"unusable: {error}"
    differences = registry_differences(registry, live)
    if out:
        (out / "live_cuda_ep_kernels.json").write_text(json.dumps(live.to_dict(), indent=1))
        (out / "live_differences.txt").write_text("\n".join(differences) + "\n")
    return f"works ({live.source}); {len(differences)} differences from the data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for results.json and the live registry")
    parser.add_argument("--model", type=Path, action="append", default=[],
                        help="another ONNX model whose op types to check")
    parser.add_argument("--cases", type=Path,
                        help="results.json of an earlier run: check its (op, opset) pairs too")
    parser.add_argument("--builders-on-cpu", action="store_true",
                        help="run the one-node models on the CPU EP (checks the builders only)")
    args = parser.parse_args(argv)
    target = "CPUExecutionProvider" if args.builders_on_cpu else CUDA
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    registry = KernelRegistry.default()
    cases, missing = suite_cases(args.model)
    if args.cases:
        for row in json.loads(args.cases.read_text())["rows"]:
            key = (row["domain"], row["op"], int(row["opset"]))
            cases.setdefault(key, set()).update(row["models"])
    print(f"kernel data: {registry.source}")
    for name in missing:
        print(f"model not found, its op types not checked: {name}")
    print(f"get_all_opkernel_def(): {check_get_all_opkernel_def(registry, args.out)}")

    cuda_problem = None
    try:
        import onnxruntime as ort
    except ImportError:
        ort, cuda_problem = None, "onnxruntime is not installed"
    if ort is not None:
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        if target not in ort.get_available_providers():
            cuda_problem = (f"onnxruntime {ort.__version__} has no {target} "
                            f"(providers: {', '.join(ort.get_available_providers())})")
        else:
            print(f"onnxruntime {ort.__version__}; GPU: {_gpu_name()}")

    rows, rng = [], np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as workdir:
        for key in sorted(cases, key=lambda k: (k[1], k[2], k[0])):
            domain, op_type, opset = key
            row = {"domain": domain, "op": op_type, "opset": opset,
                   "models": sorted(cases[key]), "live": {}, "disagreements": []}
            for lower in LOWER:
                row[f"data_{lower}"] = data_says(registry, key, lower)
            rows.append(row)
            if op_type in SKIPPED or op_type not in BUILDERS:
                row["note"] = SKIPPED.get(op_type, "no one-node builder for this op type")
                continue
            if cuda_problem:
                continue
            for label, elem in (("fp32", TensorProto.FLOAT), *LOWER.items()):
                try:
                    model, feeds, lowered = build_one_node_model(
                        domain, op_type, opset, BUILDERS[op_type](opset), elem, rng)
                except Exception as error:  # noqa: BLE001 - a builder that does not fit this opset
                    row["live"][label] = {"error": f"builder: {error}"[:200]}
                    continue
                if label != "fp32" and not lowered:
                    row["live"][label] = {"provider": f"n/a: ONNX {op_type}-{opset} has no {label}"}
                    continue
                row["live"][label] = run_placement(ort, model, feeds, op_type, workdir, target)
            if target == CUDA:
                row["disagreements"] = _disagreements(row)
            elif any("builder" in live.get("error", "") for live in row["live"].values()):
                row["disagreements"] = ["builder failed"]

    print()
    _print_table(rows, cuda_problem)
    if args.out:
        (args.out / "results.json").write_text(json.dumps(
            {"data_source": registry.source, "cuda_problem": cuda_problem, "rows": rows},
            indent=1))
    if cuda_problem:
        print(f"\nCUDA is unavailable: {cuda_problem}. Live placement was not checked.")
        return 2
    if target != CUDA:
        failed = [row for row in rows if row["disagreements"]]
        print(f"\nbuilders checked on {target}: {len(failed)} failed")
        return 1 if failed else 0
    disagreeing = [row for row in rows if row["disagreements"]]
    print(f"\n{len(rows)} (op, opset) pairs, {len(disagreeing)} with disagreements")
    return 1 if disagreeing else 0


def _disagreements(row: dict) -> list[str]:
    found = []
    fp32 = row["live"].get("fp32", {})
    if row["data_fp16"] != "no kernel" and fp32.get("provider") != CUDA:
        found.append(f"fp32 not on CUDA ({fp32.get('provider') or fp32.get('error')})")
    for lower in LOWER:
        live = row["live"].get(lower, {})
        provider = live.get("provider") or ""
        if provider.startswith("n/a"):
            continue
        says_yes = row[f"data_{lower}"].startswith("yes")
        if says_yes and provider != CUDA:
            found.append(f"{lower}: data yes, live {provider or live.get('error')}")
        elif not says_yes and provider == CUDA:
            found.append(f"{lower}: data {row[f'data_{lower}']}, live on CUDA")
        if provider == CUDA and live.get("strict_ok") is False:
            found.append(f"{lower}: on CUDA but strict session refused (another node on CPU)")
    return found


def _live_cell(row: dict, label: str, cuda_problem: str | None) -> str:
    if cuda_problem or "note" in row:
        return "-"
    live = row["live"].get(label, {})
    provider = live.get("provider")
    if provider:
        short = provider.replace(CUDA, "CUDA").replace("CPUExecutionProvider", "CPU")
        return "n/a (schema)" if short.startswith("n/a") else short[:14]
    return ("fail: " + (live.get("error") or "?"))[:14]


def _print_table(rows: list[dict], cuda_problem: str | None) -> None:
    header = (f"{'op':<20}{'opset':>5}  {'data fp16':<13}{'data bf16':<13}"
              f"{'live fp32':<15}{'live fp16':<15}{'live bf16':<15}disagreements / notes")
    print(header)
    print("-" * len(header))
    for row in rows:
        notes = "; ".join(row["disagreements"]) or row.get("note", "")
        print(f"{row['op'][:19]:<20}{row['opset']:>5}  {row['data_fp16'][:12]:<13}"
              f"{row['data_bf16'][:12]:<13}{_live_cell(row, 'fp32', cuda_problem):<15}"
              f"{_live_cell(row, 'fp16', cuda_problem):<15}"
              f"{_live_cell(row, 'bf16', cuda_problem):<15}{notes}")


def _gpu_name() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip().replace("\n", "; ")
    except (OSError, subprocess.SubprocessError):
        return "unknown (nvidia-smi unavailable)"


if __name__ == "__main__":
    sys.exit(main())
