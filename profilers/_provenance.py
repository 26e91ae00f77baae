"""Where a measurement was made: enough to tell whether two numbers may be compared.

GPU name, driver, CUDA (driver and runtime) and cuDNN versions, onnxruntime version and build,
the session's provider options, clocks and power limit at the start, amptune's version and git
commit, the host and Python. Every field that cannot be read is ``None``; nothing here may fail a
measurement.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from tuner._version import __version__ as amptune_version


def _version_triple(encoded: int, major_factor: int = 1000, minor_factor: int = 10) -> str:
    # CUDA encodes 13000 as 13.0; cuDNN 9 encodes 91900 as 9.19.0.
    major = encoded // major_factor
    minor = (encoded % major_factor) // minor_factor
    return f"{major}.{minor}"


def _loaded_library_version(names: tuple[str, ...], symbol: str) -> int | None:
    """Calls ``symbol`` of the first library among ``names`` that loads (onnxruntime's own)."""
    for name in names:
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        function = getattr(library, symbol, None)
        if function is None:
            continue
        if symbol == "cudnnGetVersion":
            function.restype = ctypes.c_size_t
            return int(function())
        value = ctypes.c_int()
        if function(ctypes.byref(value)) == 0:
            return value.value
    return None


def git_commit(start: Path | None = None) -> dict[str, Any]:
    """The commit of the checkout amptune runs from, and whether it has local changes.

    A copy without ``.git`` (a tree shipped to a GPU host) may name its commit in the environment
    variable ``AMPTUNE_GIT_COMMIT``.
    """
    if start is None and os.environ.get("AMPTUNE_GIT_COMMIT"):
        return {"commit": os.environ["AMPTUNE_GIT_COMMIT"], "dirty": None, "source": "environment"}
    folder = start or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty)}


def _nvml_facts(device_index: int) -> dict[str, Any]:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
    except Exception as error:  # noqa: BLE001 - no library, no driver, no GPU: all mean none
        return {"nvml": f"unavailable: {error}"}
    facts: dict[str, Any] = {"nvml": "available"}
    readers = {
        "gpu_name": lambda: pynvml.nvmlDeviceGetName(handle),
        "gpu_uuid": lambda: pynvml.nvmlDeviceGetUUID(handle),
        "driver_version": pynvml.nvmlSystemGetDriverVersion,
        "cuda_driver_version": lambda: _version_triple(
            pynvml.nvmlSystemGetCudaDriverVersion_v2()
        ),
        "sm_clock_mhz_at_start": lambda: pynvml.nvmlDeviceGetClockInfo(
            handle, pynvml.NVML_CLOCK_SM
        ),
        "memory_clock_mhz_at_start": lambda: pynvml.nvmlDeviceGetClockInfo(
            handle, pynvml.NVML_CLOCK_MEM
        ),
        "max_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
        "temperature_c_at_start": lambda: pynvml.nvmlDeviceGetTemperature(
            handle, pynvml.NVML_TEMPERATURE_GPU
        ),
        "memory_total_mib": lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
    }
    for key, read in readers.items():
        try:
            value = read()
            facts[key] = value.decode() if isinstance(value, bytes) else value
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported and kin: the field is unknown
            facts[key] = None
    return facts


def collect_provenance(
    device: str,
    *,
    device_index: int = 0,
    provider_options: dict[str, Any] | None = None,
    session_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything above as a JSON-able dict; GPU facts only when ``device`` is ``cuda``."""
    facts: dict[str, Any] = {
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device,
        "amptune_version": amptune_version,
        "amptune_git": git_commit(),
        "python": platform.python_version(),
        "host": {"machine": platform.machine(), "system": platform.system(),
                 "processor": platform.processor() or None, "node": platform.node()},
        "provider_options": provider_options,
        "session_config": session_config,
    }
    try:
        import onnxruntime

        facts["onnxruntime_version"] = onnxruntime.__version__
        facts["onnxruntime_build"] = (
            onnxruntime.get_build_info() if hasattr(onnxruntime, "get_build_info") else None
        )
        facts["onnxruntime_cuda_build_version"] = getattr(onnxruntime, "cuda_version", None) or None
    except ImportError:
        facts["onnxruntime_version"] = None
    if device == "cuda":
        facts.update(_nvml_facts(device_index))
        runtime = _loaded_library_version(
            ("libcudart.so.13", "libcudart.so.12", "libcudart.so"), "cudaRuntimeGetVersion"
        )
        facts["cuda_runtime_version"] = _version_triple(runtime) if runtime else None
        cudnn = _loaded_library_version(("libcudnn.so.9", "libcudnn.so"), "cudnnGetVersion")
        facts["cudnn_version"] = (
            f"{cudnn // 10000}.{(cudnn % 10000) // 100}.{cudnn % 100}" if cudnn else None
        )
    return facts
