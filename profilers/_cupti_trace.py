"""Recording GPU activity with CUPTI (the ``cupti-python`` package).

Between :meth:`CuptiTrace.start` and :meth:`CuptiTrace.stop` CUPTI records every kernel, memcpy and
memset with its device start/end and the correlation id of the API call that launched it, and
every CUDA runtime and driver API call with its host start/end and thread. Both runtime and driver
calls are needed: cuBLAS and cuDNN launch many kernels through the driver API. CUPTI timestamps
share the clock of ``time.time_ns()``, which is what lets launches be matched to onnxruntime's node
intervals (see :mod:`profilers._per_node`).

CUPTI's buffer callbacks can be registered only once per process: they are registered on first use
and feed whichever trace is active.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from profilers._errors import MissingDependencyError, ProfilingError

_BUFFER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class GpuActivity:
    """Work the device did: a kernel, a memcpy or a memset."""

    kind: str
    name: str
    start_ns: int
    end_ns: int
    correlation_id: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class ApiCall:
    """A CUDA runtime or driver API call on the host."""

    domain: str
    correlation_id: int
    start_ns: int
    end_ns: int
    thread_id: int


def import_cupti() -> Any:
    try:
        from cupti import cupti
    except ImportError:
        raise MissingDependencyError(
            "per-node GPU time needs CUPTI's Python bindings: pip install cupti-python matching "
            "the CUDA toolkit's CUPTI (e.g. cupti-python==13.0.* for CUPTI 13.0)"
        ) from None
    return cupti


class _Collector:
    """Receives CUPTI's completed buffers for the active trace."""

    lock = threading.Lock()
    registered = False
    active: CuptiTrace | None = None

    @classmethod
    def buffer_requested(cls) -> tuple[int, int]:
        return _BUFFER_BYTES, 0

    @classmethod
    def buffer_completed(cls, activities: list[Any]) -> None:
        trace = cls.active
        if trace is None:
            return
        # Copy the fields out at once: the records live in a buffer CUPTI reuses.
        for record in activities:
            trace._take(record)


class CuptiTrace:
    """One recording window; see the module docstring."""

    def __init__(self) -> None:
        self.cupti = import_cupti()
        kind = self.cupti.ActivityKind
        self._gpu_kinds = {
            int(kind.CONCURRENT_KERNEL): "kernel",
            int(kind.MEMCPY): "memcpy",
            int(kind.MEMSET): "memset",
        }
        self._api_kinds = {int(kind.RUNTIME): "runtime", int(kind.DRIVER): "driver"}
        self.gpu_activities: list[GpuActivity] = []
        self.api_calls: list[ApiCall] = []

    def _take(self, record: Any) -> None:
        kind = int(record.kind)
        if kind in self._gpu_kinds:
            label = self._gpu_kinds[kind]
            self.gpu_activities.append(
                GpuActivity(
                    label,
                    str(record.name) if label == "kernel" else label,
                    int(record.start),
                    int(record.end),
                    int(record.correlation_id),
                )
            )
        elif kind in self._api_kinds:
            self.api_calls.append(
                ApiCall(
                    self._api_kinds[kind],
                    int(record.correlation_id),
                    int(record.start),
                    int(record.end),
                    int(record.thread_id),
                )
            )

    def _kinds(self) -> list[Any]:
        kind = self.cupti.ActivityKind
        return [kind.CONCURRENT_KERNEL, kind.MEMCPY, kind.MEMSET, kind.RUNTIME, kind.DRIVER]

    def start(self) -> None:
        with _Collector.lock:
            if _Collector.active is not None:
                raise ProfilingError("another CUPTI trace is already recording in this process")
            if not _Collector.registered:
                self.cupti.activity_register_callbacks(
                    _Collector.buffer_requested, _Collector.buffer_completed
                )
                _Collector.registered = True
            _Collector.active = self
        try:
            for kind in self._kinds():
                self.cupti.activity_enable(kind)
        except Exception as error:
            _Collector.active = None
            raise ProfilingError(f"CUPTI could not start recording: {error}") from error

    def stop(self) -> None:
        """Flushes every record (the caller has synchronised the device) and stops recording."""
        try:
            self.cupti.activity_flush_all(1)
            for kind in self._kinds():
                self.cupti.activity_disable(kind)
            self.cupti.activity_flush_all(1)
        finally:
            _Collector.active = None
