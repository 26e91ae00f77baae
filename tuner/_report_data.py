"""The report's content as plain data: computed here and tested, drawn by ``_report_render``.

Three views of a study: the latency-drift scatter (feasibility, Pareto front, tolerance,
recommended trial), one table row per trial, and a heat map of which op types each timed plan
kept in FP32 (plans ordered by latency, so the fast plans' choices read at a glance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuner._errors import AmptuneError
from tuner._exports import RECOMMENDATION_RULE, pareto_records, recommend
from tuner._study_progress import describe_plan
from tuner._trial_records import (
    STUDY_CONTEXT,
    STUDY_SPACE,
    STUDY_TOLERANCE,
    TrialRecord,
    study_objectives,
    study_records,
)

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class ScatterPoint:
    trial: int
    latency_ms: float
    drift: float
    plotted_drift: float  # drift raised to the plot's floor where it is 0 (log axis)
    feasible: bool
    pareto: bool
    recommended: bool
    seed: str | None
    label: str


@dataclass(frozen=True)
class TrialRow:
    trial: int
    state: str
    status: str
    seed: str | None
    latency_ms: float | None
    latency_ci_ms: tuple[float, float] | None
    drift: float | None
    feasible: bool
    pareto: bool
    plan: str
    cast_count: int | None
    reason: str | None
    reused_from: int | None
    duration_s: float | None


@dataclass(frozen=True)
class OpTypeHeatmap:
    """``kept[i][j]`` is 1 when plan ``trials[j]`` keeps ``op_types[i]`` in FP32, else 0."""

    op_types: tuple[str, ...]
    trials: tuple[int, ...]
    latencies_ms: tuple[float, ...]
    kept: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class ReportData:
    title: str
    objectives: tuple[str, ...]
    tolerance: float | None
    device: str | None
    counts: dict[str, int]
    scatter: tuple[ScatterPoint, ...]
    drift_floor: float
    table: tuple[TrialRow, ...]
    heatmap: OpTypeHeatmap
    recommended: int | None
    rule: str
    notes: tuple[str, ...] = field(default_factory=tuple)


def compute_report_data(
    records: Sequence[TrialRecord],
    *,
    objectives: Sequence[str],
    pareto: Sequence[int],
    tolerance: float | None,
    title: str = "amptune study",
    device: str | None = None,
    searched_op_types: Sequence[str] = (),
) -> ReportData:
    """Everything the report shows, from trial records (see ``_trial_records``)."""
    pareto_set = set(pareto)
    notes: list[str] = []
    try:
        chosen, _ = recommend(records)
        recommended: int | None = chosen.number
    except AmptuneError as error:
        recommended = None
        notes.append(str(error))
    timed = [r for r in records if r.timed]
    positive = [r.drift for r in timed if 0 < r.drift < math.inf]
    floor = min(positive) / 10 if positive else 1e-9
    scatter = tuple(
        ScatterPoint(
            trial=r.number, latency_ms=r.latency_ms, drift=r.drift,
            plotted_drift=max(r.drift, floor), feasible=r.feasible, pareto=r.number in pareto_set,
            recommended=r.number == recommended, seed=r.seed,
            label=describe_plan(r.plan) if r.plan is not None else "",
        )
        for r in timed
    )
    if any(r.drift == 0 for r in timed):
        notes.append(f"drift 0 (identical outputs) is drawn at {floor:.2g} on the log axis")
    if device == "cpu":
        notes.append("latencies are CPU measurements (onnxruntime CPU EP), not GPU ones")
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    return ReportData(
        title=title,
        objectives=tuple(objectives),
        tolerance=tolerance,
        device=device,
        counts=counts,
        scatter=scatter,
        drift_floor=floor,
        table=tuple(_row(r, pareto_set) for r in records),
        heatmap=_heatmap(timed, searched_op_types),
        recommended=recommended,
        rule=RECOMMENDATION_RULE,
        notes=tuple(notes),
    )


def report_data_for_study(study: optuna.Study, title: str | None = None) -> ReportData:
    context = dict(study.user_attrs.get(STUDY_CONTEXT) or {})
    space = study.user_attrs.get(STUDY_SPACE) or {}
    searched: list[str] = []
    for description in space.get("spaces", []):
        searched.extend(description.get("searched_op_types", []))
    return compute_report_data(
        study_records(study),
        objectives=study_objectives(study),
        pareto=[r.number for r in pareto_records(study)],
        tolerance=study.user_attrs.get(STUDY_TOLERANCE),
        title=title or f"amptune study {study.study_name}",
        device=context.get("device"),
        searched_op_types=searched,
    )


def _row(record: TrialRecord, pareto: set[int]) -> TrialRow:
    measurement = record.measurement
    latency = measurement.latency if measurement is not None else None
    ci = None
    if latency is not None and latency.ci_low_ms is not None and latency.ci_high_ms is not None:
        ci = (latency.ci_low_ms, latency.ci_high_ms)
    reason = record.failure or (measurement.rejected if measurement is not None else None)
    return TrialRow(
        trial=record.number,
        state=record.state,
        status=record.status,
        seed=record.seed,
        latency_ms=latency.median_ms if latency is not None else None,
        latency_ci_ms=ci,
        drift=measurement.drift if measurement is not None else None,
        feasible=record.feasible,
        pareto=record.number in pareto,
        plan=describe_plan(record.plan, limit=6) if record.plan is not None else "",
        cast_count=(measurement.details.get("cast_count") if measurement is not None else None),
        reason=reason,
        reused_from=record.reused_from,
        duration_s=record.duration_s,
    )


def _heatmap(timed: Sequence[TrialRecord], searched: Sequence[str]) -> OpTypeHeatmap:
    distinct: dict[str | None, TrialRecord] = {}
    for record in sorted(timed, key=lambda r: r.number):
        distinct.setdefault(record.digest, record)
    plans = sorted(distinct.values(), key=lambda r: (r.latency_ms, r.number))
    op_types = set(searched)
    for record in plans:
        if record.plan is not None:
            op_types |= record.plan.keep_fp32_op_types
    ordered = tuple(sorted(op_types))

    def kept(record: TrialRecord, op_type: str) -> int:
        plan = record.plan
        return int(plan is not None and (plan.keep_all_fp32 or op_type in plan.keep_fp32_op_types))

    return OpTypeHeatmap(
        op_types=ordered,
        trials=tuple(r.number for r in plans),
        latencies_ms=tuple(r.latency_ms for r in plans),
        kept=tuple(tuple(kept(r, t) for r in plans) for t in ordered),
    )


def as_plain(data: Any) -> Any:
    """ReportData as JSON-able data (for a machine-readable copy next to the HTML)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(data) and not isinstance(data, type):
        return as_plain(asdict(data))
    if isinstance(data, dict):
        return {k: as_plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [as_plain(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    return data
