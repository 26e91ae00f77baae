"""A study file's ``[metric]`` as the profilers measure it: which user metrics the drift run must
compute, and how a :class:`profilers.DriftReport` becomes the one drift the study minimises.

- ``max_abs`` ... ``argmax_agreement``: the profilers' pooled per-output metrics
  (:meth:`DriftReport.objective`), worst over ``outputs`` (all outputs when none are named);
- ``thresholded_iou``: :class:`profilers.ThresholdedIoUDrift` (1 - IoU of the map binarised at
  ``threshold``), one per named output;
- ``mean_pooled_cosine``: :class:`profilers._embedding_drift.MeanPooledCosineDrift`, one per
  named output;
- ``module:function``: the user's function of (reference outputs, candidate outputs) per sample.

The three last are per-sample metrics, reduced over samples with ``reduce`` (mean or max).
NaN/Inf that the reference does not have make the drift infinite, whatever the metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuner._config_fields import StudyConfigError
from tuner._errors import AmptuneError
from tuner._study_config import MetricConfig

# Pooled metrics of profilers._drift.DRIFT_METRICS (kept here as names so that importing this
# module does not import the profilers' numpy code before it is needed).
POOLED_METRICS: tuple[str, ...] = (
    "max_abs", "mean_abs", "max_rel", "rel_l2", "cosine", "snr_db", "argmax_agreement",
)
PER_SAMPLE_METRICS: tuple[str, ...] = ("thresholded_iou", "mean_pooled_cosine")


@dataclass(frozen=True)
class StudyMetric:
    """The study's drift: ``user_metrics`` go to the profiler; :meth:`value` reads the report."""

    config: MetricConfig
    outputs: tuple[str, ...]  # the outputs it is computed on (all model outputs when none named)
    user_metrics: tuple[Any, ...]  # profilers.UserMetric, one per (metric, output)

    @classmethod
    def from_config(cls, config: MetricConfig, model_outputs: Sequence[str]) -> StudyMetric:
        """Checks the named outputs against the model's, and builds the per-sample metrics."""
        from profilers import ThresholdedIoUDrift, UserMetric
        from profilers._embedding_drift import MeanPooledCosineDrift

        known = list(model_outputs)
        unknown = [name for name in config.outputs if name not in known]
        if unknown:
            raise StudyConfigError(
                f"[metric] outputs = {list(config.outputs)}: {', '.join(map(repr, unknown))} "
                f"is not an output of the model; its outputs: {', '.join(known)}"
            )
        outputs = tuple(config.outputs) or tuple(known)
        metrics: list[Any] = []
        if config.name == "thresholded_iou":
            threshold = 0.5 if config.threshold is None else config.threshold
            metrics = [UserMetric(f"thresholded_iou[{name}]", ThresholdedIoUDrift(threshold, name))
                       for name in outputs]
        elif config.name == "mean_pooled_cosine":
            metrics = [UserMetric(f"mean_pooled_cosine[{name}]", MeanPooledCosineDrift(name))
                       for name in outputs]
        elif config.is_user_function:
            try:
                metrics = [UserMetric.from_target(config.name, name=config.name)]
            except AmptuneError as error:  # the profilers' error: say which field named it
                raise StudyConfigError(f"[metric] name = {config.name!r}: {error}") from None
        elif config.name not in POOLED_METRICS:
            raise StudyConfigError(
                f"[metric] name = {config.name!r} is not known; valid: "
                f"{', '.join(POOLED_METRICS + PER_SAMPLE_METRICS)}, or 'module:function'"
            )
        return cls(config, outputs, tuple(metrics))

    @property
    def name(self) -> str:
        return self.config.name

    def value(self, report: Any) -> float:
        """The drift of a :class:`profilers.DriftReport` (``inf`` for new NaN/Inf)."""
        if report.has_new_non_finite:
            return math.inf
        if self.user_metrics:
            values = [report.objective(f"user:{m.name}", reduce=self.config.reduce)
                      for m in self.user_metrics]
        else:
            values = [report.objective(self.config.name, output=name) for name in self.outputs]
        drift = max(float(v) for v in values)
        return math.inf if math.isnan(drift) else drift

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "tolerance": self.config.tolerance,
            "outputs": list(self.outputs),
            "threshold": self.config.threshold,
            "reduce": self.config.reduce if self.user_metrics else None,
            "reject_factor": self.config.reject_factor,
        }
