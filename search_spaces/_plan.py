"""The precision plan: what a conversion is asked to do, independent of how it is done."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from search_spaces._errors import PlanValidationError

LowerType = Literal["fp16", "bf16"]
LOWER_TYPES: tuple[str, ...] = get_args(LowerType)

_PLAN_FIELDS = ("lower", "keep_fp32_op_types", "keep_fp32_nodes", "keep_io_types", "allow_tf32")


@dataclass(frozen=True)
class PrecisionPlan:
    """Which parts of a model run in a lower float type and which stay FP32.

    Op types are ONNX op types (``"Softmax"``, or ``"com.microsoft:FusedConv"`` for another
    domain); nodes are ONNX node names. ``keep_io_types`` keeps the graph inputs and outputs in
    their original types, with Casts at the boundary. ``allow_tf32`` lets the nodes that stay
    FP32 compute MatMul and convolutions in TF32 (the CUDA EP's ``use_tf32``): a session option,
    not a graph change, but part of the plan because it changes both speed and drift.
    """

    lower: LowerType = "fp16"
    keep_fp32_op_types: frozenset[str] = field(default_factory=frozenset)
    keep_fp32_nodes: frozenset[str] = field(default_factory=frozenset)
    keep_io_types: bool = True
    keep_all_fp32: bool = False
    allow_tf32: bool = False

    def __post_init__(self) -> None:
        if self.lower not in LOWER_TYPES:
            raise PlanValidationError(
                f"plan field 'lower' is {self.lower!r}; valid values: {', '.join(LOWER_TYPES)}"
            )
        for name in ("keep_fp32_op_types", "keep_fp32_nodes"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise PlanValidationError(
                    f"plan field {name!r} must be a list of strings, got {value!r}"
                )
            object.__setattr__(self, name, frozenset(value))
        for name in ("keep_io_types", "keep_all_fp32", "allow_tf32"):
            if not isinstance(getattr(self, name), bool):
                raise PlanValidationError(
                    f"plan field {name!r} must be true or false, got {getattr(self, name)!r}"
                )

    @classmethod
    def all_fp32(cls, allow_tf32: bool = False) -> PrecisionPlan:
        """The plan that changes nothing: every node stays in its original precision
        (with ``allow_tf32``: the TF32 baseline)."""
        return cls(keep_all_fp32=True, allow_tf32=allow_tf32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lower": self.lower,
            "keep_fp32_op_types": sorted(self.keep_fp32_op_types),
            "keep_fp32_nodes": sorted(self.keep_fp32_nodes),
            "keep_io_types": self.keep_io_types,
            "keep_all_fp32": self.keep_all_fp32,
            "allow_tf32": self.allow_tf32,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "plan") -> PrecisionPlan:
        if not isinstance(data, dict):
            raise PlanValidationError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = set(_PLAN_FIELDS) | {"keep_all_fp32"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PlanValidationError(
                f"{source}: unknown field(s) {', '.join(map(repr, unknown))}; "
                f"valid fields: {', '.join(sorted(known))}"
            )
        try:
            return cls(**data)
        except TypeError as error:
            raise PlanValidationError(f"{source}: {error}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> PrecisionPlan:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise PlanValidationError(f"plan file {str(path)!r} does not exist") from None
        except json.JSONDecodeError as error:
            raise PlanValidationError(f"plan file {str(path)!r} is not valid JSON: {error}") from None
        return cls.from_dict(data, source=f"plan file {str(path)!r}")

    def digest(self) -> str:
        """A stable hash of the plan: identical plans are built and measured once."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
