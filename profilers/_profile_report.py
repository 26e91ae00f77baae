"""One full profile of a candidate (reference, drift, placement, latency, telemetry, per-node) and
the plain summary rows a table is drawn from (compute here, render in the command line)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from profilers._data_sources import Feed, feeds_for_inputs
from profilers._input_spec import graph_inputs
from profilers._node_times import PerNodeReport
from profilers._profiler import DriftMeasurement, LatencyMeasurement, Profiler, ReferenceOutputs

Row = tuple[str, str]


@dataclass
class ProfileReport:
    """Everything measured about one candidate; ``context`` holds the caller's facts (model path,
    plan, conversion report, data source) and goes into the JSON as is."""

    reference: ReferenceOutputs
    drift: DriftMeasurement
    latency: LatencyMeasurement
    per_node: PerNodeReport | None = None
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        warnings = [*self.drift.placement.reasons, *self.latency.warnings]
        if self.per_node is not None:
            warnings.extend(self.per_node.warnings)
        return warnings

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.context,
            "reference": self.reference.describe(),
            **self.drift.to_dict(),
            **self.latency.to_dict(),
            "per_node": self.per_node.to_dict() if self.per_node is not None else None,
            "warnings": self.warnings,
        }

    def summary(self, top_nodes: int = 10) -> list[tuple[str, list[Row]]]:
        """Sections of (label, value) rows: latency, telemetry, drift, top nodes."""
        sections = [
            ("latency", _latency_rows(self.latency)),
            ("telemetry", _telemetry_rows(self.latency)),
            ("drift vs FP32" + (" (TF32 off)" if self.reference.tf32_disabled else ""),
             _drift_rows(self)),
        ]
        if self.per_node is not None:
            sections.append(("time by op type", _op_type_rows(self.per_node, top_nodes)))
            sections.append(("top nodes", _node_rows(self.per_node, top_nodes)))
        return sections


def _ms(value: float) -> str:
    return f"{value:.4f} ms" if value < 1 else f"{value:.3f} ms"


def _latency_rows(measurement: LatencyMeasurement) -> list[Row]:
    latency, stats = measurement.latency, measurement.latency.stats
    rows = [
        ("clock", f"{latency.clock} on {latency.device}"
         + (" (CPU measurement)" if latency.is_cpu_measurement else "")
         + (", CUDA graph" if measurement.cuda_graph else "")),
        ("median", (f"{_ms(stats.median_ms)}  [{stats.median_ci_low_ms:.4g}, "
         f"{stats.median_ci_high_ms:.4g}] at {stats.median_ci_coverage:.0%}")),
        ("mean / CV", f"{_ms(stats.mean_ms)} / {stats.cv:.2%}"),
        ("p90 / p99", f"{_ms(stats.p90_ms)} / {_ms(stats.p99_ms)}"),
        ("min / max", f"{_ms(stats.min_ms)} / {_ms(stats.max_ms)}"),
        ("outliers", f"{stats.outliers} of {stats.n} runs (Tukey 1.5 IQR)"),
        ("first run", _ms(latency.first_run_ms)),
        ("warm-up", f"{latency.warmup_runs} runs, {latency.warmup_s:.1f} s, "
         + ("stable" if latency.warmup_stable else "NOT stable")),
        ("windows", (f"{len(latency.window_medians_ms)} x {latency.runs_per_window} runs, "
         f"median CV {latency.window_median_cv:.2%}")),
    ]
    if measurement.wall_clock is not None:
        rows.append(("synchronised wall clock", _ms(measurement.wall_clock.median_ms)))
    return rows


def _telemetry_rows(measurement: LatencyMeasurement) -> list[Row]:
    telemetry = measurement.telemetry
    if not telemetry.available:
        return [("NVML", f"unavailable: {telemetry.reason}")]
    assert telemetry.sm_clock_mhz and telemetry.power_w and telemetry.temperature_c
    rows = [
        ("SM clock", (f"{telemetry.sm_clock_mhz.min:.0f}-{telemetry.sm_clock_mhz.max:.0f} MHz "
         f"(median {telemetry.sm_clock_mhz.median:.0f})")),
        ("power", f"{telemetry.power_w.median:.0f} W median, {telemetry.power_w.max:.0f} W max"),
        ("temperature", f"{telemetry.temperature_c.max:.0f} C max"),
        ("clock events", ", ".join(telemetry.clock_event_reasons) or "none"),
        ("suspect", "YES" if telemetry.suspect else "no"),
    ]
    if telemetry.energy_mj_per_inference is not None:
        rows.append(("energy", (f"{telemetry.energy_mj_per_inference:.2f} mJ/inference, "
                     f"{telemetry.average_power_w:.0f} W average over "
                     f"{telemetry.energy_window_s:.1f} s")))
    else:
        rows.append(("energy", telemetry.energy_note or "not measured"))
    if telemetry.session_peak_memory_mib is not None:
        rows.append(("session peak memory", f"{telemetry.session_peak_memory_mib:.0f} MiB"))
    return rows


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def _drift_rows(report: ProfileReport) -> list[Row]:
    drift = report.drift.drift
    rows: list[Row] = [("samples", str(drift.samples))]
    for name, output in drift.outputs.items():
        rows.append((
            name,
            f"max abs {_number(output.max_abs)}, mean abs {_number(output.mean_abs)}, "
            f"max rel {_number(output.max_rel)}, rel L2 {_number(output.rel_l2)}, "
            f"cosine {output.cosine:.6f}, SNR {_number(output.snr_db)} dB"
            + (f", argmax agree {output.argmax_agreement:.4f}"
               if output.argmax_agreement is not None else "")
            + (f", NaN {output.nan_count}, Inf {output.inf_count}"
               if output.nan_count or output.inf_count else ""),
        ))
    for name, metric in drift.user_metrics.items():
        rows.append((f"user:{name}", f"mean {_number(metric.mean)}, max {_number(metric.max)}"))
    placement = report.drift.placement
    rows.append(("placement", ", ".join(f"{p}: {n}" for p, n in placement.providers_count().items())
                 + (" -- FLAGGED" if placement.flagged else "")))
    return rows


def _op_type_rows(per_node: PerNodeReport, count: int) -> list[Row]:
    rows = [(o.op_type, f"{_ms(o.time_ms)} ({o.share:.1%}, {o.nodes} nodes)")
            for o in per_node.op_types[:count]]
    total = f"{_ms(per_node.attributed_ms)} per inference ({per_node.clock})"
    if per_node.event_total_ms:
        total += (f", {per_node.ratio_to(per_node.event_total_ms):.1%} of the latency median "
                  f"{_ms(per_node.event_total_ms)}")
    elif per_node.profiled_total_ms:
        total += (f", {per_node.ratio_to(per_node.profiled_total_ms):.1%} of the profiled runs' "
                  f"{_ms(per_node.profiled_total_ms)}")
    return [("sum", total), *rows]


def _node_rows(per_node: PerNodeReport, count: int) -> list[Row]:
    return [(n.name, f"{n.op_type}: {_ms(n.time_ms)} ({n.share:.1%})")
            for n in per_node.nodes[:count]]


def profile_candidate(
    profiler: Profiler,
    fp32_model: Any,
    candidate: Any,
    feeds: Sequence[Feed],
    *,
    per_node: bool = False,
    reference: ReferenceOutputs | None = None,
    context: dict[str, Any] | None = None,
) -> ProfileReport:
    """Reference (unless given), drift and placement, latency and telemetry, per-node time.

    ``feeds`` are in the FP32 model's input types; they are converted (float to float) for a
    candidate whose inputs differ. Latency runs on the first feed.
    """
    if reference is None:
        reference = profiler.reference_outputs(fp32_model, feeds)
    if hasattr(candidate, "graph"):  # a ModelProto: its inputs may be FP16 (keep_io_types off)
        candidate_feeds = feeds_for_inputs(feeds, graph_inputs(candidate))
    else:
        candidate_feeds = list(feeds)
    drift = profiler.measure_drift(candidate, candidate_feeds, reference)
    latency = profiler.measure_latency(
        candidate, candidate_feeds[0], output_arrays=drift.candidate_outputs[0]
    )
    nodes = None
    if per_node:
        nodes = profiler.measure_per_node(candidate, candidate_feeds[0]).with_event_total(
            latency.latency.median_ms
        )
    return ProfileReport(reference, drift, latency, nodes, dict(context or {}))
