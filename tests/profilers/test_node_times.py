"""Placement and per-node attribution on recorded data, and per-node CPU time on real runs."""

import itertools

import numpy as np
import pytest

from profilers import (
    ProfilingError,
    SessionConfig,
    attribute_gpu_time,
    placement_from_node_runs,
)
from profilers._cupti_trace import ApiCall, GpuActivity
from profilers._ort_profile import NodeRun, end_and_read_profile, node_runs
from profilers._per_node import measure_per_node
from profilers._sessions import build_session
from tests.profilers._models import matmul_chain

US = 1_000


def _run(name, op, start_us, end_us, provider="CUDAExecutionProvider", outputs=("float",)):
    return NodeRun(name, op, provider, start_us * US, end_us * US, 1, ("float",), outputs)


def test_placement_flags_cpu_compute_and_copies_but_not_shape_arithmetic():
    runs = [
        _run("conv", "Conv", 0, 10),
        _run("shape", "Shape", 10, 11, "CPUExecutionProvider", ("int64",)),
        _run("gather", "Gather", 11, 12, "CPUExecutionProvider", ("int64",)),
        _run("copy", "MemcpyToHost", 12, 13),
        _run("topk", "TopK", 13, 20, "CPUExecutionProvider", ("float", "int64")),
        _run("conv", "Conv", 30, 40),  # a second run of the same node counts once
    ]
    report = placement_from_node_runs(runs, "cuda")
    assert report.flagged
    assert [n.name for n in report.cpu_compute_nodes] == ["topk"]
    assert [n.name for n in report.cpu_shape_nodes] == ["shape", "gather"]
    assert [n.name for n in report.memcpy_nodes] == ["copy"]
    assert report.providers_count() == {"CUDAExecutionProvider": 2, "CPUExecutionProvider": 3}
    assert "1 compute node(s) ran on the CPU" in report.reasons[0] and "TopK" in report.reasons[0]
    assert "MemcpyToHost" in report.reasons[1]
    clean = placement_from_node_runs([_run("conv", "Conv", 0, 10)], "cuda")
    assert not clean.flagged and clean.reasons == []


def test_placement_on_the_cpu_expects_the_cpu():
    runs = [_run("conv", "Conv", 0, 10, "CPUExecutionProvider")]
    assert not placement_from_node_runs(runs, "cpu").flagged


def test_attribution_ties_kernels_to_the_node_that_launched_them():
    runs = [
        _run("conv", "Conv", 100, 200),
        _run("cast_in", "Cast", 200, 210),
        _run("conv2", "Conv", 210, 300),
        # second inference
        _run("conv", "Conv", 1100, 1200),
        _run("cast_in", "Cast", 1200, 1210),
        _run("conv2", "Conv", 1210, 1300),
    ]
    calls = [
        ApiCall("runtime", 1, 150 * US, 151 * US, 1),   # in conv
        ApiCall("driver", 2, 160 * US, 161 * US, 1),    # in conv (a cuBLAS-style driver launch)
        ApiCall("runtime", 3, 205 * US, 206 * US, 1),   # in cast_in
        ApiCall("runtime", 4, 250 * US, 251 * US, 1),   # in conv2
        ApiCall("runtime", 5, 1150 * US, 1151 * US, 1),
        ApiCall("runtime", 6, 1205 * US, 1206 * US, 1),
        ApiCall("runtime", 7, 1301 * US, 1302 * US, 1),  # 1 us after conv2 ends: within slack
        ApiCall("runtime", 8, 5000 * US, 5001 * US, 1),  # outside every node
    ]
    activities = [
        GpuActivity("kernel", "implicit_gemm", 0, 400 * US, 1),
        GpuActivity("kernel", "bias_relu", 0, 100 * US, 2),
        GpuActivity("kernel", "cast_f32_f16", 0, 20 * US, 3),
        GpuActivity("kernel", "implicit_gemm", 0, 300 * US, 4),
        GpuActivity("kernel", "implicit_gemm", 0, 500 * US, 5),
        GpuActivity("kernel", "cast_f32_f16", 0, 40 * US, 6),
        GpuActivity("kernel", "implicit_gemm", 0, 300 * US, 7),
        GpuActivity("memcpy", "memcpy", 0, 10 * US, 8),
        GpuActivity("kernel", "orphan", 0, 5 * US, 99),  # no launch record at all
    ]
    report = attribute_gpu_time(runs, activities, calls, inferences=2, profiled_total_ms=1.2)
    by_name = {n.name: n for n in report.nodes}
    assert by_name["conv"].time_ms == pytest.approx((400 + 100 + 500) / 1000 / 2)
    assert by_name["conv"].activities == 1.5
    assert by_name["cast_in"].time_ms == pytest.approx(0.030)
    assert by_name["conv2"].time_ms == pytest.approx(0.300)
    assert [n.name for n in report.nodes] == ["conv", "conv2", "cast_in"]
    assert report.attributed_ms == pytest.approx(0.830)
    assert report.unattributed_ms == pytest.approx(0.0075)
    assert report.op_type_time("Cast") == pytest.approx(0.030)
    conv_type = report.op_types[0]
    assert (conv_type.op_type, conv_type.nodes) == ("Conv", 2)
    assert conv_type.time_ms == pytest.approx(0.800)
    assert sum(n.share for n in report.nodes) == pytest.approx(1.0)
    assert report.ratio_to(1.0) == pytest.approx(0.83)
    assert report.measured_total_ms == 1.2  # only the profiled total is known
    idle = ("the per-node sum (0.830 ms) is 69% of the measured total (1.200 ms): the GPU idles "
            "between kernels (launch-bound)")
    assert report.warnings == (idle,)
    judged = report.with_event_total(0.85)  # the unprofiled event median
    assert judged.measured_total_ms == 0.85 and judged.warnings == ()
    data = judged.to_dict()
    assert data["sum_over_event_total"] == pytest.approx(0.83 / 0.85)
    assert data["sum_over_profiled_total"] == pytest.approx(0.83 / 1.2)


def test_attribution_needs_inferences():
    with pytest.raises(ProfilingError):
        attribute_gpu_time([], [], [], inferences=0)


def test_profile_of_a_real_cpu_session_gives_node_runs():
    model = matmul_chain(layers=2)
    feed = {"x": np.ones((4, 64), dtype=np.float32)}
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        session = build_session(model, SessionConfig(device="cpu", graph_optimization_level="disable"),
                                profile_prefix=f"{folder}/p")
        session.run(None, feed)
        events, start_ns = end_and_read_profile(session)
    runs = node_runs(events, start_ns)
    assert [r.name for r in runs] == ["mm0", "relu0", "mm1", "relu1"]
    assert all(r.provider == "CPUExecutionProvider" for r in runs)
    assert runs[0].input_types[0] == "float" and runs[0].output_types == ("float",)
    assert all(a.end_ns <= b.start_ns + 1000 for a, b in itertools.pairwise(runs))
    placement = placement_from_node_runs(runs, "cpu")
    assert not placement.flagged and len(placement.nodes) == 4


def test_per_node_on_the_cpu():
    model = matmul_chain(layers=3, size=128)
    feed = {"x": np.ones((64, 128), dtype=np.float32)}
    config = SessionConfig(device="cpu", graph_optimization_level="disable")
    report = measure_per_node(model, feed, config, warmup_runs=2, profiled_runs=5)
    assert report.clock == "ort-profiler-cpu" and report.inferences == 5
    assert {n.name for n in report.nodes} == {"mm0", "mm1", "mm2", "relu0", "relu1", "relu2"}
    assert all(n.activities == 1.0 for n in report.nodes)
    assert {o.op_type for o in report.op_types} == {"MatMul", "Relu"}
    assert report.unattributed_ms == 0.0
    # Node times are part of each run: their sum cannot exceed the timed total by much.
    assert 0 < report.attributed_ms <= report.measured_total_ms * 1.05
