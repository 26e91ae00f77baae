"""Timing on onnxruntime's CPU execution provider with ``perf_counter``.

The same procedure as on the GPU (inputs bound once, runs timed one by one), so the API is the
same without a GPU; every result it produces says it is a CPU measurement.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Self

import numpy as np

from profilers._errors import ProfilingError
from profilers._io_binding import BoundSession
from profilers._sessions import CPU_PROVIDER, SessionConfig, build_session


class CpuPerfCounterTimer:
    """Times each ``run_with_iobinding`` of a CPU session with ``time.perf_counter_ns``."""

    clock = "cpu-perf-counter"
    device = "cpu"

    def __init__(self, session: Any, feed: Mapping[str, np.ndarray]) -> None:
        if session.get_providers()[0] != CPU_PROVIDER:
            raise ProfilingError(
                f"CpuPerfCounterTimer needs a CPU session, got providers {session.get_providers()}"
            )
        self.session = session
        self.bound = BoundSession(session, feed, device_type="cpu")

    @classmethod
    def for_model(
        cls, model: Any, feed: Mapping[str, np.ndarray], config: SessionConfig | None = None
    ) -> CpuPerfCounterTimer:
        config = (config or SessionConfig(device="cpu")).with_(device="cpu")
        return cls(build_session(model, config), feed)

    def time_runs(self, count: int) -> list[float]:
        times = []
        run = self.bound.run
        for _ in range(count):
            start = time.perf_counter_ns()
            run()
            times.append((time.perf_counter_ns() - start) / 1e6)
        return times

    def close(self) -> None:
        self.session = None
        self.bound = None  # type: ignore[assignment]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
