from __future__ import annotations

import json
import math
import re

import pytest

from tests.tuner._cpu_evaluation import finished_tiny_study
from tuner._exports import pareto_records, recommend
from tuner._report_data import as_plain, report_data_for_study
from tuner._report_render import render_report_html, write_report
from tuner._trial_records import study_records

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    finished, _ = finished_tiny_study(tmp_path_factory.mktemp("study"), n_trials=20)
    return finished.study


def test_scatter_has_every_timed_trial_with_feasibility_and_front(study) -> None:
    data = report_data_for_study(study)
    records = study_records(study)
    timed = [r for r in records if r.timed]
    assert [p.trial for p in data.scatter] == [r.number for r in timed]
    front = {r.number for r in pareto_records(study)}
    for point, record in zip(data.scatter, timed):
        assert point.feasible == record.feasible
        assert point.pareto == (record.number in front)
        assert point.plotted_drift >= data.drift_floor > 0
        assert point.plotted_drift == max(point.drift, data.drift_floor)
    assert data.recommended == recommend(records)[0].number
    assert sum(p.recommended for p in data.scatter) == 1
    assert data.tolerance == 1e-3 and data.device == "cpu"
    assert any("CPU measurements" in note for note in data.notes)


def test_table_has_one_row_per_trial_with_its_reason(study) -> None:
    data = report_data_for_study(study)
    assert [row.trial for row in data.table] == list(range(len(study.trials)))
    for row in data.table:
        if row.status == "rejected":
            assert "NaN/Inf" in row.reason and row.latency_ms is None and math.isinf(row.drift)
        if row.status == "reused":
            assert row.reused_from is not None and row.reused_from < row.trial
        if row.status == "measured":
            assert row.latency_ci_ms[0] <= row.latency_ms <= row.latency_ci_ms[1]
    assert sum(data.counts.values()) == len(study.trials)


def test_heatmap_marks_each_plans_fp32_op_types_fastest_first(study) -> None:
    data = report_data_for_study(study)
    heat = data.heatmap
    assert set(heat.op_types) == {"Add", "Log", "MatMul", "Relu", "Softmax", "Sub"}
    assert list(heat.latencies_ms) == sorted(heat.latencies_ms)
    plans = {r.number: r.plan for r in study_records(study)}
    for j, trial in enumerate(heat.trials):
        for i, op_type in enumerate(heat.op_types):
            plan = plans[trial]
            expected = plan.keep_all_fp32 or op_type in plan.keep_fp32_op_types
            assert heat.kept[i][j] == int(expected)
    assert len({plans[t].digest() for t in heat.trials}) == len(heat.trials)  # one column per plan
    json.dumps(as_plain(data))  # the data is plain enough to save as JSON


def test_html_is_self_contained_and_holds_the_figures(study, tmp_path) -> None:
    data = report_data_for_study(study)
    path = write_report(data, tmp_path / "report.html")
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script src=" not in page  # plotly.js is inlined: the file opens offline
    assert page.count("Plotly.newPlot") == 2
    assert 'id="amptune-figure-0"' in page and 'id="amptune-figure-1"' in page
    figure = re.search(r'Plotly.newPlot\(\s*"amptune-figure-0",\s*(\[.*?\]),\s*\{', page, re.DOTALL)
    traces = json.loads(figure.group(1))
    front = next(t for t in traces if t["name"] == "feasible Pareto front")
    assert sorted(front["x"]) == sorted(p.latency_ms for p in data.scatter if p.pareto)
    assert f"recommended (trial {data.recommended})" in page
    assert page.count("<tr") == len(data.table) + 1
    assert render_report_html(data) == page
