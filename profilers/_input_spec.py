"""What a model's inputs are, and how synthetic values for them are drawn.

A model's graph inputs may have dynamic dimensions (``batch``, ``?``); the user fixes them, since
latency and drift depend on the shape. Values follow a distribution per input: uniform or normal
for floats, an integer range for token ids and masks. The text form used on the command line and in
study files is ``NAME=SHAPE[:DISTRIBUTION]``, e.g. ``x=8x3x640x640:uniform(0,1)`` or
``input_ids=1x128:int(0,30522)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from profilers._errors import DataSourceError

Distribution = Literal["uniform", "normal", "int"]
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "normal", "int")

# Defaults when the user names no distribution. Integer inputs default to {0, 1}: valid for masks
# and token-type ids, and a valid (if dull) token id; give a range for real token ids.
_DEFAULT_FLOAT = ("uniform", 0.0, 1.0)
_DEFAULT_INT = ("int", 0.0, 2.0)


@dataclass(frozen=True)
class GraphInput:
    """One graph input as the model declares it: ``None`` in ``dims`` marks a dynamic dimension."""

    name: str
    dtype: np.dtype
    dims: tuple[int | None, ...]
    dim_names: tuple[str, ...]

    def describe_shape(self) -> str:
        return "[" + ", ".join(
            str(d) if d is not None else (n or "?") for d, n in zip(self.dims, self.dim_names)
        ) + "]"


def graph_inputs(model: Any) -> list[GraphInput]:
    """The model's real inputs (initializers listed as inputs are not inputs to feed)."""
    import onnx

    initializers = {init.name for init in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            raise DataSourceError(
                f"model input {value.name!r} is not a tensor; only tensor inputs can be fed"
            )
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        dims: list[int | None] = []
        names: list[str] = []
        for dim in tensor_type.shape.dim:
            fixed = dim.HasField("dim_value") and dim.dim_value > 0
            dims.append(int(dim.dim_value) if fixed else None)
            names.append("" if fixed else dim.dim_param)
        inputs.append(GraphInput(value.name, dtype, tuple(dims), tuple(names)))
    return inputs


@dataclass(frozen=True)
class InputSpec:
    """How to draw one input: its full static shape, dtype and value distribution.

    ``uniform``: floats in [low, high); ``normal``: mean ``low``, standard deviation ``high``;
    ``int``: integers in [low, high).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    distribution: Distribution = "uniform"
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise DataSourceError(
                f"input {self.name!r}: distribution {self.distribution!r} is not known; "
                f"valid: {', '.join(DISTRIBUTIONS)}"
            )
        if any((not isinstance(d, int | np.integer)) or d < 0 for d in self.shape):
            raise DataSourceError(
                f"input {self.name!r}: shape {list(self.shape)} must hold non-negative integers"
            )
        if self.distribution in ("uniform", "int") and not self.low < self.high:
            raise DataSourceError(
                f"input {self.name!r}: range ({self.low}, {self.high}) is empty; low must be < high"
            )
        if self.distribution == "normal" and self.high < 0:
            raise DataSourceError(
                f"input {self.name!r}: a normal distribution's standard deviation must be >= 0, "
                f"got {self.high}"
            )

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        dtype = np.dtype(self.dtype)
        values: np.ndarray
        if self.distribution == "int":
            values = rng.integers(int(self.low), int(np.ceil(self.high)), size=self.shape)
        elif self.distribution == "normal":
            values = rng.normal(self.low, self.high, size=self.shape)
        else:
            values = rng.uniform(self.low, self.high, size=self.shape)
        # np.ascontiguousarray would turn a scalar input (shape []) into shape [1]
        return np.asarray(values, dtype=dtype, order="C")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "distribution": self.distribution,
            "low": self.low,
            "high": self.high,
        }


@dataclass(frozen=True)
class InputArgument:
    """A parsed ``NAME=SHAPE[:DISTRIBUTION]``: what the user fixed for one input."""

    name: str
    shape: tuple[int, ...]
    distribution: Distribution | None = None
    low: float | None = None
    high: float | None = None


_ARGUMENT = re.compile(r"^(?P<name>[^=]+)=(?P<shape>[0-9x, ]*)(?::(?P<dist>.+))?$")
_DISTRIBUTION = re.compile(
    r"^(?P<kind>uniform|normal|int)\(\s*(?P<low>[-+0-9.eE]+)\s*,\s*(?P<high>[-+0-9.eE]+)\s*\)$"
)


def parse_input_argument(text: str) -> InputArgument:
    """Parses ``NAME=SHAPE[:DISTRIBUTION]``; SHAPE is ``8x3x640x640`` (or comma-separated)."""
    match = _ARGUMENT.match(text.strip())
    if match is None:
        raise DataSourceError(
            f"--input {text!r} is not NAME=SHAPE[:DISTRIBUTION], e.g. x=8x3x640x640 or "
            "input_ids=1x128:int(0,30522)"
        )
    name = match["name"].strip()
    parts = [p for p in re.split(r"[x,]", match["shape"].replace(" ", "")) if p]
    shape = tuple(int(p) for p in parts)
    if not shape and match["shape"].strip() not in ("",):
        raise DataSourceError(f"--input {text!r}: shape {match['shape']!r} has no dimensions")
    if match["dist"] is None:
        return InputArgument(name, shape)
    dist = _DISTRIBUTION.match(match["dist"].strip())
    if dist is None:
        raise DataSourceError(
            f"--input {text!r}: distribution {match['dist']!r} is not one of uniform(LOW,HIGH), "
            "normal(MEAN,STD), int(LOW,HIGH)"
        )
    try:
        low, high = float(dist["low"]), float(dist["high"])
    except ValueError:
        raise DataSourceError(f"--input {text!r}: bounds must be numbers") from None
    return InputArgument(name, shape, dist["kind"], low, high)  # type: ignore[arg-type]


def _resolve_shape(graph_input: GraphInput, given: Sequence[int] | None) -> tuple[int, ...]:
    if given is None:
        dynamic = [i for i, d in enumerate(graph_input.dims) if d is None]
        if dynamic:
            raise DataSourceError(
                f"input {graph_input.name!r} has dynamic dimension(s) "
                f"{', '.join(repr(graph_input.dim_names[i] or '?') for i in dynamic)} in shape "
                f"{graph_input.describe_shape()}; fix them with --input "
                f"{graph_input.name}=" + "x".join(str(d or "N") for d in graph_input.dims)
            )
        return tuple(int(d) for d in graph_input.dims)  # type: ignore[arg-type]
    given = tuple(int(d) for d in given)
    if len(given) != len(graph_input.dims):
        raise DataSourceError(
            f"input {graph_input.name!r}: shape {list(given)} has rank {len(given)}, the model "
            f"declares rank {len(graph_input.dims)} {graph_input.describe_shape()}"
        )
    for axis, (declared, value) in enumerate(zip(graph_input.dims, given)):
        if declared is not None and declared != value:
            raise DataSourceError(
                f"input {graph_input.name!r}: dimension {axis} is fixed to {declared} by the model, "
                f"got {value}"
            )
    return given


def input_specs_for_model(
    model: Any, arguments: Iterable[InputArgument] = ()
) -> list[InputSpec]:
    """Specs for every graph input, with the user's shapes and distributions applied.

    Every dynamic dimension must be fixed by an argument; arguments naming no input are refused.
    """
    inputs = graph_inputs(model)
    by_name: Mapping[str, InputArgument] = {a.name: a for a in arguments}
    known = {i.name for i in inputs}
    unknown = sorted(set(by_name) - known)
    if unknown:
        raise DataSourceError(
            f"--input names {', '.join(map(repr, unknown))}, which the model does not have; "
            f"its inputs: {', '.join(sorted(known))}"
        )
    specs = []
    for graph_input in inputs:
        argument = by_name.get(graph_input.name)
        shape = _resolve_shape(graph_input, argument.shape if argument and argument.shape else None)
        is_integer = np.issubdtype(graph_input.dtype, np.integer) or graph_input.dtype == np.bool_
        kind, low, high = _DEFAULT_INT if is_integer else _DEFAULT_FLOAT
        if argument is not None and argument.distribution is not None:
            kind, low, high = argument.distribution, argument.low, argument.high  # type: ignore
        specs.append(
            InputSpec(graph_input.name, shape, graph_input.dtype.name, kind, low, high)  # type: ignore
        )
    return specs
