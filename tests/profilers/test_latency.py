"""The latency procedure and the CPU timer, on real models run by onnxruntime's CPU EP."""

import time

import numpy as np
import pytest

from profilers import LatencyConfig, ProfilingError, measure_latency
from profilers._cpu_timer import CpuPerfCounterTimer
from profilers._sessions import SessionConfig
from tests.profilers._models import matmul_chain

FAST = LatencyConfig(window_s=0.02, min_warmup_s=0.05, max_warmup_s=2.0, min_windows=4,
                     min_measure_s=0.1)


@pytest.fixture
def feed():
    return {"x": np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)}


def test_cpu_timer_times_real_runs(feed):
    with CpuPerfCounterTimer.for_model(matmul_chain(layers=3), feed) as timer:
        assert (timer.clock, timer.device) == ("cpu-perf-counter", "cpu")
        times = timer.time_runs(20)
        assert len(times) == 20 and all(t > 0 for t in times)
        outputs = timer.bound.outputs()
    expected = feed["x"]
    model = matmul_chain(layers=3)
    from onnx import numpy_helper

    for layer in range(3):
        weight = numpy_helper.to_array(model.graph.initializer[layer])
        expected = np.maximum(expected @ weight, 0)
    np.testing.assert_allclose(outputs["y"], expected, rtol=1e-4, atol=1e-5)


def test_bigger_model_takes_longer(feed):
    # Not a benchmark: a sanity check that the clock measures the model and not overhead.
    big_feed = {"x": np.ones((256, 512), dtype=np.float32)}
    with CpuPerfCounterTimer.for_model(matmul_chain(layers=1, size=64), feed) as small:
        small_ms = float(np.median(small.time_runs(30)))
    with CpuPerfCounterTimer.for_model(matmul_chain(layers=8, size=512), big_feed) as big:
        big_ms = float(np.median(big.time_runs(10)))
    assert big_ms > 5 * small_ms


def test_procedure_on_the_cpu_says_it_is_a_cpu_measurement(feed):
    with CpuPerfCounterTimer.for_model(matmul_chain(layers=3), feed) as timer:
        started = time.perf_counter()
        result = measure_latency(timer, FAST)
        elapsed = time.perf_counter() - started
    assert result.is_cpu_measurement and result.device == "cpu"
    assert result.clock == "cpu-perf-counter"
    assert any("CPU measurement" in w for w in result.warnings)
    assert result.first_run_ms > 0
    assert len(result.window_medians_ms) >= FAST.min_windows
    assert result.measure_s >= FAST.min_measure_s
    assert result.stats.n == len(result.window_medians_ms) * result.runs_per_window
    assert result.stats.min_ms <= result.median_ms <= result.stats.max_ms
    assert result.warmup_s >= FAST.min_warmup_s or not result.warmup_stable
    assert elapsed < 10
    data = result.to_dict()
    assert data["is_cpu_measurement"] is True and data["stats"]["n"] == result.stats.n


class ScriptedTimer:
    """Replays known per-run times: checks the procedure's decisions, times nothing."""

    clock = "scripted"
    device = "cuda"

    def __init__(self, times):
        self.times = iter(times)
        self.calls = []

    def time_runs(self, count):
        self.calls.append(count)
        return [next(self.times) for _ in range(count)]


def test_warm_up_waits_for_two_agreeing_windows():
    # The first run is slow (algorithm search), then runs speed up steadily from 8 ms to 5 ms:
    # consecutive 5-run windows differ by 3-5% until the plateau.
    settling = [50.0] + [8.0] * 3 + list(np.linspace(8.0, 5.05, 60))
    timer = ScriptedTimer(settling + [5.0] * 100_000)
    config = LatencyConfig(window_s=0.04, min_warmup_s=0.0, max_warmup_s=5.0, min_windows=3,
                           min_measure_s=0.001)
    result = measure_latency(timer, config)
    assert result.first_run_ms == 50.0
    assert result.runs_per_window == 5  # 40 ms of 8 ms runs
    assert result.warmup_stable
    assert result.median_ms == 5.0 and result.stats.cv == 0.0
    # Measurement starts only after the settling phase was consumed by warm-up.
    assert result.warmup_runs >= 1 + 3 + 60


def test_unstable_warm_up_is_reported():
    alternating = [1.0, 1.0, 1.0, 1.0] + [1.0, 2.0] * 1_000_000
    timer = ScriptedTimer(alternating)
    config = LatencyConfig(window_s=0.001, min_runs_per_window=1, max_runs_per_window=1,
                           min_warmup_s=0.0, max_warmup_s=0.05, min_windows=2, min_measure_s=0.001)
    result = measure_latency(timer, config)
    assert not result.warmup_stable
    assert any("did not stabilise" in w for w in result.warnings)


def test_hooks_bracket_only_the_measured_windows():
    timer = ScriptedTimer([1.0] * 100_000)
    events = []
    config = LatencyConfig(window_s=0.005, min_warmup_s=0.0, min_windows=3, min_measure_s=0.001)
    result = measure_latency(
        timer, config,
        on_measure_start=lambda: events.append(("start", sum(timer.calls))),
        on_measure_end=lambda runs: events.append(("end", runs)),
    )
    assert events[0][0] == "start" and events[0][1] == result.warmup_runs
    assert events[1] == ("end", result.stats.n)


@pytest.mark.parametrize("bad", [{"window_s": 0}, {"min_runs_per_window": 0},
                                 {"max_warmup_s": 0.5, "min_warmup_s": 1.0}, {"min_windows": 0}])
def test_latency_config_is_validated(bad):
    with pytest.raises(ProfilingError, match="latency config"):
        LatencyConfig(**bad)


def test_cpu_timer_refuses_a_cuda_session_config(feed):
    # for_model always builds on the CPU, whatever device the config names.
    with CpuPerfCounterTimer.for_model(matmul_chain(), feed, SessionConfig(device="cuda")) as t:
        assert t.session.get_providers() == ["CPUExecutionProvider"]
