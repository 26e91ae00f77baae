"""Shared fixtures: GPU-test skipping and the real-model zoo."""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Callable
from pathlib import Path

import pytest


def _cuda_device_visible() -> str | None:
    """None when a CUDA device is visible to this process, else why not. Cheap: no CUDA init."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    if glob.glob("/dev/nvidia[0-9]*"):
        return None
    try:  # no device node (WSL, unusual containers): ask the driver through NVML
        import pynvml

        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() > 0:
                return None
        finally:
            pynvml.nvmlShutdown()
    except Exception as error:  # noqa: BLE001 - no driver, no library: no GPU either way
        return f"no /dev/nvidia* device and NVML failed ({type(error).__name__}: {error})"
    return "no /dev/nvidia* device and NVML counts 0 GPUs"


@functools.cache
def _gpu_skip_reason() -> str | None:
    """None when GPU tests can run here, else a reason naming what is missing."""
    try:
        import onnxruntime
    except ImportError:
        return "needs onnxruntime-gpu; onnxruntime is not installed"
    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return (
            f"needs CUDAExecutionProvider (onnxruntime-gpu); this onnxruntime "
            f"{onnxruntime.__version__} has {', '.join(providers)}"
        )
    device = _cuda_device_visible()
    return None if device is None else f"needs a visible CUDA device: {device}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return  # no probe at all when no GPU test was collected
    reason = _gpu_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu test: {reason}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def real_model() -> Callable[[str], Path]:
    """Factory: ``real_model("ppocr-det")`` is the model's ONNX file (MiniLM exported once).

    A model whose package (or, for MiniLM, torch and transformers) is not installed skips the
    test with the install command in the reason.
    """
    from tuner._errors import MissingDependencyError
    from tuner._model_zoo import real_model_path

    @functools.cache
    def locate(name: str) -> Path:
        try:
            return real_model_path(name)
        except MissingDependencyError as error:
            pytest.skip(str(error))

    return locate

