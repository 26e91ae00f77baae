"""The CUDA EP kernel registry: docs parser, shipped data, lookups, additions, live checks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tuner._errors import AmptuneError, MissingDependencyError, PlanError
from tuner._kernel_registry import (
    OPEN_ENDED,
    KernelRegistry,
    KernelRegistryError,
    live_registry,
    registry_differences,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tuner" / "data" / "cuda_ep_kernels.json"


def _load_script(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


docs = _load_script("build_kernel_registry_from_docs")

# The page's layout: a CPU section first, the CUDA section, then the next provider's.
SNIPPET = """\
## Operators implemented by CPUExecutionProvider

| Op Name | Parameters | OpSet Version | Types Supported |
|---------|------------|---------------|-----------------|
|**Operator Domain:** *ai.onnx*||||
|Abs|*in* X:**T**<br> *out* Y:**T**|13+|**T** = tensor(double), tensor(float)|
| |
| |


<a name="cudaexecutionprovider"/>

## Operators implemented by CUDAExecutionProvider

| Op Name | Parameters | OpSet Version | Types Supported |
|---------|------------|---------------|-----------------|
|**Operator Domain:** *ai.onnx*||||
|Add|*in* A:**T**<br> *in* B:**T**<br> *out* C:**T**|14+|**T** = tensor(bfloat16), tensor(float), tensor(float16)|
|||13|**T** = tensor(float), tensor(float16)|
|||[7, 12]|**T** = tensor(double), tensor(float)|
|If|*in* cond:**B**<br> *out* outputs:**V**|19+|**B** = tensor(bool)<br/> **V** = seq(tensor(float)), tensor(float), tensor(float16)|
|Range|*in* start:**T**<br> *out* output:**T**|11+|**T** = tensor(double), tensor(float), tensor(int64)|
| |
| |
|**Operator Domain:** *com.microsoft*||||
|FusedMatMul|*in* A:**T**<br> *in* B:**T**<br> *out* Y:**T**|1+|**T** = tensor(float16), tensor(float)|
| |
| |


<a name="dmlexecutionprovider"/>

## Operators implemented by DmlExecutionProvider

| Op Name | Parameters | OpSet Version | Types Supported |
|---------|------------|---------------|-----------------|
|**Operator Domain:** *ai.onnx*||||
|Tan|*in* X:**T**<br> *out* Y:**T**|7+|**T** = tensor(float), tensor(float16)|
"""


# ---- the docs parser -------------------------------------------------------------------------


def test_parser_reads_only_the_cuda_section_with_domains_ranges_and_types():
    kernels = docs.parse_operator_kernels(SNIPPET)
    assert sorted(kernels) == ["ai.onnx:Add", "ai.onnx:If", "ai.onnx:Range",
                               "com.microsoft:FusedMatMul"]
    assert [(e["since"], e["until"]) for e in kernels["ai.onnx:Add"]] == [
        (7, 12), (13, 13), (14, OPEN_ENDED)]
    assert kernels["ai.onnx:Add"][2]["type_constraints"] == {
        "T": ["tensor(bfloat16)", "tensor(float)", "tensor(float16)"]}
    assert kernels["ai.onnx:If"][0]["type_constraints"] == {
        "B": ["tensor(bool)"],
        "V": ["seq(tensor(float))", "tensor(float)", "tensor(float16)"]}
    # types come out sorted whatever the page's order
    assert kernels["com.microsoft:FusedMatMul"][0]["type_constraints"]["T"] == [
        "tensor(float)", "tensor(float16)"]


def test_parser_reads_another_provider_section_when_asked():
    kernels = docs.parse_operator_kernels(SNIPPET, "DmlExecutionProvider")
    assert list(kernels) == ["ai.onnx:Tan"]


@pytest.mark.parametrize("cell, expected", [
    ("13+", (13, OPEN_ENDED)), ("[7, 12]", (7, 12)), ("9", (9, 9)), (" [1,10] ", (1, 10))])
def test_opset_range_forms(cell, expected):
    assert docs.parse_opset_range(cell) == expected


def test_parser_names_what_it_cannot_read():
    with pytest.raises(docs.MarkdownFormatError, match="CPUExecutionProvider, CUDAExecution"):
        docs.parse_operator_kernels(SNIPPET, "ROCMExecutionProvider")
    broken = SNIPPET.replace("|||13|", "|||13-ish|")
    with pytest.raises(docs.MarkdownFormatError, match=r"line \d+ \(Add\).*13-ish"):
        docs.parse_operator_kernels(broken)
    orphan = SNIPPET.replace("|**Operator Domain:** *ai.onnx*||||\n|Add", "|Add", 2)
    with pytest.raises(docs.MarkdownFormatError, match="before any domain"):
        docs.parse_operator_kernels(orphan)


def test_build_script_writes_a_file_the_loader_reads(tmp_path):
    page = tmp_path / "OperatorKernels.md"
    page.write_text(SNIPPET)
    out = tmp_path / "kernels.json"
    assert docs.main([str(page), "--commit", "abc123", "-o", str(out)]) == 0
    raw = json.loads(out.read_text())
    assert raw["generated_by"] == "scripts/build_kernel_registry_from_docs.py"
    registry = KernelRegistry.from_file(out)
    assert "abc123" in registry.source
    assert registry.lowerable_constraints("", "Add", 13, "fp16") == {"T"}
    assert registry.lowerable_constraints("", "Add", 13, "bf16") == frozenset()
    assert registry.lowerable_constraints("", "Add", 12, "fp16") == frozenset()


# ---- the shipped data ------------------------------------------------------------------------


def test_shipped_data_records_its_source_and_agrees_with_the_api_everywhere():
    raw = json.loads(DATA.read_text())
    registry = KernelRegistry.default()
    assert registry is KernelRegistry.default()  # cached
    assert raw["provider"] == registry.provider == "CUDAExecutionProvider"
    assert "docs/OperatorKernels.md at commit 001d12d2623fd411ce0f83d05abb5e82304a3389" in (
        registry.source)
    assert {key.split(":")[0] for key in raw["kernels"]} >= {"ai.onnx", "com.microsoft"}
    for key, entries in raw["kernels"].items():
        domain, _, op_type = key.rpartition(":")
        for entry in entries:
            for opset in {entry["since"], min(entry["until"], entry["since"] + 3)}:
                found = registry.find(domain, op_type, opset)
                assert found is not None, (key, opset)
                for name, types in entry["type_constraints"].items():
                    assert set(types) <= found.type_constraints[name]
                for lower, lower_type in (("fp16", "tensor(float16)"),
                                          ("bf16", "tensor(bfloat16)")):
                    expected = {name for name, types in found.type_constraints.items()
                                if "tensor(float)" in types and lower_type in types}
                    assert registry.lowerable_constraints(domain, op_type, opset, lower) == (
                        expected)


def _first_entry_with(key: str, predicate) -> dict:
    entries = json.loads(DATA.read_text())["kernels"][key]
    return next(e for e in entries if predicate(e))


def test_conv_lowers_to_fp16_on_cuda_and_bf16_only_where_the_data_says():
    registry = KernelRegistry.default()
    conv = json.loads(DATA.read_text())["kernels"]["ai.onnx:Conv"]
    for entry in conv:
        types = entry["type_constraints"]["T"]
        assert "tensor(float16)" in types  # what OperatorKernels.md says of every CUDA Conv
        bf16 = registry.lowerable_constraints("ai.onnx", "Conv", entry["since"], "bf16")
        assert bf16 == ({"T"} if "tensor(bfloat16)" in types else frozenset())
        assert registry.lowerable_constraints("", "Conv", entry["since"], "fp16") == {"T"}
    # the PP-OCR models are opset 11/12: the Conv kernel there has no bf16
    assert registry.lowerable_constraints("", "Conv", 12, "bf16") == frozenset()


def test_range_has_a_cuda_kernel_but_not_for_float16():
    registry = KernelRegistry.default()
    entry = _first_entry_with("ai.onnx:Range", lambda e: e["since"] <= 11 <= e["until"])
    assert "tensor(float16)" not in entry["type_constraints"]["T"]
    assert registry.find("", "Range", 11) is not None
    assert registry.lowerable_constraints("", "Range", 11, "fp16") == frozenset()


def test_only_the_constraints_that_take_both_types_are_lowerable():
    registry = KernelRegistry.default()
    # LayerNormalization's statistics type U is float-only: only T lowers
    layer_norm = registry.find("", "LayerNormalization", 17)
    assert layer_norm.type_constraints["U"] == {"tensor(float)"}
    assert registry.lowerable_constraints("", "LayerNormalization", 17, "fp16") == {"T"}
    # Resize 11-12 lists only T1 (roi's T2 is not checked by the kernel)
    assert registry.lowerable_constraints("", "Resize", 12, "fp16") == {"T1"}
    # no CUDA kernel at all: None, not an empty set
    assert registry.lowerable_constraints("", "Constant", 13, "fp16") is None
    assert registry.lowerable_constraints("ai.onnx.ml", "TreeEnsembleClassifier", 3,
                                          "fp16") is None


def test_lookup_follows_opset_ranges_and_domain_spellings():
    registry = KernelRegistry.default()
    add = [registry.find("", "Add", opset) for opset in (7, 12, 13, 14, 99)]
    assert [(e.since, e.until) for e in add] == [
        (7, 12), (7, 12), (13, 13), (14, OPEN_ENDED), (14, OPEN_ENDED)]
    assert registry.find("", "Add", 6) is None
    assert registry.find("", "Gelu", 20) == registry.find("ai.onnx", "Gelu", 20)
    assert registry.find("com.microsoft", "Gelu", 1) is not None
    assert registry.find("", "Gelu", 1) is None  # ai.onnx Gelu starts at opset 20
    assert registry.find("com.example", "Add", 14) is None
    with pytest.raises(PlanError, match="opset = 0"):
        registry.find("", "Add", 0)


def test_overlapping_entries_are_united():
    registry = KernelRegistry.default()
    entries = registry.kernels["ai.onnx:ThresholdedRelu"]
    assert len(entries) == 2 and all(e.covers(12) for e in entries)
    found = registry.find("", "ThresholdedRelu", 12)
    assert (found.since, found.until) == (10, OPEN_ENDED)
    assert found.type_constraints["T"] == entries[0].type_constraints["T"] | (
        entries[1].type_constraints["T"])


def test_unknown_lower_type_is_a_plan_error():
    with pytest.raises(PlanError, match="lower = 'fp8'.*'fp16', 'bf16'"):
        KernelRegistry.default().lowerable_constraints("", "Add", 14, "fp8")


# ---- additions -------------------------------------------------------------------------------


def test_additions_extend_types_and_are_recorded(tmp_path):
    base = KernelRegistry.default()
    range_entry = base.find("", "Range", 11)
    addition = {"ai.onnx:Range": [{"since": range_entry.since, "until": range_entry.until,
                                   "type_constraints": {"T": ["tensor(float16)"]}}]}
    added = base.with_additions(addition)
    assert added.lowerable_constraints("", "Range", 11, "fp16") == {"T"}
    assert added.find("", "Range", 11).type_constraints["T"] == (
        range_entry.type_constraints["T"] | {"tensor(float16)"})
    assert base.lowerable_constraints("", "Range", 11, "fp16") == frozenset()  # unchanged
    assert added.additions == ("additions mapping",)
    assert "with additions from additions mapping" in added.source
    assert added.source.startswith(base.source)

    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"source": "my build", "kernels": {
        ":MyOp": [{"since": 1,
                   "type_constraints": {"T": ["tensor(float)", "tensor(bfloat16)"]}}]}}))
    twice = added.with_additions(path)
    assert twice.additions == ("additions mapping", "my build")
    assert twice.lowerable_constraints("ai.onnx", "MyOp", 30, "bf16") == {"T"}
    assert twice.find("", "MyOp", 30).until == OPEN_ENDED


def test_additions_never_remove_types_and_overlaps_unite():
    base = KernelRegistry.default()
    fewer = {"ai.onnx:Add": [{"since": 14, "until": OPEN_ENDED,
                              "type_constraints": {"T": ["tensor(float)"]}}]}
    assert base.with_additions(fewer).find("", "Add", 14) == base.find("", "Add", 14)
    # a range that overlaps existing ones is added beside them; lookups unite the types
    overlap = {"ai.onnx:Range": [{"since": 12, "until": 20,
                                  "type_constraints": {"T": ["tensor(float16)"]}}]}
    merged = base.with_additions(overlap)
    assert merged.lowerable_constraints("", "Range", 11, "fp16") == frozenset()
    assert merged.lowerable_constraints("", "Range", 15, "fp16") == {"T"}
    assert merged.lowerable_constraints("", "Range", 21, "fp16") == frozenset()


def test_additions_that_do_not_fit_are_refused_with_the_field_named(tmp_path):
    base = KernelRegistry.default()
    other = KernelRegistry.from_mapping({"provider": "ROCMExecutionProvider", "kernels": {}})
    with pytest.raises(KernelRegistryError, match="ROCMExecutionProvider"):
        base.with_additions(other)
    with pytest.raises(KernelRegistryError,
                       match=r"kernels\['ai.onnx:Add'\]\[0\]: until = 3 is below since = 5"):
        base.with_additions({"ai.onnx:Add": [{"since": 5, "until": 3}]})
    with pytest.raises(KernelRegistryError, match="'float16' is not a type string"):
        base.with_additions({"ai.onnx:Add": [{"since": 5, "type_constraints": {"T": ["float16"]}}]})
    with pytest.raises(KernelRegistryError, match="'Add' must be 'domain:OpType'"):
        base.with_additions({"Add": [{"since": 5}]})
    with pytest.raises(KernelRegistryError, match="does not exist"):
        base.with_additions(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KernelRegistryError, match="not readable JSON"):
        base.with_additions(tmp_path / "bad.json")
    with pytest.raises(KernelRegistryError, match="got int"):
        base.with_additions(3)
    assert issubclass(KernelRegistryError, AmptuneError)


def test_round_trip_and_per_type_kernels_are_united():
    registry = KernelRegistry.default()
    assert KernelRegistry.from_mapping(registry.to_dict()) == registry
    # the live registry lists a typed kernel once per type, under the same opset range
    dumped = {"provider": "CUDAExecutionProvider", "onnxruntime_version": "9.9", "kernels": {
        "ai.onnx:Abs": [
            {"since": 13, "until": OPEN_ENDED, "type_constraints": {"T": ["tensor(float)"]}},
            {"since": 13, "until": OPEN_ENDED, "type_constraints": {"T": ["tensor(float16)"]}},
        ]}}
    parsed = KernelRegistry.from_mapping(dumped)
    assert parsed.source == "onnxruntime 9.9 get_all_opkernel_def()"
    assert len(parsed.kernels["ai.onnx:Abs"]) == 1
    assert parsed.lowerable_constraints("", "Abs", 13, "fp16") == {"T"}


# ---- comparison with a live registry ---------------------------------------------------------


def test_registry_differences_name_the_op_range_and_types():
    ours = KernelRegistry.from_mapping({"kernels": {
        "ai.onnx:Add": [{"since": 14,
                         "type_constraints": {"T": ["tensor(float)", "tensor(int8)"]}}],
        "ai.onnx:Old": [{"since": 1, "until": 5, "type_constraints": {}}]}})
    live = KernelRegistry.from_mapping({"kernels": {
        "ai.onnx:Add": [{"since": 14, "type_constraints": {"T": ["tensor(float)",
                                                                "tensor(float16)"]}}],
        "ai.onnx:New": [{"since": 20, "type_constraints": {}}]}})
    assert registry_differences(ours, live) == [
        "ai.onnx:Add [14, +] T: live accepts tensor(float16); the data does not",
        "ai.onnx:Add [14, +] T: the data lists tensor(int8); live does not",
        "ai.onnx:New [20, +]: in the live registry, not in the data",
        "ai.onnx:Old [1, 5]: in the data, not in the live registry",
    ]
    assert registry_differences(live, live) == []


def test_live_registry_reads_the_installed_build_in_a_subprocess():
    pytest.importorskip("onnxruntime")
    cpu = live_registry("CPUExecutionProvider")
    assert cpu.provider == "CPUExecutionProvider"
    assert "tensor(float)" in cpu.find("", "Add", 14).type_constraints["T"]
    assert cpu.source.startswith("onnxruntime ")


def test_live_differences_need_the_gpu_build():
    onnxruntime = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("the GPU build is installed: covered by scripts/check_kernel_registry_live.py")
    with pytest.raises(MissingDependencyError, match="no CUDAExecutionProvider kernels"):
        KernelRegistry.default().live_differences()


def test_importing_the_registry_does_not_import_onnxruntime():
    code = ("import sys, tuner._kernel_registry as k; k.KernelRegistry.default(); "
            "print('onnxruntime' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"


# ---- scripts/check_kernel_registry_live.py (the GPU check) where no GPU is present -----------


def _live_check():
    return _load_script("check_kernel_registry_live")


def test_live_check_builds_and_runs_every_one_node_model_on_cpu(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    check = _live_check()
    assert check.main(["--builders-on-cpu", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    built = [row for row in rows if "note" not in row]
    assert {row["op"] for row in built} >= set(check.MINILM[2])
    for row in built:
        assert row["live"]["fp32"]["provider"] == "CPUExecutionProvider", row
    conv12 = next(r for r in rows if (r["op"], r["opset"]) == ("Conv", 12))
    assert conv12["live"]["bf16"]["provider"].startswith("n/a")  # ONNX Conv-11 has no bfloat16
    assert "builders checked on CPUExecutionProvider: 0 failed" in capsys.readouterr().out


def test_live_check_reports_the_data_and_says_cuda_is_unavailable(tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here")
    assert _live_check().main(["--out", str(tmp_path)]) == 2
    results = json.loads((tmp_path / "results.json").read_text())
    assert "CUDAExecutionProvider" in results["cuda_problem"]
    registry = KernelRegistry.default()
    for row in results["rows"]:
        found = registry.lowerable_constraints(row["domain"], row["op"], row["opset"], "fp16")
        assert row["data_fp16"] == ("no kernel" if found is None else
                                    f"yes ({','.join(sorted(found))})" if found else "no")
    out = capsys.readouterr().out
    assert "CUDA is unavailable" in out and "get_all_opkernel_def(): unusable" in out
