"""How a trial's plan and measurements are stored on an Optuna trial, and read back.

Every trial carries, as user attributes: the plan (``amptune.plan``) and its digest, the seed it
came from if any, its status (measured, reused, rejected, failed), the measurement, and for a
reused trial the number of the trial that measured the plan. Exports and reports read trials
only through :func:`trial_record`, so that the storage layout lives in this one module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search_spaces import PrecisionPlan
from tuner._trial_measurement import TrialMeasurement

if TYPE_CHECKING:
    import optuna

PLAN = "amptune.plan"
DIGEST = "amptune.digest"
SEED = "amptune.seed"
STATUS = "amptune.status"
MEASUREMENT = "amptune.measurement"
REUSED_FROM = "amptune.reused_from"
FAILURE = "amptune.failure"

# Study-level user attributes.
STUDY_OBJECTIVES = "amptune.objectives"
STUDY_TOLERANCE = "amptune.tolerance"
STUDY_FINGERPRINT = "amptune.fingerprint"
STUDY_SEEDS_ENQUEUED = "amptune.seeds_enqueued"
STUDY_SENSITIVITY = "amptune.sensitivity"
STUDY_SPACE = "amptune.search_space"
# Where and how candidates run (device, provider options, model path, metric): the exports' snippets.
STUDY_CONTEXT = "amptune.context"

# Constraint names (Optuna 5: trial.set_constraint); feasible when every value is <= 0.
DRIFT_CONSTRAINT = "drift_over_tolerance"
PLACEMENT_CONSTRAINT = "cpu_placed_nodes"

STATUSES = ("measured", "reused", "rejected", "failed", "interrupted")


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the exports and the report see it."""

    number: int
    state: str  # Optuna's state name: COMPLETE, FAIL, RUNNING, ...
    status: str  # one of STATUSES, or "unknown" for trials amptune did not write
    plan: PrecisionPlan | None
    digest: str | None
    seed: str | None
    measurement: TrialMeasurement | None
    values: dict[str, float]  # objective name -> value (empty unless COMPLETE)
    constraints: dict[str, float]
    reused_from: int | None
    failure: str | None
    duration_s: float | None

    @property
    def feasible(self) -> bool:
        return (
            self.state == "COMPLETE"
            and bool(self.constraints)
            and all(value <= 0 for value in self.constraints.values())
        )

    @property
    def latency_ms(self) -> float:
        return self.values.get("latency_ms", math.inf)

    @property
    def drift(self) -> float:
        return self.values.get("drift", math.inf)

    @property
    def timed(self) -> bool:
        """Completed with a finite latency (rejected trials were not timed)."""
        return self.state == "COMPLETE" and math.isfinite(self.latency_ms)


def trial_record(trial: optuna.trial.FrozenTrial, objectives: Iterable[str]) -> TrialRecord:
    attrs: Mapping[str, Any] = trial.user_attrs
    plan_data = attrs.get(PLAN)
    measurement_data = attrs.get(MEASUREMENT)
    state = trial.state.name
    values: dict[str, float] = {}
    if state == "COMPLETE" and trial.values is not None:
        values = {name: float(v) for name, v in zip(objectives, trial.values)}
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return TrialRecord(
        number=trial.number,
        state=state,
        status=str(attrs.get(STATUS, "unknown")),
        plan=PrecisionPlan.from_dict(plan_data) if plan_data is not None else None,
        digest=attrs.get(DIGEST),
        seed=attrs.get(SEED),
        measurement=(
            TrialMeasurement.from_dict(measurement_data) if measurement_data is not None else None
        ),
        values=values,
        constraints=dict(trial.constraints),
        reused_from=attrs.get(REUSED_FROM),
        failure=attrs.get(FAILURE),
        duration_s=duration,
    )


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    """The objective names a study was created with (stored on it by the tuner)."""
    stored = study.user_attrs.get(STUDY_OBJECTIVES)
    if stored:
        return tuple(stored)
    names = study.metric_names
    if names:
        return tuple(names)
    return tuple(f"objective_{i}" for i in range(len(study.directions)))


def study_records(study: optuna.Study) -> list[TrialRecord]:
    objectives = study_objectives(study)
    return [trial_record(trial, objectives) for trial in study.get_trials(deepcopy=False)]
