"""The few CUDA runtime calls the timers need (streams, events), through cuda-python's bindings.

cuda.bindings returns ``(error, *values)`` tuples; :func:`check` turns a failure into an error that
names the call.
"""

from __future__ import annotations

from typing import Any

from profilers._errors import MissingDependencyError, ProfilingError


def cuda_runtime() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:  # cuda-python before 12.6 exposed the module as cuda.cudart
            from cuda import cudart as runtime  # type: ignore[no-redef]
        except ImportError:
            raise MissingDependencyError(
                "cuda-python is not installed; GPU timing needs it: pip install 'amptune[gpu]'"
            ) from None
    return runtime


def check(result: Any, call: str) -> Any:
    """Unpacks a cuda.bindings result, raising on a CUDA error."""
    runtime = cuda_runtime()
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != runtime.cudaError_t.cudaSuccess:
        _, message = runtime.cudaGetErrorString(error)
        text = message.decode() if isinstance(message, bytes) else str(message)
        raise ProfilingError(f"CUDA call {call} failed: {text} ({int(error)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class CudaStream:
    """A non-blocking stream (it does not synchronise with the legacy default stream)."""

    def __init__(self) -> None:
        runtime = cuda_runtime()
        self._runtime = runtime
        self.handle = check(
            runtime.cudaStreamCreateWithFlags(runtime.cudaStreamNonBlocking),
            "cudaStreamCreateWithFlags",
        )

    @property
    def address(self) -> int:
        """The raw cudaStream_t pointer, as onnxruntime's ``user_compute_stream`` wants it."""
        return int(self.handle)

    def synchronize(self) -> None:
        check(self._runtime.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.handle is not None:
            check(self._runtime.cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None


class CudaEvents:
    """A pool of timing events recorded on one stream."""

    def __init__(self, count: int) -> None:
        runtime = cuda_runtime()
        self._runtime = runtime
        self.events = [
            check(runtime.cudaEventCreateWithFlags(runtime.cudaEventDefault), "cudaEventCreate")
            for _ in range(count)
        ]

    def grow(self, count: int) -> None:
        while len(self.events) < count:
            self.events.append(
                check(
                    self._runtime.cudaEventCreateWithFlags(self._runtime.cudaEventDefault),
                    "cudaEventCreate",
                )
            )

    def record(self, index: int, stream: CudaStream) -> None:
        check(self._runtime.cudaEventRecord(self.events[index], stream.handle), "cudaEventRecord")

    def synchronize(self, index: int) -> None:
        check(self._runtime.cudaEventSynchronize(self.events[index]), "cudaEventSynchronize")

    def elapsed_ms(self, start: int, end: int) -> float:
        return float(
            check(
                self._runtime.cudaEventElapsedTime(self.events[start], self.events[end]),
                "cudaEventElapsedTime",
            )
        )

    def destroy(self) -> None:
        for event in self.events:
            check(self._runtime.cudaEventDestroy(event), "cudaEventDestroy")
        self.events = []


def device_synchronize() -> None:
    runtime = cuda_runtime()
    check(runtime.cudaDeviceSynchronize(), "cudaDeviceSynchronize")
