"""GPU time of each run from CUDA events on the session's own stream.

The session runs on a non-blocking stream created here and handed to the CUDA EP as
``user_compute_stream``; inputs and outputs are bound on the device once. Each window records one
event before the first run and one after every run, and the RunOptions entry
``disable_synchronize_execution_providers=1`` keeps ``run_with_iobinding`` from waiting on the
device, so the host queues the window and only the window's last event is waited for. A run's time
is the time between its two events on the stream: the device's time for that run, including any
time the device waited for the host to launch work (a launch-bound model is slow for real).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Self

import numpy as np

from profilers._cuda_runtime import CudaEvents, CudaStream
from profilers._errors import ProfilingError
from profilers._io_binding import BoundSession
from profilers._sessions import CUDA_PROVIDER, SessionConfig, build_session

NO_SYNC_RUN_CONFIG = {"disable_synchronize_execution_providers": "1"}


class CudaEventTimer:
    """Times runs of a model on the CUDA EP with CUDA events; see the module docstring.

    Build it with :meth:`for_model` (it creates the stream, then the session on that stream). With
    ``config.enable_cuda_graph`` the model is captured into a CUDA graph on the first run and
    replayed afterwards; that needs ``output_arrays`` (arrays of the outputs' shapes and dtypes)
    so the output buffers exist before capture.
    """

    clock = "cuda-events"
    device = "cuda"

    def __init__(
        self,
        session: Any,
        stream: CudaStream,
        feed: Mapping[str, np.ndarray],
        *,
        device_id: int = 0,
        output_arrays: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        if session.get_providers()[0] != CUDA_PROVIDER:
            raise ProfilingError(
                f"CudaEventTimer needs a CUDA EP session, got providers {session.get_providers()}"
            )
        self.session = session
        self.stream = stream
        self.bound = BoundSession(
            session,
            feed,
            device_type="cuda",
            device_id=device_id,
            output_arrays=output_arrays,
            run_config=NO_SYNC_RUN_CONFIG,
        )
        self.events = CudaEvents(2)
        self.provider_options = session.get_provider_options().get(CUDA_PROVIDER, {})

    @classmethod
    def for_model(
        cls,
        model: Any,
        feed: Mapping[str, np.ndarray],
        config: SessionConfig | None = None,
        *,
        output_arrays: Mapping[str, np.ndarray] | None = None,
    ) -> CudaEventTimer:
        config = (config or SessionConfig()).with_(device="cuda")
        if config.enable_cuda_graph and output_arrays is None:
            raise ProfilingError(
                "enable_cuda_graph needs output_arrays (the outputs' shapes and dtypes) so that "
                "the output buffers exist before the graph is captured"
            )
        stream = CudaStream()
        try:
            session = build_session(model, config, user_compute_stream=stream.address)
            return cls(
                session, stream, feed, device_id=config.device_id, output_arrays=output_arrays
            )
        except Exception:
            stream.destroy()
            raise

    def time_runs(self, count: int) -> list[float]:
        """``count`` consecutive runs, one event between each: per-run device milliseconds."""
        self.events.grow(count + 1)
        run, record = self.bound.run, self.events.record
        record(0, self.stream)
        for index in range(1, count + 1):
            run()
            record(index, self.stream)
        self.events.synchronize(count)
        elapsed = self.events.elapsed_ms
        return [elapsed(index - 1, index) for index in range(1, count + 1)]

    def time_runs_wall_clock(self, count: int) -> list[float]:
        """Per-run host time of a synchronised loop (run, then wait for the stream): a check on
        the events, since it includes the launch latency the events may not see."""
        times = []
        for _ in range(count):
            start = time.perf_counter_ns()
            self.bound.run()
            self.stream.synchronize()
            times.append((time.perf_counter_ns() - start) / 1e6)
        return times

    def outputs(self) -> dict[str, np.ndarray]:
        self.stream.synchronize()
        return self.bound.outputs()

    def close(self) -> None:
        """Releases the session before the stream it runs on."""
        if self.session is None:
            return
        self.stream.synchronize()
        self.bound = None  # type: ignore[assignment]
        self.session = None
        self.events.destroy()
        self.stream.destroy()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
