"""Measuring per-node time on a device (the attribution itself is in :mod:`_node_times`).

CUDA: a session with onnxruntime's profiler on, running on its own stream with device-bound
inputs and outputs; after unrecorded warm-up runs (cuDNN's algorithm search among them), CUPTI
starts recording. Its first launches are slow (CUPTI instruments lazily: a run took 2x to 20x its
time on an H200), so a few settling runs go first, and only work launched after they finish counts.
CUDA events time each profiled run; the median is the profiled total. CPU: the same session set-up on
the CPU EP, with each node's profiled duration and a perf_counter total.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from profilers._errors import ProfilingError
from profilers._io_binding import BoundSession
from profilers._node_times import PerNodeReport, attribute_gpu_time, cpu_node_times
from profilers._ort_profile import end_and_read_profile, node_runs_of_last_model_runs
from profilers._sessions import SessionConfig, build_session


def measure_per_node(
    model: Any,
    feed: Mapping[str, np.ndarray],
    config: SessionConfig,
    *,
    warmup_runs: int = 10,
    profiled_runs: int = 20,
) -> PerNodeReport:
    """Per-node time of ``profiled_runs`` runs on ``config.device``; see the module docstring."""
    if profiled_runs < 1 or warmup_runs < 0:
        raise ProfilingError(
            f"per-node profiling needs profiled_runs >= 1 and warmup_runs >= 0, got "
            f"{profiled_runs} and {warmup_runs}"
        )
    if config.device == "cuda":
        return _measure_cuda(model, feed, config, warmup_runs, profiled_runs)
    return _measure_cpu(model, feed, config, warmup_runs, profiled_runs)


def _measure_cpu(
    model: Any, feed: Mapping[str, np.ndarray], config: SessionConfig, warmup: int, runs: int
) -> PerNodeReport:
    with tempfile.TemporaryDirectory(prefix="amptune-profile-") as folder:
        session = build_session(model, config, profile_prefix=f"{folder}/ort")
        bound = BoundSession(session, feed, device_type="cpu")
        for _ in range(warmup):
            bound.run()
        start = time.perf_counter_ns()
        for _ in range(runs):
            bound.run()
        total_ms = (time.perf_counter_ns() - start) / 1e6 / runs
        events, start_ns = end_and_read_profile(session)
    profiled = node_runs_of_last_model_runs(events, start_ns, runs)
    return cpu_node_times(profiled, runs, total_ms)


_CUPTI_SETTLING_RUNS = 3


def _measure_cuda(
    model: Any, feed: Mapping[str, np.ndarray], config: SessionConfig, warmup: int, runs: int
) -> PerNodeReport:
    from profilers._cuda_runtime import CudaEvents, CudaStream
    from profilers._cuda_timer import NO_SYNC_RUN_CONFIG
    from profilers._cupti_trace import CuptiTrace

    config = config.with_(enable_cuda_graph=False)  # a replayed graph has no per-node launches
    trace = CuptiTrace()
    stream = CudaStream()
    events = CudaEvents(runs + 1)
    try:
        with tempfile.TemporaryDirectory(prefix="amptune-profile-") as folder:
            session = build_session(
                model, config, user_compute_stream=stream.address, profile_prefix=f"{folder}/ort"
            )
            bound = BoundSession(
                session, feed, device_type="cuda", device_id=config.device_id,
                run_config=NO_SYNC_RUN_CONFIG,
            )
            for _ in range(warmup):
                bound.run()
            stream.synchronize()
            trace.start()
            try:
                for _ in range(_CUPTI_SETTLING_RUNS):
                    bound.run()
                stream.synchronize()
                window_start_ns = time.time_ns()  # CUPTI and onnxruntime share this clock
                events.record(0, stream)
                for index in range(1, runs + 1):
                    bound.run()
                    events.record(index, stream)
                stream.synchronize()
            finally:
                trace.stop()
            total_ms = float(np.median([events.elapsed_ms(i - 1, i) for i in range(1, runs + 1)]))
            profile, start_ns = end_and_read_profile(session)
            del bound, session
            gc.collect()
    finally:
        events.destroy()
        stream.destroy()
    if not trace.gpu_activities:
        raise ProfilingError("CUPTI recorded no GPU activity during the profiled runs")
    profiled = node_runs_of_last_model_runs(profile, start_ns, runs)
    calls = [c for c in trace.api_calls if c.start_ns >= window_start_ns]
    in_window = {c.correlation_id for c in calls}
    activities = [a for a in trace.gpu_activities if a.correlation_id in in_window]
    return attribute_gpu_time(profiled, activities, calls, runs, total_ms)
