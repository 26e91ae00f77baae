"""How a precision plan is applied to an ONNX model and how the search runs.

Importing this package imports neither onnxruntime, plotly nor pynvml.
"""

from tuner._conversion_report import ConversionReport, NodeDecision
from tuner._convert import ConversionOptions, ConversionResult, convert_precision
from tuner._errors import AmptuneError, MissingDependencyError, ModelLoadError, PassError, PlanError
from tuner._inspect import ModelSummary, inspect_model
from tuner._kernel_registry import KernelEntry, KernelRegistry, KernelRegistryError
from tuner._model_io import load_model, save_model
from tuner._model_zoo import REAL_MODELS, real_model_path
from tuner._version import __version__

__all__ = [
    "REAL_MODELS",
    "AmptuneError",
    "ConversionOptions",
    "ConversionReport",
    "ConversionResult",
    "KernelEntry",
    "KernelRegistry",
    "KernelRegistryError",
    "MissingDependencyError",
    "ModelLoadError",
    "ModelSummary",
    "NodeDecision",
    "PassError",
    "PlanError",
    "__version__",
    "convert_precision",
    "inspect_model",
    "load_model",
    "real_model_path",
    "save_model",
]
