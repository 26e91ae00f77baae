"""What a finished study leaves in the run directory, in the forms other tools take.

- ``pareto.csv``: the feasible Pareto trials (Optuna's ``best_trials``, one row per distinct plan).
- ``recommended.json``: the recommended trial (rule: :data:`RECOMMENDATION_RULE`).
- ``disabled_op_types.txt``: the ONNX op types the recommended plan keeps in FP32.
- ``paddle_disabled_ops.txt`` + ``paddle_inference_snippet.py``: the same as Paddle operators
  (through ``tuner._paddle_ops``), and how Paddle Inference takes them.
- ``node_block_list.json``: ``op_block_list`` / ``node_block_list`` for onnxruntime's (and
  onnxconverter-common's) ``convert_float_to_float16``.
- ``model_mixed.onnx`` + ``onnxruntime_snippet.py``: the recommended model, converted with
  ``convert_precision`` (explicit Casts), and a session carrying the measured provider options.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces import PrecisionPlan
from tuner._errors import AmptuneError
from tuner._paddle_ops import paddle_inference_snippet, paddle_ops_for
from tuner._trial_records import (
    STUDY_CONTEXT,
    STUDY_TOLERANCE,
    TrialRecord,
    study_objectives,
    study_records,
    trial_record,
)

if TYPE_CHECKING:
    import onnx
    import optuna
    import pandas

RECOMMENDATION_RULE = (
    "Among feasible trials (drift within the tolerance, no compute node on the CPU, timed), take "
    "the one with the lowest median latency. Trials whose median lies within that trial's 95% "
    "confidence interval of the median are as fast as far as the measurement can tell; among "
    "them the one with the lowest drift is recommended (then the lowest trial number)."
)
# Reasons in the conversion report that mean "the plan asked for FP32" (tuner._conversion_report).
_PLAN_REASONS = frozenset({"plan_keep_all", "plan_keep_op_type", "plan_keep_node"})


def pareto_records(study: optuna.Study) -> list[TrialRecord]:
    """The feasible Pareto trials, one per distinct plan (the earliest trial of each digest)."""
    objectives = study_objectives(study)
    seen: set[str | None] = set()
    front = []
    for trial in sorted(study.best_trials, key=lambda t: t.number):
        record = trial_record(trial, objectives)
        if not record.timed or record.digest in seen:
            continue
        seen.add(record.digest)
        front.append(record)
    return sorted(front, key=lambda r: (r.latency_ms, r.drift, r.number))


def recommend(records: Sequence[TrialRecord]) -> tuple[TrialRecord, list[TrialRecord]]:
    """The recommended trial under :data:`RECOMMENDATION_RULE`, and the others within its noise."""
    candidates = [r for r in records if r.feasible and r.timed]
    if not candidates:
        raise AmptuneError(
            "no feasible trial: no plan met the tolerance with every node on the GPU; raise the "
            "tolerance, widen the search, or give it more trials"
        )
    fastest = min(candidates, key=lambda r: (r.latency_ms, r.number))
    bound = fastest.latency_ms
    latency = fastest.measurement.latency if fastest.measurement else None
    if latency is not None and latency.ci_high_ms is not None:
        bound = max(bound, latency.ci_high_ms)
    tied = [r for r in candidates if r.latency_ms <= bound]
    chosen = min(tied, key=lambda r: (r.drift, r.latency_ms, r.number))
    return chosen, [r for r in tied if r.number != chosen.number]


def pareto_frame(records: Sequence[TrialRecord], objectives: Sequence[str]) -> pandas.DataFrame:
    import pandas

    rows = []
    for record in records:
        plan = record.plan or PrecisionPlan.all_fp32()
        latency = record.measurement.latency if record.measurement else None
        details = record.measurement.details if record.measurement else {}
        row: dict[str, Any] = {"trial": record.number, "seed": record.seed or ""}
        row.update({name: record.values.get(name) for name in objectives})
        row.update({
            "latency_ci_low_ms": latency.ci_low_ms if latency else None,
            "latency_ci_high_ms": latency.ci_high_ms if latency else None,
            "latency_p90_ms": latency.p90_ms if latency else None,
            "latency_cv": latency.cv if latency else None,
            "latency_runs": latency.n_runs if latency else None,
            "device": latency.device if latency else None,
            "lower": "fp32" if plan.keep_all_fp32 else plan.lower,
            "n_fp32_op_types": len(plan.keep_fp32_op_types),
            "fp32_op_types": ";".join(sorted(plan.keep_fp32_op_types)),
            "n_fp32_nodes": len(plan.keep_fp32_nodes),
            "fp32_nodes": ";".join(sorted(plan.keep_fp32_nodes)),
            "cast_count": details.get("cast_count"),
            "digest": record.digest,
        })
        rows.append(row)
    columns = ["trial", "seed", *objectives, "latency_ci_low_ms", "latency_ci_high_ms",
               "latency_p90_ms", "latency_cv", "latency_runs", "device", "lower",
               "n_fp32_op_types", "fp32_op_types", "n_fp32_nodes", "fp32_nodes", "cast_count",
               "digest"]
    return pandas.DataFrame(rows, columns=columns)


@dataclass
class ExportResult:
    """The files written, and the recommendation they describe."""

    out_dir: Path
    recommended: TrialRecord
    files: dict[str, Path] = field(default_factory=dict)


def export_study(
    study: optuna.Study,
    out_dir: str | Path,
    *,
    model: onnx.ModelProto | None = None,
    trial_number: int | None = None,
    conversion_options: Any = None,
) -> ExportResult:
    """Write every export for the recommended trial (or ``trial_number``) into ``out_dir``.

    ``model`` is the FP32 model the study tuned; without it, ``model_mixed.onnx`` and its snippet
    are not written and the block lists hold only what the plan says.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    objectives = study_objectives(study)
    records = study_records(study)
    tolerance = study.user_attrs.get(STUDY_TOLERANCE)
    context = dict(study.user_attrs.get(STUDY_CONTEXT) or {})
    front = pareto_records(study)
    if trial_number is None:
        chosen, tied = recommend(records)
        rule = RECOMMENDATION_RULE
    else:
        chosen, tied, rule = _chosen_trial(records, trial_number), [], f"trial {trial_number} chosen by the user"
    plan = chosen.plan or PrecisionPlan.all_fp32()
    result = ExportResult(out, chosen)

    path = out / "pareto.csv"
    pareto_frame(front, objectives).to_csv(path, index=False)
    result.files["pareto.csv"] = path

    conversion = None
    if model is not None:
        from tuner import convert_precision, save_model

        conversion = convert_precision(model, plan, conversion_options)
        path = out / "model_mixed.onnx"
        save_model(conversion.model, path)
        result.files["model_mixed.onnx"] = path
        path = out / "onnxruntime_snippet.py"
        path.write_text(onnxruntime_snippet(
            "model_mixed.onnx", context.get("device", "cuda"), provider_options_for(plan, context)
        ))
        result.files["onnxruntime_snippet.py"] = path

    kept_types, kept_nodes, engine_nodes = _kept_fp32(plan, model, conversion)
    path = out / "disabled_op_types.txt"
    path.write_text(_disabled_op_types_text(chosen, plan, kept_types, kept_nodes))
    result.files["disabled_op_types.txt"] = path

    mapping = paddle_ops_for(kept_types)
    path = out / "paddle_disabled_ops.txt"
    path.write_text(_paddle_text(chosen, mapping, kept_nodes))
    result.files["paddle_disabled_ops.txt"] = path
    path = out / "paddle_inference_snippet.py"
    path.write_text(paddle_inference_snippet(mapping.paddle_ops))
    result.files["paddle_inference_snippet.py"] = path

    path = out / "node_block_list.json"
    path.write_text(json.dumps(_block_lists(chosen, plan, kept_types, kept_nodes, engine_nodes), indent=2) + "\n")
    result.files["node_block_list.json"] = path

    path = out / "recommended.json"
    path.write_text(json.dumps(
        _recommended(chosen, tied, rule, tolerance, objectives, context, len(front), conversion),
        indent=2, default=_json_default,
    ) + "\n")
    result.files["recommended.json"] = path
    return result


def _chosen_trial(records: Sequence[TrialRecord], number: int) -> TrialRecord:
    by_number = {r.number: r for r in records}
    record = by_number.get(number)
    valid = [r.number for r in records if r.state == "COMPLETE" and r.plan is not None]
    if record is None or record.state != "COMPLETE" or record.plan is None:
        state = "does not exist" if record is None else f"is {record.state.lower()}"
        raise AmptuneError(
            f"--trial {number}: that trial {state}; completed trials: "
            f"{', '.join(map(str, valid[:30])) or 'none'}{' ...' if len(valid) > 30 else ''}"
        )
    return record


def _kept_fp32(
    plan: PrecisionPlan, model: onnx.ModelProto | None, conversion: Any
) -> tuple[list[str], list[str], list[str]]:
    """(op types kept, nodes kept by the plan, nodes the converter kept for its own reasons)."""
    if plan.keep_all_fp32:
        from tuner._tensor_types import iterate_graphs

        types = sorted({n.op_type for g in iterate_graphs(model.graph) for n in g.node}
                       ) if model is not None else []  # If/Loop/Scan bodies' op types too
        return types, [], []
    engine_nodes = []
    if conversion is not None:
        engine_nodes = sorted(
            d.name for d in conversion.report.nodes
            if d.precision == "fp32" and d.reason not in _PLAN_REASONS
        )
    return sorted(plan.keep_fp32_op_types), sorted(plan.keep_fp32_nodes), engine_nodes


def _measured_on(record: TrialRecord) -> str | None:
    latency = record.measurement.latency if record.measurement else None
    return latency.device if latency is not None else None


def _header(record: TrialRecord) -> str:
    cpu = " (CPU measurement: onnxruntime CPU EP, not a GPU)" if _measured_on(record) == "cpu" else ""
    return (
        f"# amptune: trial {record.number}, median latency {record.latency_ms:.4g} ms{cpu}, "
        f"drift {record.drift:.4g}\n"
    )


def _disabled_op_types_text(record: TrialRecord, plan: PrecisionPlan, types: list[str],
                            nodes: list[str]) -> str:
    lines = [_header(record), "# ONNX op types kept in FP32, one per line ('#' lines are comments).\n"]
    if plan.keep_all_fp32:
        lines.append("# The recommended plan keeps every node in FP32: no conversion at all.\n")
    if nodes:
        lines.append(f"# Also kept in FP32 by node name (node_block_list.json): {len(nodes)} node(s).\n")
    lines.extend(f"{op_type}\n" for op_type in types)
    return "".join(lines)


def _paddle_text(record: TrialRecord, mapping: Any, nodes: list[str]) -> str:
    lines = [
        _header(record),
        ("# Paddle operators to keep in FP32 (gpu_fp16_disabled_op_types), one per line, mapped\n"
         "# from the ONNX op types through tuner/_paddle_ops.py; see paddle_inference_snippet.py.\n"),
    ]
    for paddle_op, sources in mapping.sources.items():
        lines.append(f"{paddle_op}  # from {', '.join(sources)}\n")
    if mapping.unmapped:
        lines.append(f"# No known Paddle operator for: {', '.join(mapping.unmapped)}\n")
    if nodes:
        lines.append(
            f"# Paddle Inference keeps operators by type only: {len(nodes)} node(s) the plan keeps "
            "by name are not expressed here.\n"
        )
    return "".join(lines)


def _block_lists(record: TrialRecord, plan: PrecisionPlan, types: list[str], nodes: list[str],
                 engine_nodes: list[str]) -> dict[str, Any]:
    return {
        "trial": record.number,
        "measured_on": _measured_on(record),
        "keep_io_types": plan.keep_io_types,
        "op_block_list": types,
        "node_block_list": sorted(set(nodes) | set(engine_nodes)),
        "notes": [
            ("For onnxruntime.transformers.float16.convert_float_to_float16 and "
             "onnxconverter_common.float16.convert_float_to_float16: pass op_block_list, "
             "node_block_list and keep_io_types as given."),
            ("op_block_list replaces those converters' DEFAULT_OP_BLOCK_LIST: it holds what was "
             "measured. Entries of that default list the plan lowers are lowered on purpose; add "
             "them back only if that converter cannot lower them."),
            ("node_block_list includes the nodes amptune's converter kept in FP32 for its own "
             f"reasons (no CUDA kernel, out-of-range weights): {len(engine_nodes)}."),
        ],
    }


def _recommended(record: TrialRecord, tied: Sequence[TrialRecord], rule: str, tolerance: Any,
                 objectives: Sequence[str], context: dict[str, Any], front_size: int,
                 conversion: Any) -> dict[str, Any]:
    measurement = record.measurement.to_dict() if record.measurement else None
    return {
        "trial": record.number,
        "rule": rule,
        "within_noise": [{"trial": r.number, "latency_ms": r.latency_ms, "drift": r.drift} for r in tied],
        "seed": record.seed,
        "digest": record.digest,
        "plan": (record.plan or PrecisionPlan.all_fp32()).to_dict(),
        "objectives": {name: record.values.get(name) for name in objectives},
        "tolerance": tolerance,
        "feasible": record.feasible,
        "pareto_front_size": front_size,
        "device": context.get("device"),
        "provider_options": provider_options_for(record.plan or PrecisionPlan.all_fp32(), context),
        "measurement": measurement,
        "conversion": conversion.report.to_dict() if conversion is not None else None,
    }


def provider_options_for(plan: PrecisionPlan, context: dict[str, Any]) -> dict[str, str]:
    """The CUDA EP options a plan was measured with: the run's, with the plan's TF32 setting."""
    options = dict(context.get("provider_options", {}))
    if context.get("device", "cuda") == "cuda":
        options["use_tf32"] = "1" if plan.allow_tf32 else "0"
    return options


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value)
    return str(value)


def onnxruntime_snippet(model_file: str, device: str, provider_options: dict[str, str]) -> str:
    """Python that opens the exported model as it was measured."""
    if device == "cpu":
        providers = '["CPUExecutionProvider"]'
        note = "# Measured on the CPU EP (no GPU was used).\n"
    else:
        options = json.dumps({k: str(v) for k, v in sorted(provider_options.items())})
        providers = f'[("CUDAExecutionProvider", {options}), "CPUExecutionProvider"]'
        note = "# Measured on the CUDA EP with these provider options.\n"
    return (
        f"{note}import onnxruntime as ort\n\n"
        f"providers = {providers}\n"
        f'session = ort.InferenceSession("{model_file}", providers=providers)\n'
        "# outputs = session.run(None, {input_name: array, ...})\n"
    )
