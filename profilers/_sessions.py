"""Building ONNX Runtime sessions the way measurements need them.

The recipe (:class:`SessionConfig`) is plain data; :func:`build_session` turns it into a session.
On CUDA the provider options are explicit: TF32 is on by default in the CUDA EP, so ``use_tf32``
is always written out, and a session that silently fell back to the CPU is refused.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from profilers._errors import MissingDependencyError, ProfilingError

Device = Literal["cuda", "cpu"]
DEVICES: tuple[str, ...] = ("cuda", "cpu")
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

# ModelProto.SerializeToString fails past 2 GiB: larger models go through a file with external data.
_PROTOBUF_LIMIT = 2**31 - 2**20

_dlls_preloaded = False


def import_onnxruntime() -> Any:
    """onnxruntime, or a clear error saying which extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            "onnxruntime is not installed: pip install 'amptune[gpu]' on a machine with an NVIDIA "
            "GPU, or 'amptune[cpu]' elsewhere"
        ) from None
    return onnxruntime


def cuda_provider_available() -> bool:
    """Whether the installed onnxruntime has the CUDA EP (not whether a GPU answers)."""
    try:
        onnxruntime = import_onnxruntime()
    except MissingDependencyError:
        return False
    return CUDA_PROVIDER in onnxruntime.get_available_providers()


def _preload_cuda_libraries(onnxruntime: Any) -> None:
    # onnxruntime-gpu finds the pip-installed CUDA/cuDNN libraries only after preload_dlls().
    global _dlls_preloaded
    if not _dlls_preloaded and hasattr(onnxruntime, "preload_dlls"):
        onnxruntime.preload_dlls()
    _dlls_preloaded = True


@dataclass(frozen=True)
class SessionConfig:
    """How to build a session: device, CUDA EP options, graph optimisation, threads."""

    device: Device = "cuda"
    device_id: int = 0
    use_tf32: bool = False
    enable_cuda_graph: bool = False
    prefer_nhwc: bool = False
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    extra_provider_options: Mapping[str, str] = field(default_factory=dict)
    graph_optimization_level: str = "all"
    intra_op_num_threads: int = 0  # 0: onnxruntime's default

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ProfilingError(f"device {self.device!r} is not known; valid: {', '.join(DEVICES)}")
        if self.graph_optimization_level not in _OPTIMIZATION_LEVELS:
            raise ProfilingError(
                f"graph_optimization_level {self.graph_optimization_level!r} is not known; valid: "
                f"{', '.join(_OPTIMIZATION_LEVELS)}"
            )

    def with_(self, **changes: Any) -> SessionConfig:
        return replace(self, **changes)

    def cuda_provider_options(self, user_compute_stream: int | None = None) -> dict[str, str]:
        options = {
            "device_id": str(self.device_id),
            "use_tf32": "1" if self.use_tf32 else "0",
            "enable_cuda_graph": "1" if self.enable_cuda_graph else "0",
            "prefer_nhwc": "1" if self.prefer_nhwc else "0",
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
        }
        if user_compute_stream is not None:
            options["user_compute_stream"] = str(user_compute_stream)
        options.update({k: str(v) for k, v in self.extra_provider_options.items()})
        return options

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "device_id": self.device_id,
            "use_tf32": self.use_tf32,
            "enable_cuda_graph": self.enable_cuda_graph,
            "prefer_nhwc": self.prefer_nhwc,
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "extra_provider_options": dict(self.extra_provider_options),
            "graph_optimization_level": self.graph_optimization_level,
            "intra_op_num_threads": self.intra_op_num_threads,
        }


_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def _model_source(model: Any, scratch: list[tempfile.TemporaryDirectory[str]]) -> str | bytes:
    """A path or serialized bytes that onnxruntime can load; large ModelProtos go via a file."""
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not path.is_file():
            raise ProfilingError(f"model file {str(path)!r} does not exist")
        return str(path)
    if isinstance(model, bytes):
        return model
    from tuner._model_io import iter_model_tensors, save_model, tensor_nbytes

    # Sized from the tensors: ByteSize() itself raises for a proto over 2 GB.
    if sum(tensor_nbytes(t) for t in iter_model_tensors(model)) < _PROTOBUF_LIMIT - 2**26:
        return model.SerializeToString()
    folder = tempfile.TemporaryDirectory(prefix="amptune-model-")
    scratch.append(folder)
    path = Path(folder.name) / "model.onnx"
    # tuner's save_model leaves the caller's proto whole (onnx.save_model with external data
    # would empty its tensors).
    save_model(model, path, external_data=True)
    return str(path)


def build_session(
    model: Any,
    config: SessionConfig,
    *,
    user_compute_stream: int | None = None,
    profile_prefix: str | None = None,
) -> Any:
    """An InferenceSession for ``model`` (ModelProto, serialized bytes or a path).

    ``profile_prefix`` turns on onnxruntime's profiler (placement and per-node host intervals).
    """
    onnxruntime = import_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = {
        "disable": onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[config.graph_optimization_level]
    if config.intra_op_num_threads:
        options.intra_op_num_threads = config.intra_op_num_threads
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if config.device == "cuda":
        if CUDA_PROVIDER not in onnxruntime.get_available_providers():
            raise ProfilingError(
                "device 'cuda' asked for, but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(onnxruntime.get_available_providers())}); install "
                "amptune[gpu] or use --device cpu"
            )
        _preload_cuda_libraries(onnxruntime)
        providers: list[Any] = [
            (CUDA_PROVIDER, config.cuda_provider_options(user_compute_stream)),
            CPU_PROVIDER,
        ]
    else:
        providers = [CPU_PROVIDER]
    scratch: list[tempfile.TemporaryDirectory[str]] = []
    try:
        session = onnxruntime.InferenceSession(
            _model_source(model, scratch), options, providers=providers
        )
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/RuntimeError types
        raise ProfilingError(f"onnxruntime could not build a session: {error}") from error
    finally:
        for folder in scratch:
            folder.cleanup()
    if config.device == "cuda" and CUDA_PROVIDER not in session.get_providers():
        raise ProfilingError(
            "the CUDA execution provider failed to initialise (onnxruntime fell back to the CPU): "
            "check the CUDA and cuDNN libraries"
        )
    return session
