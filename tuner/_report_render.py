"""Draws :class:`ReportData` with Plotly into one self-contained HTML file (plotly.js inlined)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner._errors import MissingDependencyError
from tuner._report_data import ReportData

if TYPE_CHECKING:
    import plotly.graph_objects as go


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise MissingDependencyError("the HTML report needs plotly: pip install plotly") from None
    return go


def pareto_figure(data: ReportData) -> go.Figure:
    go = _plotly()
    figure = go.Figure()
    groups = (
        ("feasible", [p for p in data.scatter if p.feasible and not p.pareto], "#4c78a8"),
        ("over the tolerance / on the CPU", [p for p in data.scatter if not p.feasible], "#e45756"),
    )
    for name, points, color in groups:
        figure.add_trace(go.Scatter(
            x=[p.latency_ms for p in points], y=[p.plotted_drift for p in points],
            mode="markers", name=name, marker={"color": color, "size": 8, "opacity": 0.7},
            text=[_hover(p) for p in points], hoverinfo="text",
        ))
    front = sorted((p for p in data.scatter if p.pareto), key=lambda p: p.latency_ms)
    figure.add_trace(go.Scatter(
        x=[p.latency_ms for p in front], y=[p.plotted_drift for p in front],
        mode="lines+markers", name="feasible Pareto front",
        marker={"color": "#54a24b", "size": 10}, line={"shape": "hv"},
        text=[_hover(p) for p in front], hoverinfo="text",
    ))
    chosen = [p for p in data.scatter if p.recommended]
    if chosen:
        figure.add_trace(go.Scatter(
            x=[chosen[0].latency_ms], y=[chosen[0].plotted_drift], mode="markers",
            name=f"recommended (trial {chosen[0].trial})",
            marker={"symbol": "star", "size": 18, "color": "#f58518"},
            text=[_hover(chosen[0])], hoverinfo="text",
        ))
    if data.tolerance is not None and data.tolerance > 0:
        figure.add_hline(y=data.tolerance, line_dash="dash",
                         annotation_text=f"tolerance {data.tolerance:g}")
    device = " (CPU)" if data.device == "cpu" else ""
    figure.update_layout(
        title="Latency vs drift, one point per timed trial",
        xaxis_title=f"median latency, ms{device}", yaxis_title="drift (log)",
        yaxis_type="log", height=520,
    )
    return figure


def heatmap_figure(data: ReportData) -> go.Figure:
    go = _plotly()
    heat = data.heatmap
    figure = go.Figure(go.Heatmap(
        z=[list(row) for row in heat.kept],
        x=[f"#{t} ({ms:.3g} ms)" for t, ms in zip(heat.trials, heat.latencies_ms)],
        y=list(heat.op_types),
        colorscale=[[0, "#d9e7f5"], [1, "#c0392b"]], zmin=0, zmax=1,
        colorbar={"tickvals": [0, 1], "ticktext": ["lowered", "FP32"]},
    ))
    figure.update_layout(
        title="Op types kept in FP32 by each timed plan (fastest first)",
        xaxis_title="trial (median latency)", height=max(300, 24 * len(heat.op_types) + 160),
    )
    return figure


def _hover(point: Any) -> str:
    drift = "inf" if math.isinf(point.drift) else f"{point.drift:.4g}"
    seed = f"<br>seed: {html.escape(point.seed)}" if point.seed else ""
    return (f"trial {point.trial}<br>{point.latency_ms:.4g} ms, drift {drift}"
            f"<br>{html.escape(point.label)}{seed}")


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return ""
    return "inf" if math.isinf(value) else f"{value:.{digits}g}"


def _table_html(data: ReportData) -> str:
    header = ("trial", "state", "status", "seed", "latency ms", "95% CI ms", "drift", "feasible",
              "Pareto", "plan", "Casts", "reason / reused from", "s")
    rows = []
    for row in data.table:
        ci = f"{row.latency_ci_ms[0]:.4g}-{row.latency_ci_ms[1]:.4g}" if row.latency_ci_ms else ""
        note = row.reason or (f"reused #{row.reused_from}" if row.reused_from is not None else "")
        cells = (row.trial, row.state, row.status, row.seed or "", _number(row.latency_ms), ci,
                 _number(row.drift), "yes" if row.feasible else "", "yes" if row.pareto else "",
                 row.plan, "" if row.cast_count is None else row.cast_count, note,
                 _number(row.duration_s, 3))
        css = ' class="recommended"' if row.trial == data.recommended else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
tr.recommended { background: #fdebd0; }
.notes { color: #555; }
"""


def render_report_html(data: ReportData) -> str:
    figures = [pareto_figure(data), heatmap_figure(data)]
    parts = [
        figure.to_html(full_html=False, include_plotlyjs=("inline" if i == 0 else False),
                       div_id=f"amptune-figure-{i}")
        for i, figure in enumerate(figures)
    ]
    counts = ", ".join(f"{count} {status}" for status, count in sorted(data.counts.items()))
    recommended = (f"trial {data.recommended}" if data.recommended is not None else "none")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in data.notes)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(data.title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(data.title)}</h1>"
        f"<p>Objectives: {html.escape(', '.join(data.objectives))}; tolerance "
        f"{_number(data.tolerance)}; trials: {html.escape(counts)}.</p>"
        f"<p>Recommended: <b>{recommended}</b>. {html.escape(data.rule)}</p>"
        f"<ul class='notes'>{notes}</ul>"
        + "".join(parts)
        + "<h2>Trials</h2>" + _table_html(data) + "</body></html>"
    )


def write_report(data: ReportData, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_report_html(data), encoding="utf-8")
    return path
