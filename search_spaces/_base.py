"""The extension point: a search space turns a trial's parameters into part of a precision plan.

A study composes several spaces (:class:`~search_spaces.ComposedSearchSpace`); each owns a few
parameters, named ``"<space name>.<dimension>"`` so that they never collide. Adding a dimension
(padding and layout come later) is one new module holding one :class:`SearchSpace` subclass,
imported from the package ``__init__``: subclasses register themselves by ``name``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from search_spaces._errors import SearchSpaceError
from search_spaces._model_facts import ModelFacts
from search_spaces._plan import LOWER_TYPES, PrecisionPlan


class ParameterSuggester(Protocol):
    """What a space needs from a trial: Optuna's ``Trial`` and ``FixedTrial`` both fit."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_float(self, name: str, low: float, high: float) -> float: ...


@dataclass(frozen=True)
class PlanFields:
    """The part of a :class:`PrecisionPlan` that one space decided.

    Set-valued fields of several spaces are united; a scalar field (``lower``) may be set by one
    space only, or by several that agree.
    """

    lower: str | None = None
    keep_fp32_op_types: frozenset[str] = frozenset()
    keep_fp32_nodes: frozenset[str] = frozenset()
    allow_tf32: bool | None = None

    def __post_init__(self) -> None:
        if self.lower is not None and self.lower not in LOWER_TYPES:
            raise SearchSpaceError(f"lower type {self.lower!r} is not one of {LOWER_TYPES}")
        object.__setattr__(self, "keep_fp32_op_types", frozenset(self.keep_fp32_op_types))
        object.__setattr__(self, "keep_fp32_nodes", frozenset(self.keep_fp32_nodes))

    def merged(self, other: PlanFields) -> PlanFields:
        if self.lower is not None and other.lower is not None and self.lower != other.lower:
            raise SearchSpaceError(
                f"two search spaces chose different lower types: {self.lower!r} and {other.lower!r}"
            )
        if None not in (self.allow_tf32, other.allow_tf32) and self.allow_tf32 != other.allow_tf32:
            raise SearchSpaceError("two search spaces chose different TF32 settings")
        return PlanFields(
            lower=self.lower if self.lower is not None else other.lower,
            keep_fp32_op_types=self.keep_fp32_op_types | other.keep_fp32_op_types,
            keep_fp32_nodes=self.keep_fp32_nodes | other.keep_fp32_nodes,
            allow_tf32=self.allow_tf32 if self.allow_tf32 is not None else other.allow_tf32,
        )


SPACE_TYPES: dict[str, type[SearchSpace]] = {}


class SearchSpace(abc.ABC):
    """One family of decisions the search may take about a model.

    Lifecycle, per study:

    1. the space is constructed with its options (from the study file), and any precomputed data
       it needs (the sensitive-nodes space takes a sensitivity ranking);
    2. :meth:`prepare` is called once, before the first trial, with the model's facts: the space
       decides its dimensions there and must not change them afterwards (Optuna samplers assume a
       fixed space; a resumed study calls ``prepare`` again with the same facts and must get the
       same dimensions);
    3. :meth:`params_for` is called once per seed plan, before the seeds are enqueued;
    4. :meth:`suggest` is called once per trial, with the trial, and returns this space's part of
       the plan. It asks the trial for each parameter through ``suggest_*``, which is how the
       sampler learns the space.

    Subclasses set ``name`` (a study file names the space by it) and implement the four methods.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None) and "name" in cls.__dict__:
            SPACE_TYPES[cls.name] = cls

    def parameter(self, dimension: str) -> str:
        """The Optuna parameter name of one of this space's dimensions."""
        return f"{self.name}.{dimension}"

    @abc.abstractmethod
    def prepare(self, facts: ModelFacts) -> None:
        """Called once per study before the first trial: fix the dimensions from the facts."""

    @abc.abstractmethod
    def suggest(self, trial: ParameterSuggester) -> PlanFields:
        """Called once per trial: ask the trial for this space's parameters, return plan fields."""

    @abc.abstractmethod
    def params_for(self, plan: PrecisionPlan) -> dict[str, Any]:
        """Called per seed plan: the parameter values of this space that best represent ``plan``.

        Seeds are enqueued with these values so that the sampler learns from them; the exact
        seed plan is what gets measured.
        """

    @abc.abstractmethod
    def cardinality(self) -> int | None:
        """How many different suggestions this space can make; None when it is continuous."""

    def describe(self) -> dict[str, Any]:
        """The dimensions, for logs and the report. Called after :meth:`prepare`."""
        return {"name": self.name}

    def _require_prepared(self, prepared: bool) -> None:
        if not prepared:
            raise SearchSpaceError(f"search space {self.name!r}: prepare() was not called")
