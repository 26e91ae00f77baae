"""Accuracy drift of a candidate's outputs against the FP32 reference, over many samples.

Per output, pooled over all samples: max and mean absolute error, max relative error with a floor
(so that near-zero references do not make it meaningless), relative L2 error, cosine similarity,
SNR in dB, argmax agreement along the last axis, and NaN/Inf counts. The error metrics are taken
over the positions where both reference and candidate are finite; non-finite values are counted
separately, and any that the reference does not also have make every drift objective infinite.
User metrics (``module:function`` or a callable) compare one sample's reference and candidate
outputs and return a drift (0 = identical, larger = worse).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from profilers._errors import ProfilingError
from profilers._import_target import load_callable

Outputs = Mapping[str, np.ndarray]
UserMetricFunction = Callable[[Outputs, Outputs], float]

DEFAULT_RELATIVE_FLOOR = 1e-3

# Name -> how the per-output value becomes a drift where lower is better (see DriftReport.objective).
DRIFT_METRICS: tuple[str, ...] = (
    "max_abs",
    "mean_abs",
    "max_rel",
    "rel_l2",
    "cosine",
    "snr_db",
    "argmax_agreement",
)


@dataclass(frozen=True)
class UserMetric:
    """A named drift function of (reference outputs, candidate outputs) for one sample."""

    name: str
    function: UserMetricFunction

    @classmethod
    def from_target(cls, target: str, name: str | None = None) -> UserMetric:
        function = load_callable(target, purpose="drift metric")
        return cls(name or target.rpartition(":")[2], function)


@dataclass(frozen=True)
class OutputDrift:
    """Drift of one output, pooled over all samples."""

    name: str
    elements: int
    max_abs: float
    mean_abs: float
    max_rel: float
    rel_l2: float
    cosine: float
    min_sample_cosine: float
    snr_db: float
    argmax_agreement: float | None
    nan_count: int
    inf_count: int
    reference_nan_count: int
    reference_inf_count: int

    @property
    def new_non_finite(self) -> int:
        """Non-finite values the candidate has beyond those of the reference."""
        return max(0, self.nan_count + self.inf_count - self.reference_nan_count
                   - self.reference_inf_count)

    def drift(self, metric: str) -> float:
        """The metric as a lower-is-better drift: 1 - cosine, -SNR dB, 1 - argmax agreement."""
        if self.new_non_finite:
            return math.inf
        if metric == "cosine":
            return 1.0 - self.cosine
        if metric == "snr_db":
            return -self.snr_db
        if metric == "argmax_agreement":
            return 0.0 if self.argmax_agreement is None else 1.0 - self.argmax_agreement
        if metric in DRIFT_METRICS:
            return float(getattr(self, metric))
        raise ProfilingError(
            f"drift metric {metric!r} is not known; valid: {', '.join(DRIFT_METRICS)} or user:NAME"
        )


@dataclass(frozen=True)
class UserMetricResult:
    name: str
    mean: float
    max: float
    per_sample: tuple[float, ...]


@dataclass(frozen=True)
class DriftReport:
    """Drift of every output over ``samples`` samples, plus each user metric."""

    samples: int
    relative_floor: float
    outputs: dict[str, OutputDrift]
    user_metrics: dict[str, UserMetricResult] = field(default_factory=dict)

    @property
    def has_new_non_finite(self) -> bool:
        return any(o.new_non_finite for o in self.outputs.values())

    def objective(self, metric: str, output: str | None = None, reduce: str = "mean") -> float:
        """The single lower-is-better number that drives the tuner.

        ``metric`` is one of :data:`DRIFT_METRICS` (worst over outputs unless ``output`` names one)
        or ``user:NAME`` (``reduce`` = ``mean`` or ``max`` over samples). NaN/Inf that the
        reference does not have make it infinite, whatever the metric.
        """
        if self.has_new_non_finite:
            return math.inf
        if metric.startswith("user:"):
            name = metric[len("user:"):]
            if name not in self.user_metrics:
                raise ProfilingError(
                    f"drift metric {metric!r}: no user metric named {name!r}; measured: "
                    f"{', '.join(sorted(self.user_metrics)) or 'none'}"
                )
            if reduce not in ("mean", "max"):
                raise ProfilingError(f"reduce must be 'mean' or 'max', got {reduce!r}")
            return float(getattr(self.user_metrics[name], reduce))
        if output is not None:
            if output not in self.outputs:
                raise ProfilingError(
                    f"drift output {output!r} is not an output of the model; outputs: "
                    f"{', '.join(sorted(self.outputs))}"
                )
            return self.outputs[output].drift(metric)
        return max(o.drift(metric) for o in self.outputs.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "relative_floor": self.relative_floor,
            "has_new_non_finite": self.has_new_non_finite,
            "outputs": {name: _json_floats(asdict(o)) for name, o in self.outputs.items()},
            "user_metrics": {
                name: _json_floats(asdict(m)) for name, m in self.user_metrics.items()
            },
        }


def _json_floats(data: Any) -> Any:
    """JSON has no NaN or infinity: write them as strings that say what they are."""
    if isinstance(data, float) and not math.isfinite(data):
        return "nan" if math.isnan(data) else ("inf" if data > 0 else "-inf")
    if isinstance(data, dict):
        return {k: _json_floats(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_json_floats(v) for v in data]
    return data


class _OutputAccumulator:
    """Running sums for one output, so that samples need not be kept."""

    def __init__(self, name: str, relative_floor: float) -> None:
        self.name = name
        self.floor = relative_floor
        self.elements = 0
        self.finite = 0
        self.sum_abs = 0.0
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.sum_sq_diff = 0.0
        self.sum_sq_ref = 0.0
        self.sum_sq_cand = 0.0
        self.dot = 0.0
        self.min_sample_cosine = 1.0
        self.argmax_equal = 0
        self.argmax_total = 0
        self.argmax_applicable = True
        self.counts = {"nan": 0, "inf": 0, "ref_nan": 0, "ref_inf": 0}

    def update(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        if reference.shape != candidate.shape:
            raise ProfilingError(
                f"output {self.name!r}: candidate shape {list(candidate.shape)} differs from the "
                f"reference's {list(reference.shape)}"
            )
        ref = np.asarray(reference, dtype=np.float64).ravel()
        cand = np.asarray(candidate, dtype=np.float64).ravel()
        self.elements += ref.size
        self.counts["nan"] += int(np.isnan(cand).sum())
        self.counts["inf"] += int(np.isinf(cand).sum())
        self.counts["ref_nan"] += int(np.isnan(ref).sum())
        self.counts["ref_inf"] += int(np.isinf(ref).sum())
        both = np.isfinite(ref) & np.isfinite(cand)
        ref, cand = ref[both], cand[both]
        diff = np.abs(cand - ref)
        self.finite += ref.size
        if ref.size:
            self.sum_abs += float(diff.sum())
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.max_rel = max(
                self.max_rel, float((diff / np.maximum(np.abs(ref), self.floor)).max())
            )
        sq_ref, sq_cand, dot = float(ref @ ref), float(cand @ cand), float(ref @ cand)
        self.sum_sq_diff += float(diff @ diff)
        self.sum_sq_ref += sq_ref
        self.sum_sq_cand += sq_cand
        self.dot += dot
        self.min_sample_cosine = min(self.min_sample_cosine, _cosine(dot, sq_ref, sq_cand))
        if reference.ndim == 0 or reference.shape[-1] < 2:
            self.argmax_applicable = False
        else:
            equal = np.argmax(reference, axis=-1) == np.argmax(candidate, axis=-1)
            self.argmax_equal += int(equal.sum())
            self.argmax_total += int(equal.size)

    def result(self) -> OutputDrift:
        if self.sum_sq_diff == 0.0:
            snr = math.inf
        elif self.sum_sq_ref == 0.0:
            snr = -math.inf
        else:
            snr = 10.0 * math.log10(self.sum_sq_ref / self.sum_sq_diff)
        rel_l2 = (
            math.sqrt(self.sum_sq_diff / self.sum_sq_ref)
            if self.sum_sq_ref > 0
            else (0.0 if self.sum_sq_diff == 0 else math.inf)
        )
        return OutputDrift(
            name=self.name,
            elements=self.elements,
            max_abs=self.max_abs,
            mean_abs=self.sum_abs / self.finite if self.finite else 0.0,
            max_rel=self.max_rel,
            rel_l2=rel_l2,
            cosine=_cosine(self.dot, self.sum_sq_ref, self.sum_sq_cand),
            min_sample_cosine=self.min_sample_cosine,
            snr_db=snr,
            argmax_agreement=(
                self.argmax_equal / self.argmax_total
                if self.argmax_applicable and self.argmax_total
                else None
            ),
            nan_count=self.counts["nan"],
            inf_count=self.counts["inf"],
            reference_nan_count=self.counts["ref_nan"],
            reference_inf_count=self.counts["ref_inf"],
        )


def _cosine(dot: float, sq_a: float, sq_b: float) -> float:
    if sq_a == 0.0 and sq_b == 0.0:
        return 1.0  # two zero vectors are identical
    if sq_a == 0.0 or sq_b == 0.0:
        return 0.0
    return dot / math.sqrt(sq_a * sq_b)


def compare_outputs(
    references: Sequence[Outputs],
    candidates: Sequence[Outputs],
    *,
    relative_floor: float = DEFAULT_RELATIVE_FLOOR,
    user_metrics: Sequence[UserMetric] = (),
) -> DriftReport:
    """Drift of ``candidates`` against ``references``: one dict of outputs per sample, same order."""
    if len(references) != len(candidates):
        raise ProfilingError(
            f"{len(candidates)} candidate samples for {len(references)} reference samples"
        )
    if not references:
        raise ProfilingError("drift needs at least one sample")
    if relative_floor <= 0:
        raise ProfilingError(f"relative_floor must be > 0, got {relative_floor}")
    names = list(references[0])
    accumulators = {name: _OutputAccumulator(name, relative_floor) for name in names}
    per_sample: dict[str, list[float]] = {m.name: [] for m in user_metrics}
    for index, (reference, candidate) in enumerate(zip(references, candidates)):
        if set(candidate) != set(reference):
            raise ProfilingError(
                f"sample {index}: candidate outputs {sorted(candidate)} differ from the "
                f"reference's {sorted(reference)}"
            )
        for name in names:
            accumulators[name].update(reference[name], candidate[name])
        for metric in user_metrics:
            try:
                value = float(metric.function(reference, candidate))
            except Exception as error:  # a user's function: say whose and where
                raise ProfilingError(
                    f"drift metric {metric.name!r} failed on sample {index}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            per_sample[metric.name].append(value)
    return DriftReport(
        samples=len(references),
        relative_floor=relative_floor,
        outputs={name: acc.result() for name, acc in accumulators.items()},
        user_metrics={
            name: UserMetricResult(
                name,
                float(np.mean(values)),
                float(np.max(values)),
                tuple(values),
            )
            for name, values in per_sample.items()
        },
    )


class ThresholdedIoUDrift:
    """1 - IoU of an output binarised at ``threshold`` (text maps, segmentation masks).

    Both masks empty counts as IoU 1. ``output`` defaults to the first output.
    """

    def __init__(self, threshold: float = 0.3, output: str | None = None) -> None:
        self.threshold = threshold
        self.output = output

    def __call__(self, reference: Outputs, candidate: Outputs) -> float:
        name = self.output if self.output is not None else next(iter(reference))
        ref_mask = np.asarray(reference[name]) > self.threshold
        cand_mask = np.asarray(candidate[name]) > self.threshold
        union = int(np.logical_or(ref_mask, cand_mask).sum())
        if union == 0:
            return 0.0
        return 1.0 - int(np.logical_and(ref_mask, cand_mask).sum()) / union
