"""The profiler contract on onnxruntime's CPU EP (what CI runs)."""

import pytest

from profilers import OnnxRuntimeProfiler, SessionConfig
from tests.profilers.profiler_contract import FAST_LATENCY, ProfilerContract


class TestCpuProfiler(ProfilerContract):
    @pytest.fixture
    def profiler(self):
        return OnnxRuntimeProfiler(SessionConfig(device="cpu"), FAST_LATENCY, per_node_runs=5)


def test_default_device_follows_the_installed_onnxruntime():
    from profilers import cuda_provider_available

    expected = "cuda" if cuda_provider_available() else "cpu"
    assert OnnxRuntimeProfiler().device == expected
