"""Which ONNX Runtime CUDA kernels exist, per (domain, op type, opset), and which types they accept.

The converter keeps a node in FP32 when the CUDA execution provider has no kernel that accepts the
lower type where it accepts float: a lowered node without a kernel falls back to the CPU, behind
Memcpy nodes, and runs slower than FP32. The knowledge comes from the GPU build's own kernel
registry (`onnxruntime.capi._pybind_state.get_all_opkernel_def()`) and ships as versioned data in
`tuner/data/cuda_ep_kernels.json`, so a CPU-only install knows it too. Users may add kernels or
types to it (a newer onnxruntime, a custom build); additions are merged by union and recorded,
never substituted for the shipped data.

File format (what `scripts/dump_cuda_kernel_registry.py` and
`scripts/build_kernel_registry_from_docs.py` write)::

    {"provider": "CUDAExecutionProvider",
     "source": "...",                    # or "onnxruntime_version": "1.31.1"
     "generated_by": "scripts/...",
     "kernels": {"ai.onnx:Conv": [{"since": 11, "until": 21,
                                   "type_constraints": {"T": ["tensor(float)", ...]}}]}}

The default ONNX domain is spelled "ai.onnx"; "" is accepted as the same domain everywhere.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Union

from tuner._errors import AmptuneError, MissingDependencyError, PlanError

__all__ = [
    "OPEN_ENDED",
    "KernelEntry",
    "KernelRegistry",
    "KernelRegistryError",
    "registry_differences",
]

# onnxruntime's sentinel for a kernel with no upper opset bound (INT_MAX).
OPEN_ENDED = 2**31 - 1
DEFAULT_DOMAIN = "ai.onnx"
DEFAULT_DATA = "cuda_ep_kernels.json"
# What a `lower` argument names, as the type string the kernel registry uses.
LOWER_TYPES = MappingProxyType({"fp16": "tensor(float16)", "bf16": "tensor(bfloat16)"})
FLOAT_TYPE = "tensor(float)"
# tensor(float16), seq(tensor(float)), optional(seq(tensor(int8))), map(string,tensor(float)), ...
_TYPE_STRING = re.compile(r"^[a-z_]+\(.+\)$")

AdditionSource = Union["KernelRegistry", Mapping[str, Any], str, os.PathLike]


class KernelRegistryError(AmptuneError):
    """A kernel registry file or mapping is malformed, or additions do not fit the registry."""


def canonical_domain(domain: str) -> str:
    """The default ONNX domain has two spellings ("" in models, "ai.onnx" in schemas)."""
    return DEFAULT_DOMAIN if domain in ("", DEFAULT_DOMAIN) else domain


def kernel_key(domain: str, op_type: str) -> str:
    return f"{canonical_domain(domain)}:{op_type}"


@dataclass(frozen=True)
class KernelEntry:
    """One registered kernel: the opsets it serves and the types each of its constraints accepts.

    Constraints the kernel does not list are not checked by onnxruntime when it matches a node
    (Resize's roi type T2, for example); they do not appear here.
    """

    since: int
    until: int
    type_constraints: Mapping[str, frozenset[str]]

    def covers(self, opset: int) -> bool:
        return self.since <= opset <= self.until

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "type_constraints": {
                name: sorted(types) for name, types in sorted(self.type_constraints.items())
            },
        }


def _entry(since: int, until: int, constraints: Mapping[str, Iterable[str]]) -> KernelEntry:
    frozen = {name: frozenset(types) for name, types in constraints.items()}
    return KernelEntry(since, until, MappingProxyType(frozen))


def _union(entries: Iterable[KernelEntry], since: int, until: int) -> KernelEntry:
    merged: dict[str, set[str]] = {}
    for entry in entries:
        for name, types in entry.type_constraints.items():
            merged.setdefault(name, set()).update(types)
    return _entry(since, until, merged)


def _parse_entry(where: str, raw: Any) -> KernelEntry:
    if not isinstance(raw, Mapping):
        raise KernelRegistryError(f"{where}: expected an object with since, until, "
                                  f"type_constraints; got {type(raw).__name__}")
    since, until = raw.get("since"), raw.get("until", OPEN_ENDED)
    for name, value in (("since", since), ("until", until)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise KernelRegistryError(f"{where}.{name} = {value!r}: must be a positive integer "
                                      f"(until may be {OPEN_ENDED} for open-ended)")
    if until < since:
        raise KernelRegistryError(f"{where}: until = {until} is below since = {since}")
    constraints = raw.get("type_constraints", {})
    if not isinstance(constraints, Mapping):
        raise KernelRegistryError(f"{where}.type_constraints: must map constraint names to "
                                  f"lists of type strings; got {type(constraints).__name__}")
    for name, types in constraints.items():
        if isinstance(types, str) or not isinstance(types, Iterable):
            raise KernelRegistryError(f"{where}.type_constraints.{name} = {types!r}: must be "
                                      f"a list of type strings such as 'tensor(float16)'")
        for type_string in types:
            if not isinstance(type_string, str) or not _TYPE_STRING.match(type_string):
                raise KernelRegistryError(f"{where}.type_constraints.{name}: {type_string!r} is "
                                          f"not a type string such as 'tensor(float16)'")
    assert isinstance(since, int) and isinstance(until, int)  # checked above
    return _entry(since, until, constraints)


def _parse_kernels(origin: str, raw: Any) -> dict[str, tuple[KernelEntry, ...]]:
    if not isinstance(raw, Mapping):
        raise KernelRegistryError(f"{origin}: 'kernels' must map 'domain:OpType' to lists of "
                                  f"entries; got {type(raw).__name__}")
    kernels: dict[str, list[KernelEntry]] = {}
    for key, entries in raw.items():
        domain, colon, op_type = str(key).rpartition(":")
        if not colon or not op_type:
            raise KernelRegistryError(f"{origin}: kernel key {key!r} must be 'domain:OpType', "
                                      f"e.g. 'ai.onnx:Conv' or 'com.microsoft:FusedMatMul'")
        if isinstance(entries, Mapping) or not isinstance(entries, Iterable):
            raise KernelRegistryError(f"{origin}: kernels[{key!r}] must be a list of entries")
        parsed = [_parse_entry(f"{origin}: kernels[{key!r}][{i}]", e)
                  for i, e in enumerate(entries)]
        kernels.setdefault(kernel_key(domain, op_type), []).extend(parsed)
    return {key: _merge_same_ranges(v) for key, v in kernels.items()}


def _merge_same_ranges(entries: Iterable[KernelEntry]) -> tuple[KernelEntry, ...]:
    """One entry per opset range, uniting the type lists of the kernels registered for it.

    The live registry holds one kernel per element type for typed kernels (Abs 13+ for float,
    another for double, ...); onnxruntime's OperatorKernels.md shows them united, and so do we.
    """
    by_range: dict[tuple[int, int], list[KernelEntry]] = {}
    for entry in entries:
        by_range.setdefault((entry.since, entry.until), []).append(entry)
    return tuple(group[0] if len(group) == 1 else _union(group, *span)
                 for span, group in sorted(by_range.items()))


@dataclass(frozen=True)
class KernelRegistry:
    """The kernels one execution provider registers, keyed by "domain:OpType"."""

    provider: str
    source: str
    kernels: Mapping[str, tuple[KernelEntry, ...]]
    # Where each merged addition came from, in order; empty for unmodified data.
    additions: tuple[str, ...] = field(default=())

    @classmethod
    def default(cls) -> KernelRegistry:
        """The CUDA EP registry shipped with amptune (cached; the object is immutable)."""
        return _default_registry()

    @classmethod
    def from_file(cls, path: str | os.PathLike,
                  default_provider: str = "CUDAExecutionProvider") -> KernelRegistry:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KernelRegistryError(
                f"kernel registry file {str(path)!r} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise KernelRegistryError(f"kernel registry file {str(path)!r} is not readable "
                                      f"JSON: {error}") from None
        return cls.from_mapping(data, origin=str(path), default_provider=default_provider)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str = "mapping",
                     default_provider: str = "CUDAExecutionProvider") -> KernelRegistry:
        """Reads the file format; a mapping without "kernels" is taken as the kernels mapping."""
        if not isinstance(data, Mapping):
            raise KernelRegistryError(f"{origin}: a kernel registry must be a JSON object; "
                                      f"got {type(data).__name__}")
        if "kernels" not in data:
            data = {"kernels": data}
        provider = data.get("provider", default_provider)
        if not isinstance(provider, str) or not provider:
            raise KernelRegistryError(f"{origin}: provider = {provider!r} must be a provider "
                                      f"name such as 'CUDAExecutionProvider'")
        source = data.get("source")
        if source is None and "onnxruntime_version" in data:
            source = f"onnxruntime {data['onnxruntime_version']} get_all_opkernel_def()"
        kernels = _parse_kernels(origin, data["kernels"])
        return cls(provider, str(source or origin), MappingProxyType(kernels))

    def to_dict(self) -> dict[str, Any]:
        """The file format; `from_mapping(to_dict())` gives an equal registry."""
        return {
            "provider": self.provider,
            "source": self.source,
            "kernels": {key: [entry.to_dict() for entry in entries]
                        for key, entries in sorted(self.kernels.items())},
        }

    def with_additions(self, other: AdditionSource) -> KernelRegistry:
        """This registry plus `other`'s kernels and types (a registry, a mapping or a file).

        Nothing is removed or replaced: an added entry with the same opset range as an existing
        one extends its type lists; any other range is added beside the existing entries, and
        `find` unites the entries that cover an opset. The result's `source` and `additions`
        name what was added.
        """
        if isinstance(other, KernelRegistry):
            added = other
        elif isinstance(other, Mapping):
            added = KernelRegistry.from_mapping(other, origin="additions mapping",
                                                default_provider=self.provider)
        elif isinstance(other, (str, os.PathLike)):
            added = KernelRegistry.from_file(other, default_provider=self.provider)
        else:
            raise KernelRegistryError(f"kernel additions must be a KernelRegistry, a mapping or "
                                      f"a JSON file path; got {type(other).__name__}")
        if added.provider != self.provider:
            raise KernelRegistryError(f"cannot add {added.provider} kernels (from "
                                      f"{added.source}) to the {self.provider} registry")
        kernels = dict(self.kernels)
        for key, entries in added.kernels.items():
            kernels[key] = _merge_same_ranges((*kernels.get(key, ()), *entries))
        return KernelRegistry(
            provider=self.provider,
            source=f"{self.source}; with additions from {added.source}",
            kernels=MappingProxyType(kernels),
            additions=(*self.additions, added.source),
        )

    def find(self, domain: str, op_type: str, opset: int) -> KernelEntry | None:
        """The kernel that serves `op_type` at `opset` of `domain`, or None if there is none.

        Where several entries cover the opset (the registry lists ThresholdedRelu as both 1+ and
        10+; additions may overlap), the result unites their type lists over the opsets all of
        them cover.
        """
        if not isinstance(opset, int) or isinstance(opset, bool) or opset < 1:
            raise PlanError(f"opset = {opset!r} for {op_type}: must be a positive integer")
        covering = [e for e in self.kernels.get(kernel_key(domain, op_type), ()) if e.covers(opset)]
        if not covering:
            return None
        if len(covering) == 1:
            return covering[0]
        return _union(covering, max(e.since for e in covering), min(e.until for e in covering))

    def lowerable_constraints(
        self, domain: str, op_type: str, opset: int, lower: str
    ) -> frozenset[str] | None:
        """Names of the kernel's type constraints that accept both float and the lower type.

        None when the provider has no kernel for the node at all; an empty set when it has one
        but none of its constraints takes the lower type (the node must stay FP32).
        """
        if lower not in LOWER_TYPES:
            raise PlanError(f"lower = {lower!r} is not a lower precision; valid: "
                            f"{', '.join(repr(k) for k in LOWER_TYPES)}")
        entry = self.find(domain, op_type, opset)
        if entry is None:
            return None
        lower_type = LOWER_TYPES[lower]
        return frozenset(name for name, types in entry.type_constraints.items()
                         if FLOAT_TYPE in types and lower_type in types)

    def live_differences(self, timeout_s: float = 300.0) -> list[str]:
        """How the installed onnxruntime's own registry differs from this data.

        Raises MissingDependencyError unless onnxruntime with this provider is installed and
        `get_all_opkernel_def()` works. It runs in a subprocess: on builds that ship without
        some provider libraries (TensorRT) the call crashes the interpreter.
        """
        return registry_differences(self, live_registry(self.provider, timeout_s))


def registry_differences(expected: KernelRegistry, live: KernelRegistry) -> list[str]:
    """One line per difference between two registries, keyed by op and opset range."""
    lines: list[str] = []
    for key in sorted(set(expected.kernels) | set(live.kernels)):
        ours = {(e.since, e.until): e for e in expected.kernels.get(key, ())}
        theirs = {(e.since, e.until): e for e in live.kernels.get(key, ())}
        for span in sorted(set(ours) | set(theirs)):
            label = f"{key} [{span[0]}, {'+' if span[1] == OPEN_ENDED else span[1]}]"
            if span not in theirs:
                lines.append(f"{label}: in the data, not in the live registry")
                continue
            if span not in ours:
                lines.append(f"{label}: in the live registry, not in the data")
                continue
            a, b = ours[span].type_constraints, theirs[span].type_constraints
            for name in sorted(set(a) | set(b)):
                missing = sorted(b.get(name, frozenset()) - a.get(name, frozenset()))
                extra = sorted(a.get(name, frozenset()) - b.get(name, frozenset()))
                if missing:
                    lines.append(f"{label} {name}: live accepts {', '.join(missing)}; "
                                 f"the data does not")
                if extra:
                    lines.append(f"{label} {name}: the data lists {', '.join(extra)}; "
                                 f"live does not")
    return lines


# Runs in a child interpreter: prints the provider's kernels in the file format as JSON.
_LIVE_DUMP_PROGRAM = """
import json, sys
import onnxruntime
from onnxruntime.capi import _pybind_state
provider = sys.argv[1]
if hasattr(onnxruntime, "preload_dlls"):
    try:
        onnxruntime.preload_dlls()
    except Exception:
        pass
kernels = {}
for kernel in _pybind_state.get_all_opkernel_def():
    if kernel.provider != provider:
        continue
    since, until = kernel.version_range
    kernels.setdefault(f"{kernel.domain or 'ai.onnx'}:{kernel.op_name}", []).append({
        "since": int(since), "until": int(until),
        "type_constraints": {n: sorted(t) for n, t in kernel.type_constraints.items()}})
for entries in kernels.values():
    entries.sort(key=lambda e: (e["since"], e["until"]))
json.dump({"provider": provider, "onnxruntime_version": onnxruntime.__version__,
           "source": f"onnxruntime {onnxruntime.__version__} get_all_opkernel_def()",
           "kernels": dict(sorted(kernels.items()))}, sys.stdout)
"""


def live_registry(provider: str = "CUDAExecutionProvider", timeout_s: float = 300.0,
                  python: str | None = None) -> KernelRegistry:
    """The installed onnxruntime's registry for `provider`, read in a child interpreter."""
    try:
        completed = subprocess.run(
            [python or sys.executable, "-c", _LIVE_DUMP_PROGRAM, provider],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired:
        raise MissingDependencyError(f"get_all_opkernel_def() did not return within "
                                     f"{timeout_s:.0f} s") from None
    if completed.returncode < 0:
        name = signal.Signals(-completed.returncode).name
        raise MissingDependencyError(
            f"onnxruntime's get_all_opkernel_def() crashed ({name}); this build cannot list its "
            f"kernels (a provider library it expects, such as TensorRT's, is missing)")
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no error output"])[-1]
        if "No module named 'onnxruntime'" in completed.stderr:
            raise MissingDependencyError("onnxruntime is not installed; install amptune[gpu] "
                                         "to compare with the live registry")
        raise MissingDependencyError(f"listing onnxruntime's kernels failed: {last}")
    registry = KernelRegistry.from_mapping(json.loads(completed.stdout), origin="live registry")
    if not registry.kernels:
        raise MissingDependencyError(
            f"the installed onnxruntime registers no {provider} kernels (the CPU build?); "
            f"install amptune[gpu] to compare with the live registry")
    return registry


@functools.lru_cache(maxsize=1)
def _default_registry() -> KernelRegistry:
    data = resources.files("tuner").joinpath("data", DEFAULT_DATA)
    return KernelRegistry.from_mapping(json.loads(data.read_text(encoding="utf-8")),
                                       origin=f"tuner/data/{DEFAULT_DATA}")
