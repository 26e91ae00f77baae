"""Optuna study glue: a multi-objective search over precision plans, with measuring injected.

The evaluation is a callable ``evaluate(plan) -> TrialMeasurement`` (build the candidate, check its
accuracy first, then time it): the glue itself needs no GPU, so it is tested on the CPU with a real
evaluation of tiny models. What the glue guarantees:

- objectives latency and drift (and optionally energy, memory) are minimised; the tolerance is an
  Optuna 5 constraint set with ``trial.set_constraint`` (``drift - tolerance <= 0``), and so is
  the placement gate (no compute node on the CPU), so ``study.best_trials`` is the feasible front;
- a plan whose digest was already measured in this study (this run or an earlier one) is not
  measured again: its stored values are reused;
- seed plans are enqueued once per study, each distinct plan once;
- a trial whose evaluation raises or reports a failure becomes a FAILED trial with its reason,
  and the study goes on; NaN/Inf or drift far past the tolerance are recorded as rejected;
- every trial stores its plan and measurement as user attributes (see ``_trial_records``);
- any Optuna storage URL works; running again with the same storage and name resumes.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search_spaces import (
    ComposedSearchSpace,
    ModelFacts,
    PrecisionPlan,
    SeedPlan,
    SensitivityRanking,
    rank_sensitivity,
)
from tuner._config_fields import StudyConfigError
from tuner._errors import AmptuneError
from tuner._study_config import StudyConfig
from tuner._study_progress import ProgressCallback, TrialProgress
from tuner._study_setup import build_search_space, create_sampler
from tuner._trial_measurement import DRIFT, TrialMeasurement
from tuner._trial_records import (
    DIGEST,
    DRIFT_CONSTRAINT,
    FAILURE,
    MEASUREMENT,
    PLACEMENT_CONSTRAINT,
    PLAN,
    REUSED_FROM,
    SEED,
    STATUS,
    STUDY_CONTEXT,
    STUDY_FINGERPRINT,
    STUDY_OBJECTIVES,
    STUDY_SEEDS_ENQUEUED,
    STUDY_SENSITIVITY,
    STUDY_SPACE,
    STUDY_TOLERANCE,
)

if TYPE_CHECKING:
    import optuna

Evaluate = Callable[[PrecisionPlan], TrialMeasurement]
# The sampler proposing only measured plans this many times in a row means it has converged.
MAX_CONSECUTIVE_REUSES = 50


@dataclass(frozen=True)
class StudyOutcome:
    """How a :meth:`TuningStudy.run` ended."""

    finished: int  # trials finished in the study, this run and earlier ones
    measured: int  # evaluations this run
    reused: int
    failed: int
    rejected: int
    stopped_because: str
    elapsed_s: float


@dataclass
class _Known:
    """A plan measured earlier in the study, reused for an identical plan."""

    number: int
    state: str
    values: list[float] | None
    constraints: dict[str, float]
    measurement: dict[str, Any]
    failure: str | None


class TuningStudy:
    """One Optuna study of precision plans for one model and one metric."""

    def __init__(self, study: optuna.Study, objectives: Sequence[str], tolerance: float) -> None:
        self.study = study
        self.objectives = tuple(objectives)
        self.tolerance = tolerance

    @classmethod
    def open(
        cls,
        *,
        name: str,
        storage: str,
        objectives: Sequence[str],
        tolerance: float,
        sampler: optuna.samplers.BaseSampler | None = None,
        fingerprint: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> TuningStudy:
        """Create the study, or load it to resume; refuse one made for another model/settings.

        ``fingerprint``: what makes this study this study (model digest, metric, inputs...): a
        stored study with another fingerprint is refused. ``context``: how candidates run
        (``device``, ``provider_options``, ``model_path``...), stored for the exports.
        """
        import optuna

        try:
            study = optuna.create_study(
                study_name=name, storage=storage, sampler=sampler, load_if_exists=True,
                directions=["minimize"] * len(objectives),
            )
        except ValueError as error:  # e.g. the stored study has other directions
            raise AmptuneError(f"cannot open study {name!r} in {storage}: {error}") from None
        stored = study.user_attrs.get(STUDY_OBJECTIVES)
        if stored is not None and tuple(stored) != tuple(objectives):
            raise AmptuneError(
                f"study {name!r} in {storage} minimises {stored}, not {list(objectives)}; "
                "use another study name or output folder"
            )
        stored_fingerprint = study.user_attrs.get(STUDY_FINGERPRINT)
        if fingerprint is not None and stored_fingerprint is not None and stored_fingerprint != fingerprint:
            differing = sorted(
                key for key in set(fingerprint) | set(stored_fingerprint)
                if fingerprint.get(key) != stored_fingerprint.get(key)
            )
            raise AmptuneError(
                f"study {name!r} in {storage} was made for another model or settings (differs in "
                f"{', '.join(differing)}); use another study name or output folder to start anew"
            )
        if stored is None:
            study.set_user_attr(STUDY_OBJECTIVES, list(objectives))
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(objectives))
            study.set_user_attr(STUDY_TOLERANCE, tolerance)
        if fingerprint is not None and stored_fingerprint is None:
            study.set_user_attr(STUDY_FINGERPRINT, fingerprint)
        if context is not None:
            study.set_user_attr(STUDY_CONTEXT, context)
        return cls(study, objectives, tolerance)

    @classmethod
    def from_config(
        cls, config: StudyConfig, run_dir: str, fingerprint: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> TuningStudy:
        """The study a study file describes; ``context`` defaults to its runtime settings."""
        if context is None:
            context = {
                "device": config.runtime.device,
                "provider_options": config.runtime.session_provider_options(),
                "model": config.model.describe(),
                "metric": config.metric.name,
            }
        return cls.open(
            name=config.name,
            storage=config.storage_url(run_dir),
            objectives=config.objectives.names(),
            tolerance=config.metric.tolerance,
            sampler=create_sampler(config.sampler, config.seed),
            fingerprint=fingerprint,
            context=context,
        )

    # -- the one-off sensitivity pass, cached with the study ---------------------------------

    def cached_sensitivity(self, lower: str) -> SensitivityRanking | None:
        data = self.study.user_attrs.get(STUDY_SENSITIVITY)
        if data is None:
            return None
        ranking = SensitivityRanking.from_dict(data)
        return ranking if ranking.lower == lower else None

    def sensitivity(
        self,
        facts: ModelFacts,
        drift_of: Callable[[PrecisionPlan], float],
        *,
        time_share: dict[str, float] | None = None,
        lower: str = "fp16",
        max_groups: int = 256,
        metric: str = "",
        on_entry: Callable[[int, int, Any], None] | None = None,
    ) -> SensitivityRanking:
        """The stored ranking if this study has one for ``lower``, else run the pass and store it."""
        cached = self.cached_sensitivity(lower)
        if cached is not None:
            return cached
        ranking = rank_sensitivity(
            facts, drift_of, time_share=time_share, lower=lower, max_groups=max_groups,
            metric=metric, on_entry=on_entry,
        )
        self.study.set_user_attr(STUDY_SENSITIVITY, ranking.to_dict())
        return ranking

    # -- seeds ------------------------------------------------------------------------------

    def enqueue_seeds(self, space: ComposedSearchSpace, seeds: Sequence[SeedPlan]) -> list[str]:
        """Enqueue each distinct seed plan once per study; returns the names enqueued now."""
        if self.study.user_attrs.get(STUDY_SEEDS_ENQUEUED):
            return []
        known = {t.user_attrs.get(DIGEST) for t in self.study.get_trials(deepcopy=False)}
        enqueued: list[str] = []
        for seed in seeds:
            plan = space.normalise(seed.plan)
            if plan.digest() in known:
                continue
            known.add(plan.digest())
            self.study.enqueue_trial(
                space.params_for(plan), user_attrs={SEED: seed.name, PLAN: plan.to_dict()}
            )
            enqueued.append(seed.name)
        self.study.set_user_attr(STUDY_SEEDS_ENQUEUED, True)
        self.study.set_user_attr(STUDY_SPACE, space.describe())
        return enqueued

    # -- the search loop --------------------------------------------------------------------

    def run(
        self,
        space: ComposedSearchSpace,
        evaluate: Evaluate,
        *,
        n_trials: int | None = None,
        timeout_s: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> StudyOutcome:
        """Ask, evaluate, tell until ``n_trials`` trials of the study have finished (this run
        and earlier ones together), ``timeout_s`` has passed, or the space is exhausted."""
        import optuna

        if n_trials is None and timeout_s is None:
            raise StudyConfigError("a study needs a budget: n_trials, timeout_s, or both")
        started = time.monotonic()
        self._fail_interrupted_trials()
        known = self._known_plans()
        tried_params = {
            _params_key(t.params) for t in self.study.get_trials(deepcopy=False)
            if t.state.is_finished()
        }
        finished = self._finished_count()
        counts = {"measured": 0, "reused": 0, "failed": 0, "rejected": 0}
        cardinality = space.cardinality()
        consecutive_reuses = 0
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines replace its log
        try:
            while True:
                stop = self._stop_reason(
                    finished, n_trials, started, timeout_s, cardinality, tried_params,
                    consecutive_reuses,
                )
                if stop is not None:
                    break
                trial = self.study.ask()
                seed = trial.user_attrs.get(SEED)
                suggested = space.suggest(trial)  # fixes the params, seeded or not
                plan = PrecisionPlan.from_dict(trial.user_attrs[PLAN]) if seed else suggested
                digest = plan.digest()
                trial.set_user_attr(PLAN, plan.to_dict())
                trial.set_user_attr(DIGEST, digest)
                tried_params.add(_params_key(trial.params))
                if digest in known:
                    status, measurement = self._reuse(trial, known[digest])
                    consecutive_reuses += 1
                else:
                    consecutive_reuses = 0
                    measurement = self._evaluate(trial, evaluate, plan)
                    status = self._tell(trial, measurement)
                    known[digest] = self._known_from(trial.number)
                counts[status if status in counts else "reused"] += 1
                finished += 1
                if progress is not None:
                    progress(self._progress(trial.number, plan, seed, status, measurement,
                                            finished, n_trials, started))
        except KeyboardInterrupt:
            self._fail_interrupted_trials()
            raise
        finally:
            optuna.logging.set_verbosity(verbosity)
        return StudyOutcome(
            finished=finished, measured=counts["measured"], reused=counts["reused"],
            failed=counts["failed"], rejected=counts["rejected"], stopped_because=stop,
            elapsed_s=time.monotonic() - started,
        )

    def _stop_reason(
        self, finished: int, n_trials: int | None, started: float, timeout_s: float | None,
        cardinality: int | None, tried_params: set, consecutive_reuses: int,
    ) -> str | None:
        if n_trials is not None and finished >= n_trials:
            return f"{n_trials} trials finished"
        if timeout_s is not None and time.monotonic() - started >= timeout_s:
            return f"timeout of {timeout_s:g} s reached"
        waiting = self._waiting_count()
        if waiting == 0 and cardinality is not None and len(tried_params) >= cardinality:
            return f"all {cardinality} combinations of the search space were tried"
        if waiting == 0 and consecutive_reuses >= MAX_CONSECUTIVE_REUSES:
            return f"the sampler proposed only measured plans {consecutive_reuses} times in a row"
        return None

    def _evaluate(
        self, trial: optuna.Trial, evaluate: Evaluate, plan: PrecisionPlan
    ) -> TrialMeasurement:
        try:
            measurement = evaluate(plan)
        except KeyboardInterrupt:
            raise
        except Exception as error:  # noqa: BLE001 - a failed build or run is a FAILED trial
            detail = traceback.format_exc(limit=8)
            trial.set_user_attr("amptune.traceback", detail[-4000:])
            return TrialMeasurement.failed(f"{type(error).__name__}: {error}")
        if not isinstance(measurement, TrialMeasurement):
            return TrialMeasurement.failed(
                f"evaluate returned {type(measurement).__name__}, not a TrialMeasurement"
            )
        if measurement.rejected is not None and measurement.drift is not None and (
            measurement.drift <= self.tolerance
        ):
            return TrialMeasurement.failed(
                f"inconsistent measurement: rejected ({measurement.rejected}) although its drift "
                f"{measurement.drift:g} is within the tolerance {self.tolerance:g}"
            )
        return measurement

    def _tell(self, trial: optuna.Trial, measurement: TrialMeasurement) -> str:
        from optuna.trial import TrialState

        trial.set_user_attr(MEASUREMENT, measurement.to_dict())
        status = measurement.status
        trial.set_user_attr(STATUS, status)
        if status == "failed":
            trial.set_user_attr(FAILURE, measurement.failure)
            self.study.tell(trial, state=TrialState.FAIL)
            return status
        drift = measurement.objective_value(DRIFT)
        trial.set_constraint(DRIFT_CONSTRAINT, drift - self.tolerance)
        trial.set_constraint(PLACEMENT_CONSTRAINT, float(measurement.cpu_placed_nodes))
        self.study.tell(trial, [measurement.objective_value(name) for name in self.objectives])
        return status

    def _reuse(self, trial: optuna.Trial, known: _Known) -> tuple[str, TrialMeasurement]:
        from optuna.trial import TrialState

        trial.set_user_attr(STATUS, "reused")
        trial.set_user_attr(REUSED_FROM, known.number)
        trial.set_user_attr(MEASUREMENT, known.measurement)
        measurement = TrialMeasurement.from_dict(known.measurement)
        if known.state != "COMPLETE" or known.values is None:
            trial.set_user_attr(FAILURE, known.failure)
            self.study.tell(trial, state=TrialState.FAIL)
            return "reused", measurement
        for key, value in known.constraints.items():
            trial.set_constraint(key, value)
        self.study.tell(trial, known.values)
        return "reused", measurement

    def _known_from(self, number: int) -> _Known:
        return _known(self.study.get_trials(deepcopy=False)[number])

    def _known_plans(self) -> dict[str, _Known]:
        known: dict[str, _Known] = {}
        for trial in self.study.get_trials(deepcopy=False):
            digest = trial.user_attrs.get(DIGEST)
            if (
                digest is None or digest in known or MEASUREMENT not in trial.user_attrs
                or trial.user_attrs.get(STATUS) in ("reused", "interrupted")
                or not trial.state.is_finished()
            ):
                continue
            known[digest] = _known(trial)  # not _known_from: that reads every trial again
        return known

    def _finished_count(self) -> int:
        return sum(
            1 for t in self.study.get_trials(deepcopy=False)
            if t.state.is_finished() and t.user_attrs.get(STATUS) != "interrupted"
        )

    def _waiting_count(self) -> int:
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def _fail_interrupted_trials(self) -> None:
        """Trials left RUNNING by a run that was stopped (this process or an earlier one).

        A study is run by one process at a time (GPU timing must not share the device), so any
        RUNNING trial is a leftover; it is failed as interrupted and its plan may be tried again.
        """
        import optuna
        from optuna.trial import TrialState

        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            running = optuna.trial.Trial(self.study, frozen._trial_id)
            running.set_user_attr(STATUS, "interrupted")
            running.set_user_attr(FAILURE, "interrupted before it finished")
            self.study.tell(running, state=TrialState.FAIL, skip_if_finished=True)

    def _progress(
        self, number: int, plan: PrecisionPlan, seed: str | None, status: str,
        measurement: TrialMeasurement, finished: int, n_trials: int | None, started: float,
    ) -> TrialProgress:
        best = None
        try:
            feasible = self.study.best_trials
        except ValueError:
            feasible = []
        if feasible:
            fastest = min(feasible, key=lambda t: t.values[0])
            best = (fastest.number, fastest.values[0])
        drift = measurement.drift
        return TrialProgress(
            number=number, finished=finished, budget=n_trials, status=status, seed=seed,
            plan=plan,
            latency_ms=measurement.latency.median_ms if measurement.latency else None,
            latency_device=measurement.latency.device if measurement.latency else None,
            drift=drift,
            feasible=(measurement.failure is None and drift is not None and drift <= self.tolerance
                      and measurement.cpu_placed_nodes == 0),
            failed=measurement.failure is not None,
            reason=measurement.failure or measurement.rejected,
            best=best,
            elapsed_s=time.monotonic() - started,
        )


def _known(frozen: optuna.trial.FrozenTrial) -> _Known:
    return _Known(
        number=frozen.number, state=frozen.state.name, values=frozen.values,
        constraints=dict(frozen.constraints), measurement=frozen.user_attrs[MEASUREMENT],
        failure=frozen.user_attrs.get(FAILURE),
    )


def _params_key(params: dict[str, Any]) -> frozenset:
    return frozenset((k, v if not isinstance(v, float) else round(v, 12)) for k, v in params.items())


__all__ = [
    "Evaluate",
    "StudyOutcome",
    "TuningStudy",
    "build_search_space",
    "create_sampler",
]
