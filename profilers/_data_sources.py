"""Where input feeds come from: synthetic specs, ``.npz`` files, or a user's callable.

Every source is materialised once into a list of feeds (:func:`materialise_feeds`), so that the FP32
reference and every candidate see exactly the same arrays, and each feed is checked against the
model's declared inputs before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from profilers._errors import DataSourceError, ProfilingError
from profilers._import_target import load_callable
from profilers._input_spec import GraphInput, InputSpec

Feed = dict[str, np.ndarray]

_CALLABLE_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@runtime_checkable
class DataSource(Protocol):
    """A source of model input feeds.

    ``feeds`` is called once per profiling job; it yields ``{input name: array}`` dicts, one per
    sample. ``describe`` is called when a measurement's provenance is written: it returns a small
    JSON-able dict saying where the data came from.
    """

    def feeds(self) -> Iterator[Feed]: ...

    def describe(self) -> dict[str, Any]: ...


class SyntheticDataSource:
    """``num_samples`` feeds drawn from input specs with one seeded generator: reproducible."""

    def __init__(self, specs: Sequence[InputSpec], num_samples: int = 8, seed: int = 0) -> None:
        if num_samples < 1:
            raise DataSourceError(f"num_samples must be >= 1, got {num_samples}")
        if not specs:
            raise DataSourceError("a synthetic data source needs at least one input spec")
        self.specs = tuple(specs)
        self.num_samples = num_samples
        self.seed = seed

    def feeds(self) -> Iterator[Feed]:
        rng = np.random.default_rng(self.seed)
        for _ in range(self.num_samples):
            yield {spec.name: spec.sample(rng) for spec in self.specs}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "synthetic",
            "num_samples": self.num_samples,
            "seed": self.seed,
            "inputs": [spec.to_dict() for spec in self.specs],
        }


class NpzDataSource:
    """One ``.npz`` file is one feed (arrays named after the inputs); a folder is its sorted files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.files = sorted(self.path.glob("*.npz"))
            if not self.files:
                raise DataSourceError(f"data folder {str(self.path)!r} holds no .npz files")
        elif self.path.is_file():
            if self.path.suffix != ".npz":
                raise DataSourceError(
                    f"data file {str(self.path)!r} is not a .npz file; give a .npz file, a folder "
                    "of them, or module:function"
                )
            self.files = [self.path]
        else:
            raise DataSourceError(f"data path {str(self.path)!r} does not exist")

    def feeds(self) -> Iterator[Feed]:
        for file in self.files:
            try:
                with np.load(file, allow_pickle=False) as archive:
                    yield {name: np.asarray(archive[name]) for name in archive.files}
            except (OSError, ValueError) as error:
                raise DataSourceError(f"cannot read {str(file)!r} as .npz: {error}") from None

    def describe(self) -> dict[str, Any]:
        return {"kind": "npz", "path": str(self.path), "files": [f.name for f in self.files]}


class CallableDataSource:
    """A user function ``module:function`` that returns (or yields) an iterable of feeds."""

    def __init__(self, target: str, kwargs: Mapping[str, Any] | None = None) -> None:
        self.target = target
        self.kwargs = dict(kwargs or {})
        self.function = load_callable(target, purpose="data source", error=DataSourceError)

    def feeds(self) -> Iterator[Feed]:
        produced = self.function(**self.kwargs)
        if isinstance(produced, Mapping):
            raise DataSourceError(
                f"data source {self.target!r} returned one feed (a dict); it must return or yield "
                "an iterable of feeds"
            )
        try:
            iterator = iter(produced)
        except TypeError:
            raise DataSourceError(
                f"data source {self.target!r} returned {type(produced).__name__}, not an iterable "
                "of feeds"
            ) from None
        for index, feed in enumerate(iterator):
            if not isinstance(feed, Mapping):
                raise DataSourceError(
                    f"data source {self.target!r}: item {index} is {type(feed).__name__}, not a "
                    "dict of input name -> array"
                )
            yield {str(name): np.asarray(value) for name, value in feed.items()}

    def describe(self) -> dict[str, Any]:
        return {"kind": "callable", "target": self.target, "kwargs": sorted(self.kwargs)}


def data_source_from_argument(text: str) -> DataSource:
    """``--data`` as given: a ``.npz`` file, a folder of them, or ``module:function``."""
    if Path(text).exists():
        return NpzDataSource(text)
    if _CALLABLE_TARGET.match(text):
        return CallableDataSource(text)
    raise DataSourceError(
        f"--data {text!r} is neither an existing .npz file or folder nor module:function"
    )


def check_feed(feed: Mapping[str, np.ndarray], inputs: Sequence[GraphInput], index: int) -> None:
    """Refuses a feed whose names, dtypes, ranks or fixed dimensions differ from the model's."""
    expected = {i.name: i for i in inputs}
    missing = sorted(set(expected) - set(feed))
    extra = sorted(set(feed) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unknown {', '.join(map(repr, extra))}")
        raise DataSourceError(
            f"sample {index}: {'; '.join(parts)}; the model's inputs are "
            f"{', '.join(sorted(expected))}"
        )
    for name, graph_input in expected.items():
        array = feed[name]
        if array.dtype != graph_input.dtype:
            raise DataSourceError(
                f"sample {index}: input {name!r} has dtype {array.dtype}, the model wants "
                f"{graph_input.dtype}"
            )
        if array.ndim != len(graph_input.dims):
            raise DataSourceError(
                f"sample {index}: input {name!r} has shape {list(array.shape)}, the model "
                f"declares {graph_input.describe_shape()}"
            )
        for axis, declared in enumerate(graph_input.dims):
            if declared is not None and array.shape[axis] != declared:
                raise DataSourceError(
                    f"sample {index}: input {name!r} has shape {list(array.shape)}, dimension "
                    f"{axis} must be {declared}"
                )


def materialise_feeds(
    source: DataSource, inputs: Sequence[GraphInput], max_samples: int | None = None
) -> list[Feed]:
    """All feeds of ``source`` (at most ``max_samples``), checked and made C-contiguous."""
    feeds: list[Feed] = []
    try:
        for index, feed in enumerate(source.feeds()):
            if max_samples is not None and index >= max_samples:
                break
            check_feed(feed, inputs, index)
            feeds.append({name: np.ascontiguousarray(array) for name, array in feed.items()})
    except ProfilingError:
        raise
    except Exception as error:  # a user's callable can raise anything: name it and stop
        raise DataSourceError(
            f"data source {source.describe().get('kind')} failed: {type(error).__name__}: {error}"
        ) from error
    if not feeds:
        raise DataSourceError("the data source produced no samples")
    return feeds


def feeds_for_inputs(feeds: Sequence[Feed], inputs: Sequence[GraphInput]) -> list[Feed]:
    """The same feeds in the dtypes a candidate's inputs declare (a candidate converted without
    ``keep_io_types`` takes FP16 inputs: the values are rounded exactly as the candidate sees them).
    Only float-to-float changes are made; anything else is refused."""
    wanted = {i.name: i.dtype for i in inputs}
    adapted = []
    for index, feed in enumerate(feeds):
        converted: Feed = {}
        for name, array in feed.items():
            dtype = wanted.get(name, array.dtype)
            if dtype == array.dtype:
                converted[name] = array
            elif array.dtype.kind == "f" and dtype.kind == "f":
                converted[name] = array.astype(dtype)
            else:
                raise DataSourceError(
                    f"sample {index}: input {name!r} is {array.dtype} but the candidate wants "
                    f"{dtype}; only float inputs are converted"
                )
        adapted.append(converted)
    return adapted
